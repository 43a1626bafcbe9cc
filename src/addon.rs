//! The addon interface: the `Addon` trait, whose methods are mitmproxy's event names, and `AddonChain`,
//! the one ordered list of addons that every layer reports to.
//!
//! Every feature that looks at flows is an addon: the flow log, the HAR recorder, server replay,
//! modification and mapping rules, the block list, proxy authentication, the CA page, anticache and
//! anticomp (see `crate::addons` for the built-in chain), and user scripts. Layers only fire events;
//! they name no feature.
//!
//! An HTTP flow's events, in order:
//!
//! 1. `requestheaders`: the request head is complete; the body has not been read. Clear
//!    `flow.request.stream` to have the body kept for `request`.
//! 2. `request`: the request is complete (with its body, if kept). Setting `flow.response` answers the
//!    flow here, without any server connection; `flow.kill()` drops the client connection.
//! 3. `responseheaders`: the response head is complete. Clear `flow.response.stream` to have the body
//!    kept for `response`.
//! 4. `response`: for a kept body, before anything is sent to the client (changes reach the client);
//!    for a streamed body, after it was relayed. Also fired for responses set by an addon.
//! 5. `error` instead of a response event when the exchange failed (`flow.error` says why).
//!
//! A response set (or a kill) in `requestheaders` or `request` ends that event: later addons in the
//! chain do not see it. A 101 is followed by `websocket_start`, `websocket_message` per message, and
//! `websocket_end`; a TCP relay has `tcp_start`, `tcp_message` per chunk and `tcp_end`. Per-message
//! events cost a call per message, so they are only delivered when some addon says it `wants_messages`.
//!
//! Hooks are async: a hook that waits (a script's I/O, a lookup) blocks only its own flow. Every hook
//! defaults to doing nothing. Addons implement the trait with `#[async_trait::async_trait]`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use crate::flow::{HttpFlow, TcpFlow, TcpMessage, WebSocketMessage};

/// A boxed hook future, as `async_trait` makes them.
pub type HookFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// A client connection, as connection events see it.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub address: SocketAddr,
    /// The listener's mode, as `--mode` spells it.
    pub mode: String,
}

/// A server connection, as connection events see it.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// `host:port` as the client named it.
    pub address: String,
    /// The server's IP address and port, once connected.
    pub peer: Option<SocketAddr>,
    /// Why the connection failed or ended, if it did not end normally.
    pub error: Option<String>,
}

/// A TLS handshake, as TLS events see it.
#[derive(Debug, Clone)]
pub struct TlsInfo {
    /// The client (for client-side events) or strata (server side).
    pub client: SocketAddr,
    /// The server name (SNI) asked for.
    pub sni: Option<String>,
    /// The ALPN protocols offered (in `tls_clienthello`) or the one agreed.
    pub alpn: Vec<Vec<u8>>,
    /// Why the handshake failed (`tls_failed_*`).
    pub error: Option<String>,
}

/// One addon: a hook per mitmproxy event, each a no-op unless implemented.
#[async_trait::async_trait]
pub trait Addon: Send + Sync {
    /// A short name for logs (`dumper`, `savehar`, a script's file name).
    fn name(&self) -> &str;

    /// True if the addon wants the per-message events (`websocket_message`, `tcp_message`).
    fn wants_messages(&self) -> bool {
        false
    }

    /// The proxy is up (listeners bound).
    async fn running(&self) {}
    /// The proxy is shutting down; last chance to write files.
    async fn done(&self) {}

    async fn client_connected(&self, _client: &ClientInfo) {}
    async fn client_disconnected(&self, _client: &ClientInfo) {}
    /// A server connection is about to be opened.
    async fn server_connect(&self, _server: &ServerInfo) {}
    async fn server_connected(&self, _server: &ServerInfo) {}
    async fn server_disconnected(&self, _server: &ServerInfo) {}

