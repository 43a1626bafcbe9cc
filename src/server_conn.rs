//! `ServerConnection`: how a layer gets its server, as late as possible.
//!
//! It knows an address (from the mode, a CONNECT target, an absolute URL) but dials only when `connect()`
//! is first called, so anything answered locally never opens a connection. It refuses to dial the proxy's
//! own listeners, resolves and connects under the connect timeout, and sets TCP_NODELAY. When the layer
//! asks for TLS, it completes a rustls handshake with the SNI and ALPN the client asked for, verifying the
//! server's certificate against the built-in roots plus `--upstream-ca` (or not at all with `-k`). In
//! upstream mode it dials the next proxy instead: plain HTTP is forwarded to it as absolute-form
//! requests, everything else goes through a CONNECT tunnel it opens there. Idle HTTP connections go to a
//! `ConnectionPool` shared by all clients when their client leaves, and are reused for a while.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustls::pki_types::ServerName;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

use crate::addon::{ServerInfo, TlsInfo};
use crate::config::ModeKind;
use crate::context::{Address, Context, RootContext};
use crate::error::{ProtocolError, Side};
use crate::flow::TlsFacts;
use crate::io::{h2_io_error, BoxStream, BufIo, Stream};
use crate::layers::http1::codec::{self, read_head};

mod verify;
pub use verify::upstream_tls_config;

/// The ALPN protocol strata speaks over TLS to servers when it relays HTTP.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// The ALPN protocol of HTTP/2 over TLS (RFC 9113 section 3.2).
pub const ALPN_H2: &[u8] = b"h2";

/// TLS parameters for a server connection: the name to send and verify, and the ALPN list to offer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerTls {
    /// SNI and the name the certificate must match; an IP literal sends no SNI and is matched as an IP.
    pub server_name: String,
    /// ALPN protocols offered; `[http/1.1]` when strata relays HTTP.
    pub alpn: Vec<Vec<u8>>,
}

impl ServerTls {
    /// TLS for relaying HTTP/1 to `server_name`.
    pub fn http1(server_name: impl Into<String>) -> Self {
        ServerTls { server_name: server_name.into(), alpn: vec![ALPN_HTTP1.to_vec()] }
    }

    /// TLS for relaying HTTP to `server_name`, offering both versions with the client's own first, so a
    /// server that speaks only one of them is still reached (strata translates).
    pub fn http(server_name: impl Into<String>, prefer_h2: bool) -> Self {
        let alpn = if prefer_h2 {
            vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()]
        } else {
            vec![ALPN_HTTP1.to_vec(), ALPN_H2.to_vec()]
        };
        ServerTls { server_name: server_name.into(), alpn }
    }
}

/// The HTTP/2 receive window strata grants per stream, in bytes. The protocol's default (64 KiB) halves a
/// download's speed on a fast link; a larger window costs at most this much buffered per stream whose
/// receiver is slow.
pub const H2_STREAM_WINDOW: u32 = 1 << 20;

/// The HTTP/2 receive window for a whole connection, in bytes: the most buffered for all its streams.
pub const H2_CONNECTION_WINDOW: u32 = 4 << 20;

/// A handle for sending requests on an HTTP/2 server connection; clones share the connection.
pub type Http2Sender = h2::client::SendRequest<Bytes>;

/// What the connection will carry, which decides how it goes through an upstream proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// HTTP requests: plain ones are sent to an upstream proxy in absolute-form.
    Http,
    /// Opaque bytes: always tunnelled through an upstream proxy with CONNECT.
    Relay,
}

/// The server side of a connection: a target address and, once needed, an open stream to it.
pub struct ServerConnection {
    root: Arc<RootContext>,
    address: Option<Address>,
    tls: Option<ServerTls>,
    /// The next proxy, in upstream mode.
    via: Option<Address>,
    purpose: Purpose,
    /// Speak HTTP/2 without TLS and without asking first (`reverse:h2c://`).
    prior_knowledge: bool,
    stream: Option<BufIo<BoxStream>>,
    /// The open HTTP/2 connection, when the server chose HTTP/2 (then `stream` is `None`).
    h2: Option<Http2Sender>,
    /// The server's socket address and TLS, once connected.
    peer: Option<Peer>,
    /// True once the open stream has carried a complete exchange (it may have gone stale since).
    reused: bool,
    /// True while the open stream sits between exchanges, so it may be handed to the pool.
    idle: bool,
    /// True after a reused connection turned out to be closed: the next connection is dialled new.
    dial_next: bool,
}

