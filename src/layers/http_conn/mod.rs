//! The seam between `HttpLayer`, which knows what an exchange means, and the wire layers, which know how it
//! is spelled.
//!
//! `ClientSide` is the client of one exchange: the request body still to be read, and where the response
//! goes. `server` reaches the exchange's server (HTTP/1 stream or HTTP/2 stream) and holds its response
//! body; `body` moves bodies between versions. `HttpLayer` calls only what is here. Bodies cross the seam
//! streamed, or whole up to `--body-size-limit` when an addon asked for them; framing fields
//! (Content-Length, Transfer-Encoding) are set here from what is known about the body, never copied from
//! the sender's spelling. HTTP/1 to HTTP/1 keeps the codec's copy loop; other pairs go through `pump`.

mod body;
mod server;

use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use crate::addon::BodyTap;
use crate::error::ProtocolError;
use crate::flow::Response;
use crate::http::message::{Headers, ResponseHead, Version};
use crate::io::{BoxStream, BufIo};
use crate::layer::ClientIo;
use crate::layers::http1::codec::{self, write_fields, write_response_head, write_status_line, BodyError, Framing};
use crate::layers::http2::client_h2_error;
use body::{collect_http2, header_map, pump, request_body_error, response_body_error, Remaining, Sink, Source};
pub use server::{read_final_response, send_http2_request, send_request_head, ResponseBody};

/// A server connection's HTTP/1 stream as the seam uses it.
pub type ServerIo = BufIo<BoxStream>;

/// The client of one exchange, whatever its wire version.
pub enum ClientSide<'a> {
    /// An HTTP/1 request on a client connection that may carry more after it.
    Http1(Http1Client<'a>),
    /// One HTTP/2 stream.
    Http2(Http2Client),
}

/// The client of an HTTP/1 exchange: its connection, and where the request body stands.
pub struct Http1Client<'a> {
    io: &'a mut ClientIo,
    version: Version,
    /// The client said it will not send another request (`Connection: close`, or HTTP/1.0 without
    /// keep-alive).
    wants_close: bool,
    /// How the request body is framed on the wire.
    framing: Framing,
    body: Remaining,
    read_timeout: Duration,
}

/// The client of an HTTP/2 exchange: one stream's request body and response.
pub struct Http2Client {
    /// The request body's stream; `None` once handed to a full-duplex pump.
    recv: Option<h2::RecvStream>,
    /// What `collect_request_body` read before it found the body too large; sent on first.
    prefix: Option<Vec<u8>>,
    /// The request's trailers, when `collect_request_body` read to the end.
    trailers: Option<Headers>,
    /// The request body has been read to its end.
    request_done: bool,
    /// The request body went to a server as a stream (it cannot be sent again).
    body_streamed: bool,
    /// The request's Content-Length, if it gave one.
    content_length: Option<u64>,
    respond: h2::server::SendResponse<Bytes>,
    /// The response body's stream, once the response head went out.
    send: Option<h2::SendStream<Bytes>>,
    read_timeout: Duration,
}

impl<'a> ClientSide<'a> {
    /// The client of an HTTP/1 request with this version, connection options and body framing.
    pub fn http1(
        io: &'a mut ClientIo,
        version: Version,
        headers: &Headers,
        framing: Framing,
        read_timeout: Duration,
    ) -> Self {
        let wants_close = codec::wants_close(version, headers);
        let body = Remaining::Unread(framing);
        ClientSide::Http1(Http1Client { io, version, wants_close, framing, body, read_timeout })
    }

    /// The client of one HTTP/2 stream.
    pub fn http2(
        recv: h2::RecvStream,
        respond: h2::server::SendResponse<Bytes>,
        headers: &Headers,
        read_timeout: Duration,
    ) -> Self {
        let content_length = headers.get("content-length").and_then(|v| std::str::from_utf8(v).ok()?.parse().ok());
        let request_done = recv.is_end_stream();
        ClientSide::Http2(Http2Client {
            recv: Some(recv),
            prefix: None,
            trailers: None,
            request_done,
            body_streamed: false,
            content_length,
            respond,
            send: None,
            read_timeout,
        })
    }

    fn read_timeout(&self) -> Duration {
        match self {
            ClientSide::Http1(h1) => h1.read_timeout,
            ClientSide::Http2(h2) => h2.read_timeout,
        }
    }

