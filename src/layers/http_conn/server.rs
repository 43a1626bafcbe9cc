//! The server of an exchange, through the seam: HTTP/1 requests written to the server's stream, HTTP/2
//! requests sent as streams on a shared connection, and the response's body (`ResponseBody`) however it
//! arrives.

use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::time::timeout;

use super::body::{
    collect_http2, header_map, response_body_error, response_head_error, send_flow_controlled, Remaining,
};
use super::{ClientSide, ServerIo};
use crate::addon::BodyTap;
use crate::config::Limits;
use crate::error::{ProtocolError, Side};
use crate::flow::Request;
use crate::http::message::{Headers, ResponseHead, Version};
use crate::layers::http1::codec::{
    self, read_head, response_framing, transfer_codings, write_fields_except, write_request_line, Framing,
};
use crate::server_conn::{server_h2_error, Http2Sender};

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
    // `TE: trailers` is kept for HTTP/2 servers only; toward HTTP/1 it is a hop-by-hop field like the rest.
    write_fields_except(&request.headers, "te", &mut out);
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

/// Fields that belong to one HTTP/1 connection and are invalid in HTTP/2 (RFC 9113 section 8.2.2); `te` is
/// allowed with the value `trailers` only, and `host` becomes `:authority`.
pub(super) const CONNECTION_SPECIFIC: [&str; 7] =
    ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "host"];

/// Sends a request as a new stream on an HTTP/2 server connection: the head (`:authority` from the Host
/// field), then the body: `whole`, or streamed from the client. Returns the final response head and its
/// body.
pub async fn send_http2_request(
    sender: Http2Sender,
    request: &Request,
    whole: Option<&[u8]>,
    client: &mut ClientSide<'_>,
    read_timeout: Duration,
    host: &str,
    tap: Option<BodyTap>,
) -> Result<(ResponseHead, ResponseBody), ProtocolError> {
    let authority = request.headers.get("host").and_then(|h| std::str::from_utf8(h).ok()).unwrap_or(host);
    let uri = format!("{}://{authority}{}", request.scheme.as_str(), request.path);
    let mut head = http::Request::new(());
    *head.method_mut() = http::Method::from_bytes(request.method.as_bytes())
        .map_err(|_| ProtocolError::BadRequest(format!("method '{}' cannot go over HTTP/2", request.method)))?;
    *head.uri_mut() =
        uri.parse().map_err(|_| ProtocolError::BadRequest(format!("'{uri}' is not a valid HTTP/2 request URI")))?;
    *head.version_mut() = http::Version::HTTP_2;
    let mut fields = request.headers.clone();
    fields.0.retain(|(name, value)| {
        let te_trailers = name.eq_ignore_ascii_case("te") && value.eq_ignore_ascii_case(b"trailers");
        te_trailers || !CONNECTION_SPECIFIC.iter().any(|c| name.eq_ignore_ascii_case(c))
    });
    *head.headers_mut() = header_map(&fields);
    let no_body = whole.map_or_else(|| client.has_no_request_body(), <[u8]>::is_empty);

    let mut sender = timeout(read_timeout, sender.ready())
        .await
        .map_err(|_| ProtocolError::Timeout { side: Side::Server, step: "HTTP/2 stream" })?
        .map_err(|e| server_h2_error(host, e))?;
    let (response, mut send) = sender.send_request(head, no_body).map_err(|e| server_h2_error(host, e))?;
    if !no_body {
        match whole {
            Some(body) => {
                send_flow_controlled(&mut send, Bytes::copy_from_slice(body), read_timeout)
                    .await
                    .map_err(|e| response_body_error(e, host))?;
                send.send_data(Bytes::new(), true).map_err(|e| server_h2_error(host, e))?;
            }
            None => client.send_request_body_http2(send, host, tap).await?,
        }
    }
    let response = timeout(read_timeout, response)
        .await
        .map_err(|_| ProtocolError::Timeout { side: Side::Server, step: "response head" })?
        .map_err(|e| server_h2_error(host, e))?;
    let (parts, recv) = response.into_parts();
    let mut headers = Headers::default();
    for (name, value) in &parts.headers {
        headers.append(name.as_str(), value.as_bytes());
    }
    let head = ResponseHead {
        version: Version::Http2,
        status: parts.status.as_u16(),
        reason: parts.status.canonical_reason().unwrap_or_default().to_string(),
        headers,
    };
    let no_body = recv.is_end_stream();
    Ok((head, ResponseBody::Http2 { recv, no_body, prefix: None, trailers: None }))
}

