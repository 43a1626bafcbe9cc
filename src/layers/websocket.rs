//! `WebsocketLayer`: relays a WebSocket session message by message, after HTTP negotiated the upgrade.
//!
//! Both sides are parsed with tungstenite's frame codec (the client side in the server role, the server
//! side in the client role), so fragmented messages are reassembled, masking is applied per direction,
//! and ping, pong and the close handshake are handled. Each message is forwarded to the other side as
//! soon as it is complete, after the `websocket_message` event (when an addon wants it), which may
//! rewrite a text or binary message; it is counted on the flow. `HttpLayer` strips extensions from the
//! handshake (e.g. permessage-deflate), so frames arrive uncompressed.
//!
//! tungstenite answers pings itself; the ping is still forwarded, so its sender may see a second,
//! unsolicited pong (allowed by RFC 6455 section 5.5.3).

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::context::{Context, Facts};
use crate::error::{ProtocolError, Side};
use crate::flow::{HttpFlow, WebSocketData, WebSocketMessage};
use crate::io::{BoxStream, BufIo};
use crate::layer::{BoxFuture, ClientIo, Layer, LayerKind};

/// Read buffer per side: small, since a proxy holds many idle sockets (tungstenite's default is 128 KiB).
const WS_READ_BUFFER_BYTES: usize = 16 * 1024;

/// Largest message relayed; a bigger one ends the session (tungstenite's default).
const WS_MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Relays the WebSocket session of an upgraded HTTP exchange.
pub struct WebsocketLayer {
    ctx: Arc<Context>,
    server: BufIo<BoxStream>,
    server_host: String,
    /// The handshake's HTTP flow, with the session's record.
    flow: HttpFlow,
}

impl WebsocketLayer {
    /// `server` is the upgraded server connection; `http_flow` the handshake's flow.
    pub fn new(parent: &Arc<Context>, server: BufIo<BoxStream>, server_host: String, mut flow: HttpFlow) -> Self {
        let ctx = parent.push(LayerKind::Websocket, Facts::default());
        flow.websocket = Some(WebSocketData::new());
        WebsocketLayer { ctx, server, server_host, flow }
    }

    async fn relay(mut self, client: ClientIo) -> Result<(), ProtocolError> {
        tracing::debug!(stack = %self.ctx.stack(), url = %self.flow.request.url(), "websocket");
        let root = self.ctx.root().clone();
        let addons = &root.addons;
        addons.each_mut(&mut self.flow, |addon, flow| addon.websocket_start(flow)).await;
        let config = WebSocketConfig::default()
            .read_buffer_size(WS_READ_BUFFER_BYTES)
            .write_buffer_size(0)
            .max_message_size(Some(WS_MAX_MESSAGE_BYTES));
        let mut client = WebSocketStream::from_raw_socket(client, Role::Server, Some(config)).await;
        let mut server = WebSocketStream::from_raw_socket(self.server, Role::Client, Some(config)).await;
        let closing_timeout = self.ctx.config().timeouts.read;
        let host = self.server_host.clone();
        let mut closing = false;

        // A side is done once its stream ended; after a close frame the other side still gets a read
        // timeout to send its own close, which is relayed and recorded too.
        let (mut client_done, mut server_done) = (false, false);
        while !(client_done && server_done) {
            let next = async {
                tokio::select! {
                    m = client.next(), if !client_done => (Side::Client, m),
                    m = server.next(), if !server_done => (Side::Server, m),
                }
            };
            let (from, message) = if closing {
                match timeout(closing_timeout, next).await {
                    Ok(next) => next,
                    Err(_) => break,
                }
            } else {
                next.await
            };
            let message = match message {
                Some(Ok(message)) => message,
                None if closing => {
                    *(if from == Side::Client { &mut client_done } else { &mut server_done }) = true;
                    continue;
                }
                None => break,
                Some(Err(e)) if closing || is_ordinary_ws_end(&e) => break,
                Some(Err(e)) => return Err(ws_error(from, &host, e)),
            };
            closing |= matches!(message, Message::Close(_));
            let mut record = WebSocketMessage::from_message(from == Side::Client, &message);
            let mut message = message;
            if addons.wants_messages() {
                let before = record.payload.clone();
                addons.websocket_message(&mut self.flow, &mut record).await;
                if record.payload != before {
                    message = record.to_message().unwrap_or(message);
                }
            }
            if let Some(websocket) = &mut self.flow.websocket {
                websocket.count(&record);
            }
            let sent = match from {
                Side::Client => server.send(message).await,
                Side::Server => client.send(message).await,
            };
            match sent {
                Ok(()) => {}
                Err(e) if closing || is_ordinary_ws_end(&e) => {}
                Err(e) => {
                    return Err(ws_error(if from == Side::Client { Side::Server } else { Side::Client }, &host, e))
                }
            }
        }
        let _ = client.close(None).await;
        let _ = server.close(None).await;
        // End the transports too (a TLS close_notify, a TCP FIN), not just the WebSocket protocol.
        let _ = client.get_mut().shutdown().await;
        let _ = server.get_mut().shutdown().await;
        if let Some(websocket) = &mut self.flow.websocket {
            websocket.finish();
        }
        addons.each_mut(&mut self.flow, |addon, flow| addon.websocket_end(flow)).await;
        Ok(())
    }
}

impl Layer for WebsocketLayer {
    fn run(self: Box<Self>, io: ClientIo) -> BoxFuture<'static, Result<(), ProtocolError>> {
        Box::pin(self.relay(io))
    }
}

/// Endings that are not failures: the peer closed (with or without the close handshake) or reset.
fn is_ordinary_ws_end(e: &WsError) -> bool {
    match e {
        WsError::ConnectionClosed | WsError::AlreadyClosed => true,
        WsError::Protocol(tokio_tungstenite::tungstenite::error::ProtocolError::ResetWithoutClosingHandshake) => true,
        WsError::Io(io) => crate::error::is_ordinary_io(io),
        _ => false,
    }
}

fn ws_error(side: Side, host: &str, e: WsError) -> ProtocolError {
    let io = match e {
        WsError::Io(io) => io,
        other => std::io::Error::new(std::io::ErrorKind::InvalidData, format!("websocket: {other}")),
    };
    match side {
        Side::Client => ProtocolError::ClientIo(io),
        Side::Server => ProtocolError::server_io(host, io),
    }
}