    /// True if the client will not send another request on this connection.
    pub fn wants_close(&self) -> bool {
        match self {
            ClientSide::Http1(h1) => h1.wants_close,
            ClientSide::Http2(_) => false,
        }
    }

    /// Sets the framing fields of a request whose body streams from this client to an HTTP/1 server: the
    /// length, or chunked, as strata read it, never the client's spelling (repeated equal Content-Lengths
    /// become one, RFC 9110 section 8.6; any list of codings becomes `chunked`).
    pub fn set_streamed_framing(&self, headers: &mut Headers) {
        let length = match self {
            ClientSide::Http1(h1) => match h1.framing {
                Framing::Length(n) => Some(n),
                Framing::Chunked => None,
                Framing::Empty | Framing::Close => return,
            },
            ClientSide::Http2(h2) => h2.content_length,
        };
        match length {
            Some(n) => headers.set("content-length", n.to_string()),
            None => {
                headers.remove("content-length");
                headers.set("transfer-encoding", "chunked");
            }
        }
    }

    /// True if the request has no body at all, or none left to read.
    pub fn has_no_request_body(&self) -> bool {
        match self {
            ClientSide::Http1(h1) => matches!(h1.body, Remaining::Unread(Framing::Empty) | Remaining::Done),
            ClientSide::Http2(h2) => h2.request_done && h2.prefix.is_none(),
        }
    }

    /// Tells a client that waits for it (`Expect: 100-continue`) to send its body. strata answers the
    /// expectation itself, as mitmproxy does, so the body flows in one go and no server has to support it.
    pub async fn send_continue(&mut self) -> Result<(), ProtocolError> {
        match self {
            ClientSide::Http1(h1) if h1.version == Version::Http11 => {
                h1.io.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.map_err(ProtocolError::ClientIo)?;
                h1.io.flush().await.map_err(ProtocolError::ClientIo)
            }
            // An HTTP/2 client that asked to wait gets its 100 as an informational HEADERS frame.
            ClientSide::Http2(h2) => h2.send_interim(100, &Headers::default()),
            ClientSide::Http1(_) => Ok(()),
        }
    }

    /// Reads the request body into memory if it fits in `limit` (`None` if it does not: it then streams).
    pub async fn collect_request_body(&mut self, limit: usize) -> Result<Option<Vec<u8>>, ProtocolError> {
        let collected = match self {
            ClientSide::Http1(h1) => h1.body.collect(h1.io, limit, h1.read_timeout).await,
            ClientSide::Http2(h2) => h2.collect(limit).await.map(|kept| {
                h2.request_done = kept.complete;
                h2.trailers = kept.trailers;
                if kept.complete {
                    Some(kept.data)
                } else {
                    h2.prefix = Some(kept.data);
                    None
                }
            }),
        };
        collected.map_err(|e| request_body_error(e, "(client)"))
    }

    /// The trailers of a request body collected whole (HTTP/2 only, as `ResponseBody::trailers`).
    pub fn request_trailers(&self) -> Option<&Headers> {
        match self {
            ClientSide::Http2(h2) if h2.request_done => h2.trailers.as_ref(),
            _ => None,
        }
    }

    /// True if nothing was read from the client that could not be sent again (for a retry): the request has
    /// no body, or it was read whole into the flow. A body streamed to a server is gone.
    pub fn can_resend_request_body(&self) -> bool {
        match self {
            ClientSide::Http1(h1) => matches!(h1.body, Remaining::Unread(Framing::Empty) | Remaining::Done),
            ClientSide::Http2(h2) => h2.request_done && h2.prefix.is_none() && !h2.body_streamed,
        }
    }

    /// Reads and drops what is left of the request body (for a request answered locally).
    pub async fn drain_request_body(&mut self) -> Result<(), ProtocolError> {
        let drained = match self {
            ClientSide::Http1(h1) => h1.body.drain(h1.io, h1.read_timeout).await,
            ClientSide::Http2(h2) => {
                h2.prefix = None;
                h2.collect(0).await.map(drop)
            }
        };
        drained.map_err(|e| request_body_error(e, "(local)"))
    }