/// The body of a response, still on its way from the server.
pub enum ResponseBody {
    /// In an HTTP/1 server's stream.
    Http1 {
        framing: Framing,
        remaining: Remaining,
        /// The server will take another request on the connection after this response.
        keeps_connection: bool,
    },
    /// On an HTTP/2 stream; `prefix` (and `trailers`, if it ended) were read by `collect`.
    Http2 { recv: h2::RecvStream, no_body: bool, prefix: Option<Vec<u8>>, trailers: Option<Headers> },
}

impl ResponseBody {
    /// The body of `head` from an HTTP/1 server, the response to a `method` request; an ambiguous framing
    /// is an error.
    pub fn http1(method: &str, head: &ResponseHead, host: &str) -> Result<ResponseBody, ProtocolError> {
        let framing = response_framing(method, head)
            .map_err(|e| ProtocolError::BadResponse { host: host.to_string(), reason: e.to_string() })?;
        let keeps_connection = !codec::wants_close(head.version, &head.headers) && framing != Framing::Close;
        Ok(ResponseBody::Http1 { framing, remaining: Remaining::Unread(framing), keeps_connection })
    }

    /// True if the server connection can carry another request once this body has been read.
    pub fn keeps_connection(&self) -> bool {
        match self {
            ResponseBody::Http1 { keeps_connection, .. } => *keeps_connection,
            ResponseBody::Http2 { .. } => true,
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            ResponseBody::Http1 { framing, .. } => *framing == Framing::Empty,
            ResponseBody::Http2 { no_body, .. } => *no_body,
        }
    }

    /// The length, when the server announced it in a way its receiver can rely on.
    pub(super) fn length(&self, headers: &Headers) -> Option<u64> {
        match self {
            ResponseBody::Http1 { framing: Framing::Length(n), .. } => Some(*n),
            ResponseBody::Http1 { .. } => None,
            ResponseBody::Http2 { .. } => {
                headers.get("content-length").and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
            }
        }
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
        if let ResponseBody::Http1 { framing: Framing::Length(n), .. } = self {
            headers.set("content-length", n.to_string());
        }
    }

    /// Reads the body into memory if it fits in `limit` (`None` if not: it then streams). `server` is the
    /// HTTP/1 server's stream, for a body that is in it.
    pub async fn collect(
        &mut self,
        server: Option<&mut ServerIo>,
        limit: usize,
        read_timeout: Duration,
        host: &str,
    ) -> Result<Option<Vec<u8>>, ProtocolError> {
        let collected = match (self, server) {
            (ResponseBody::Http1 { remaining, .. }, Some(io)) => remaining.collect(io, limit, read_timeout).await,
            (ResponseBody::Http1 { .. }, None) => Ok(None),
            (ResponseBody::Http2 { recv, prefix, trailers, .. }, _) => {
                collect_http2(recv, limit, read_timeout).await.map(|kept| {
                    *trailers = kept.trailers;
                    if kept.complete {
                        Some(kept.data)
                    } else {
                        *prefix = Some(kept.data);
                        None
                    }
                })
            }
        };
        collected.map_err(|e| response_body_error(e, host))
    }

    /// The trailers read with a body collected whole (HTTP/2; HTTP/1 trailers of a collected body are
    /// checked and dropped, since it goes on with a Content-Length).
    pub fn trailers(&self) -> Option<&Headers> {
        match self {
            ResponseBody::Http2 { trailers, .. } => trailers.as_ref(),
            ResponseBody::Http1 { .. } => None,
        }
    }

    /// The whole body, if it is a Content-Length body already in the server's read buffer.
    pub(super) fn buffered_whole<'s>(&self, server: &'s ServerIo) -> Option<&'s [u8]> {
        match self {
            ResponseBody::Http1 { framing: Framing::Length(n), remaining: Remaining::Unread(_), .. }
                if *n <= server.buffered().len() as u64 =>
            {
                Some(&server.buffered()[..*n as usize])
            }
            _ => None,
        }
    }
}