/// How long an idle server connection waits in the pool. Short, because servers close idle connections
/// on their own schedule (Node's default is 5 s), and a request that cannot be resent would fail on a
/// connection closed under it.
const POOL_IDLE_LIMIT: Duration = Duration::from_secs(4);

/// Most idle connections kept per server.
const POOL_PER_SERVER: usize = 64;

/// Idle server connections shared by all clients (HTTP only), keyed by where they lead: a client that
/// opens a new connection for each request does not cost a new server connection (and TLS handshake)
/// each time.
#[derive(Default)]
pub struct ConnectionPool {
    idle: Mutex<HashMap<PoolKey, Vec<Pooled>>>,
    /// HTTP/2 connections, shared (not taken) by every exchange to the same server, with when each was
    /// last used.
    shared: Mutex<HashMap<PoolKey, (Http2Sender, Peer, Instant)>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    address: Address,
    tls: Option<ServerTls>,
    via: Option<Address>,
    prior_knowledge: bool,
}

struct Pooled {
    stream: BufIo<BoxStream>,
    peer: Peer,
    since: Instant,
}

/// Who is at the other end of an open server connection.
#[derive(Debug, Clone)]
struct Peer {
    addr: SocketAddr,
    /// What the TLS handshake settled, for a TLS connection (boxed: a connection's server side is held
    /// by every connection that waits for its client's next request).
    tls: Option<Box<TlsFacts>>,
    /// How long the TLS handshake took.
    handshake: Option<Duration>,
}

impl ConnectionPool {
    /// The most recently pooled connection to `key` that is still usable; closed ones are dropped.
    fn take(&self, key: &PoolKey) -> Option<Pooled> {
        let mut idle = self.idle.lock().expect("pool lock");
        let list = idle.get_mut(key)?;
        list.retain_mut(|p| p.since.elapsed() < POOL_IDLE_LIMIT && p.stream.is_idle_usable());
        let found = list.pop();
        if list.is_empty() {
            idle.remove(key);
        }
        found
    }

    /// Closes the connections that waited too long; `server::run` calls this periodically, so servers
    /// nobody asks for again do not keep their sockets open.
    pub fn sweep(&self) {
        let mut idle = self.idle.lock().expect("pool lock");
        idle.retain(|_, list| {
            list.retain(|p| p.since.elapsed() < POOL_IDLE_LIMIT);
            !list.is_empty()
        });
        // An HTTP/2 connection closes once the last handle to it is gone and its streams are done.
        self.shared.lock().expect("pool lock").retain(|_, (_, _, used)| used.elapsed() < POOL_IDLE_LIMIT);
    }

    /// A handle on the shared HTTP/2 connection to `key`, if there is one.
    fn share(&self, key: &PoolKey) -> Option<(Http2Sender, Peer)> {
        let mut shared = self.shared.lock().expect("pool lock");
        let (sender, peer, used) = shared.get_mut(key)?;
        *used = Instant::now();
        Some((sender.clone(), peer.clone()))
    }

    fn offer_shared(&self, key: PoolKey, sender: Http2Sender, peer: Peer) {
        self.shared.lock().expect("pool lock").insert(key, (sender, peer, Instant::now()));
    }

    fn forget_shared(&self, key: &PoolKey) {
        self.shared.lock().expect("pool lock").remove(key);
    }

    /// How often `sweep` should run.
    pub const SWEEP_INTERVAL: Duration = POOL_IDLE_LIMIT;

    fn put(&self, key: PoolKey, pooled: Pooled) {
        let mut idle = self.idle.lock().expect("pool lock");
        let list = idle.entry(key).or_default();
        list.retain(|p| p.since.elapsed() < POOL_IDLE_LIMIT);
        if list.len() < POOL_PER_SERVER {
            list.push(pooled);
        }
    }
}

impl ServerConnection {
    /// A connection, not yet open, for a layer with context `ctx`.
    pub fn new(ctx: &Context, address: Option<Address>, tls: Option<ServerTls>, purpose: Purpose) -> Self {
        let via = match &ctx.mode().kind {
            ModeKind::Upstream(proxy) => Some(Address::new(proxy.host.clone(), proxy.port)),
            _ => None,
        };
        ServerConnection {
            root: ctx.root().clone(),
            address,
            tls,
            via,
            purpose,
            prior_knowledge: false,
            stream: None,
            h2: None,
            peer: None,
            reused: false,
            idle: false,
            dial_next: false,
        }
    }

    /// True if requests go to an upstream proxy as they are, so their target must be absolute-form.
    pub fn is_forwarded_to_proxy(&self) -> bool {
        self.via.is_some() && self.purpose == Purpose::Http && self.tls.is_none()
    }

    pub fn address(&self) -> Option<&Address> {
        self.address.as_ref()
    }