    /// Sends what is left of the request body to an HTTP/1 server, showing its pieces to `tap`. Returns
    /// the payload length if it was only now known.
    pub async fn send_request_body(
        &mut self,
        server: &mut ServerIo,
        host: &str,
        mut tap: Option<BodyTap>,
    ) -> Result<Option<u64>, ProtocolError> {
        let sent = match self {
            ClientSide::Http1(h1) => h1.body.relay(h1.io, server, h1.read_timeout, tap.as_mut()).await,
            ClientSide::Http2(h2) if h2.request_done && h2.prefix.is_none() => {
                server.flush().await.map(|()| None).map_err(BodyError::Write)
            }
            ClientSide::Http2(h2) => {
                let (chunked, read_timeout) = (h2.content_length.is_none(), h2.read_timeout);
                h2.body_streamed = true;
                let mut sink = Sink::Http1 { io: server, chunked };
                pump(&mut h2.source(), &mut sink, read_timeout, tap.as_mut()).await.map(Some)
            }
        };
        sent.map_err(|e| request_body_error(e, host))
    }

    /// Sends what is left of the request body on an HTTP/2 server stream, and ends it, showing its pieces
    /// to `tap`. From an HTTP/2 client this runs in a task of its own, so the request keeps streaming while
    /// the response comes back (full duplex, as gRPC's bidirectional streams need); a failure then resets
    /// the server's stream.
    pub async fn send_request_body_http2(
        &mut self,
        mut send: h2::SendStream<Bytes>,
        host: &str,
        mut tap: Option<BodyTap>,
    ) -> Result<(), ProtocolError> {
        let read_timeout = self.read_timeout();
        match self {
            ClientSide::Http1(h1) => {
                let remaining = std::mem::replace(&mut h1.body, Remaining::Sent);
                let mut sink = Sink::Http2 { send: &mut send, read_timeout };
                let sent = pump(&mut remaining.into_source(h1.io), &mut sink, read_timeout, tap.as_mut()).await;
                sent.map(drop).map_err(|e| request_body_error(e, host))
            }
            ClientSide::Http2(h2) => {
                let (prefix, trailers) = (h2.prefix.take(), h2.trailers.take());
                let recv = h2.recv.take().filter(|_| !h2.request_done);
                (h2.request_done, h2.body_streamed) = (true, true);
                let host = host.to_string();
                tokio::spawn(async move {
                    let mut sink = Sink::Http2 { send: &mut send, read_timeout };
                    let sent = match recv {
                        Some(mut recv) => {
                            let mut source = Source::Http2 { recv: &mut recv, prefix, trailers };
                            pump(&mut source, &mut sink, read_timeout, tap.as_mut()).await
                        }
                        None => {
                            let mut source = Source::Whole { data: prefix, trailers };
                            pump(&mut source, &mut sink, read_timeout, tap.as_mut()).await
                        }
                    };
                    if let Err(e) = sent {
                        tracing::debug!(%host, error = ?e, "request body stopped; resetting the server's stream");
                        send.send_reset(h2::Reason::CANCEL);
                    }
                });
                Ok(())
            }
        }
    }

    /// Passes a 1xx interim response on.
    pub async fn send_interim(&mut self, head: &ResponseHead) -> Result<(), ProtocolError> {
        match self {
            ClientSide::Http1(h1) => {
                let mut out = Vec::with_capacity(128);
                write_response_head(head, &mut out);
                h1.io.write_all(&out).await.map_err(ProtocolError::ClientIo)
            }
            ClientSide::Http2(h2) => h2.send_interim(head.status, &head.headers),
        }
    }

    /// Sends a whole response made by strata or an addon (no body if it has none), with its
    /// Content-Length, in one write; its headers become those sent. The connection stays open unless the
    /// client asked to close it.
    pub async fn send_local(&mut self, response: &mut Response) -> Result<(), ProtocolError> {
        let body = response.body.get_or_insert_with(Vec::new);
        response.body_len = body.len() as u64;
        response.headers.remove("transfer-encoding");
        // No content, and no Content-Length, where a status has none (RFC 9110 sections 8.6, 15.3.5, 15.4.5).
        let has_content = !matches!(response.status, 100..=199 | 204 | 304);
        if has_content {
            response.headers.set("content-length", body.len().to_string());
        } else {
            response.headers.remove("content-length");
        }
        let body = if has_content { response.body.as_deref().unwrap_or_default() } else { &[] };
        match self {
            ClientSide::Http1(h1) => {
                if h1.wants_close {
                    response.headers.append("connection", "close");
                }
                let mut out = Vec::with_capacity(256 + body.len());
                write_status_line(Version::Http11, response.status, &response.reason, &mut out);
                write_fields(&response.headers, &mut out);
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(body);
                h1.io.write_all(&out).await.map_err(ProtocolError::ClientIo)?;
                h1.io.flush().await.map_err(ProtocolError::ClientIo)?;
            }
            ClientSide::Http2(h2) => h2.send_whole(response.status, &response.headers, body, None).await?,
        }
        Ok(())
    }

