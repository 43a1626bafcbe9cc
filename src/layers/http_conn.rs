//! The seam between `HttpLayer`, which knows what an exchange means, and the wire layers, which know how it
//! is spelled.
//!
//! `ClientSide` is the client of one exchange: the request body still to be read, and where the response
//! goes. The server of an exchange is reached through the functions at the end of this file. `HttpLayer`
//! calls only what is here; each function picks the wire version's codec (`layers::http1::codec`). Bodies
//! cross the seam streamed, or whole up to `--body-size-limit` when an addon asked for them; framing fields
//! (Content-Length, Transfer-Encoding) are set here from what is known about the body, never copied from
//! the sender's spelling.

use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::time::timeout;

use crate::addons::LocalResponse;
use crate::config::Limits;
use crate::error::{ProtocolError, Side};
use crate::flow::{Request, Response};
use crate::http::fields::is_allowed_in_trailers;
use crate::http::message::{Headers, ResponseHead, Version};
use crate::io::{BoxStream, BufIo};
use crate::layer::ClientIo;
use crate::layers::http1::codec::{
    self, collect_body, copy_body, forward_partial, read_head, response_framing, transfer_codings, write_fields,
    write_request_line, write_response_head, write_status_line, BodyDecoder, BodyError, BodyPiece, Collected, Framing,
    HeadError, Rest,
};
use crate::layers::http2::client_h2_error;

/// A server connection as the seam uses it.
pub type ServerIo = BufIo<BoxStream>;

/// What is left of an HTTP/1 body in its sender's stream.
#[derive(Debug)]
enum Remaining {
    /// Nothing has been read yet; it is framed like this.
    Unread(Framing),
    /// `collect` stopped at the limit: this prefix was read, the rest is still in the stream.
    Partial { prefix: Vec<u8>, rest: Rest },
    /// All of it has been read (into memory, or dropped).
    Done,
}

impl Remaining {
    /// Reads the body into memory if it fits in `limit`: `Some(body)`, or `None` when it is larger (what
    /// was read stays here, to be sent on before the rest).
    async fn collect(
        &mut self,
        io: &mut BufIo<BoxStream>,
        limit: usize,
        read_timeout: Duration,
    ) -> Result<Option<Vec<u8>>, BodyError> {
        let Remaining::Unread(framing) = *self else { return Ok(None) };
        match collect_body(io, framing, limit, read_timeout).await? {
            Collected::Complete(bytes) => {
                *self = Remaining::Done;
                Ok(Some(bytes))
            }
            Collected::Partial { prefix, rest } => {
                *self = Remaining::Partial { prefix, rest };
                Ok(None)
            }
        }
    }

    /// Sends what is left to `dst` with the same framing; the payload bytes sent, if any were left.
    async fn relay(
        &mut self,
        src: &mut BufIo<BoxStream>,
        dst: &mut BufIo<BoxStream>,
        read_timeout: Duration,
    ) -> Result<Option<u64>, BodyError> {
        let sent = match std::mem::replace(self, Remaining::Done) {
            Remaining::Done => None,
            Remaining::Unread(framing) => Some(copy_body(src, dst, framing, read_timeout).await?),
            Remaining::Partial { prefix, rest } => Some(forward_partial(src, dst, &prefix, rest, read_timeout).await?),
        };
        dst.flush().await.map_err(BodyError::Write)?;
        Ok(sent)
    }

    /// Reads and drops what is left.
    async fn drain(&mut self, src: &mut BufIo<BoxStream>, read_timeout: Duration) -> Result<(), BodyError> {
        let mut sink = tokio::io::sink();
        match std::mem::replace(self, Remaining::Done) {
            Remaining::Done => Ok(()),
            Remaining::Unread(framing) => copy_body(src, &mut sink, framing, read_timeout).await.map(drop),
            Remaining::Partial { rest, .. } => forward_partial(src, &mut sink, &[], rest, read_timeout).await.map(drop),
        }
    }
}

/// The client of one exchange, whatever its wire version.
pub enum ClientSide<'a> {
    /// An HTTP/1 request on a client connection that may carry more after it.
    Http1(Http1Client<'a>),
    /// One HTTP/2 stream.
    Http2(Http2Client),
}

