//! A certificate-only PKCS#12 file (RFC 7292), the form Windows imports a CA certificate from.
//!
//! The file holds one unencrypted certificate bag and an HMAC-SHA256 integrity MAC keyed from the empty
//! password, which is what `openssl pkcs12 -passin pass:` and the Windows import wizard expect. Only the
//! handful of DER structures this needs are encoded here.

use ring::{digest, hmac, rand::SecureRandom};

/// Iterations of the PKCS#12 key derivation for the MAC key.
const MAC_ITERATIONS: u32 = 2048;

const OID_DATA: &[u8] = &[0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x07, 0x01];
const OID_CERT_BAG: &[u8] = &[0x06, 0x0B, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x0C, 0x0A, 0x01, 0x03];
const OID_X509_CERT: &[u8] = &[0x06, 0x0A, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x16, 0x01];
const OID_FRIENDLY_NAME: &[u8] = &[0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x14];
const OID_SHA256: &[u8] = &[0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];

/// Encodes `cert_der` as a PKCS#12 file with `friendly_name`, MAC'd with the empty password.
pub fn certificate_only(cert_der: &[u8], friendly_name: &str) -> Vec<u8> {
    let bmp_name: Vec<u8> = friendly_name.encode_utf16().flat_map(u16::to_be_bytes).collect();
    let attributes = set(&[&seq(&[OID_FRIENDLY_NAME, &set(&[&tlv(0x1E, &bmp_name)])])]);
    let cert_bag = seq(&[OID_X509_CERT, &explicit0(&tlv(0x04, cert_der))]);
    let safe_bag = seq(&[OID_CERT_BAG, &explicit0(&cert_bag), &attributes]);
    let safe_contents = seq(&[&safe_bag]);
    let auth_safe = seq(&[&data_content_info(&safe_contents)]);

    let mut salt = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut salt).expect("the system random source works");
    let key = derive_mac_key(&salt, MAC_ITERATIONS);
    let mac = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &key), &auth_safe);
    let digest_info = seq(&[&seq(&[OID_SHA256, &[0x05, 0x00]]), &tlv(0x04, mac.as_ref())]);
    let mac_data = seq(&[&digest_info, &tlv(0x04, &salt), &integer(MAC_ITERATIONS)]);

    seq(&[&integer(3), &data_content_info(&auth_safe), &mac_data])
}

/// The PKCS#12 key derivation (RFC 7292 appendix B.2) with SHA-256, purpose 3 (MAC key), for the empty
/// password. One output block is exactly the 32 bytes HMAC-SHA256 needs.
fn derive_mac_key(salt: &[u8], iterations: u32) -> Vec<u8> {
    const BLOCK: usize = 64;
    let mut input = vec![3u8; BLOCK];
    input.extend(salt.iter().cycle().take(BLOCK * salt.len().div_ceil(BLOCK)));
    // The empty password is the BMPString terminator alone (two zero bytes), repeated to a block.
    input.extend(std::iter::repeat_n(0u8, BLOCK));
    let mut hash = digest::digest(&digest::SHA256, &input);
    for _ in 1..iterations {
        hash = digest::digest(&digest::SHA256, hash.as_ref());
    }
    hash.as_ref().to_vec()
}

fn data_content_info(content: &[u8]) -> Vec<u8> {
    seq(&[OID_DATA, &explicit0(&tlv(0x04, content))])
}

fn explicit0(inner: &[u8]) -> Vec<u8> {
    tlv(0xA0, inner)
}

fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

fn set(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x31, &parts.concat())
}

fn integer(value: u32) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(3);
    let mut content = bytes[start..].to_vec();
    if content[0] & 0x80 != 0 {
        content.insert(0, 0);
    }
    tlv(0x02, &content)
}

/// One DER tag-length-value.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u32).to_be_bytes();
        let start = bytes.iter().position(|&b| b != 0).unwrap_or(3);
        out.push(0x80 | (4 - start) as u8);
        out.extend_from_slice(&bytes[start..]);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths_and_integers() {
        assert_eq!(tlv(0x04, &[1, 2]), [0x04, 2, 1, 2]);
        assert_eq!(&tlv(0x04, &[0; 200])[..3], [0x04, 0x81, 200]);
        assert_eq!(&tlv(0x04, &[0; 300])[..4], [0x04, 0x82, 0x01, 0x2C]);
        assert_eq!(integer(3), [0x02, 1, 3]);
        assert_eq!(integer(2048), [0x02, 2, 0x08, 0x00]);
        assert_eq!(integer(128), [0x02, 2, 0x00, 0x80]);
    }
}