    /// Sends the error response for `error` (`status` and `reason` from `error_response`): a short text body
    /// naming the cause. On HTTP/1 the connection then closes, since the rest of its bytes cannot be trusted;
    /// on HTTP/2 only the stream ends.
    pub async fn send_error(&mut self, status: u16, reason: &str, error: &ProtocolError) {
        match self {
            ClientSide::Http1(h1) => send_http1_error(h1.io, status, reason, error).await,
            // A server's reset reaches the client as the same reset on the same stream.
            ClientSide::Http2(h2) if matches!(error, ProtocolError::ServerReset { .. }) => {
                if let ProtocolError::ServerReset { code, .. } = error {
                    h2.respond.send_reset(h2::Reason::from(*code));
                }
            }
            ClientSide::Http2(h2) => {
                let body = error_body(error);
                let mut headers = Headers::default();
                headers.append("content-type", "text/plain; charset=utf-8");
                headers.append("content-length", body.len().to_string());
                // The stream may be gone already; then there is nobody to tell.
                let _ = h2.send_whole(status, &headers, body.as_bytes(), None).await;
            }
        }
    }

    /// Sends a 101 Switching Protocols as the server sent it; the connection then belongs to the new
    /// protocol.
    pub async fn send_switching(&mut self, head: &ResponseHead) -> Result<(), ProtocolError> {
        match self {
            ClientSide::Http1(h1) => {
                let mut out = Vec::with_capacity(256);
                write_response_head(head, &mut out);
                h1.io.write_all(&out).await.map_err(ProtocolError::ClientIo)?;
                h1.io.flush().await.map_err(ProtocolError::ClientIo)
            }
            // HTTP/2 has no upgrades, and strata asks for none on a stream's behalf.
            ClientSide::Http2(_) => Err(ProtocolError::Refused { status: 502, reason: "upgrade on HTTP/2".into() }),
        }
    }

    /// Sends the response head and its body: `whole` when it was read into memory, else streamed from the
    /// server (`server` is its HTTP/1 stream, if that is where the body is), its pieces shown to `tap`.
    /// Returns the payload bytes sent and whether the client connection can carry another request.
    pub async fn send_response(
        &mut self,
        response: &mut Response,
        whole: Option<&[u8]>,
        server: Option<&mut ServerIo>,
        body: &mut ResponseBody,
        host: &str,
        tap: Option<BodyTap>,
    ) -> Result<(u64, bool), ProtocolError> {
        match self {
            ClientSide::Http1(h1) => h1.send_response(response, whole, server, body, host, tap).await,
            ClientSide::Http2(h2) => h2.send_response(response, whole, server, body, host, tap).await,
        }
    }
}