/// The client of an HTTP/2 exchange: one stream's request body and response.
pub struct Http2Client {
    recv: h2::RecvStream,
    /// What `collect_request_body` read before it found the body too large; sent on first.
    prefix: Option<Vec<u8>>,
    /// The whole request body has been read (END_STREAM seen).
    request_done: bool,
    /// The request's Content-Length, if it gave one.
    content_length: Option<u64>,
    respond: h2::server::SendResponse<Bytes>,
    /// The response body's stream, once the response head went out.
    send: Option<h2::SendStream<Bytes>>,
    read_timeout: Duration,
}

/// Fields that belong to one HTTP/1 connection and are invalid in HTTP/2 (RFC 9113 section 8.2.2).
const CONNECTION_SPECIFIC: [&str; 6] =
    ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te"];

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
        ClientSide::Http1(Http1Client {
            io,
            version,
            wants_close,
            framing,
            body: Remaining::Unread(framing),
            read_timeout,
        })
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
            recv,
            prefix: None,
            request_done,
            content_length,
            respond,
            send: None,
            read_timeout,
        })
    }

    /// True if the client will not send another request on this connection.
    pub fn wants_close(&self) -> bool {
        match self {
            ClientSide::Http1(h1) => h1.wants_close,
            ClientSide::Http2(_) => false,
        }
    }

    /// Sets the framing fields of a request whose body streams from this client: the length, or chunked,
    /// as strata read it, never the client's spelling (repeated equal Content-Lengths become one, RFC 9110
    /// section 8.6; any list of codings becomes `chunked`).
    pub fn set_streamed_framing(&self, headers: &mut Headers) {
        match self {
            ClientSide::Http1(h1) => match h1.framing {
                Framing::Length(n) => headers.set("content-length", n.to_string()),
                Framing::Chunked => headers.set("transfer-encoding", "chunked"),
                Framing::Empty | Framing::Close => {}
            },
            ClientSide::Http2(h2) => match h2.content_length {
                Some(n) => headers.set("content-length", n.to_string()),
                None => {
                    headers.remove("content-length");
                    headers.set("transfer-encoding", "chunked");
                }
            },
        }
    }

    /// True if the request has no body at all.
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
            // An HTTP/2 client sends its body without waiting (RFC 9113 section 8.1.1).
            ClientSide::Http1(_) | ClientSide::Http2(_) => Ok(()),
        }
    }

    /// Reads the request body into memory if it fits in `limit` (`None` if it does not: it then streams).
    pub async fn collect_request_body(&mut self, limit: usize) -> Result<Option<Vec<u8>>, ProtocolError> {
        match self {
            ClientSide::Http1(h1) => {
                h1.body.collect(h1.io, limit, h1.read_timeout).await.map_err(|e| request_body_error(e, "(client)"))
            }
            ClientSide::Http2(h2) => h2.collect(limit).await,
        }
    }

    /// True if nothing was read from the client that could not be sent again (for a retry).
    pub fn can_resend_request_body(&self) -> bool {
        match self {
            ClientSide::Http1(h1) => matches!(h1.body, Remaining::Done | Remaining::Unread(Framing::Empty)),
            ClientSide::Http2(h2) => h2.request_done && h2.prefix.is_none(),
        }
    }

    /// Reads and drops what is left of the request body (for a request answered locally).
    pub async fn drain_request_body(&mut self) -> Result<(), ProtocolError> {
        match self {
            ClientSide::Http1(h1) => {
                h1.body.drain(h1.io, h1.read_timeout).await.map_err(|e| request_body_error(e, "(local)"))
            }
            ClientSide::Http2(h2) => {
                h2.prefix = None;
                while h2.next_data().await?.is_some() {}
                Ok(())
            }
        }
    }

    /// Sends what is left of the request body to an HTTP/1 server. Returns the payload length if it was
    /// only now known.
    pub async fn send_request_body(&mut self, server: &mut ServerIo, host: &str) -> Result<Option<u64>, ProtocolError> {
        match self {
            ClientSide::Http1(h1) => {
                h1.body.relay(h1.io, server, h1.read_timeout).await.map_err(|e| request_body_error(e, host))
            }
            ClientSide::Http2(h2) => h2.send_request_body(server, host).await,
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
            // Interim responses are not passed on to HTTP/2 clients.
            ClientSide::Http2(_) => Ok(()),
        }
    }

    /// Sends a response made by strata, with its Content-Length, in one write. Returns it with the
    /// headers as sent. The connection stays open unless the client asked to close it.
    pub async fn send_local(&mut self, mut response: LocalResponse) -> Result<LocalResponse, ProtocolError> {
        response.headers.set("content-length", response.body.len().to_string());
        match self {
            ClientSide::Http1(h1) => {
                if h1.wants_close {
                    response.headers.append("connection", "close");
                }
                let mut out = Vec::with_capacity(256 + response.body.len());
                write_status_line(Version::Http11, response.status, &response.reason, &mut out);
                write_fields(&response.headers, &mut out);
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(&response.body);
                h1.io.write_all(&out).await.map_err(ProtocolError::ClientIo)?;
                h1.io.flush().await.map_err(ProtocolError::ClientIo)?;
            }
            ClientSide::Http2(h2) => {
                h2.send_head(response.status, &response.headers, response.body.is_empty())?;
                h2.send_body(Bytes::from(response.body.clone())).await?;
                h2.end(None)?;
            }
        }
        Ok(response)
    }

    /// Sends the error response for `error` (`status` and `reason` from `error_response`): a short text body
    /// naming the cause. On HTTP/1 the connection then closes, since the rest of its bytes cannot be trusted.
    pub async fn send_error(&mut self, status: u16, reason: &str, error: &ProtocolError) {
        match self {
            ClientSide::Http1(h1) => send_http1_error(h1.io, status, reason, error).await,
            ClientSide::Http2(h2) => {
                let body = format!("strata: {error}\n");
                let mut headers = Headers::default();
                headers.append("content-type", "text/plain; charset=utf-8");
                headers.append("content-length", body.len().to_string());
                // The stream may be gone already; then there is nobody to tell.
                if h2.send_head(status, &headers, false).is_ok() && h2.send_body(Bytes::from(body)).await.is_ok() {
                    let _ = h2.end(None);
                }
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
    /// server with `framing`, after `partial` (a prefix `collect_response_body` read before it stopped).
    /// Returns the payload bytes sent and whether the client connection can carry another request.
    pub async fn send_response(
        &mut self,
        response: &mut Response,
        whole: Option<&[u8]>,
        server: &mut ServerIo,
        server_body: &mut ResponseBody,
        host: &str,
    ) -> Result<(u64, bool), ProtocolError> {
        match self {
            ClientSide::Http1(h1) => h1.send_response(response, whole, server, server_body, host).await,
            ClientSide::Http2(h2) => h2.send_response(response, whole, server, server_body, host).await,
        }
    }
}

impl Http2Client {
    /// The next piece of the request body, `None` at its end; flow-control window is given back as it is
    /// read.
    async fn next_data(&mut self) -> Result<Option<Bytes>, ProtocolError> {
        if self.request_done {
            return Ok(None);
        }
        let read = timeout(self.read_timeout, self.recv.data())
            .await
            .map_err(|_| ProtocolError::Timeout { side: Side::Client, step: "request body" })?;
        match read {
            None => {
                self.request_done = true;
                Ok(None)
            }
            Some(Err(e)) => Err(client_h2_error(e)),
            Some(Ok(data)) => {
                let _ = self.recv.flow_control().release_capacity(data.len());
                Ok(Some(data))
            }
        }
    }

    async fn collect(&mut self, limit: usize) -> Result<Option<Vec<u8>>, ProtocolError> {
        let mut body = Vec::new();
        while let Some(data) = self.next_data().await? {
            body.extend_from_slice(&data);
            if body.len() > limit {
                self.prefix = Some(body);
                return Ok(None);
            }
        }
        Ok(Some(body))
    }

    /// Streams the rest of the request body to an HTTP/1 server: raw with the Content-Length the client
    /// gave, else chunked with the client's trailers.
    async fn send_request_body(&mut self, server: &mut ServerIo, host: &str) -> Result<Option<u64>, ProtocolError> {
        let to_server = |e| ProtocolError::server_io(host, e);
        if self.request_done && self.prefix.is_none() {
            server.flush().await.map_err(to_server)?;
            return Ok(None);
        }
        let chunked = self.content_length.is_none();
        let mut sent = 0u64;
        let mut out = Vec::new();
        let mut next = self.prefix.take().map(Bytes::from);
        if next.is_none() {
            next = self.next_data().await?;
        }
        while let Some(data) = next {
            out.clear();
            if chunked {
                codec::encode_chunk(&data, &mut out);
            } else {
                out.extend_from_slice(&data);
            }
            server.write_all(&out).await.map_err(to_server)?;
            sent += data.len() as u64;
            next = self.next_data().await?;
        }
        if chunked {
            let trailers = match timeout(self.read_timeout, self.recv.trailers()).await {
                Ok(Ok(Some(map))) => trailer_fields(&map),
                Ok(Ok(None)) | Err(_) => Headers::default(),
                Ok(Err(e)) => return Err(client_h2_error(e)),
            };
            out.clear();
            codec::encode_last_chunk(&trailers, &mut out);
            server.write_all(&out).await.map_err(to_server)?;
        }
        server.flush().await.map_err(to_server)?;
        Ok(Some(sent))
    }

    /// Sends the response head; `end` when there is no body.
    fn send_head(&mut self, status: u16, headers: &Headers, end: bool) -> Result<(), ProtocolError> {
        let mut response = http::Response::new(());
        *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
        for (name, value) in &headers.0 {
            if CONNECTION_SPECIFIC.iter().any(|c| name.eq_ignore_ascii_case(c)) {
                continue;
            }
            let name_bytes = name.to_ascii_lowercase();
            match (http::HeaderName::from_bytes(name_bytes.as_bytes()), http::HeaderValue::from_bytes(value)) {
                (Ok(name), Ok(value)) => {
                    response.headers_mut().append(name, value);
                }
                _ => tracing::debug!(field = %name, "dropping a field HTTP/2 cannot carry"),
            }
        }
        let send = self.respond.send_response(response, end).map_err(client_h2_error)?;
        self.send = (!end).then_some(send);
        Ok(())
    }

    /// Sends body bytes as the stream's flow-control window allows: a slow client holds the sender back
    /// instead of strata buffering for it.
    async fn send_body(&mut self, mut data: Bytes) -> Result<(), ProtocolError> {
        let Some(send) = self.send.as_mut() else { return Ok(()) };
        while !data.is_empty() {
            send.reserve_capacity(data.len());
            let window = timeout(self.read_timeout, std::future::poll_fn(|cx| send.poll_capacity(cx)))
                .await
                .map_err(|_| ProtocolError::Timeout { side: Side::Client, step: "HTTP/2 flow-control window" })?;
            let granted = match window {
                Some(Ok(n)) => n,
                Some(Err(e)) => return Err(client_h2_error(e)),
                None => return Err(ProtocolError::ClientIo(std::io::ErrorKind::ConnectionReset.into())),
            };
            let piece = data.split_to(granted.min(data.len()));
            send.send_data(piece, false).map_err(client_h2_error)?;
        }
        Ok(())
    }

    /// Ends the response: with trailers, or an empty last DATA frame.
    fn end(&mut self, trailers: Option<&Headers>) -> Result<(), ProtocolError> {
        let Some(mut send) = self.send.take() else { return Ok(()) };
        match trailers.map(header_map).filter(|map| !map.is_empty()) {
            Some(map) => send.send_trailers(map).map_err(client_h2_error),
            None => send.send_data(Bytes::new(), true).map_err(client_h2_error),
        }
    }

    async fn send_response(
        &mut self,
        response: &mut Response,
        whole: Option<&[u8]>,
        server: &mut ServerIo,
        server_body: &mut ResponseBody,
        host: &str,
    ) -> Result<(u64, bool), ProtocolError> {
        let no_body = server_body.is_empty() || whole.is_some_and(<[u8]>::is_empty);
        if let Some(body) = whole {
            response.headers.set("content-length", body.len().to_string());
        }
        self.send_head(response.status, &response.headers, no_body)?;
        if no_body {
            return Ok((0, true));
        }
        if let Some(body) = whole {
            self.send_body(Bytes::copy_from_slice(body)).await?;
            self.end(None)?;
            return Ok((body.len() as u64, true));
        }
        let mut sent = 0u64;
        let mut decoder = match std::mem::replace(&mut server_body.remaining, Remaining::Done) {
            Remaining::Unread(framing) => BodyDecoder::new(framing),
            Remaining::Partial { prefix, rest } => {
                sent += prefix.len() as u64;
                self.send_body(Bytes::from(prefix)).await?;
                BodyDecoder::resume(rest)
            }
            Remaining::Done => BodyDecoder::Done,
        };
        let mut trailers = None;
        loop {
            let piece = decoder.next(server, self.read_timeout).await.map_err(|e| response_body_error(e, host))?;
            match piece {
                Some(BodyPiece::Data(data)) => {
                    sent += data.len() as u64;
                    self.send_body(Bytes::from(data)).await?;
                }
                Some(BodyPiece::Trailers(fields)) => trailers = Some(fields),
                None => break,
            }
        }
        self.end(trailers.as_ref())?;
        Ok((sent, true))
    }
}

/// Trailer fields from an HTTP/2 HEADERS frame, keeping only those that may be trailers.
fn trailer_fields(map: &http::HeaderMap) -> Headers {
    let mut fields = Headers::default();
    for (name, value) in map {
        if is_allowed_in_trailers(name.as_str()) {
            fields.append(name.as_str(), value.as_bytes());
        }
    }
    fields
}

/// Header fields as an HTTP/2 header map; names are lower-cased, fields HTTP/2 cannot carry are dropped.
fn header_map(fields: &Headers) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (name, value) in &fields.0 {
        let lower = name.to_ascii_lowercase();
        if let (Ok(name), Ok(value)) =
            (http::HeaderName::from_bytes(lower.as_bytes()), http::HeaderValue::from_bytes(value))
        {
            map.append(name, value);
        }
    }
    map
}

impl Http1Client<'_> {
    async fn send_response(
        &mut self,
        response: &mut Response,
        whole: Option<&[u8]>,
        server: &mut ServerIo,
        server_body: &mut ResponseBody,
        host: &str,
    ) -> Result<(u64, bool), ProtocolError> {
        let framing = server_body.framing;
        if whole.is_some() && framing != Framing::Empty {
            // Sent with a Content-Length, so even a close-delimited body leaves the client connection usable.
            let len = whole.map_or(0, <[u8]>::len);
            response.headers.remove("transfer-encoding");
            response.headers.set("content-length", len.to_string());
        }
        let keep_alive = !self.wants_close && (framing != Framing::Close || whole.is_some());
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
        let sent = match whole {
            Some(body) if framing != Framing::Empty => {
                out.extend_from_slice(body);
                self.io.write_all(&out).await.map_err(to_client)?;
                body.len() as u64
            }
            _ => match server_body.buffered_whole(server) {
                // One write for head and body when the whole body is already buffered.
                Some(body) => {
                    out.extend_from_slice(body);
                    let n = body.len();
                    server.consume(n);
                    self.io.write_all(&out).await.map_err(to_client)?;
                    n as u64
                }
                None => {
                    self.io.write_all(&out).await.map_err(to_client)?;
                    let sent = server_body.remaining.relay(server, self.io, self.read_timeout).await;
                    sent.map_err(|e| response_body_error(e, host))?.unwrap_or(0)
                }
            },
        };
        self.io.flush().await.map_err(to_client)?;
        Ok((sent, keep_alive))
    }
}

