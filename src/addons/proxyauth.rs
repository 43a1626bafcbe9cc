//! `--proxyauth`: clients must present credentials before strata proxies anything for them, as with
//! mitmproxy's option of the same name. `USER:PASS` accepts one pair, `@FILE` an htpasswd file (bcrypt
//! `$2y$`/`$2b$`/`$2a$` and `{SHA}` entries), `any` any pair. HTTP requests and CONNECT carry them in
//! `Proxy-Authorization: Basic`, SOCKS5 clients in the username/password method (RFC 1929). The
//! credentials are checked where the client enters the proxy and never forwarded.

use std::sync::Arc;

use base64::Engine;

use crate::addon::Addon;
use crate::addons::invalid;
use crate::error::ConfigError;
use crate::flow::{HttpFlow, Response};
use crate::http::message::Headers;

/// The addon: a request made to strata as a proxy (`HttpFlow::at_proxy`), a CONNECT included, without
/// valid credentials is answered with 407. SOCKS5 checks the same credentials in its own handshake.
pub struct ProxyAuthAddon(pub Arc<ProxyAuth>);

impl ProxyAuthAddon {
    fn check(&self, flow: &mut HttpFlow) {
        if flow.at_proxy && !self.0.accepts_headers(&flow.request.headers) {
            flow.response = Some(ProxyAuth::challenge());
        }
    }
}

#[async_trait::async_trait]
impl Addon for ProxyAuthAddon {
    fn name(&self) -> &str {
        "proxyauth"
    }

    fn reads_bodies(&self) -> bool {
        false
    }

    async fn http_connect(&self, flow: &mut HttpFlow) {
        self.check(flow);
    }

    async fn requestheaders(&self, flow: &mut HttpFlow) {
        self.check(flow);
    }
}

/// The accepted credentials.
#[derive(Debug)]
pub enum ProxyAuth {
    /// Any username and password.
    Any,
    /// Exactly this pair.
    Single { user: String, password: String },
    /// Entries of an htpasswd file.
    Htpasswd(Vec<(String, PasswordHash)>),
}

/// A hashed password from an htpasswd file.
#[derive(Debug)]
pub enum PasswordHash {
    Bcrypt(String),
    /// The raw SHA-1 digest of `{SHA}` entries.
    Sha1(Vec<u8>),
}

impl ProxyAuth {
    pub fn parse(spec: &str) -> Result<Self, ConfigError> {
        if spec == "any" {
            return Ok(ProxyAuth::Any);
        }
        if let Some(path) = spec.strip_prefix('@') {
            return read_htpasswd(path);
        }
        match spec.split_once(':') {
            Some((user, password)) if !user.is_empty() => {
                Ok(ProxyAuth::Single { user: user.to_string(), password: password.to_string() })
            }
            _ => Err(invalid("--proxyauth", "expected USER:PASS, @htpasswd-file or any".into())),
        }
    }

    /// True if the pair is accepted.
    pub fn accepts(&self, user: &str, password: &str) -> bool {
        match self {
            ProxyAuth::Any => true,
            ProxyAuth::Single { user: u, password: p } => {
                constant_time_eq(u.as_bytes(), user.as_bytes()) & constant_time_eq(p.as_bytes(), password.as_bytes())
            }
            ProxyAuth::Htpasswd(entries) => entries.iter().any(|(u, hash)| u == user && hash.verify(password)),
        }
    }

    /// True if the request headers carry accepted `Proxy-Authorization: Basic` credentials.
    pub fn accepts_headers(&self, headers: &Headers) -> bool {
        let Some(value) = headers.get("proxy-authorization") else { return false };
        let Some(encoded) = std::str::from_utf8(value).ok().and_then(|v| strip_basic(v.trim())) else { return false };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else { return false };
        let Ok(decoded) = String::from_utf8(decoded) else { return false };
        match decoded.split_once(':') {
            Some((user, password)) => self.accepts(user, password),
            None => false,
        }
    }

    /// The 407 that asks a client for credentials.
    pub fn challenge() -> Response {
        let mut response = Response::text(407, "strata: proxy authentication required\n");
        response.headers.append("proxy-authenticate", "Basic realm=\"strata\"");
        response
    }
}

fn strip_basic(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("basic").then_some(rest)
}

impl PasswordHash {
    fn verify(&self, password: &str) -> bool {
        match self {
            PasswordHash::Bcrypt(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            PasswordHash::Sha1(digest) => {
                let actual = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, password.as_bytes());
                constant_time_eq(actual.as_ref(), digest)
            }
        }
    }
}

fn read_htpasswd(path: &str) -> Result<ProxyAuth, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::File { path: path.to_string(), reason: format!("cannot read (--proxyauth): {e}") })?;
    let mut entries = Vec::new();
    for (number, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |reason: &str| ConfigError::File {
            path: path.to_string(),
            reason: format!("line {number}: {reason} (--proxyauth)"),
        };
        let (user, hash) = line.split_once(':').ok_or_else(|| bad("expected USER:HASH"))?;
        let hash = if let Some(sha) = hash.strip_prefix("{SHA}") {
            let digest =
                base64::engine::general_purpose::STANDARD.decode(sha).map_err(|_| bad("{SHA} entry is not base64"))?;
            PasswordHash::Sha1(digest)
        } else if ["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p)) {
            PasswordHash::Bcrypt(hash.to_string())
        } else {
            return Err(bad("only bcrypt ($2y$) and {SHA} entries are supported"));
        };
        entries.push((user.to_string(), hash));
    }
    if entries.is_empty() {
        return Err(ConfigError::File { path: path.to_string(), reason: "no entries (--proxyauth)".into() });
    }
    Ok(ProxyAuth::Htpasswd(entries))
}

/// Compares without stopping at the first difference, so timing does not reveal how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user_pass: &str) -> Headers {
        let mut headers = Headers::default();
        let encoded = base64::engine::general_purpose::STANDARD.encode(user_pass);
        headers.append("Proxy-Authorization", format!("Basic {encoded}"));
        headers
    }

    #[test]
    fn single_pair_is_checked() {
        let auth = ProxyAuth::parse("alice:secret").unwrap();
        assert!(auth.accepts_headers(&basic("alice:secret")));
        assert!(!auth.accepts_headers(&basic("alice:wrong")));
        assert!(!auth.accepts_headers(&Headers::default()));
    }

    #[test]
    fn htpasswd_bcrypt_and_sha_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        let bcrypt_hash = bcrypt::hash("pw1", 4).unwrap();
        // {SHA} of "pw2", as `htpasswd -s` writes it.
        let sha = base64::engine::general_purpose::STANDARD
            .encode(ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, b"pw2"));
        std::fs::write(&path, format!("# users\nbob:{bcrypt_hash}\ncarol:{{SHA}}{sha}\n")).unwrap();
        let auth = ProxyAuth::parse(&format!("@{}", path.display())).unwrap();
        assert!(auth.accepts("bob", "pw1"));
        assert!(auth.accepts("carol", "pw2"));
        assert!(!auth.accepts("bob", "pw2"));
        std::fs::write(&path, "dave:$apr1$xyz\n").unwrap();
        assert!(ProxyAuth::parse(&format!("@{}", path.display())).is_err());
    }
}
