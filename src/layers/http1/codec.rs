//! HTTP/1.x on the wire: bytes in, heads and body framing out, and back again.
//!
//! Only syntax lives here (`Http1Layer` runs connections with it, `http_conn` exchanges): parsing heads with
//! httparse under size limits,
//! deciding body framing (RFC 9112 section 6, rejecting ambiguous messages), serialising heads into one
//! buffer, and streaming bodies (Content-Length, chunked with trailers, close-delimited) without holding
//! them whole.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;

use crate::config::Limits;
use crate::http::fields::{is_allowed_in_trailers, is_token, list_members};
use crate::http::message::{Headers, RequestHead, ResponseHead, Version};
use crate::io::{BufIo, Parsed, RELAY_BUF_BYTES};

/// Longest chunk-size line (size, extensions, CRLF) accepted in a chunked body.
const MAX_CHUNK_LINE_BYTES: usize = 4 * 1024;

/// The version of an HTTP/1 message from its minor version digit.
fn version_from_minor(minor: u8) -> Version {
    if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    }
}

/// Header fields from httparse, checked: a value with CR, LF or NUL is refused (httparse lets NUL by).
fn headers_from_parsed(parsed: &[httparse::Header<'_>]) -> Result<Headers, String> {
    let mut out = Vec::with_capacity(parsed.len());
    for h in parsed {
        if h.value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(format!("invalid characters in the value of '{}'", h.name));
        }
        out.push((h.name.to_string(), h.value.to_vec()));
    }
    Ok(Headers(out))
}

/// How the end of a body is found (RFC 9112 section 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding, possibly with trailers.
    Chunked,
    /// Everything until the sender closes the connection (responses only).
    Close,
}

/// Why a head could not be read.
#[derive(Debug)]
pub enum HeadError {
    Io(io::Error),
    Timeout,
    /// The stream ended after part of a head.
    Truncated,
    TooLarge,
    TooManyHeaders,
    Malformed(String),
}

impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeadError::Io(e) => write!(f, "{e}"),
            HeadError::Timeout => f.write_str("timed out"),
            HeadError::Truncated => f.write_str("connection closed in the middle of a head"),
            HeadError::TooLarge => f.write_str("head too large"),
            HeadError::TooManyHeaders => f.write_str("too many header fields"),
            HeadError::Malformed(reason) => f.write_str(reason),
        }
    }
}

/// Reads one head with `parse` from `io` within `deadline`. `Ok(None)` if the stream ended cleanly before
/// the first byte.
pub async fn read_head<S, H>(
    io: &mut BufIo<S>,
    limits: &Limits,
    deadline: Duration,
    parse: fn(&[u8], &Limits) -> Parsed<H, HeadError>,
) -> Result<Option<H>, HeadError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let work = async {
        loop {
            if !io.buffered().is_empty() {
                if let Some((head, len)) = parse(io.buffered(), limits)? {
                    io.consume(len);
                    return Ok(Some(head));
                }
                if io.buffered().len() > limits.max_head_bytes {
                    return Err(HeadError::TooLarge);
                }
            }
            let had = io.buffered().len();
            if io.fill_more(limits.max_head_bytes + 1).await.map_err(HeadError::Io)? == 0 {
                return if had == 0 { Ok(None) } else { Err(HeadError::Truncated) };
            }
        }
    };
    timeout(deadline, work).await.map_err(|_| HeadError::Timeout)?
}

/// Parses a request head from the start of `buf`: the head and its length, or `None` if incomplete.
pub fn parse_request(buf: &[u8], limits: &Limits) -> Parsed<RequestHead, HeadError> {
    let mut stack = [httparse::EMPTY_HEADER; STACK_HEADER_SLOTS];
    let mut heap = Vec::new();
    let mut req = httparse::Request::new(header_slots(&mut stack, &mut heap, limits.max_headers));
    let Some(len) = head_length(req.parse(buf))? else { return Ok(None) };
    check_line_endings(&buf[..len])?;
    // RFC 9110 section 9.1: a method is a token. httparse lets more through (`G(T`), which a server
    // behind strata might split differently.
    if !is_token(req.method.unwrap_or_default().as_bytes()) {
        return Err(HeadError::Malformed("invalid method token".into()));
    }
    let head = RequestHead {
        method: req.method.unwrap_or_default().to_string(),
        target: req.path.unwrap_or_default().to_string(),
        version: version_from_minor(req.version.unwrap_or(1)),
        headers: headers_from_parsed(req.headers).map_err(HeadError::Malformed)?,
    };
    Ok(Some((head, len)))
}

