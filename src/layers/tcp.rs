//! `TcpLayer`: relays raw bytes between client and server, for whatever is neither HTTP nor intercepted
//! TLS (and, until the WebSocket layer exists, for upgraded HTTP connections via `relay`).
//!
//! The server connection opens when this layer starts; each direction is copied until its sender closes,
//! and the close is passed on as a half-close, so request/response protocols over TCP finish cleanly.
//! The flow has `tcp_start` and `tcp_end` events; when an addon wants `tcp_message`, the relay goes
//! chunk by chunk through it (each chunk as read, up to `RELAY_BUF_BYTES`), otherwise it is a plain copy.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::addon::AddonChain;
use crate::context::Context;
use crate::error::ProtocolError;
use crate::flow::{FlowId, TcpFlow, TcpMessage};
use crate::io::{LenientEof, Stream, RELAY_BUF_BYTES};
use crate::layer::{BoxFuture, ClientIo, Layer, LayerKind};
use crate::server_conn::{Purpose, ServerConnection};

/// Relays the connection to the context's server as raw bytes.
pub struct TcpLayer {
    ctx: Arc<Context>,
}

impl TcpLayer {
    pub fn new(parent: &Arc<Context>) -> Self {
        TcpLayer { ctx: parent.push(LayerKind::Tcp) }
    }

    async fn relay_to_server(self, mut client: ClientIo) -> Result<(), ProtocolError> {
        tracing::debug!(stack = %self.ctx.stack(), "tcp layer");
        let started = Instant::now();
        let mut server = ServerConnection::new(
            &self.ctx,
            self.ctx.server().cloned(),
            self.ctx.server_tls_for_relay(),
            Purpose::Relay,
        );
        let host = server.host();
        server.connect().await?;
        let stream = server.stream().expect("connected above");
        let addons = &self.ctx.root().addons;
        let mut flow = TcpFlow {
            id: FlowId::next(),
            client_addr: self.ctx.client_addr(),
            server: host.clone(),
            bytes_to_server: 0,
            bytes_to_client: 0,
            duration: Duration::ZERO,
            messages: Vec::new(),
        };
        addons.each_mut(&mut flow, |addon, flow| addon.tcp_start(flow)).await;
        let relayed = if addons.wants_messages() {
            relay_messages(&mut client, stream, addons, &mut flow).await
        } else {
            relay(&mut client, stream).await
        };
        (flow.bytes_to_server, flow.bytes_to_client) = relayed.map_err(|e| ProtocolError::server_io(&host, e))?;
        flow.duration = started.elapsed();
        addons.each_mut(&mut flow, |addon, flow| addon.tcp_end(flow)).await;
        Ok(())
    }
}

impl Layer for TcpLayer {
    fn run(self: Box<Self>, io: ClientIo) -> BoxFuture<'static, Result<(), ProtocolError>> {
        Box::pin(self.relay_to_server(io))
    }
}

/// Copies both directions until both are closed, passing each EOF on as a write shutdown. Returns the
/// bytes sent client to server and server to client.
pub async fn relay<C: Stream + ?Sized, S: Stream + ?Sized>(
    client: &mut C,
    server: &mut S,
) -> std::io::Result<(u64, u64)> {
    let (mut client, mut server) = (LenientEof(client), LenientEof(server));
    tokio::io::copy_bidirectional_with_sizes(&mut client, &mut server, RELAY_BUF_BYTES, RELAY_BUF_BYTES).await
}

/// As `relay`, one chunk at a time through the `tcp_message` event, which may change it.
async fn relay_messages<C: Stream + ?Sized, S: Stream + ?Sized>(
    client: &mut C,
    server: &mut S,
    addons: &AddonChain,
    flow: &mut TcpFlow,
) -> std::io::Result<(u64, u64)> {
    let (mut client, mut server) = (LenientEof(client), LenientEof(server));
    let (mut up_buf, mut down_buf) = (vec![0u8; RELAY_BUF_BYTES], vec![0u8; RELAY_BUF_BYTES]);
    let (mut up, mut down) = (0u64, 0u64);
    let (mut client_open, mut server_open) = (true, true);
    while client_open || server_open {
        let (from_client, n) = tokio::select! {
            n = client.read(&mut up_buf), if client_open => (true, n?),
            n = server.read(&mut down_buf), if server_open => (false, n?),
        };
        if n == 0 {
            // Pass the half-close on.
            if from_client {
                client_open = false;
                server.shutdown().await?;
            } else {
                server_open = false;
                client.shutdown().await?;
            }
            continue;
        }
        let chunk = if from_client { &up_buf[..n] } else { &down_buf[..n] };
        let mut message = TcpMessage { from_client, content: chunk.to_vec(), at: SystemTime::now() };
        addons.tcp_message(flow, &mut message).await;
        if from_client {
            server.write_all(&message.content).await?;
            server.flush().await?;
            up += message.content.len() as u64;
            flow.bytes_to_server = up;
        } else {
            client.write_all(&message.content).await?;
            client.flush().await?;
            down += message.content.len() as u64;
            flow.bytes_to_client = down;
        }
    }
    Ok((up, down))
}