impl Http1Client<'_> {
    async fn send_response(
        &mut self,
        response: &mut Response,
        whole: Option<&[u8]>,
        server: Option<&mut ServerIo>,
        body: &mut ResponseBody,
        host: &str,
        mut tap: Option<BodyTap>,
    ) -> Result<(u64, bool), ProtocolError> {
        // How the body is framed toward the client: as read (HTTP/1), by its length, or chunked.
        let length = whole.map(|w| w.len() as u64).or_else(|| body.length(&response.headers));
        let until_close = matches!(body, ResponseBody::Http1 { framing: Framing::Close, .. }) && whole.is_none();
        let re_chunk = matches!(body, ResponseBody::Http2 { .. }) && whole.is_none() && length.is_none();
        if !body.is_empty() {
            if let Some(len) = length.filter(|_| whole.is_some() || matches!(body, ResponseBody::Http2 { .. })) {
                // A body read whole goes with a Content-Length, so even a close-delimited one leaves the
                // client connection usable.
                response.headers.remove("transfer-encoding");
                response.headers.set("content-length", len.to_string());
            }
            if re_chunk && self.version == Version::Http11 {
                response.headers.set("transfer-encoding", "chunked");
            }
        }
        let chunked = re_chunk && self.version == Version::Http11;
        // An HTTP/1.0 client cannot take chunks: a body of unknown length then ends with the connection.
        let ends_with_connection = until_close || (re_chunk && !chunked);
        let keep_alive = !self.wants_close && !ends_with_connection;
        // RFC 9110 section 6.2: an intermediary sends its own version, so the client reads the connection
        // state from the Connection header set here, not from the server's version.
        let mut out = Vec::with_capacity(512);
        write_status_line(Version::Http11, response.status, &response.reason, &mut out);
        write_fields(&response.headers, &mut out);
        if !keep_alive {
            out.extend_from_slice(b"connection: close\r\n");
        } else if self.version == Version::Http10 {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
        let to_client = ProtocolError::ClientIo;
        let read_timeout = self.read_timeout;
        let sent = match (whole, server) {
            (Some(whole), _) if !body.is_empty() => {
                out.extend_from_slice(whole);
                self.io.write_all(&out).await.map_err(to_client)?;
                whole.len() as u64
            }
            _ if body.is_empty() => {
                self.io.write_all(&out).await.map_err(to_client)?;
                0
            }
            (_, Some(server)) if matches!(body, ResponseBody::Http1 { .. }) => match body.buffered_whole(server) {
                // One write for head and body when the whole body is already buffered.
                Some(bytes) => {
                    if let Some(tap) = tap.as_mut() {
                        tap.chunk(&Bytes::copy_from_slice(bytes)).await;
                    }
                    out.extend_from_slice(bytes);
                    let n = bytes.len();
                    server.consume(n);
                    self.io.write_all(&out).await.map_err(to_client)?;
                    n as u64
                }
                None => {
                    self.io.write_all(&out).await.map_err(to_client)?;
                    let ResponseBody::Http1 { remaining, .. } = body else { unreachable!("matched above") };
                    let sent = remaining.relay(server, self.io, read_timeout, tap.as_mut()).await;
                    sent.map_err(|e| response_body_error(e, host))?.unwrap_or(0)
                }
            },
            (_, _) => {
                self.io.write_all(&out).await.map_err(to_client)?;
                let ResponseBody::Http2 { recv, prefix, trailers, .. } = body else {
                    return Err(ProtocolError::BadResponse { host: host.into(), reason: "response body lost".into() });
                };
                let mut source = Source::Http2 { recv, prefix: prefix.take(), trailers: trailers.take() };
                let mut sink = Sink::Http1 { io: self.io, chunked };
                let pumped = pump(&mut source, &mut sink, read_timeout, tap.as_mut()).await;
                pumped.map_err(|e| response_body_error(e, host))?
            }
        };
        self.io.flush().await.map_err(to_client)?;
        Ok((sent, keep_alive))
    }
}