/// Parses a response head from the start of `buf`: the head and its length, or `None` if incomplete.
pub fn parse_response(buf: &[u8], limits: &Limits) -> Parsed<ResponseHead, HeadError> {
    let mut stack = [httparse::EMPTY_HEADER; STACK_HEADER_SLOTS];
    let mut heap = Vec::new();
    let mut res = httparse::Response::new(header_slots(&mut stack, &mut heap, limits.max_headers));
    let Some(len) = head_length(res.parse(buf))? else { return Ok(None) };
    if res.code.unwrap_or_default() < 100 {
        return Err(HeadError::Malformed(format!(
            "status code {:03} is not a valid status",
            res.code.unwrap_or_default()
        )));
    }
    let head = ResponseHead {
        version: version_from_minor(res.version.unwrap_or(1)),
        status: res.code.unwrap_or_default(),
        reason: res.reason.unwrap_or_default().to_string(),
        headers: headers_from_parsed(res.headers).map_err(HeadError::Malformed)?,
    };
    Ok(Some((head, len)))
}

/// The length of a complete head from httparse's answer, `None` if incomplete.
fn head_length(parsed: httparse::Result<usize>) -> Result<Option<usize>, HeadError> {
    match parsed {
        Ok(httparse::Status::Complete(len)) => Ok(Some(len)),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(HeadError::TooManyHeaders),
        Err(e) => Err(HeadError::Malformed(e.to_string())),
    }
}

/// Header slots parsed on the stack; a larger `--max-headers` uses the heap.
const STACK_HEADER_SLOTS: usize = 128;

/// `count` httparse slots: on the stack when they fit, else in `heap`.
fn header_slots<'a, 'h>(
    stack: &'a mut [httparse::Header<'h>; STACK_HEADER_SLOTS],
    heap: &'a mut Vec<httparse::Header<'h>>,
    count: usize,
) -> &'a mut [httparse::Header<'h>] {
    if count <= STACK_HEADER_SLOTS {
        &mut stack[..count]
    } else {
        heap.resize(count, httparse::EMPTY_HEADER);
        heap
    }
}

/// Requests must end their lines with CRLF: a bare LF can make two parsers disagree on where a head ends
/// (RFC 9112 section 2.2 allows leniency; a proxy between two parsers should not be lenient).
fn check_line_endings(head: &[u8]) -> Result<(), HeadError> {
    let bare_lf = head.iter().enumerate().any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'));
    if bare_lf {
        return Err(HeadError::Malformed("line ending without CR".into()));
    }
    Ok(())
}

/// Why a message's framing fields cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FramingError {
    /// The framing is ambiguous or malformed: a request gets 400, a response 502.
    Invalid(String),
    /// A transfer coding strata does not implement: a request gets 501 (RFC 9112 section 6.1).
    Unsupported(String),
}

impl std::fmt::Display for FramingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FramingError::Invalid(reason) | FramingError::Unsupported(reason) => f.write_str(reason),
        }
    }
}

impl From<&str> for FramingError {
    fn from(reason: &str) -> Self {
        FramingError::Invalid(reason.to_string())
    }
}

/// The framing of a request body, or why the request is ambiguous and must be refused
/// (RFC 9112 sections 6.1 and 6.3). The only transfer coding accepted is `chunked`, which is all a
/// server must understand; whatever the client's spelling, it is forwarded as `Transfer-Encoding: chunked`.
pub fn request_framing(head: &RequestHead) -> Result<Framing, FramingError> {
    let h = &head.headers;
    if h.contains("transfer-encoding") {
        if h.contains("content-length") {
            return Err("both Transfer-Encoding and Content-Length".into());
        }
        if head.version == Version::Http10 {
            return Err("Transfer-Encoding in an HTTP/1.0 request".into());
        }
        let codings = transfer_codings(h)?;
        if codings.last().map(String::as_str) != Some("chunked") {
            return Err("Transfer-Encoding without chunked last".into());
        }
        if let Some(other) = codings.iter().find(|c| *c != "chunked") {
            return Err(FramingError::Unsupported(format!("transfer coding '{other}' is not supported")));
        }
        return Ok(Framing::Chunked);
    }
    match content_length(h)? {
        Some(0) | None => Ok(Framing::Empty),
        Some(n) => Ok(Framing::Length(n)),
    }
}