    async fn tls_clienthello(&self, _tls: &TlsInfo) {}
    async fn tls_established_client(&self, _tls: &TlsInfo) {}
    async fn tls_established_server(&self, _tls: &TlsInfo) {}
    async fn tls_failed_client(&self, _tls: &TlsInfo) {}
    async fn tls_failed_server(&self, _tls: &TlsInfo) {}

    /// A CONNECT request; setting `flow.response` refuses the tunnel with it.
    async fn http_connect(&self, _flow: &mut HttpFlow) {}
    async fn requestheaders(&self, _flow: &mut HttpFlow) {}
    async fn request(&self, _flow: &mut HttpFlow) {}
    async fn responseheaders(&self, _flow: &mut HttpFlow) {}
    async fn response(&self, _flow: &mut HttpFlow) {}
    async fn error(&self, _flow: &mut HttpFlow) {}

    async fn websocket_start(&self, _flow: &mut HttpFlow) {}
    /// A complete message, before it is forwarded: changing its payload changes what the peer gets.
    async fn websocket_message(&self, _flow: &mut HttpFlow, _message: &mut WebSocketMessage) {}
    async fn websocket_end(&self, _flow: &mut HttpFlow) {}

    async fn tcp_start(&self, _flow: &mut TcpFlow) {}
    /// A chunk as read, before it is forwarded: changing its content changes what the peer gets.
    async fn tcp_message(&self, _flow: &mut TcpFlow, _message: &mut TcpMessage) {}
    async fn tcp_end(&self, _flow: &mut TcpFlow) {}
}

/// The ordered addons of a running proxy; each event visits them in order.
#[derive(Default, Clone)]
pub struct AddonChain {
    addons: Vec<Arc<dyn Addon>>,
    wants_messages: bool,
}

impl AddonChain {
    pub fn new(addons: Vec<Arc<dyn Addon>>) -> Self {
        let wants_messages = addons.iter().any(|a| a.wants_messages());
        AddonChain { addons, wants_messages }
    }

    /// Adds an addon at the end of the chain.
    pub fn push(&mut self, addon: Arc<dyn Addon>) {
        self.wants_messages |= addon.wants_messages();
        self.addons.push(addon);
    }

    /// True if some addon wants per-message events.
    pub fn wants_messages(&self) -> bool {
        self.wants_messages
    }

    /// Runs `hook` on every addon, in order.
    pub async fn each<'a, T: ?Sized + 'a>(
        &'a self,
        subject: &'a T,
        hook: impl for<'b> Fn(&'b dyn Addon, &'b T) -> HookFuture<'b>,
    ) {
        for addon in &self.addons {
            hook(addon.as_ref(), subject).await;
        }
    }

    /// Runs `hook` on every addon in order, on a flow they may change.
    pub async fn each_mut<'a, T: ?Sized + 'a>(
        &'a self,
        subject: &'a mut T,
        hook: impl for<'b> Fn(&'b dyn Addon, &'b mut T) -> HookFuture<'b>,
    ) {
        for addon in &self.addons {
            hook(addon.as_ref(), subject).await;
        }
    }

    /// `websocket_message` on every addon, in order.
    pub async fn websocket_message(&self, flow: &mut HttpFlow, message: &mut WebSocketMessage) {
        for addon in &self.addons {
            addon.websocket_message(flow, message).await;
        }
    }

    /// `tcp_message` on every addon, in order.
    pub async fn tcp_message(&self, flow: &mut TcpFlow, message: &mut TcpMessage) {
        for addon in &self.addons {
            addon.tcp_message(flow, message).await;
        }
    }

    /// A request-phase event (`http_connect`, `requestheaders`, `request`): stops at the first addon
    /// that answered or killed the flow.
    pub async fn request_phase(
        &self,
        flow: &mut HttpFlow,
        hook: impl for<'b> Fn(&'b dyn Addon, &'b mut HttpFlow) -> HookFuture<'b>,
    ) {
        for addon in &self.addons {
            hook(addon.as_ref(), flow).await;
            if flow.response.is_some() || flow.is_killed() {
                return;
            }
        }
    }
}
