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
//! A body that streams (the default) is not kept on the flow; an addon that wants to see it anyway, piece
//! by piece as it passes and without holding it, says so with `wants_body_chunks` and gets `body_chunk`
//! (strata's own event; mitmproxy has none). The session writer (`-w`) stores bodies that way.
//!
//! Hooks are async: a hook that waits (a script's I/O, a lookup) blocks only its own flow. Every hook
//! defaults to doing nothing. Addons implement the trait with `#[async_trait::async_trait]`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

use crate::flow::{FlowId, HttpFlow, TcpFlow, TcpMessage, WebSocketMessage};
use crate::http::message::Headers;

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

    /// True if the addon may change WebSocket messages in `websocket_message`. Such a session is relayed
    /// message by message, without extensions (see `layers::websocket`); one whose messages are only
    /// watched keeps its frames and its permessage-deflate. An addon that wants messages is taken to
    /// change them unless it says it does not.
    fn changes_messages(&self) -> bool {
        self.wants_messages()
    }

    /// False if the addon never looks at bodies: then flows read back from a session (`-r`) may come
    /// without them, which is most of the reading.
    fn reads_bodies(&self) -> bool {
        true
    }

    /// True if the addon wants the pieces of streamed bodies (`body_chunk`).
    fn wants_body_chunks(&self) -> bool {
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

    /// A piece of a streamed body as it passes: `offset` is the number of bytes of that body before it.
    /// Called between `requestheaders` and `request` for the request body (when it streams), between
    /// `responseheaders` and `response` for the response body.
    async fn body_chunk(&self, _flow: FlowId, _side: BodySide, _offset: u64, _data: &Bytes) {}

    /// The trailer fields at the end of a streamed body (HTTP/1.1 chunked or HTTP/2), delivered with the
    /// pieces (`wants_body_chunks`).
    async fn body_trailers(&self, _flow: FlowId, _side: BodySide, _trailers: &Headers) {}
}

/// Which body of an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodySide {
    Request,
    Response,
}

/// Where the pieces of one streamed body are reported: the addons that want them, and how far the body
/// has come. The layers that move bodies get one only when some addon wants the pieces.
pub struct BodyTap {
    addons: Arc<[Arc<dyn Addon>]>,
    flow: FlowId,
    side: BodySide,
    offset: u64,
}

impl BodyTap {
    /// Reports the next piece.
    pub async fn chunk(&mut self, data: &Bytes) {
        if data.is_empty() {
            return;
        }
        for addon in self.addons.iter() {
            addon.body_chunk(self.flow, self.side, self.offset, data).await;
        }
        self.offset += data.len() as u64;
    }

    /// Reports the body's trailer fields.
    pub async fn trailers(&mut self, trailers: &Headers) {
        for addon in self.addons.iter() {
            addon.body_trailers(self.flow, self.side, trailers).await;
        }
    }
}

/// The ordered addons of a running proxy; each event visits them in order.
#[derive(Default, Clone)]
pub struct AddonChain {
    addons: Vec<Arc<dyn Addon>>,
    wants_messages: bool,
    changes_messages: bool,
    /// The addons that want body pieces (`BodyTap`).
    body_addons: Option<Arc<[Arc<dyn Addon>]>>,
}

impl AddonChain {
    pub fn new(addons: Vec<Arc<dyn Addon>>) -> Self {
        let mut chain =
            AddonChain { addons: Vec::new(), wants_messages: false, changes_messages: false, body_addons: None };
        for addon in addons {
            chain.push(addon);
        }
        chain
    }

    /// Adds an addon at the end of the chain.
    pub fn push(&mut self, addon: Arc<dyn Addon>) {
        self.wants_messages |= addon.wants_messages();
        self.changes_messages |= addon.changes_messages();
        self.addons.push(addon);
        let wanting: Vec<_> = self.addons.iter().filter(|a| a.wants_body_chunks()).cloned().collect();
        self.body_addons = (!wanting.is_empty()).then(|| wanting.into());
    }

    /// True if some addon looks at bodies (see `Addon::reads_bodies`).
    pub fn reads_bodies(&self) -> bool {
        self.addons.iter().any(|addon| addon.reads_bodies())
    }

    /// A tap for one body of `flow`, if some addon wants its pieces.
    pub fn body_tap(&self, flow: FlowId, side: BodySide) -> Option<BodyTap> {
        let addons = self.body_addons.clone()?;
        Some(BodyTap { addons, flow, side, offset: 0 })
    }

    /// True if some addon wants per-message events.
    pub fn wants_messages(&self) -> bool {
        self.wants_messages
    }

    /// True if some addon may change WebSocket messages (`Addon::changes_messages`).
    pub fn changes_messages(&self) -> bool {
        self.changes_messages
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