/// The framing of a response body to a request with `method` (RFC 9112 section 6.3).
pub fn response_framing(method: &str, head: &ResponseHead) -> Result<Framing, FramingError> {
    if method == "HEAD" || (100..200).contains(&head.status) || head.status == 204 || head.status == 304 {
        return Ok(Framing::Empty);
    }
    let h = &head.headers;
    if h.contains("transfer-encoding") {
        if h.contains("content-length") {
            return Err("both Transfer-Encoding and Content-Length".into());
        }
        let chunked_last = transfer_codings(h)?.last().is_some_and(|c| c == "chunked");
        return Ok(if chunked_last { Framing::Chunked } else { Framing::Close });
    }
    match content_length(h)? {
        Some(0) => Ok(Framing::Empty),
        Some(n) => Ok(Framing::Length(n)),
        None => Ok(Framing::Close),
    }
}

/// The transfer codings of all Transfer-Encoding fields, in order and lower-cased, read as the list
/// RFC 9110 section 5.6.1 defines (empty members skipped). Each must be a token, `chunked` at most once
/// and only last (RFC 9112 section 6.1), and there must be at least one. Parameters are not supported.
/// Forwarding `codings.join(", ")` instead of the sender's spelling means no parser behind strata can
/// read the framing differently.
pub fn transfer_codings(h: &Headers) -> Result<Vec<String>, FramingError> {
    let mut codings = Vec::new();
    for member in list_members(h.get_all("transfer-encoding")) {
        if !is_token(member) {
            return Err("invalid transfer coding".into());
        }
        codings.push(String::from_utf8_lossy(member).to_ascii_lowercase());
    }
    if codings.is_empty() {
        return Err("empty Transfer-Encoding".into());
    }
    if codings[..codings.len() - 1].iter().any(|c| c == "chunked") {
        return Err("chunked applied more than once or not last".into());
    }
    Ok(codings)
}

/// The Content-Length, if any; repeated fields must agree and each must be plain digits.
fn content_length(h: &Headers) -> Result<Option<u64>, FramingError> {
    let mut found: Option<u64> = None;
    for value in h.get_all("content-length").flat_map(|v| v.split(|&b| b == b',')) {
        let value = value.trim_ascii();
        if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
            return Err("invalid Content-Length".into());
        }
        let n: u64 = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok()).ok_or("invalid Content-Length")?;
        if found.is_some_and(|f| f != n) {
            return Err("conflicting Content-Length values".into());
        }
        found = Some(n);
    }
    Ok(found)
}

/// True if the sender of a message with these headers will not keep the connection open.
pub fn wants_close(version: Version, headers: &Headers) -> bool {
    match version {
        Version::Http11 => headers.has_token("connection", "close"),
        Version::Http10 => !headers.has_token("connection", "keep-alive"),
        // HTTP/2 has no connection options; a stream's end never ends the connection.
        Version::Http2 => false,
    }
}

/// Appends each field as `name: value CRLF`.
pub fn write_fields(headers: &Headers, out: &mut Vec<u8>) {
    write_fields_except(headers, "", out);
}