/// Writes the error response for `error` to an HTTP/1 client and closes the connection.
pub async fn send_http1_error(io: &mut ClientIo, status: u16, reason: &str, error: &ProtocolError) {
    let body = format!("strata: {error}\n");
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = io.write_all(format!("{head}{body}").as_bytes()).await;
    let _ = io.flush().await;
    let _ = io.shutdown().await;
}

// ---- the server side (HTTP/1) ----

/// Writes a request head to an HTTP/1 server, with `whole` (a body read into memory) after it. The
/// target is origin-form, or absolute-form with `proxy_authority` when the server is an upstream proxy.
pub async fn send_request_head(
    server: &mut ServerIo,
    request: &Request,
    proxy_authority: Option<&str>,
    whole: Option<&[u8]>,
    host: &str,
) -> Result<(), ProtocolError> {
    let mut out = Vec::with_capacity(512);
    // An HTTP/2 request goes to an HTTP/1 server as HTTP/1.1.
    let version = if request.version == Version::Http2 { Version::Http11 } else { request.version };
    match proxy_authority {
        Some(authority) => {
            write_request_line(&request.method, &format!("http://{authority}{}", request.path), version, &mut out)
        }
        None => write_request_line(&request.method, &request.path, version, &mut out),
    }
    write_fields(&request.headers, &mut out);
    out.extend_from_slice(b"\r\n");
    if let Some(body) = whole {
        out.extend_from_slice(body);
    }
    server.write_all(&out).await.map_err(|e| ProtocolError::server_io(host, e))
}

