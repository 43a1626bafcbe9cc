//! `Http1Layer`: an HTTP/1 connection from a client.
//!
//! It reads the client's requests one at a time (pipelined requests are answered in order) and hands each
//! to `HttpLayer`, which decides what it means; between requests it keeps the connection alive, waits
//! within the idle timeout, and stops on shutdown. Two things take the connection over: CONNECT opens a
//! tunnel whose contents `next_layer()` classifies, and a WebSocket upgrade hands it to the WebSocket
//! layer. The syntax itself (heads, framing, bodies) is in `codec`.

pub mod codec;

use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::time::timeout;

use crate::config::Limits;
use crate::context::{Context, Facts};
use crate::error::{ProtocolError, Side};
use crate::http::message::RequestHead;
use crate::layer::{run_next_layer, BoxFuture, ClientIo, Layer, LayerKind};
use crate::layers::http::{error_response, HttpLayer, Next};
use crate::layers::http_conn::{send_http1_error, ClientSide};
use crate::layers::websocket::WebsocketLayer;
use codec::{read_head, request_framing, FramingError, HeadError};

/// The layer that speaks HTTP/1 to the client and runs an `HttpLayer` exchange for each request.
pub struct Http1Layer {
    ctx: Arc<Context>,
}

impl Http1Layer {
    pub fn new(parent: &Arc<Context>) -> Self {
        Http1Layer { ctx: parent.push(LayerKind::Http1, Default::default()) }
    }
}

impl Layer for Http1Layer {
    fn run(self: Box<Self>, io: ClientIo) -> BoxFuture<'static, Result<(), ProtocolError>> {
        Box::pin(serve(HttpLayer::new(&self.ctx), io))
    }
}

/// Serves requests until the client or an error ends the connection.
async fn serve(mut http: HttpLayer, mut client: ClientIo) -> Result<(), ProtocolError> {
    tracing::debug!(stack = %http.context().stack(), "http layer");
    let config = http.context().config();
    let (limits, read_timeout) = (config.limits, config.timeouts.read);
    loop {
        if !wait_for_request(http.context(), &mut client).await? {
            return Ok(());
        }
        let head = match read_head(&mut client, &limits, read_timeout, codec::parse_request).await {
            Ok(Some(head)) => head,
            Ok(None) => return Ok(()),
            Err(e) => return refuse(&mut client, request_head_error(e, &limits)).await,
        };
        if let Some(blocked) = http.context().blocked() {
            return refuse(&mut client, ProtocolError::Blocked(*blocked)).await;
        }
        if head.method == "CONNECT" {
            return open_tunnel(http, client, head).await;
        }
        let framing = match request_framing(&head) {
            Ok(framing) => framing,
            Err(FramingError::Invalid(reason)) => return refuse(&mut client, ProtocolError::BadRequest(reason)).await,
            Err(FramingError::Unsupported(reason)) => {
                return refuse(&mut client, ProtocolError::Refused { status: 501, reason }).await
            }
        };
        let mut side = ClientSide::http1(&mut client, head.version, &head.headers, framing, read_timeout);
        // Boxed, so an idle connection's task does not carry the exchange's (large) state machine.
        match Box::pin(http.exchange(&mut side, head)).await? {
            Next::KeepAlive => continue,
            Next::Close => {
                let _ = client.shutdown().await;
                return Ok(());
            }
            Next::Upgraded(flow) => {
                let (server, host) = http.take_server();
                return Box::new(WebsocketLayer::new(http.context(), server, host, *flow)).run(client).await;
            }
        }
    }
}

/// Waits for the first byte of the next request, up to the idle timeout. False if the client closed, went
/// idle for too long, or the proxy is shutting down.
async fn wait_for_request(ctx: &Context, client: &mut ClientIo) -> Result<bool, ProtocolError> {
    if !client.buffered().is_empty() {
        return Ok(true);
    }
    client.release_if_empty();
    let mut shutdown = ctx.root().shutdown.clone();
    tokio::select! {
        read = timeout(ctx.config().timeouts.idle, client.fill_idle()) => match read {
            Ok(Ok(more)) => Ok(more),
            Ok(Err(e)) => Err(ProtocolError::ClientIo(e)),
            Err(_) => Ok(false),
        },
        _ = shutdown.wait_for(|&stop| stop) => Ok(false),
    }
}

/// Answers a request that cannot be served with its error response, then ends the connection.
async fn refuse(client: &mut ClientIo, error: ProtocolError) -> Result<(), ProtocolError> {
    if let Some((status, reason)) = error_response(&error) {
        send_http1_error(client, status, reason, &error).await;
    }
    Err(error)
}

/// CONNECT: confirm the tunnel, then let `next_layer()` decide what runs inside it.
async fn open_tunnel(http: HttpLayer, mut client: ClientIo, head: RequestHead) -> Result<(), ProtocolError> {
    let address = match http.tunnel_target(&head) {
        Ok(address) => address,
        Err(error) => return refuse(&mut client, error).await,
    };
    if let Some(mut refusal) = http.http_connect(&head, &address).await? {
        // The tunnel is refused: the connection closes after the answer.
        refusal.headers.append("connection", "close");
        let read_timeout = http.context().config().timeouts.read;
        let mut side = ClientSide::http1(&mut client, head.version, &head.headers, codec::Framing::Empty, read_timeout);
        side.send_local(&mut refusal).await?;
        return Ok(());
    }
    client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await.map_err(ProtocolError::ClientIo)?;
    client.flush().await.map_err(ProtocolError::ClientIo)?;
    let ctx = http.context().with_facts(Facts { server: Some(address), ..Facts::default() });
    run_next_layer(&ctx, client).await
}

fn request_head_error(e: HeadError, limits: &Limits) -> ProtocolError {
    match e {
        HeadError::Io(e) => ProtocolError::ClientIo(e),
        HeadError::Timeout => ProtocolError::Timeout { side: Side::Client, step: "request head" },
        HeadError::Truncated => ProtocolError::ClientIo(std::io::ErrorKind::UnexpectedEof.into()),
        HeadError::TooLarge => ProtocolError::HeadTooLarge { limit: limits.max_head_bytes },
        HeadError::TooManyHeaders => ProtocolError::TooManyHeaders { limit: limits.max_headers },
        HeadError::Malformed(reason) => ProtocolError::BadRequest(reason),
    }
}
