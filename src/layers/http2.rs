//! `Http2Layer`: an HTTP/2 connection from a client (ALPN `h2` after TLS, or h2c with prior knowledge).
//!
//! The `h2` crate does the framing, HPACK and flow control. Each stream the client opens becomes one
//! exchange: its own task with its own `HttpLayer` and flow, so a slow or failing stream never stalls the
//! others (a failure resets that stream only). The connection is driven here between streams; it closes
//! gracefully (GOAWAY) on shutdown or after the idle timeout. The request and response translation to the
//! message model is in this file; the body transfer through the seam is in `http_conn`.

use std::sync::Arc;

use bytes::Bytes;
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout};

use crate::context::Context;
use crate::error::{ProtocolError, Side};
use crate::http::message::{Headers, RequestHead, Version};
use crate::io::h2_io_error;
use crate::layer::{BoxFuture, ClientIo, Layer, LayerKind};
use crate::layers::http::HttpLayer;
use crate::layers::http_conn::ClientSide;
use crate::server_conn::{H2_CONNECTION_WINDOW, H2_STREAM_WINDOW};

/// The start of the HTTP/2 connection preface (RFC 9113 section 3.4), enough to recognise h2c with prior
/// knowledge among a connection's first bytes.
pub const H2_PREFACE_START: &[u8] = b"PRI * HTTP/2.0";

/// Streams a client may have open at once (RFC 9113 section 5.1.2; 100 is the recommended minimum).
pub const MAX_CONCURRENT_STREAMS: u32 = 100;

/// Largest header list accepted from a client, in bytes (decoded, as SETTINGS_MAX_HEADER_LIST_SIZE counts).
pub const MAX_HEADER_LIST_BYTES: u32 = 64 * 1024;

/// Streams a client may reset before strata answers them; more at once is the 2023 "rapid reset" attack
/// (CVE-2023-44487), and the connection is closed with GOAWAY.
pub const MAX_PENDING_RESETS: usize = 64;

/// Streams of one connection being served at once. A stream the client reset still holds its task until
/// the exchange notices, so this is the connection's real cost, whatever the client's view of its streams.
pub const MAX_STREAM_TASKS: usize = MAX_CONCURRENT_STREAMS as usize;

/// The layer that speaks HTTP/2 to the client.
pub struct Http2Layer {
    ctx: Arc<Context>,
}

impl Http2Layer {
    pub fn new(parent: &Arc<Context>) -> Self {
        Http2Layer { ctx: parent.push(LayerKind::Http2) }
    }

    async fn serve(self, io: ClientIo) -> Result<(), ProtocolError> {
        tracing::debug!(stack = %self.ctx.stack(), "http/2 layer");
        let config = self.ctx.config();
        let handshake = h2::server::Builder::new()
            .initial_window_size(H2_STREAM_WINDOW)
            .initial_connection_window_size(H2_CONNECTION_WINDOW)
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
            .max_header_list_size(MAX_HEADER_LIST_BYTES)
            .max_pending_accept_reset_streams(MAX_PENDING_RESETS)
            .handshake::<_, Bytes>(io);
        let mut conn = timeout(config.timeouts.read, handshake)
            .await
            .map_err(|_| ProtocolError::Timeout { side: Side::Client, step: "HTTP/2 preface" })?
            .map_err(client_h2_error)?;
        let mut shutdown = self.ctx.root().shutdown.clone();
        let mut streams = JoinSet::new();
        let mut closing = false;
        loop {
            let idle = sleep(config.timeouts.idle);
            // At the cap, streams wait in h2's accept queue while the connection is still driven; a client
            // that resets them there (the "rapid reset" attack) runs into MAX_PENDING_RESETS and gets GOAWAY,
            // and no reset stream costs a task or a server request.
            let at_cap = streams.len() >= MAX_STREAM_TASKS;
            let next = async {
                if at_cap {
                    let _ = std::future::poll_fn(|cx| conn.poll_closed(cx)).await;
                    None
                } else {
                    conn.accept().await
                }
            };
            tokio::select! {
                next = next => match next {
                    Some(Ok((request, respond))) => {
                        streams.spawn(serve_stream(self.ctx.clone(), request, respond));
                    }
                    Some(Err(e)) => {
                        // A connection error: h2 has sent GOAWAY with its code already.
                        tracing::debug!(error = %e, "HTTP/2 connection error");
                        break;
                    }
                    None => break,
                },
                Some(_) = streams.join_next(), if !streams.is_empty() => {}
                _ = shutdown.wait_for(|&stop| stop), if !closing => {
                    closing = true;
                    conn.graceful_shutdown();
                }
                _ = idle, if streams.is_empty() && !closing => {
                    closing = true;
                    conn.graceful_shutdown();
                }
            }
        }
        // Let the streams that are still running finish on a connection that is still driven.
        let drive = std::future::poll_fn(|cx| conn.poll_closed(cx));
        let finish = async { while streams.join_next().await.is_some() {} };
        tokio::pin!(drive);
        tokio::select! {
            _ = &mut drive => {}
            _ = finish => {}
        }
        Ok(())
    }
}

