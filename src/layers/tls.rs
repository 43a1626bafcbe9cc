//! `TlsLayer`: intercepts a TLS connection from the client.
//!
//! It reads the ClientHello first (rustls' `Acceptor`), so the SNI and ALPN offers are known before
//! answering; completes the handshake with a leaf certificate for the SNI (or, without SNI, for the
//! server's address) signed by strata's CA; records what it learnt in the context; and hands the
//! decrypted stream to `next_layer()`. The server side is not touched here: the inner layers open it
//! lazily, with TLS, through `ServerConnection`, so a request answered locally needs no server at all.

use std::sync::Arc;

use rustls::server::{Acceptor, ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio::time::timeout;
use tokio_rustls::LazyConfigAcceptor;

use crate::addon::TlsInfo;
use crate::context::{Context, Facts};
use crate::error::{ProtocolError, Side};
use crate::flow::TlsFacts;
use crate::io::BufIo;
use crate::layer::{run_next_layer, BoxFuture, ClientIo, Layer, LayerKind};
use crate::server_conn::{ALPN_H2, ALPN_HTTP1};

/// The layer that terminates the client's TLS with a minted certificate.
pub struct TlsLayer {
    parent: Arc<Context>,
}

impl TlsLayer {
    pub fn new(parent: &Arc<Context>) -> Self {
        TlsLayer { parent: parent.clone() }
    }

    async fn intercept(self, io: ClientIo) -> Result<(), ProtocolError> {
        let deadline = self.parent.config().timeouts.read;
        let handshake_timeout = || ProtocolError::Timeout { side: Side::Client, step: "TLS handshake" };
        let start = timeout(deadline, LazyConfigAcceptor::new(Acceptor::default(), io))
            .await
            .map_err(|_| handshake_timeout())?
            .map_err(|e| ProtocolError::ClientTls(e.to_string()))?;

        let hello = start.client_hello();
        let sni = hello.server_name().map(str::to_string);
        let alpn_offers: Vec<Vec<u8>> =
            hello.alpn().map(|offers| offers.map(<[u8]>::to_vec).collect()).unwrap_or_default();
        let fallback =
            self.parent.tls_cert_host().map(str::to_string).or_else(|| self.parent.server().map(|s| s.host.clone()));
        let addons = &self.parent.root().addons;
        let mut info =
            TlsInfo { client: self.parent.client_addr(), sni: sni.clone(), alpn: alpn_offers.clone(), error: None };
        addons.each(&info, |addon, tls| addon.tls_clienthello(tls)).await;
        let Some(cert_name) = sni.clone().or(fallback) else {
            return Err(ProtocolError::ClientTls("no SNI and no server address to name a certificate".into()));
        };
        let leaf = self.parent.root().ca.leaf(&cert_name).map_err(ProtocolError::ClientTls)?;
        let config = server_config(&self.parent, leaf, &alpn_offers);

        let handshake = match timeout(deadline, start.into_stream(config)).await {
            Err(_) => Err(handshake_timeout()),
            Ok(result) => {
                result.map_err(|e| ProtocolError::ClientTls(format!("{e} (does the client trust strata's CA?)")))
            }
        };
        let tls = match handshake {
            Ok(tls) => tls,
            Err(error) => {
                info.error = Some(error.to_string());
                addons.each(&info, |addon, tls| addon.tls_failed_client(tls)).await;
                return Err(error);
            }
        };

        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec).unwrap_or_default();
        info.alpn = vec![alpn.clone()];
        addons.each(&info, |addon, tls| addon.tls_established_client(tls)).await;
        let facts = TlsFacts::of(tls.get_ref().1, sni.clone());
        let ctx = self.parent.push_with(
            LayerKind::Tls,
            Facts {
                client_tls: Some(true),
                sni,
                alpn_offers: Some(alpn_offers),
                alpn: Some(alpn),
                client_tls_facts: Some(Box::new(facts)),
                ..Facts::default()
            },
        );
        tracing::debug!(stack = %ctx.stack(), sni = ?ctx.sni(), "client TLS established");
        run_next_layer(ctx, BufIo::new(Box::new(tls))).await
    }
}

impl Layer for TlsLayer {
    fn run(self: Box<Self>, io: ClientIo) -> BoxFuture<'static, Result<(), ProtocolError>> {
        Box::pin(self.intercept(io))
    }
}

/// What the first TLS record of a connection says about the server name the client wants.
#[derive(Debug, PartialEq, Eq)]
pub enum HelloSni {
    /// More bytes are needed to tell.
    Incomplete,
    /// The ClientHello names this server.
    Name(String),
    /// A ClientHello without a server name (or one that does not fit in the first record).
    NoName,
    /// Not a well-formed ClientHello.
    Malformed,
}

/// Largest first record worth waiting for: a TLS record's payload limit plus its header.
pub const MAX_HELLO_RECORD_BYTES: usize = 5 + (1 << 14);

/// Reads the SNI from the start of a connection without consuming anything, so `--ignore-hosts` can match
/// it before deciding whether to intercept (rustls' `Acceptor` does the real parsing later). Only the
/// first record is looked at; RFC 8446 section 4.4.2 and RFC 6066 section 3 give the layout.
pub fn peek_sni(buf: &[u8]) -> HelloSni {
    let Some(header) = buf.get(..5) else { return HelloSni::Incomplete };
    if header[0] != 0x16 {
        return HelloSni::Malformed;
    }
    let record_len = u16::from_be_bytes([header[3], header[4]]) as usize;
    let Some(record) = buf.get(5..5 + record_len) else { return HelloSni::Incomplete };
    match hello_sni(record) {
        Some(name) => name.map_or(HelloSni::NoName, HelloSni::Name),
        None => HelloSni::Malformed,
    }
}