/// Reads response heads until a final one, passing 1xx interim responses (other than 101) to the client.
pub async fn read_final_response(
    server: &mut ServerIo,
    client: &mut ClientSide<'_>,
    limits: &Limits,
    read_timeout: Duration,
    host: &str,
) -> Result<ResponseHead, ProtocolError> {
    loop {
        let head = read_head(server, limits, read_timeout, codec::parse_response)
            .await
            .map_err(|e| response_head_error(e, host))?
            .ok_or_else(|| ProtocolError::BadResponse {
                host: host.to_string(),
                reason: "connection closed before a response".into(),
            })?;
        if !(100..200).contains(&head.status) || head.status == 101 {
            return Ok(head);
        }
        client.send_interim(&head).await?;
    }
}

/// The body of a response from an HTTP/1 server, still in the server's stream.
pub struct ResponseBody {
    framing: Framing,
    remaining: Remaining,
    /// The server will take another request on the connection after this response.
    keeps_connection: bool,
}

impl ResponseBody {
    /// The body of `head`, the response to a `method` request; an ambiguous framing is an error.
    pub fn of(method: &str, head: &ResponseHead, host: &str) -> Result<ResponseBody, ProtocolError> {
        let framing = response_framing(method, head)
            .map_err(|e| ProtocolError::BadResponse { host: host.to_string(), reason: e.to_string() })?;
        let keeps_connection = !codec::wants_close(head.version, &head.headers) && framing != Framing::Close;
        Ok(ResponseBody { framing, remaining: Remaining::Unread(framing), keeps_connection })
    }