/// Appends each field but those named `skip` as `name: value CRLF`.
pub fn write_fields_except(headers: &Headers, skip: &str, out: &mut Vec<u8>) {
    for (name, value) in headers.0.iter().filter(|(name, _)| !name.eq_ignore_ascii_case(skip)) {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends a request head, with `target` as its request target, to `out`.
pub fn write_request_head(head: &RequestHead, target: &str, out: &mut Vec<u8>) {
    write_request_line(&head.method, target, head.version, out);
    write_fields(&head.headers, out);
    out.extend_from_slice(b"\r\n");
}

/// Appends a response head to `out`.
pub fn write_response_head(head: &ResponseHead, out: &mut Vec<u8>) {
    write_status_line(head.version, head.status, &head.reason, out);
    write_fields(&head.headers, out);
    out.extend_from_slice(b"\r\n");
}

/// Appends `METHOD TARGET VERSION CRLF`; header fields and the empty line follow.
pub fn write_request_line(method: &str, target: &str, version: Version, out: &mut Vec<u8>) {
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.push(b' ');
    out.extend_from_slice(version.as_str().as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `VERSION STATUS REASON CRLF`; header fields and the empty line follow.
pub fn write_status_line(version: Version, status: u16, reason: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(version.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(itoa3(status).as_slice());
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The three digits of a status code (codes are 100..=999 once parsed; others are clamped).
fn itoa3(status: u16) -> [u8; 3] {
    let status = status.clamp(100, 999);
    [b'0' + (status / 100) as u8, b'0' + (status / 10 % 10) as u8, b'0' + (status % 10) as u8]
}

/// Why a body could not be relayed; the caller knows which side each direction is.
#[derive(Debug)]
pub enum BodyError {
    /// Reading from the sender failed.
    Read(io::Error),
    /// The sender closed before the body was complete.
    Truncated,
    /// The sender did not send for a whole read timeout.
    Timeout,
    /// The chunked framing is invalid.
    Malformed(String),
    /// Writing to the receiver failed.
    Write(io::Error),
}

/// Streams one body with `framing` from `src` to `dst`, re-framing chunks canonically and passing trailers
/// on. Returns the number of payload bytes. Memory use is bounded by the relay buffer, whatever the size.
pub async fn copy_body<R, W>(
    src: &mut BufIo<R>,
    dst: &mut W,
    framing: Framing,
    read_timeout: Duration,
) -> Result<u64, BodyError>
where
    R: AsyncRead + AsyncWrite + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut copier = BodyCopier { src, dst, read_timeout };
    let n = match framing {
        Framing::Empty => 0,
        Framing::Length(n) => copier.copy_exact(n).await?,
        Framing::Close => copier.copy_to_end().await?,
        Framing::Chunked => copier.copy_chunked().await?,
    };
    copier.dst.flush().await.map_err(BodyError::Write)?;
    Ok(n)
}

/// A body read into memory by `collect_body`, whole or up to the limit.
#[derive(Debug)]
pub enum Collected {
    /// The whole payload (chunked framing and trailers removed).
    Complete(Vec<u8>),
    /// The body is larger than the limit: the payload read so far, and where the rest stands in the
    /// stream. `forward_partial` sends both on.
    Partial { prefix: Vec<u8>, rest: Rest },
}

/// What is left of a body after `collect_body` stopped at its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rest {
    /// This many bytes of a Content-Length body.
    Length(u64),
    /// A chunked body, inside a chunk of this many unread bytes.
    Chunked { in_chunk: u64 },
    /// Everything until the sender closes.
    Close,
}

/// Reads a body with `framing` into memory if its payload fits in `limit` bytes. A Content-Length body
/// over the limit is not read at all; others are read until the limit shows they do not fit.
pub async fn collect_body<R>(
    src: &mut BufIo<R>,
    framing: Framing,
    limit: usize,
    read_timeout: Duration,
) -> Result<Collected, BodyError>
where
    R: AsyncRead + AsyncWrite + Unpin,
{
    let mut sink = tokio::io::sink();
    let mut reader = BodyCopier { src, dst: &mut sink, read_timeout };
    let mut body = Vec::new();
    match framing {
        Framing::Empty => {}
        Framing::Length(n) if n > limit as u64 => {
            return Ok(Collected::Partial { prefix: body, rest: Rest::Length(n) })
        }
        Framing::Length(n) => reader.take_exact(n, &mut body).await?,
        Framing::Close => loop {
            if reader.src.buffered().is_empty() && !reader.read_more(RELAY_BUF_BYTES).await? {
                break;
            }
            body.extend_from_slice(reader.src.buffered());
            let len = reader.src.buffered().len();
            reader.src.consume(len);
            if body.len() > limit {
                return Ok(Collected::Partial { prefix: body, rest: Rest::Close });
            }
        },
        Framing::Chunked => loop {
            let size = reader.read_chunk_size().await?;
            if size == 0 {
                // Trailers are checked, then dropped: a collected body is sent on with a Content-Length.
                reader.read_trailers().await?;
                break;
            }
            if body.len() as u64 + size > limit as u64 {
                return Ok(Collected::Partial { prefix: body, rest: Rest::Chunked { in_chunk: size } });
            }
            reader.take_exact(size, &mut body).await?;
            reader.read_chunk_end().await?;
        },
    }
    Ok(Collected::Complete(body))
}

/// Sends on a body that `collect_body` found too large: `prefix` (framed as the original was), then the
/// rest straight from `src`. Returns the payload bytes sent, prefix included.
pub async fn forward_partial<R, W>(
    src: &mut BufIo<R>,
    dst: &mut W,
    prefix: &[u8],
    rest: Rest,
    read_timeout: Duration,
) -> Result<u64, BodyError>
where
    R: AsyncRead + AsyncWrite + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut copier = BodyCopier { src, dst, read_timeout };
    let sent = match rest {
        Rest::Length(n) => {
            copier.write(prefix).await?;
            copier.copy_exact(n - prefix.len() as u64).await?
        }
        Rest::Close => {
            copier.write(prefix).await?;
            copier.copy_to_end().await?
        }
        Rest::Chunked { in_chunk } => {
            if !prefix.is_empty() {
                copier.write(format!("{:x}\r\n", prefix.len()).as_bytes()).await?;
                copier.write(prefix).await?;
                copier.write(b"\r\n").await?;
            }
            copier.copy_chunked_from(Some(in_chunk)).await?
        }
    };
    copier.dst.flush().await.map_err(BodyError::Write)?;
    Ok(prefix.len() as u64 + sent)
}

/// A piece of a body whose HTTP/1 framing was taken off, for a receiver that frames it another way.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyPiece {
    /// Payload bytes, owned, so an HTTP/2 receiver can send them on without copying.
    Data(Bytes),
    /// The trailer fields after the last chunk (only those that may be trailers).
    Trailers(Headers),
}

/// Reads a body's payload piece by piece, decoding its framing as it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyDecoder {
    /// This many bytes of a Content-Length body are left.
    Length(u64),
    /// Inside a chunked body, this many bytes of the current chunk are left (0: a chunk-size line is next).
    Chunk(u64),
    /// Everything until the sender closes.
    Close,
    Done,
}

impl BodyDecoder {
    pub fn new(framing: Framing) -> Self {
        match framing {
            Framing::Empty => BodyDecoder::Done,
            Framing::Length(n) => BodyDecoder::Length(n),
            Framing::Chunked => BodyDecoder::Chunk(0),
            Framing::Close => BodyDecoder::Close,
        }
    }

    /// Goes on where `collect_body` stopped.
    pub fn resume(rest: Rest) -> Self {
        match rest {
            Rest::Length(n) => BodyDecoder::Length(n),
            Rest::Chunked { in_chunk } => BodyDecoder::Chunk(in_chunk),
            Rest::Close => BodyDecoder::Close,
        }
    }

    /// The next piece of payload (at most what one read brings), the trailers, or `None` at the end.
    pub async fn next<R>(&mut self, src: &mut BufIo<R>, read_timeout: Duration) -> Result<Option<BodyPiece>, BodyError>
    where
        R: AsyncRead + AsyncWrite + Unpin,
    {
        let mut sink = tokio::io::sink();
        let mut reader = BodyCopier { src, dst: &mut sink, read_timeout };
        loop {
            match *self {
                BodyDecoder::Done | BodyDecoder::Length(0) => {
                    *self = BodyDecoder::Done;
                    return Ok(None);
                }
                BodyDecoder::Length(left) => {
                    let data = reader.take_some(left).await?;
                    *self = BodyDecoder::Length(left - data.len() as u64);
                    return Ok(Some(BodyPiece::Data(data)));
                }
                BodyDecoder::Close => {
                    if reader.src.buffered().is_empty() && !reader.read_more(RELAY_BUF_BYTES).await? {
                        *self = BodyDecoder::Done;
                        return Ok(None);
                    }
                    let data = Bytes::copy_from_slice(reader.src.buffered());
                    reader.src.consume(data.len());
                    return Ok(Some(BodyPiece::Data(data)));
                }
                BodyDecoder::Chunk(0) => {
                    let size = reader.read_chunk_size().await?;
                    if size == 0 {
                        *self = BodyDecoder::Done;
                        let trailers = reader.read_trailers().await?;
                        return Ok((!trailers.0.is_empty()).then_some(BodyPiece::Trailers(trailers)));
                    }
                    *self = BodyDecoder::Chunk(size);
                }
                BodyDecoder::Chunk(left) => {
                    let data = reader.take_some(left).await?;
                    let left = left - data.len() as u64;
                    if left == 0 {
                        reader.read_chunk_end().await?;
                    }
                    *self = BodyDecoder::Chunk(left);
                    return Ok(Some(BodyPiece::Data(data)));
                }
            }
        }
    }
}

/// Writes payload pieces as a chunked body: one chunk per piece, then the last chunk with the trailers.
pub fn encode_chunk(data: &[u8], out: &mut Vec<u8>) {
    if !data.is_empty() {
        out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    }
}

/// The end of a chunked body: the last chunk and the trailer section.
pub fn encode_last_chunk(trailers: &Headers, out: &mut Vec<u8>) {
    out.extend_from_slice(b"0\r\n");
    write_fields(trailers, out);
    out.extend_from_slice(b"\r\n");
}

struct BodyCopier<'a, R, W> {
    src: &'a mut BufIo<R>,
    dst: &'a mut W,
    read_timeout: Duration,
}