/// The SNI in a handshake record: `None` if malformed, `Some(None)` if absent.
fn hello_sni(record: &[u8]) -> Option<Option<String>> {
    let mut r = Reader(record);
    if r.u8()? != 1 {
        return None; // not a ClientHello
    }
    let hello_len = r.u24()?;
    let Some(hello) = r.take(hello_len) else { return Some(None) }; // spans records: no name seen here
    let mut r = Reader(hello);
    r.take(2 + 32)?; // version, random
    let session_id = r.u8()? as usize;
    r.take(session_id)?;
    let suites = r.u16()? as usize;
    r.take(suites)?;
    let compression = r.u8()? as usize;
    r.take(compression)?;
    if r.0.is_empty() {
        return Some(None); // no extensions
    }
    let extensions_len = r.u16()? as usize;
    let mut extensions = Reader(r.take(extensions_len)?);
    while !extensions.0.is_empty() {
        let kind = extensions.u16()?;
        let len = extensions.u16()? as usize;
        let data = extensions.take(len)?;
        if kind != 0 {
            continue;
        }
        let mut list = Reader(data);
        let list_len = list.u16()? as usize;
        let mut names = Reader(list.take(list_len)?);
        while !names.0.is_empty() {
            let name_type = names.u8()?;
            let name_len = names.u16()? as usize;
            let name = names.take(name_len)?;
            if name_type == 0 {
                let name = std::str::from_utf8(name).ok()?;
                return Some(Some(name.to_ascii_lowercase()));
            }
        }
        return Some(None);
    }
    Some(None)
}

/// A bounds-checked big-endian cursor.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u24(&mut self) -> Option<usize> {
        let b = self.take(3)?;
        Some(((b[0] as usize) << 16) | ((b[1] as usize) << 8) | b[2] as usize)
    }
}

/// The server configuration for one intercepted connection: the shared base (session cache, key log)
/// with this connection's certificate. ALPN offers what the client asked for and strata speaks (`h2`
/// unless `--no-http2`, `http/1.1`), in the client's order of preference; rustls picks the first.
fn server_config(ctx: &Context, leaf: Arc<CertifiedKey>, offers: &[Vec<u8>]) -> Arc<ServerConfig> {
    let mut config = (*ctx.root().tls_server_base).clone();
    config.cert_resolver = Arc::new(FixedCertificate(leaf));
    // A `--tcp-hosts` relay cannot translate between versions, so it gets the one every server speaks.
    let is_relayed = ctx.server().is_some_and(|s| ctx.config().hosts.is_tcp(&s.to_string()));
    let offers_h2 = ctx.config().http2 && !is_relayed;
    let speaks = |p: &&Vec<u8>| p.as_slice() == ALPN_HTTP1 || (p.as_slice() == ALPN_H2 && offers_h2);
    config.alpn_protocols = offers.iter().filter(speaks).cloned().collect();
    Arc::new(config)
}

/// The base rustls server configuration shared by all intercepted connections, built once at start.
pub fn server_base_config() -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(NoCertificate));
    config.key_log = Arc::new(rustls::KeyLogFile::new());
    // Resumption for clients that offer it (a new connection per request costs a full handshake otherwise):
    // stateless tickets, so any number of clients resume without the proxy keeping their sessions, and
    // TLS 1.2 session ids in a cache. Every per-connection configuration is a clone of this one and shares
    // both. rustls checks that a resumed session was made for the same SNI, so a session never carries one
    // host's certificate over to another.
    match rustls::crypto::ring::Ticketer::new() {
        Ok(ticketer) => config.ticketer = ticketer,
        Err(e) => tracing::warn!(error = %e, "no TLS session tickets; clients resume from the session cache only"),
    }
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(TLS_SESSION_CACHE);
    Arc::new(config)
}

/// TLS sessions kept for resumption by session id (TLS 1.2 clients that do not take tickets).
const TLS_SESSION_CACHE: usize = 4096;

/// Serves one certificate whatever the ClientHello says (it was chosen from that ClientHello already).
#[derive(Debug)]
struct FixedCertificate(Arc<CertifiedKey>);

impl ResolvesServerCert for FixedCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// Placeholder of the base configuration, always replaced before use.
#[derive(Debug)]
struct NoCertificate;

impl ResolvesServerCert for NoCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello as rustls sends it, captured through `rustls::ClientConnection::write_tls`.
    fn client_hello(server_name: &str) -> Vec<u8> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(server_name.to_string()).unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn sni_is_read_from_a_real_client_hello_at_every_split() {
        let hello = client_hello("Example.ORG");
        for split in 0..hello.len() {
            assert_eq!(peek_sni(&hello[..split]), HelloSni::Incomplete, "split {split}");
        }
        assert_eq!(peek_sni(&hello), HelloSni::Name("example.org".into()));
        // An IP literal sends no SNI.
        assert_eq!(peek_sni(&client_hello("127.0.0.1")), HelloSni::NoName);
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        assert_eq!(peek_sni(b"GET / HTTP/1.1\r\n"), HelloSni::Malformed);
        let mut hello = client_hello("example.org");
        // A record cut short inside the hello, with lengths that claim it is whole.
        hello.truncate(60);
        hello[3..5].copy_from_slice(&55u16.to_be_bytes());
        hello[6..9].copy_from_slice(&[0, 0, 51]);
        assert_eq!(peek_sni(&hello), HelloSni::Malformed);
        // A hello longer than its first record: no name seen, which is not an error.
        hello[6..9].copy_from_slice(&[0, 1, 0]);
        assert_eq!(peek_sni(&hello), HelloSni::NoName);
    }
}
