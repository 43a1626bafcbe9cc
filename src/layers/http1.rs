//! `Http1Layer`: an HTTP/1 connection from a client.
//!
//! It reads the client's requests one at a time (pipelined requests are answered in order) and hands each
//! to `HttpLayer`, which decides what it means; between requests it keeps the connection alive, waits
//! within the idle timeout, and stops on shutdown. Two things take the connection over: CONNECT opens a
//! tunnel whose contents `next_layer()` classifies, and a WebSocket upgrade hands it to the WebSocket
//! layer. The syntax itself (heads, framing, bodies) is in `codec`.

pub mod codec;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::time::timeout;

use crate::config::Limits;
use crate::context::{Context, Facts};
use crate::error::{ProtocolError, Side};
use crate::flow::HttpFlow;
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
        Http1Layer { ctx: parent.push(LayerKind::Http1) }
    }
}

impl Layer for Http1Layer {
    fn run(self: Box<Self>, io: ClientIo) -> BoxFuture<'static, Result<(), ProtocolError>> {
        Box::pin(serve(HttpLayer::new(&self.ctx), io))
    }
}

/// How long a client may pause between requests before its idle server connection goes to the shared
/// pool (`HttpLayer::park_server`). Back-to-back requests keep their connection without touching the pool;
/// a client that idles holds no server connection, which is most of what an idle connection would cost.
const PARK_SERVER_AFTER: Duration = Duration::from_millis(500);

/// Serves requests until the client or an error ends the connection.
///
/// This future is what an idle keep-alive connection costs in memory, so it holds the connection's state
/// and the wait for the next request, nothing more. Each request is handled in a boxed future; the wait is
/// written out here rather than in an async fn of its own, which would take its room twice in this one; and
/// this is a function returning an `async move` block rather than an async fn, which would hold its
/// arguments twice (once as passed, once as the body's locals).
#[allow(clippy::manual_async_fn)] // on purpose: see above
fn serve(mut http: HttpLayer, mut client: ClientIo) -> impl Future<Output = Result<(), ProtocolError>> + Send {
    async move {
        tracing::debug!(stack = %http.context().stack(), "http layer");
        let mut shutdown = http.context().root().shutdown.clone();
        let idle = http.context().config().timeouts.idle;
        loop {
            // Wait for the first byte of the next request, up to the idle timeout, parking the idle server
            // connection once the client has paused for `PARK_SERVER_AFTER`. The connection ends if the
            // client closes it, idles for too long, or the proxy shuts down.
            if client.buffered().is_empty() {
                client.release_if_empty();
                let mut left = idle;
                loop {
                    let park = http.holds_idle_server() && left > PARK_SERVER_AFTER;
                    let limit = if park { PARK_SERVER_AFTER } else { left };
                    tokio::select! {
                        read = timeout(limit, client.fill_idle()) => match read {
                            Ok(Ok(true)) => break,
                            Ok(Ok(false)) => return Ok(()),
                            Ok(Err(e)) => return Err(ProtocolError::ClientIo(e)),
                            Err(_) if park => {
                                http.park_server();
                                left -= PARK_SERVER_AFTER;
                            }
                            Err(_) => return Ok(()),
                        },
                        _ = shutdown.wait_for(|&stop| stop) => return Ok(()),
                    }
                }
            }
            match Box::pin(one_request(&mut http, &mut client)).await? {
                After::Next => continue,
                After::Done => return Ok(()),
                After::Tunnel(head) => return Box::pin(open_tunnel(http, client, head)).await,
                After::Upgraded(flow) => return upgrade(http, client, flow).await,
            }
        }
    }
}

/// The WebSocket layer's future, taking over the connection and its server after a 101.
fn upgrade(
    mut http: HttpLayer,
    client: ClientIo,
    flow: Box<HttpFlow>,
) -> BoxFuture<'static, Result<(), ProtocolError>> {
    let (server, host) = http.take_server();
    Box::new(WebsocketLayer::new(http.context(), server, host, *flow)).run(client)
}

/// What the connection does after a request.
enum After {
    /// Wait for the next request.
    Next,
    /// The connection is over.
    Done,
    /// A CONNECT: the connection becomes a tunnel.
    Tunnel(RequestHead),
    /// A 101 switched the connection to WebSocket.
    Upgraded(Box<HttpFlow>),
}

/// Reads the next request and runs its exchange (or refuses it).
async fn one_request(http: &mut HttpLayer, client: &mut ClientIo) -> Result<After, ProtocolError> {
    let config = http.context().config();
    let (limits, read_timeout) = (config.limits, config.timeouts.read);
    let head = match read_head(client, &limits, read_timeout, codec::parse_request).await {
        Ok(Some(head)) => head,
        Ok(None) => return Ok(After::Done),
        Err(e) => return refuse(client, request_head_error(e, &limits)).await.map(|()| After::Done),
    };
    if let Some(blocked) = http.context().blocked() {
        return refuse(client, ProtocolError::Blocked(*blocked)).await.map(|()| After::Done);
    }
    if head.method == "CONNECT" {
        return Ok(After::Tunnel(head));
    }
    let framing = match request_framing(&head) {
        Ok(framing) => framing,
        Err(FramingError::Invalid(reason)) => {
            return refuse(client, ProtocolError::BadRequest(reason)).await.map(|()| After::Done)
        }
        Err(FramingError::Unsupported(reason)) => {
            let error = ProtocolError::Refused { status: 501, reason };
            return refuse(client, error).await.map(|()| After::Done);
        }
    };
    let mut side = ClientSide::http1(client, head.version, &head.headers, framing, read_timeout);
    match http.exchange(&mut side, head).await? {
        Next::KeepAlive => Ok(After::Next),
        Next::Close => {
            let _ = client.shutdown().await;
            Ok(After::Done)
        }
        Next::Upgraded(flow) => Ok(After::Upgraded(flow)),
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
    run_next_layer(ctx, client).await
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