impl<R, W> BodyCopier<'_, R, W>
where
    R: AsyncRead + AsyncWrite + Unpin,
    W: AsyncWrite + Unpin,
{
    /// Reads more into the source buffer (up to `limit` bytes buffered). False at end of stream.
    async fn read_more(&mut self, limit: usize) -> Result<bool, BodyError> {
        self.src.reserve_read(limit);
        match timeout(self.read_timeout, self.src.fill_more(limit)).await {
            Err(_) => Err(BodyError::Timeout),
            Ok(Err(e)) => Err(BodyError::Read(e)),
            Ok(Ok(n)) => Ok(n > 0),
        }
    }

    /// Makes sure something is buffered; `Truncated` at end of stream.
    async fn need(&mut self) -> Result<(), BodyError> {
        if self.src.buffered().is_empty() && !self.read_more(RELAY_BUF_BYTES).await? {
            return Err(BodyError::Truncated);
        }
        Ok(())
    }

    async fn write(&mut self, data: &[u8]) -> Result<(), BodyError> {
        self.dst.write_all(data).await.map_err(BodyError::Write)
    }

    /// Passes `n` buffered-or-future bytes straight from the source buffer to the destination.
    async fn copy_exact(&mut self, mut n: u64) -> Result<u64, BodyError> {
        let total = n;
        while n > 0 {
            self.need().await?;
            let take = (self.src.buffered().len() as u64).min(n) as usize;
            self.dst.write_all(&self.src.buffered()[..take]).await.map_err(BodyError::Write)?;
            self.src.consume(take);
            n -= take as u64;
        }
        Ok(total)
    }

    /// Reads what is buffered (reading first if nothing is), up to `max` bytes.
    async fn take_some(&mut self, max: u64) -> Result<Bytes, BodyError> {
        self.need().await?;
        let take = (self.src.buffered().len() as u64).min(max) as usize;
        let data = Bytes::copy_from_slice(&self.src.buffered()[..take]);
        self.src.consume(take);
        Ok(data)
    }

    /// Reads exactly `n` payload bytes into `out`.
    async fn take_exact(&mut self, mut n: u64, out: &mut Vec<u8>) -> Result<(), BodyError> {
        while n > 0 {
            self.need().await?;
            let take = (self.src.buffered().len() as u64).min(n) as usize;
            out.extend_from_slice(&self.src.buffered()[..take]);
            self.src.consume(take);
            n -= take as u64;
        }
        Ok(())
    }

    async fn copy_to_end(&mut self) -> Result<u64, BodyError> {
        let mut total = 0u64;
        loop {
            if self.src.buffered().is_empty() && !self.read_more(RELAY_BUF_BYTES).await? {
                return Ok(total);
            }
            let len = self.src.buffered().len();
            self.dst.write_all(self.src.buffered()).await.map_err(BodyError::Write)?;
            self.src.consume(len);
            total += len as u64;
        }
    }

    /// Reads one CRLF-terminated line (without the CRLF) of at most `MAX_CHUNK_LINE_BYTES`, consuming it.
    /// A bare LF or CR anywhere in it is an error: RFC 9112 section 2.2 lets a recipient accept a bare LF,
    /// but a proxy that did would find a different line end than a strict server behind it.
    async fn read_line(&mut self) -> Result<Vec<u8>, BodyError> {
        loop {
            let window = &self.src.buffered()[..self.src.buffered().len().min(MAX_CHUNK_LINE_BYTES + 2)];
            if let Some(lf) = window.iter().position(|&b| b == b'\n') {
                let Some(end) = lf.checked_sub(1).filter(|&cr| window[cr] == b'\r') else {
                    return Err(BodyError::Malformed("line ending without CR in a chunked body".into()));
                };
                if window[..end].contains(&b'\r') {
                    return Err(BodyError::Malformed("CR without LF in a chunked body".into()));
                }
                let line = window[..end].to_vec();
                self.src.consume(lf + 1);
                return Ok(line);
            }
            if self.src.buffered().len() >= MAX_CHUNK_LINE_BYTES {
                return Err(BodyError::Malformed("chunk line too long or without CRLF".into()));
            }
            if !self.read_more(RELAY_BUF_BYTES).await? {
                return Err(BodyError::Truncated);
            }
        }
    }

    async fn copy_chunked(&mut self) -> Result<u64, BodyError> {
        self.copy_chunked_from(None).await
    }

    /// Reads a chunk-size line, consuming it.
    async fn read_chunk_size(&mut self) -> Result<u64, BodyError> {
        let line = self.read_line().await?;
        parse_chunk_size(&line).map_err(BodyError::Malformed)
    }

    /// Consumes the CRLF that ends a chunk's data.
    async fn read_chunk_end(&mut self) -> Result<(), BodyError> {
        if !self.read_line().await?.is_empty() {
            return Err(BodyError::Malformed("chunk data not followed by CRLF".into()));
        }
        Ok(())
    }

    /// Copies chunks until the last one and the trailers; `current` is the size of a chunk whose size line
    /// was already consumed (when resuming after `collect_body`).
    async fn copy_chunked_from(&mut self, mut current: Option<u64>) -> Result<u64, BodyError> {
        let mut total = 0u64;
        loop {
            let size = match current.take() {
                Some(size) => size,
                None => self.read_chunk_size().await?,
            };
            if size == 0 {
                break;
            }
            self.write(format!("{size:x}\r\n").as_bytes()).await?;
            total += self.copy_exact(size).await?;
            self.read_chunk_end().await?;
            self.write(b"\r\n").await?;
        }
        let mut tail = b"0\r\n".to_vec();
        write_fields(&self.read_trailers().await?, &mut tail);
        tail.extend_from_slice(b"\r\n");
        self.write(&tail).await?;
        Ok(total)
    }

    /// Reads the trailer section after the last chunk (RFC 9112 section 7.1.2), up to its empty line.
    /// Trailer fields get the checks of header fields (a token name right before the colon, no
    /// folding, no control characters); a malformed one is an error. Fields that must not be trailers
    /// (RFC 9110 section 6.5.1: framing, routing, authentication, ...) are dropped.
    async fn read_trailers(&mut self) -> Result<Headers, BodyError> {
        let mut section = Vec::new();
        loop {
            let line = self.read_line().await?;
            if line.is_empty() {
                break;
            }
            section.extend_from_slice(&line);
            section.extend_from_slice(b"\r\n");
            if section.len() > MAX_TRAILER_BYTES {
                return Err(BodyError::Malformed("trailer section too large".into()));
            }
        }
        section.extend_from_slice(b"\r\n");
        parse_trailers(&section).map_err(BodyError::Malformed)
    }
}