    /// True if the server connection can carry another request once this body has been read.
    pub fn keeps_connection(&self) -> bool {
        self.keeps_connection
    }

    pub fn is_empty(&self) -> bool {
        self.framing == Framing::Empty
    }

    /// Sets the framing fields as strata read them: one Content-Length, and the transfer codings as a
    /// normalized list (or none, if the server's list was not valid).
    pub fn set_framing_fields(&self, headers: &mut Headers) {
        if headers.contains("transfer-encoding") {
            match transfer_codings(headers) {
                Ok(codings) => headers.set("transfer-encoding", codings.join(", ")),
                Err(_) => headers.remove("transfer-encoding"),
            }
        }
        if let Framing::Length(n) = self.framing {
            headers.set("content-length", n.to_string());
        }
    }

    /// Reads the body into memory if it fits in `limit` (`None` if not: it then streams).
    pub async fn collect(
        &mut self,
        server: &mut ServerIo,
        limit: usize,
        read_timeout: Duration,
        host: &str,
    ) -> Result<Option<Vec<u8>>, ProtocolError> {
        self.remaining.collect(server, limit, read_timeout).await.map_err(|e| response_body_error(e, host))
    }

    /// The whole body, if it is a Content-Length body already in the server's read buffer.
    fn buffered_whole<'s>(&self, server: &'s ServerIo) -> Option<&'s [u8]> {
        match (self.framing, &self.remaining) {
            (Framing::Length(n), Remaining::Unread(_)) if n <= server.buffered().len() as u64 => {
                Some(&server.buffered()[..n as usize])
            }
            _ => None,
        }
    }
}

