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

use tokio::io::AsyncWriteExt;

use crate::addons::LocalResponse;
use crate::config::Limits;
use crate::error::{ProtocolError, Side};
use crate::flow::{Request, Response};
use crate::http::message::{Headers, ResponseHead, Version};
use crate::io::{BoxStream, BufIo};
use crate::layer::ClientIo;
use crate::layers::http1::codec::{
    self, collect_body, copy_body, forward_partial, read_head, response_framing, transfer_codings, write_fields,
    write_request_line, write_response_head, write_status_line, BodyError, Collected, Framing, HeadError, Rest,
};

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

    /// True if the client will not send another request on this connection.
    pub fn wants_close(&self) -> bool {
        match self {
            ClientSide::Http1(h1) => h1.wants_close,
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
        }
    }

    /// True if the request has no body at all.
    pub fn has_no_request_body(&self) -> bool {
        match self {
            ClientSide::Http1(h1) => matches!(h1.body, Remaining::Unread(Framing::Empty) | Remaining::Done),
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
            ClientSide::Http1(_) => Ok(()),
        }
    }

    /// Reads the request body into memory if it fits in `limit` (`None` if it does not: it then streams).
    pub async fn collect_request_body(&mut self, limit: usize) -> Result<Option<Vec<u8>>, ProtocolError> {
        match self {
            ClientSide::Http1(h1) => {
                h1.body.collect(h1.io, limit, h1.read_timeout).await.map_err(|e| request_body_error(e, "(client)"))
            }
        }
    }

    /// True if nothing was read from the client that could not be sent again (for a retry).
    pub fn can_resend_request_body(&self) -> bool {
        match self {
            ClientSide::Http1(h1) => matches!(h1.body, Remaining::Done | Remaining::Unread(Framing::Empty)),
        }
    }

    /// Reads and drops what is left of the request body (for a request answered locally).
    pub async fn drain_request_body(&mut self) -> Result<(), ProtocolError> {
        match self {
            ClientSide::Http1(h1) => {
                h1.body.drain(h1.io, h1.read_timeout).await.map_err(|e| request_body_error(e, "(local)"))
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
        }
        Ok(response)
    }

    /// Sends the error response for `error` (`status` and `reason` from `error_response`): a short text body
    /// naming the cause. On HTTP/1 the connection then closes, since the rest of its bytes cannot be trusted.
    pub async fn send_error(&mut self, status: u16, reason: &str, error: &ProtocolError) {
        match self {
            ClientSide::Http1(h1) => send_http1_error(h1.io, status, reason, error).await,
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
        }
    }
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
    match proxy_authority {
        Some(authority) => write_request_line(
            &request.method,
            &format!("http://{authority}{}", request.path),
            request.version,
            &mut out,
        ),
        None => write_request_line(&request.method, &request.path, request.version, &mut out),
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
}

impl ResponseBody {
    /// The body of `head`, the response to a `method` request; an ambiguous framing is an error.
    pub fn of(method: &str, head: &ResponseHead, host: &str) -> Result<ResponseBody, ProtocolError> {
        let framing = response_framing(method, head)
            .map_err(|e| ProtocolError::BadResponse { host: host.to_string(), reason: e.to_string() })?;
        Ok(ResponseBody { framing, remaining: Remaining::Unread(framing) })
    }

    pub fn is_empty(&self) -> bool {
        self.framing == Framing::Empty
    }

    /// True if the end of the body is the end of the connection.
    pub fn ends_with_connection(&self) -> bool {
        self.framing == Framing::Close
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