impl Http2Client {
    /// What is left of the request body, as a source of pieces.
    fn source(&mut self) -> Source<'_> {
        let trailers = if self.request_done { self.trailers.take() } else { None };
        match self.recv.as_mut().filter(|_| !self.request_done) {
            Some(recv) => Source::Http2 { recv, prefix: self.prefix.take(), trailers },
            None => Source::Whole { data: self.prefix.take(), trailers },
        }
    }

    /// Reads the rest of the request body into memory while it fits in `limit`.
    async fn collect(&mut self, limit: usize) -> Result<body::Kept, BodyError> {
        match self.recv.as_mut().filter(|_| !self.request_done) {
            Some(recv) => collect_http2(recv, limit, self.read_timeout).await,
            None => Ok(body::Kept { data: Vec::new(), complete: true, trailers: None }),
        }
    }

    /// Sends a 1xx interim response (RFC 9113 section 8.1): an informational HEADERS frame.
    fn send_interim(&mut self, status: u16, headers: &Headers) -> Result<(), ProtocolError> {
        let mut response = http::Response::new(());
        *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::CONTINUE);
        *response.headers_mut() = response_header_map(headers);
        self.respond.send_informational(response).map_err(client_h2_error)
    }

    /// Sends the response head; `end` when there is no body.
    fn send_head(&mut self, status: u16, headers: &Headers, end: bool) -> Result<(), ProtocolError> {
        let mut response = http::Response::new(());
        *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
        *response.headers_mut() = response_header_map(headers);
        let send = self.respond.send_response(response, end).map_err(client_h2_error)?;
        self.send = (!end).then_some(send);
        Ok(())
    }

    /// Sends a whole response: head, body and trailers.
    async fn send_whole(
        &mut self,
        status: u16,
        headers: &Headers,
        body: &[u8],
        trailers: Option<Headers>,
    ) -> Result<(), ProtocolError> {
        let end = body.is_empty() && trailers.is_none();
        self.send_head(status, headers, end)?;
        if let Some(send) = self.send.as_mut() {
            let read_timeout = self.read_timeout;
            let mut sink = Sink::Http2 { send, read_timeout };
            let mut source = Source::Whole { data: Some(body.to_vec()), trailers };
            pump(&mut source, &mut sink, read_timeout, None).await.map_err(client_body_error)?;
        }
        Ok(())
    }

    async fn send_response(
        &mut self,
        response: &mut Response,
        whole: Option<&[u8]>,
        server: Option<&mut ServerIo>,
        body: &mut ResponseBody,
        host: &str,
        mut tap: Option<BodyTap>,
    ) -> Result<(u64, bool), ProtocolError> {
        if let Some(whole) = whole.filter(|_| !body.is_empty()) {
            response.headers.set("content-length", whole.len().to_string());
            let trailers = match body {
                ResponseBody::Http2 { trailers, .. } => trailers.take(),
                ResponseBody::Http1 { .. } => None,
            };
            self.send_whole(response.status, &response.headers, whole, trailers).await?;
            return Ok((whole.len() as u64, true));
        }
        self.send_head(response.status, &response.headers, body.is_empty())?;
        let Some(send) = self.send.as_mut() else { return Ok((0, true)) };
        let read_timeout = self.read_timeout;
        let mut sink = Sink::Http2 { send, read_timeout };
        let sent = match (body, server) {
            (ResponseBody::Http1 { remaining, .. }, Some(io)) => {
                let remaining = std::mem::replace(remaining, Remaining::Done);
                pump(&mut remaining.into_source(io), &mut sink, read_timeout, tap.as_mut()).await
            }
            (ResponseBody::Http2 { recv, prefix, trailers, .. }, _) => {
                let mut source = Source::Http2 { recv, prefix: prefix.take(), trailers: trailers.take() };
                pump(&mut source, &mut sink, read_timeout, tap.as_mut()).await
            }
            (ResponseBody::Http1 { .. }, None) => Ok(0),
        };
        let sent = sent.map_err(|e| match e {
            BodyError::Write(e) => ProtocolError::ClientIo(e),
            other => response_body_error(other, host),
        })?;
        Ok((sent, true))
    }
}

/// A response's fields as HTTP/2 carries them: without the connection-specific ones.
fn response_header_map(headers: &Headers) -> http::HeaderMap {
    let mut fields = headers.clone();
    fields.0.retain(|(name, _)| !server::CONNECTION_SPECIFIC.iter().any(|c| name.eq_ignore_ascii_case(c)));
    header_map(&fields)
}

/// A failure while sending to an HTTP/2 client.
fn client_body_error(e: BodyError) -> ProtocolError {
    match e {
        BodyError::Write(e) | BodyError::Read(e) => ProtocolError::ClientIo(e),
        BodyError::Timeout => {
            ProtocolError::Timeout { side: crate::error::Side::Client, step: "HTTP/2 flow-control window" }
        }
        BodyError::Truncated | BodyError::Malformed(_) => ProtocolError::ClientIo(std::io::ErrorKind::Other.into()),
    }
}

/// Writes the error response for `error` to an HTTP/1 client and closes the connection.
/// The body of strata's own error responses: what went wrong, in one line (it names the host for a 502).
pub fn error_body(error: &ProtocolError) -> String {
    format!("strata: {error}\n")
}

pub async fn send_http1_error(io: &mut ClientIo, status: u16, reason: &str, error: &ProtocolError) {
    let body = error_body(error);
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = io.write_all(format!("{head}{body}").as_bytes()).await;
    let _ = io.flush().await;
    let _ = io.shutdown().await;
}