/// Largest trailer section accepted, in bytes.
const MAX_TRAILER_BYTES: usize = 64 * 1024;

/// Most trailer fields accepted.
const MAX_TRAILER_FIELDS: usize = 64;

/// Parses a trailer section (its field lines and the empty line) and keeps the fields that may be
/// trailers.
pub fn parse_trailers(section: &[u8]) -> Result<Headers, String> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_TRAILER_FIELDS];
    let fields = match httparse::parse_headers(section, &mut slots) {
        Ok(httparse::Status::Complete((_, fields))) => fields,
        Ok(httparse::Status::Partial) => return Err("incomplete trailer section".into()),
        Err(httparse::Error::TooManyHeaders) => return Err("too many trailer fields".into()),
        Err(e) => return Err(format!("invalid trailer field: {e}")),
    };
    let mut trailers = headers_from_parsed(fields)?;
    trailers.0.retain(|(name, _)| {
        let allowed = is_allowed_in_trailers(name);
        if !allowed {
            tracing::debug!(field = %name, "dropping a field that must not be a trailer");
        }
        allowed
    });
    Ok(trailers)
}

/// Parses a chunk-size line (without its CRLF): hex digits, then chunk extensions, which must follow
/// RFC 9112 section 7.1.1 exactly and are otherwise ignored.
pub fn parse_chunk_size(line: &[u8]) -> Result<u64, String> {
    let digits_end = line.iter().position(|b| !b.is_ascii_hexdigit()).unwrap_or(line.len());
    let (digits, extensions) = line.split_at(digits_end);
    if digits.is_empty() || digits.len() > 15 {
        return Err("invalid chunk size".into());
    }
    check_chunk_extensions(extensions)?;
    let digits = std::str::from_utf8(digits).map_err(|_| "invalid chunk size")?;
    u64::from_str_radix(digits, 16).map_err(|_| "invalid chunk size".into())
}