    /// Host name for error messages: `host:port`, or `(no server)`.
    pub fn host(&self) -> String {
        self.address.as_ref().map_or_else(|| "(no server)".to_string(), Address::to_string)
    }

    /// Points at a new server, with or without TLS, and with HTTP/2 prior knowledge or not. An open
    /// connection to a different server is closed.
    pub fn set_server(&mut self, address: Address, tls: Option<ServerTls>, prior_knowledge: bool) {
        if self.address.as_ref() != Some(&address) || self.tls != tls || self.prior_knowledge != prior_knowledge {
            self.release();
            self.address = Some(address);
            self.tls = tls;
            self.prior_knowledge = prior_knowledge;
        }
    }

    pub fn is_connected(&self) -> bool {
        self.stream.is_some() || self.h2.is_some()
    }

    /// The HTTP/2 connection, if the server speaks HTTP/2 (after `connect()`).
    pub fn http2(&self) -> Option<Http2Sender> {
        self.h2.clone()
    }

    /// True if the open connection has already carried an exchange, so a failure before any response
    /// byte may just mean the server closed it while idle.
    pub fn is_reused(&self) -> bool {
        self.is_connected() && self.reused
    }

    /// Records that an exchange on the open connection finished and it may be used again.
    pub fn mark_reusable(&mut self) {
        self.reused = true;
        self.idle = true;
        if let Some(stream) = &mut self.stream {
            stream.release_if_empty();
        }
    }

    /// Closes a reused connection that the server had closed; the next `connect()` dials a new one
    /// instead of trying another pooled connection, so a request is retried once at most.
    pub fn discard_stale(&mut self) {
        if let (Some(_), Some(key)) = (&self.h2, self.pool_key()) {
            self.root.pool.forget_shared(&key);
        }
        self.disconnect();
        self.dial_next = true;
    }

    /// Closes the connection, if open.
    pub fn disconnect(&mut self) {
        self.stream = None;
        self.h2 = None;
        self.peer = None;
        self.reused = false;
        self.idle = false;
    }

    /// Lets go of the connection: an idle HTTP connection goes to the pool, anything else is closed.
    /// True while an open HTTP/1 connection sits between exchanges.
    pub fn is_idle(&self) -> bool {
        self.idle && self.stream.is_some()
    }

    /// Gives an idle connection to the pool while its client pauses, so that a client connection waiting
    /// for its next request holds no server connection (nginx's upstream keepalive works the same way);
    /// the client's next request takes the most recently pooled one, usually the same. Anything not idle
    /// is left as it is.
    pub fn park(&mut self) {
        if self.is_idle() {
            self.release();
        }
    }

    fn release(&mut self) {
        if let (true, Purpose::Http, Some(key)) = (self.idle, self.purpose, self.pool_key()) {
            if let (Some(stream), Some(peer)) = (self.stream.take(), self.peer.take()) {
                self.root.pool.put(key, Pooled { stream, peer, since: Instant::now() });
            }
        }
        self.disconnect();
    }

    fn pool_key(&self) -> Option<PoolKey> {
        let address = self.address.clone()?;
        Some(PoolKey { address, tls: self.tls.clone(), via: self.via.clone(), prior_knowledge: self.prior_knowledge })
    }

