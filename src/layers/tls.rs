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

use crate::context::{Context, Facts};
use crate::error::{ProtocolError, Side};
use crate::io::BufIo;
use crate::layer::{run_next_layer, BoxFuture, ClientIo, Layer, LayerKind};
use crate::server_conn::ALPN_HTTP1;

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
        let alpn_offers: Vec<Vec<u8>> = hello.alpn().map(|offers| offers.map(<[u8]>::to_vec).collect()).unwrap_or_default();
        let fallback = self.parent.tls_cert_host().map(str::to_string).or_else(|| self.parent.server().map(|s| s.host.clone()));
        let Some(cert_name) = sni.clone().or(fallback) else {
            return Err(ProtocolError::ClientTls("no SNI and no server address to name a certificate".into()));
        };
        let leaf = self.parent.root().ca.leaf(&cert_name).map_err(ProtocolError::ClientTls)?;
        let config = server_config(&self.parent, leaf, alpn_offers.iter().any(|p| p == ALPN_HTTP1));

        let tls = timeout(deadline, start.into_stream(config))
            .await
            .map_err(|_| handshake_timeout())?
            .map_err(|e| ProtocolError::ClientTls(format!("{e} (does the client trust strata's CA?)")))?;

        let ctx = self.parent.push(
            LayerKind::Tls,
            Facts { client_tls: Some(true), sni, alpn_offers: Some(alpn_offers), ..Facts::default() },
        );
        tracing::debug!(stack = %ctx.stack(), sni = ?ctx.sni(), "client TLS established");
        run_next_layer(&ctx, BufIo::new(Box::new(tls))).await
    }
}

impl Layer for TlsLayer {
    fn run(self: Box<Self>, io: ClientIo) -> BoxFuture<'static, Result<(), ProtocolError>> {
        Box::pin(self.intercept(io))
    }
}

/// The server configuration for one intercepted connection: the shared base (session cache, key log)
/// with this connection's certificate, offering HTTP/1.1 by ALPN only if the client asked for it.
fn server_config(ctx: &Context, leaf: Arc<CertifiedKey>, offer_http1: bool) -> Arc<ServerConfig> {
    let mut config = (*ctx.root().tls_server_base).clone();
    config.cert_resolver = Arc::new(FixedCertificate(leaf));
    config.alpn_protocols = if offer_http1 { vec![ALPN_HTTP1.to_vec()] } else { Vec::new() };
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
    Arc::new(config)
}

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
