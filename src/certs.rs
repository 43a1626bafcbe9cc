//! The certificate authority in `--confdir` and the leaf certificates it signs for intercepted hosts.
//!
//! On first start the CA is generated and written as mitmproxy lays out its confdir: `strata-ca.pem`
//! (private key and certificate, mode 0600), `strata-ca-cert.pem`, `strata-ca-cert.cer` (the same PEM,
//! named as Android expects) and `strata-ca-cert.p12` (certificate only, for Windows), each written
//! atomically. Later starts read them and never rewrite them; a broken one is an error naming the file.
//! Leaves (ECDSA P-256, one key shared by all) are minted per host name or IP and kept in a bounded cache.

mod pkcs12;

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType, SerialNumber,
};
use ring::rand::SecureRandom;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use time::{Duration, OffsetDateTime};

use crate::error::ConfigError;

/// File names in the confdir, as mitmproxy names its own with `mitmproxy` in place of `strata`.
pub const CA_FILE: &str = "strata-ca.pem";
pub const CA_CERT_PEM_FILE: &str = "strata-ca-cert.pem";
pub const CA_CERT_CER_FILE: &str = "strata-ca-cert.cer";
pub const CA_CERT_P12_FILE: &str = "strata-ca-cert.p12";

/// Most leaf certificates kept; the oldest is dropped beyond this.
const LEAF_CACHE_CAPACITY: usize = 2048;

/// Leaves are valid from a little before now (clients with a slow clock) ...
const LEAF_BACKDATE: Duration = Duration::days(2);
/// ... for less than the 398 days browsers accept from a public CA.
const LEAF_LIFETIME: Duration = Duration::days(365);
/// The generated CA is valid for ten years.
const CA_LIFETIME: Duration = Duration::days(3650);

/// The CA, its files' contents for download, and the leaf cache.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    ca_der: CertificateDer<'static>,
    cert_pem: String,
    cert_p12: Vec<u8>,
    leaf_key: KeyPair,
    leaf_signer: Arc<dyn rustls::sign::SigningKey>,
    cache: Mutex<LeafCache>,
}

#[derive(Default)]
struct LeafCache {
    by_name: HashMap<String, Arc<CertifiedKey>>,
    order: VecDeque<String>,
}

impl CertificateAuthority {
    /// Reads the CA from `confdir`, generating and writing it first if there is none.
    pub fn load_or_create(confdir: &Path) -> Result<Self, ConfigError> {
        let ca_path = confdir.join(CA_FILE);
        if !ca_path.exists() {
            refuse_orphaned_files(confdir)?;
            create_ca(&ca_path)?;
        }
        let pem = fs::read_to_string(&ca_path).map_err(|e| file_error(&ca_path, format!("cannot read: {e}")))?;
        let (key_der, cert_der) = parse_ca_pem(&pem).map_err(|reason| file_error(&ca_path, reason))?;
        let key =
            KeyPair::try_from(&key_der).map_err(|e| file_error(&ca_path, format!("unusable private key: {e}")))?;
        if rcgen::PublicKeyData::subject_public_key_info(&key)
            != spki_of(&cert_der).map_err(|reason| file_error(&ca_path, reason))?
        {
            return Err(file_error(&ca_path, "the private key does not belong to the certificate".into()));
        }
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)
            .map_err(|e| file_error(&ca_path, format!("unusable CA certificate: {e}")))?;
        let cert_pem = pem_encode("CERTIFICATE", &cert_der);
        let cert_p12 = pkcs12::certificate_only(&cert_der, "strata CA");
        write_if_missing(&confdir.join(CA_CERT_PEM_FILE), cert_pem.as_bytes(), 0o644)?;
        write_if_missing(&confdir.join(CA_CERT_CER_FILE), cert_pem.as_bytes(), 0o644)?;
        write_if_missing(&confdir.join(CA_CERT_P12_FILE), &cert_p12, 0o644)?;

        let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(internal)?;
        let leaf_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let leaf_signer = rustls::crypto::ring::sign::any_ecdsa_type(&leaf_der).map_err(internal)?;
        Ok(CertificateAuthority {
            issuer,
            ca_der: cert_der,
            cert_pem,
            cert_p12,
            leaf_key,
            leaf_signer,
            cache: Mutex::new(LeafCache::default()),
        })
    }

    /// The CA certificate, PEM-encoded (what `/cert/pem` serves).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate as PKCS#12 (what `/cert/p12` serves).
    pub fn cert_p12(&self) -> &[u8] {
        &self.cert_p12
    }

    /// The CA certificate, DER-encoded.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    /// A certificate for `name` (a DNS name or an IP literal) with its chain and key, ready for rustls.
    /// Two connections that miss the cache at once may both mint; the second result simply wins.
    pub fn leaf(&self, name: &str) -> Result<Arc<CertifiedKey>, String> {
        let name = name.to_ascii_lowercase();
        if let Some(hit) = self.cache.lock().expect("leaf cache lock").by_name.get(&name) {
            return Ok(hit.clone());
        }
        let leaf = Arc::new(self.mint_leaf(&name)?);
        let mut cache = self.cache.lock().expect("leaf cache lock");
        if cache.order.len() >= LEAF_CACHE_CAPACITY {
            if let Some(oldest) = cache.order.pop_front() {
                cache.by_name.remove(&oldest);
            }
        }
        if cache.by_name.insert(name.clone(), leaf.clone()).is_none() {
            cache.order.push_back(name);
        }
        Ok(leaf)
    }

    fn mint_leaf(&self, name: &str) -> Result<CertifiedKey, String> {
        let mut params = CertificateParams::default();
        let san = match name.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(name.try_into().map_err(|e| format!("invalid host name '{name}': {e}"))?),
        };
        params.subject_alt_names = vec![san];
        params.distinguished_name.push(DnType::CommonName, name);
        params.distinguished_name.push(DnType::OrganizationName, "strata");
        let now = OffsetDateTime::now_utc();
        params.not_before = now - LEAF_BACKDATE;
        params.not_after = now + LEAF_LIFETIME;
        params.serial_number = Some(random_serial());
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let cert =
            params.signed_by(&self.leaf_key, &self.issuer).map_err(|e| format!("cannot sign for {name}: {e}"))?;
        Ok(CertifiedKey::new(vec![cert.der().clone(), self.ca_der.clone()], self.leaf_signer.clone()))
    }
}