/// Checks `*( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] )` (RFC 9112 section 7.1.1).
/// Anything else (a bare CR or LF, a control character, a stray byte) makes the line invalid, so strata
/// and the server behind it cannot find different chunk boundaries.
fn check_chunk_extensions(mut rest: &[u8]) -> Result<(), String> {
    let invalid = || "invalid chunk extension".to_string();
    let skip_bws = |s: &[u8]| -> usize { s.iter().take_while(|&&b| b == b' ' || b == b'\t').count() };
    let token_len = |s: &[u8]| -> usize { s.iter().take_while(|&&b| is_token(&[b])).count() };
    while !rest.is_empty() {
        rest = &rest[skip_bws(rest)..];
        let Some(after_semicolon) = rest.strip_prefix(b";") else { return Err(invalid()) };
        rest = &after_semicolon[skip_bws(after_semicolon)..];
        let name = token_len(rest);
        if name == 0 {
            return Err(invalid());
        }
        rest = &rest[name..];
        let before_value = &rest[skip_bws(rest)..];
        let Some(after_equals) = before_value.strip_prefix(b"=") else { continue };
        rest = &after_equals[skip_bws(after_equals)..];
        let value = match rest.first() {
            Some(b'"') => quoted_string_len(rest).ok_or_else(invalid)?,
            _ => token_len(rest),
        };
        if value == 0 {
            return Err(invalid());
        }
        rest = &rest[value..];
    }
    Ok(())
}

/// The length of the quoted-string at the start of `s` (RFC 9110 section 5.6.4), quotes included.
fn quoted_string_len(s: &[u8]) -> Option<usize> {
    let is_qdtext =
        |b: u8| b == b'\t' || b == b' ' || b == 0x21 || (0x23..=0x7e).contains(&b) && b != b'\\' || b >= 0x80;
    let is_escapable = |b: u8| b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80;
    let mut i = 1;
    while i < s.len() {
        match s[i] {
            b'"' => return Some(i + 1),
            b'\\' if s.get(i + 1).is_some_and(|&b| is_escapable(b)) => i += 2,
            b if is_qdtext(b) => i += 1,
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests;
