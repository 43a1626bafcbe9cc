//! `TcpLayer`: relays raw bytes between client and server, for whatever is neither HTTP nor intercepted
//! TLS (and, until the WebSocket layer exists, for upgraded HTTP connections via `relay`).
//!
//! The server connection opens when this layer starts; each direction is copied until its sender closes,
//! and the close is passed on as a half-close, so request/response protocols over TCP finish cleanly.

use std::sync::Arc;
use std::time::Instant;

use crate::context::{Context, Facts};
use crate::error::ProtocolError;
use crate::flow::TcpFlow;
use crate::io::{LenientEof, Stream, RELAY_BUF_BYTES};
use crate::layer::{BoxFuture, ClientIo, Layer, LayerKind};
use crate::server_conn::{Purpose, ServerConnection};

/// Relays the connection to the context's server as raw bytes.
pub struct TcpLayer {
    ctx: Arc<Context>,
}

impl TcpLayer {
    pub fn new(parent: &Arc<Context>) -> Self {
        TcpLayer { ctx: parent.push(LayerKind::Tcp, Facts::default()) }
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
        let (up, down) = relay(&mut client, stream).await.map_err(|e| ProtocolError::server_io(&host, e))?;
        self.ctx.root().log_tcp(&TcpFlow {
            client_addr: self.ctx.client_addr(),
            server: host,
            bytes_to_server: up,
            bytes_to_client: down,
            duration: started.elapsed(),
        });
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