/// A CA certificate without its key would be a CA we cannot use; generating a new one would silently
/// replace what the user installed. Refuse instead.
fn refuse_orphaned_files(confdir: &Path) -> Result<(), ConfigError> {
    for name in [CA_CERT_PEM_FILE, CA_CERT_CER_FILE, CA_CERT_P12_FILE] {
        let path = confdir.join(name);
        if path.exists() {
            return Err(file_error(
                &path,
                format!("exists without {CA_FILE}; remove it to let strata generate a new CA, or restore {CA_FILE}"),
            ));
        }
    }
    Ok(())
}

fn create_ca(path: &Path) -> Result<(), ConfigError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(internal)?;
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, "strata");
    params.distinguished_name.push(DnType::OrganizationName, "strata");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - LEAF_BACKDATE;
    params.not_after = now + CA_LIFETIME;
    params.serial_number = Some(random_serial());
    let cert = params.self_signed(&key).map_err(internal)?;
    let contents = format!("{}{}", key.serialize_pem(), cert.pem());
    write_atomically(path, contents.as_bytes(), 0o600)
}

/// The private key and the first certificate in a PEM file.
fn parse_ca_pem(pem: &str) -> Result<(PrivateKeyDer<'static>, CertificateDer<'static>), String> {
    let mut key = None;
    let mut cert = None;
    for item in rustls_pemfile::read_all(&mut pem.as_bytes()) {
        match item.map_err(|e| format!("not valid PEM: {e}"))? {
            rustls_pemfile::Item::Pkcs8Key(k) if key.is_none() => key = Some(PrivateKeyDer::Pkcs8(k)),
            rustls_pemfile::Item::Pkcs1Key(k) if key.is_none() => key = Some(PrivateKeyDer::Pkcs1(k)),
            rustls_pemfile::Item::Sec1Key(k) if key.is_none() => key = Some(PrivateKeyDer::Sec1(k)),
            rustls_pemfile::Item::X509Certificate(c) if cert.is_none() => cert = Some(c),
            _ => {}
        }
    }
    match (key, cert) {
        (Some(key), Some(cert)) => Ok((key, cert)),
        (None, _) => Err("no private key found (expected a PEM private key and certificate)".into()),
        (_, None) => Err("no certificate found (expected a PEM private key and certificate)".into()),
    }
}

/// The SubjectPublicKeyInfo of a certificate, DER-encoded.
fn spki_of(cert: &CertificateDer<'_>) -> Result<Vec<u8>, String> {
    use x509_parser::prelude::FromDer;
    let (_, parsed) = x509_parser::certificate::X509Certificate::from_der(cert.as_ref())
        .map_err(|e| format!("certificate cannot be parsed: {e}"))?;
    Ok(parsed.public_key().raw.to_vec())
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut bytes).expect("the system random source works");
    bytes[0] &= 0x7F; // a positive INTEGER
    SerialNumber::from(bytes.to_vec())
}

/// PEM text for one DER item.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(label, der), config)
}

fn write_if_missing(path: &Path, contents: &[u8], mode: u32) -> Result<(), ConfigError> {
    if path.exists() {
        return Ok(());
    }
    write_atomically(path, contents, mode)
}

/// Writes `contents` to a temporary file beside `path`, syncs it, then renames it into place, so the file
/// is either absent or complete, never half-written.
pub fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), ConfigError> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
        let mut file = options.open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        file_error(path, format!("cannot write: {e}"))
    })
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

fn file_error(path: &Path, reason: String) -> ConfigError {
    ConfigError::File { path: path.display().to_string(), reason }
}

fn internal(e: impl std::fmt::Display) -> ConfigError {
    ConfigError::File { path: "(certificate authority)".into(), reason: e.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_encoding_round_trips() {
        let der: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let pem = pem_encode("CERTIFICATE", &der);
        let parsed: Vec<_> = rustls_pemfile::certs(&mut pem.as_bytes()).collect::<Result<_, _>>().unwrap();
        assert_eq!(parsed[0].as_ref(), der.as_slice());
    }

    #[test]
    fn ca_is_created_once_and_reused_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let first = CertificateAuthority::load_or_create(dir.path()).unwrap();
        let files: Vec<Vec<u8>> = [CA_FILE, CA_CERT_PEM_FILE, CA_CERT_CER_FILE, CA_CERT_P12_FILE]
            .iter()
            .map(|f| fs::read(dir.path().join(f)).unwrap())
            .collect();
        let second = CertificateAuthority::load_or_create(dir.path()).unwrap();
        assert_eq!(first.cert_pem(), second.cert_pem());
        for (f, before) in [CA_FILE, CA_CERT_PEM_FILE, CA_CERT_CER_FILE, CA_CERT_P12_FILE].iter().zip(files) {
            assert_eq!(fs::read(dir.path().join(f)).unwrap(), before, "{f} changed");
        }
        let leaf = second.leaf("example.org").unwrap();
        assert_eq!(leaf.cert.len(), 2);
        assert!(Arc::ptr_eq(&leaf, &second.leaf("EXAMPLE.org").unwrap()), "cached");
        assert!(second.leaf("127.0.0.1").is_ok());
    }
}
