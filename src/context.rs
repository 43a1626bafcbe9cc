//! What a layer knows: `RootContext`, shared by every connection, and `Context`, the read-only chain of
//! facts that each layer adds to for the layers inside it.
//!
//! A lookup that the innermost frame does not answer falls through to its parent, the way the original
//! layer design maps missing attributes to the enclosing layer. `layers()` names the stack for logs.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

use crate::addon::AddonChain;
use crate::addons::block::Blocked;
use crate::certs::CertificateAuthority;
use crate::config::{Config, Mode};
use crate::flow::TlsFacts;
use crate::http::url::Scheme;
use crate::layer::LayerKind;
use crate::server_conn::ConnectionPool;

/// A server address as a client named it: host name or IP literal, and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    pub host: String,
    pub port: u16,
}

impl Address {
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Address { host: host.into(), port }
    }
}

impl fmt::Display for Address {
    /// `host:port`, with brackets around IPv6 literals.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// What all connections share: the configuration, the real listen addresses, the addon chain and the
/// shutdown signal.
pub struct RootContext {
    pub config: Config,
    /// The addresses the listeners actually bound (port 0 resolved), so nobody dials us in a loop.
    pub listen_addrs: Vec<SocketAddr>,
    /// Every feature that looks at flows, in order; layers report each event here.
    pub addons: AddonChain,
    /// Signs the certificates shown to intercepted clients.
    pub ca: CertificateAuthority,
    /// rustls configuration for TLS to servers.
    pub upstream_tls: Arc<rustls::ClientConfig>,
    /// rustls configuration shared by intercepted client connections (each gets its own certificate).
    pub tls_server_base: Arc<rustls::ServerConfig>,
    /// Becomes true when the proxy shuts down; idle connections close on it.
    pub shutdown: watch::Receiver<bool>,
    /// Idle server connections, reused across clients.
    pub pool: ConnectionPool,
}

/// The facts one layer adds. Unset fields fall through to the enclosing layers.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// The client's address (set by the mode layer).
    pub client_addr: Option<SocketAddr>,
    /// The listener's mode (set by the mode layer).
    pub mode: Option<Arc<Mode>>,
    /// Where the layers inside should send requests: a CONNECT target, the original destination, a fixed
    /// reverse-proxy server.
    pub server: Option<Address>,
    /// Whether the client side is TLS from this layer inward (set by the TLS layer).
    pub client_tls: Option<bool>,
    /// The scheme to speak to the server, when the mode fixes it (reverse proxy); otherwise the server
    /// gets TLS exactly when the client side is TLS.
    pub server_scheme: Option<Scheme>,
    /// The name for the client-facing certificate when the client sends no SNI (reverse mode: the listen
    /// address); otherwise the server's host is used.
    pub tls_cert_host: Option<String>,
    /// The server name the client asked for in its ClientHello.
    pub sni: Option<String>,
    /// The ALPN protocols the client offered in its ClientHello.
    pub alpn_offers: Option<Vec<Vec<u8>>>,
    /// The ALPN protocol agreed with the client (set by the TLS layer; empty if none).
    pub alpn: Option<Vec<u8>>,
    /// What the TLS handshake with the client settled (set by the TLS layer).
    pub client_tls_facts: Option<Box<TlsFacts>>,
    /// Why the client is refused (`--block-global`, `--block-private`), set by the mode layer.
    pub blocked: Option<Blocked>,
}

/// One layer's read-only view: its own facts plus its parent's.
///
/// Most frames add no facts (the HTTP layers), so a frame holds its facts boxed, and none at all when it
/// adds nothing: every live connection carries its frames, and `Facts` is a few hundred bytes.
pub struct Context {
    root: Arc<RootContext>,
    parent: Option<Arc<Context>>,
    layer: LayerKind,
    facts: Option<Box<Facts>>,
}

impl Context {
    /// The outermost frame: the mode layer of a new client connection.
    pub fn new(root: Arc<RootContext>, layer: LayerKind, facts: Facts) -> Arc<Context> {
        Arc::new(Context { root, parent: None, layer, facts: Some(Box::new(facts)) })
    }

    /// A frame for an inner layer that adds nothing of its own, seeing everything this one sees.
    pub fn push(self: &Arc<Self>, layer: LayerKind) -> Arc<Context> {
        Arc::new(Context { root: self.root.clone(), parent: Some(self.clone()), layer, facts: None })
    }

    /// A frame for an inner layer that adds `facts`.
    pub fn push_with(self: &Arc<Self>, layer: LayerKind, facts: Facts) -> Arc<Context> {
        Arc::new(Context { root: self.root.clone(), parent: Some(self.clone()), layer, facts: Some(Box::new(facts)) })
    }

