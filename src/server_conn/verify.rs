//! How strata checks the certificates of the servers it connects to: the rustls client configuration built
//! once at start, from the web's roots plus `--upstream-ca`, or `-k`'s accept-anything.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_name, WebPkiServerVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

use super::ALPN_HTTP1;
use crate::config::UpstreamTls;

/// The rustls client configuration for all server connections, built once at start.
pub fn upstream_tls_config(options: &UpstreamTls) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions");
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    for cert in &options.extra_roots {
        // A certificate rustls cannot use as a root is skipped, like a browser skips a bad root.
        if let Err(e) = roots.add(cert.clone()) {
            tracing::warn!(error = %e, "ignoring unusable --upstream-ca certificate");
        }
    }
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .expect("the roots include the web's, so there is at least one");
    let verifier = Verifier { webpki, accept_any: options.insecure, listed: options.extra_roots.clone() };
    let mut config = builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier)).with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    config.key_log = Arc::new(rustls::KeyLogFile::new());
    Arc::new(config)
}

/// The usual chain check against the roots, or with `-k` none at all (the handshake's signature is checked
/// either way, so the server must hold the key of the certificate it shows). Plus one case the chain check
/// refuses that curl accepts: a server whose
/// certificate is byte for byte one the user listed with `--upstream-ca`. A dev certificate made by
/// `openssl req -x509` is its own CA (basicConstraints CA:TRUE), which webpki will not take as a server's
/// certificate (`CaUsedAsEndEntity`). Such a certificate must still name the server (its alternative
/// names, or its common name when it has none, as curl does) and be within its validity dates; the
/// handshake's signature is checked as for any other.
#[derive(Debug)]
struct Verifier {
    webpki: Arc<WebPkiServerVerifier>,
    /// `-k`: any certificate.
    accept_any: bool,
    listed: Vec<CertificateDer<'static>>,
}

impl Verifier {
    fn accept_listed(
        &self,
        end_entity: &CertificateDer<'_>,
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let bad = |reason: rustls::CertificateError| rustls::Error::InvalidCertificate(reason);
        let (_, cert) =
            x509_parser::parse_x509_certificate(end_entity).map_err(|_| bad(rustls::CertificateError::BadEncoding))?;
        let now_asn1 = x509_parser::time::ASN1Time::from_timestamp(now.as_secs() as i64)
            .map_err(|_| bad(rustls::CertificateError::BadEncoding))?;
        if now_asn1 < cert.validity().not_before {
            return Err(bad(rustls::CertificateError::NotValidYet));
        }
        if now_asn1 > cert.validity().not_after {
            return Err(bad(rustls::CertificateError::Expired));
        }
        let has_alt_names = cert.subject_alternative_name().ok().flatten().is_some();
        if has_alt_names {
            verify_server_name(&ParsedCertificate::try_from(end_entity)?, server_name)?;
        } else {
            let wanted = server_name.to_str();
            let named = cert
                .subject()
                .iter_common_name()
                .any(|cn| cn.as_str().is_ok_and(|cn| cn.eq_ignore_ascii_case(&wanted)));
            if !named {
                return Err(bad(rustls::CertificateError::NotValidForName));
            }
        }
        Ok(ServerCertVerified::assertion())
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.accept_any {
            return Ok(ServerCertVerified::assertion());
        }
        let verdict = self.webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now);
        match verdict {
            Err(_) if self.listed.iter().any(|listed| listed.as_ref() == end_entity.as_ref()) => {
                self.accept_listed(end_entity, server_name, now)
            }
            verdict => verdict,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}