    /// Makes sure a connection is open, dialling the server first if there is none: an HTTP/1 stream
    /// (`stream()`) or, when the server chose HTTP/2 or prior knowledge says so, an HTTP/2 connection
    /// (`http2()`) shared with every exchange to the same server.
    pub async fn connect(&mut self) -> Result<(), ProtocolError> {
        if self.reused && self.stream.as_mut().is_some_and(|s| !s.is_idle_usable()) {
            tracing::debug!(host = %self.host(), "kept-alive server connection was closed while idle");
            self.disconnect();
        }
        self.idle = false;
        if self.is_connected() {
            return Ok(());
        }
        let address = self
            .address
            .clone()
            .ok_or(ProtocolError::Refused { status: 400, reason: "no server address known for this request".into() })?;
        let key = self.pool_key().filter(|_| self.purpose == Purpose::Http);
        let dial_next = std::mem::take(&mut self.dial_next);
        if let (Some(key), false) = (&key, dial_next) {
            if let Some((sender, peer)) = self.root.pool.share(key) {
                (self.h2, self.peer, self.reused) = (Some(sender), Some(peer), true);
                return Ok(());
            }
            if let Some(pooled) = self.root.pool.take(key) {
                (self.stream, self.peer, self.reused) = (Some(pooled.stream), Some(pooled.peer), true);
                return Ok(());
            }
        }
        let addons = &self.root.addons;
        let mut info = ServerInfo { address: address.to_string(), peer: None, error: None };
        addons.each(&info, |addon, server| addon.server_connect(server)).await;
        let (stream, peer) = match self.open(&address).await {
            Ok(opened) => opened,
            Err(error) => {
                info.error = Some(error.to_string());
                addons.each(&info, |addon, server| addon.server_disconnected(server)).await;
                return Err(error);
            }
        };
        info.peer = Some(peer.addr);
        addons.each(&info, |addon, server| addon.server_connected(server)).await;
        let speaks_h2 = self.prior_knowledge
            || peer.tls.as_ref().and_then(|t| t.alpn.as_deref()).map(str::as_bytes) == Some(ALPN_H2);
        (self.peer, self.reused) = (Some(peer.clone()), false);
        if self.purpose == Purpose::Http && speaks_h2 {
            let host = address.to_string();
            let handshake = h2::client::Builder::new()
                .initial_window_size(H2_STREAM_WINDOW)
                .initial_connection_window_size(H2_CONNECTION_WINDOW)
                .handshake::<_, Bytes>(stream);
            let (sender, connection) = timeout(self.root.config.timeouts.read, handshake)
                .await
                .map_err(|_| ProtocolError::Timeout { side: Side::Server, step: "HTTP/2 handshake" })?
                .map_err(|e| server_h2_error(&host, e))?;
            // The connection runs in its own task until the server or the last handle closes it.
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(%host, error = %e, "HTTP/2 server connection ended");
                }
            });
            if let Some(key) = key {
                self.root.pool.offer_shared(key, sender.clone(), peer);
            }
            self.h2 = Some(sender);
        } else {
            self.stream = Some(BufIo::new(stream));
        }
        Ok(())
    }

    /// The address of the server (or upstream proxy) strata is connected to.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer.as_ref().map(|peer| peer.addr)
    }

    /// What the TLS handshake with the server settled, for a TLS connection.
    pub fn tls_facts(&self) -> Option<TlsFacts> {
        self.peer.as_ref().and_then(|peer| peer.tls.as_deref().cloned())
    }

    /// How long the TLS handshake with the server took, for a TLS connection.
    pub fn tls_handshake(&self) -> Option<Duration> {
        self.peer.as_ref().and_then(|peer| peer.handshake)
    }

    /// Takes the open connection away (for a layer that now owns it, e.g. after an upgrade).
    pub fn take_stream(&mut self) -> Option<BufIo<BoxStream>> {
        self.reused = false;
        self.idle = false;
        self.stream.take()
    }

    /// The open connection, if any.
    pub fn stream(&mut self) -> Option<&mut BufIo<BoxStream>> {
        self.stream.as_mut()
    }

    /// Dials the server (or the upstream proxy, tunnelling through it when needed) and adds TLS. Returns
    /// the stream, with the peer's address and what the TLS handshake settled.
    async fn open(&self, address: &Address) -> Result<(BoxStream, Peer), ProtocolError> {
        let unknown = || SocketAddr::from(([0, 0, 0, 0], 0));
        let (tcp, peer): (BoxStream, SocketAddr) = match &self.via {
            None => {
                let tcp = self.dial(address).await?;
                let peer = tcp.peer_addr().unwrap_or_else(|_| unknown());
                (Box::new(tcp), peer)
            }
            Some(proxy) => {
                let tcp = self.dial(proxy).await?;
                let peer = tcp.peer_addr().unwrap_or_else(|_| unknown());
                if self.is_forwarded_to_proxy() {
                    (Box::new(tcp), peer)
                } else {
                    (Box::new(self.open_tunnel(tcp, proxy, address).await?), peer)
                }
            }
        };
        match &self.tls {
            Some(tls) => {
                let started = Instant::now();
                let stream = self.handshake(tcp, address, tls).await?;
                let facts = TlsFacts::of(stream.get_ref().1, Some(tls.server_name.clone()));
                let peer = Peer { addr: peer, tls: Some(Box::new(facts)), handshake: Some(started.elapsed()) };
                Ok((Box::new(stream), peer))
            }
            None => Ok((tcp, Peer { addr: peer, tls: None, handshake: None })),
        }
    }

    /// Asks the upstream proxy for a tunnel to `address`. Bytes the proxy sent after its 200 stay buffered.
    async fn open_tunnel(
        &self,
        tcp: TcpStream,
        proxy: &Address,
        address: &Address,
    ) -> Result<BufIo<TcpStream>, ProtocolError> {
        let mut stream = BufIo::new(tcp);
        let host = proxy.to_string();
        let request = format!("CONNECT {address} HTTP/1.1\r\nHost: {address}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.map_err(|e| ProtocolError::server_io(&host, e))?;
        let config = &self.root.config;
        let head = read_head(&mut stream, &config.limits, config.timeouts.read, codec::parse_response)
            .await
            .map_err(|e| ProtocolError::BadResponse { host: host.clone(), reason: e.to_string() })?
            .ok_or_else(|| ProtocolError::BadResponse {
                host: host.clone(),
                reason: "closed before answering CONNECT".into(),
            })?;
        if head.status != 200 {
            return Err(ProtocolError::BadResponse {
                host,
                reason: format!("upstream proxy refused CONNECT {address}: {} {}", head.status, head.reason),
            });
        }
        Ok(stream)
    }

    async fn dial(&self, address: &Address) -> Result<TcpStream, ProtocolError> {
        let host = address.to_string();
        let connect_timeout = self.root.config.timeouts.connect;
        let work = async {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((address.host.as_str(), address.port))
                .await
                .map_err(|source| ProtocolError::Connect { host: host.clone(), source })?
                .collect();
            if addrs.iter().any(|a| self.is_own_listener(a)) {
                return Err(ProtocolError::SelfConnect { host: host.clone() });
            }
            let mut last_error = None;
            for addr in addrs {
                match TcpStream::connect(addr).await {
                    Ok(stream) => {
                        let _ = stream.set_nodelay(true);
                        return Ok(stream);
                    }
                    Err(e) => last_error = Some(e),
                }
            }
            let source =
                last_error.unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses found"));
            Err(ProtocolError::Connect { host: host.clone(), source })
        };
        match timeout(connect_timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(ProtocolError::Timeout { side: Side::Server, step: "connect" }),
        }
    }

    async fn handshake<S: Stream>(
        &self,
        tcp: S,
        address: &Address,
        tls: &ServerTls,
    ) -> Result<tokio_rustls::client::TlsStream<S>, ProtocolError> {
        let host = address.to_string();
        let fail = |reason: String| ProtocolError::ServerTls { host: host.clone(), reason };
        let name = ServerName::try_from(tls.server_name.clone())
            .map_err(|_| fail(format!("'{}' is not a valid server name", tls.server_name)))?;
        let base = &self.root.upstream_tls;
        let config = if base.alpn_protocols == tls.alpn {
            base.clone()
        } else {
            let mut config = (**base).clone();
            config.alpn_protocols = tls.alpn.clone();
            Arc::new(config)
        };
        let result = match timeout(self.root.config.timeouts.read, TlsConnector::from(config).connect(name, tcp)).await
        {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) => Err(fail(tls_error_reason(&e))),
            Err(_) => Err(ProtocolError::Timeout { side: Side::Server, step: "TLS handshake" }),
        };
        let mut info = TlsInfo {
            client: SocketAddr::from(([0, 0, 0, 0], 0)),
            sni: Some(tls.server_name.clone()),
            alpn: tls.alpn.clone(),
            error: None,
        };
        let addons = &self.root.addons;
        match &result {
            Ok(stream) => {
                info.alpn = stream.get_ref().1.alpn_protocol().map(|p| vec![p.to_vec()]).unwrap_or_default();
                addons.each(&info, |addon, tls| addon.tls_established_server(tls)).await;
            }
            Err(error) => {
                info.error = Some(error.to_string());
                addons.each(&info, |addon, tls| addon.tls_failed_server(tls)).await;
            }
        }
        result
    }

    /// True if `addr` is one of our listeners (a wildcard listener matches any local address on its port).
    fn is_own_listener(&self, addr: &SocketAddr) -> bool {
        self.root
            .listen_addrs
            .iter()
            .any(|l| l.port() == addr.port() && (l.ip() == addr.ip() || (l.ip().is_unspecified() && is_local(addr))))
    }
}

fn is_local(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback() || addr.ip().is_unspecified()
}

impl Drop for ServerConnection {
    fn drop(&mut self) {
        self.release();
    }
}

/// An error of the `h2` crate on a server connection, as the failure of that connection.
pub fn server_h2_error(host: &str, e: h2::Error) -> ProtocolError {
    if let (true, Some(reason)) = (e.is_reset() && e.is_remote(), e.reason()) {
        return ProtocolError::ServerReset { host: host.to_string(), code: reason.into() };
    }
    ProtocolError::server_io(host, h2_io_error(e))
}

/// The rustls error inside an IO error, described for a human (e.g. "invalid peer certificate: UnknownIssuer").
fn tls_error_reason(e: &std::io::Error) -> String {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(tls) => tls.to_string(),
        None => e.to_string(),
    }
}