impl Layer for Http2Layer {
    fn run(self: Box<Self>, io: ClientIo) -> BoxFuture<'static, Result<(), ProtocolError>> {
        Box::pin(self.serve(io))
    }
}

/// One stream: the request in the message model, an `HttpLayer` exchange, and its end.
async fn serve_stream(
    ctx: Arc<Context>,
    request: http::Request<h2::RecvStream>,
    respond: h2::server::SendResponse<Bytes>,
) {
    let mut respond = respond;
    // A stream the client has already reset asks for nothing: no exchange, no server request.
    if is_reset_already(&mut respond) {
        return;
    }
    let (parts, body) = request.into_parts();
    let mut http = HttpLayer::new(&ctx);
    tracing::debug!(stack = %http.context().stack(), "http layer");
    let head = request_head(&parts, ctx.server().is_none());
    let read_timeout = ctx.config().timeouts.read;
    let mut side = ClientSide::http2(body, respond, &head.headers, read_timeout);
    if parts.method == http::Method::CONNECT {
        // Tunnels inside a stream (RFC 9113 section 8.5, RFC 8441) are not offered.
        let error = ProtocolError::Refused { status: 501, reason: "CONNECT over HTTP/2 is not supported".into() };
        side.send_error(501, "Not Implemented", &error).await;
        return;
    }
    match http.exchange(&mut side, head).await {
        Ok(_) => {}
        Err(e) if e.is_ordinary_end() => tracing::debug!(error = %e, "stream ended"),
        Err(e) => tracing::info!(error = %e, "stream failed"),
    }
}

/// True if the client has reset the stream already (checked without waiting).
fn is_reset_already(respond: &mut h2::server::SendResponse<Bytes>) -> bool {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    respond.poll_reset(&mut cx).is_ready()
}

/// The request of a stream in the message model: `:authority` becomes the Host field (RFC 9113 section
/// 8.3.1), cookies split into several fields are joined again (section 8.2.3), and the target is the
/// `:path`, or the absolute URL (`:scheme://:authority:path`) at a proxy's front door, where it names the
/// server.
fn request_head(parts: &http::request::Parts, absolute: bool) -> RequestHead {
    let mut headers = Headers::default();
    let authority = parts.uri.authority().map(|a| a.as_str().to_string());
    if let (Some(authority), false) = (&authority, parts.headers.contains_key(http::header::HOST)) {
        headers.append("host", authority.as_str());
    }
    let mut cookies: Vec<&[u8]> = Vec::new();
    for (name, value) in &parts.headers {
        if name == http::header::COOKIE {
            cookies.push(value.as_bytes());
        } else {
            headers.append(name.as_str(), value.as_bytes());
        }
    }
    if !cookies.is_empty() {
        headers.append("cookie", cookies.join(&b"; "[..]));
    }
    let path = parts.uri.path_and_query().map_or_else(|| "/".to_string(), |p| p.as_str().to_string());
    let target = match (absolute, parts.uri.scheme_str(), &authority) {
        (true, Some(scheme), Some(authority)) => format!("{scheme}://{authority}{path}"),
        _ => path,
    };
    RequestHead { method: parts.method.as_str().to_string(), target, version: Version::Http2, headers }
}

/// An error of the `h2` crate on the client's side.
pub fn client_h2_error(e: h2::Error) -> ProtocolError {
    ProtocolError::ClientIo(h2_io_error(e))
}