    /// A replacement for this frame that adds `facts` (set fields win), for a layer that learns something
    /// its inner layers need after it started, such as the target of a CONNECT.
    pub fn with_facts(self: &Arc<Self>, facts: Facts) -> Arc<Context> {
        let none = Facts::default();
        let own = self.facts.as_deref().unwrap_or(&none);
        let merged = Facts {
            client_addr: facts.client_addr.or(own.client_addr),
            mode: facts.mode.or_else(|| own.mode.clone()),
            server: facts.server.or_else(|| own.server.clone()),
            client_tls: facts.client_tls.or(own.client_tls),
            server_scheme: facts.server_scheme.or(own.server_scheme),
            tls_cert_host: facts.tls_cert_host.or_else(|| own.tls_cert_host.clone()),
            sni: facts.sni.or_else(|| own.sni.clone()),
            alpn_offers: facts.alpn_offers.or_else(|| own.alpn_offers.clone()),
            alpn: facts.alpn.or_else(|| own.alpn.clone()),
            client_tls_facts: facts.client_tls_facts.or_else(|| own.client_tls_facts.clone()),
            blocked: facts.blocked.or(own.blocked),
        };
        let facts = Some(Box::new(merged));
        Arc::new(Context { root: self.root.clone(), parent: self.parent.clone(), layer: self.layer, facts })
    }

    pub fn root(&self) -> &Arc<RootContext> {
        &self.root
    }

    pub fn config(&self) -> &Config {
        &self.root.config
    }

    /// The kind of layer this frame belongs to.
    pub fn layer(&self) -> LayerKind {
        self.layer
    }

    /// Frames from this one outward.
    fn frames(&self) -> impl Iterator<Item = &Context> {
        std::iter::successors(Some(self), |c| c.parent.as_deref())
    }

    /// The first answer to `pick`, looking from this layer outward.
    fn lookup<T: ?Sized>(&self, pick: impl Fn(&Facts) -> Option<&T>) -> Option<&T> {
        self.frames().find_map(|c| c.facts.as_deref().and_then(&pick))
    }

    pub fn client_addr(&self) -> SocketAddr {
        *self.lookup(|f| f.client_addr.as_ref()).expect("the mode layer sets the client address")
    }

    pub fn mode(&self) -> &Mode {
        self.lookup(|f| f.mode.as_deref()).expect("the mode layer sets the mode")
    }

    /// Why the client is refused, if it is: the first layer that can answer it does so and stops.
    pub fn blocked(&self) -> Option<&Blocked> {
        self.lookup(|f| f.blocked.as_ref())
    }

    pub fn server(&self) -> Option<&Address> {
        self.lookup(|f| f.server.as_ref())
    }

    pub fn is_client_tls(&self) -> bool {
        self.lookup(|f| f.client_tls.as_ref()).copied().unwrap_or(false)
    }

    /// True if the server is spoken to over TLS.
    pub fn is_server_tls(&self) -> bool {
        match self.lookup(|f| f.server_scheme.as_ref()) {
            Some(scheme) => *scheme == Scheme::Https,
            None => self.is_client_tls(),
        }
    }

    pub fn tls_cert_host(&self) -> Option<&str> {
        self.lookup(|f| f.tls_cert_host.as_deref())
    }

    pub fn sni(&self) -> Option<&str> {
        self.lookup(|f| f.sni.as_deref())
    }

    /// The ALPN protocol agreed with the client, if any.
    pub fn alpn(&self) -> Option<&[u8]> {
        self.lookup(|f| f.alpn.as_deref()).filter(|p| !p.is_empty())
    }

    /// What the TLS handshake with the client settled, if the client spoke TLS.
    pub fn client_tls_facts(&self) -> Option<&TlsFacts> {
        self.lookup(|f| f.client_tls_facts.as_deref())
    }

    pub fn alpn_offers(&self) -> &[Vec<u8>] {
        self.lookup(|f| f.alpn_offers.as_deref()).unwrap_or_default()
    }

    /// TLS parameters for a raw relay to the server: TLS if the client side was decrypted, with the
    /// client's SNI (or the server's host) and the ALPN protocol agreed with the client (or, if none was,
    /// those it offered), so both sides of the relay speak the same protocol.
    pub fn server_tls_for_relay(&self) -> Option<crate::server_conn::ServerTls> {
        if !self.is_server_tls() {
            return None;
        }
        let server_name = self.sni().map(str::to_string).or_else(|| self.server().map(|a| a.host.clone()))?;
        let alpn = match self.alpn() {
            Some(agreed) => vec![agreed.to_vec()],
            None => self.alpn_offers().to_vec(),
        };
        Some(crate::server_conn::ServerTls { server_name, alpn })
    }

    /// The layer stack, innermost first.
    pub fn layers(&self) -> Vec<LayerKind> {
        self.frames().map(|c| c.layer).collect()
    }

    /// The layer stack, outermost first, as logs print it: `RegularProxy > Http1Layer > HttpLayer`.
    pub fn stack(&self) -> String {
        let mut names: Vec<&str> = self.layers().iter().map(|l| l.name()).collect();
        names.reverse();
        names.join(" > ")
    }
}