fn response_head_error(e: HeadError, host: &str) -> ProtocolError {
    let bad = |reason: &str| ProtocolError::BadResponse { host: host.to_string(), reason: reason.to_string() };
    match e {
        HeadError::Io(e) => ProtocolError::server_io(host, e),
        HeadError::Timeout => ProtocolError::Timeout { side: Side::Server, step: "response head" },
        HeadError::Truncated => bad("connection closed in the middle of the response head"),
        HeadError::TooLarge => bad("response head too large"),
        HeadError::TooManyHeaders => bad("too many header fields in the response"),
        HeadError::Malformed(reason) => bad(&reason),
    }
}

fn request_body_error(e: BodyError, host: &str) -> ProtocolError {
    match e {
        BodyError::Read(e) => ProtocolError::ClientIo(e),
        BodyError::Truncated => ProtocolError::ClientIo(std::io::ErrorKind::UnexpectedEof.into()),
        BodyError::Timeout => ProtocolError::Timeout { side: Side::Client, step: "request body" },
        BodyError::Malformed(reason) => ProtocolError::BadRequest(reason),
        BodyError::Write(e) => ProtocolError::server_io(host, e),
    }
}

fn response_body_error(e: BodyError, host: &str) -> ProtocolError {
    match e {
        BodyError::Read(e) => ProtocolError::server_io(host, e),
        BodyError::Truncated => ProtocolError::server_io(host, std::io::ErrorKind::UnexpectedEof.into()),
        BodyError::Timeout => ProtocolError::Timeout { side: Side::Server, step: "response body" },
        BodyError::Malformed(reason) => ProtocolError::BadResponse { host: host.to_string(), reason },
        BodyError::Write(e) => ProtocolError::ClientIo(e),
    }
}
