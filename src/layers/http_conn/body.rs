//! Bodies at the seam: what is left of an HTTP/1 body in its sender's stream (`Remaining`), and the pump
//! that moves a body from one wire version to another (`Source` to `Sink`), piece by piece with its
//! trailers, holding at most one piece in memory. HTTP/1 to HTTP/1 keeps the codec's own copy loop.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::time::timeout;

use crate::addon::BodyTap;
use crate::error::{ProtocolError, Side};
use crate::http::fields::is_allowed_in_trailers;
use crate::http::message::Headers;
use crate::io::splice::{splice_exact, SpliceError};
use crate::io::{h2_io_error, tcp_socket, BoxStream, BufIo};
use crate::layers::http1::codec::{
    self, collect_body, copy_body, forward_partial, BodyDecoder, BodyError, BodyPiece, Collected, Framing, HeadError,
    Rest,
};

/// Content-Length bodies at least this large go by splice(2) when both ends are plain TCP and nothing taps
/// them; below it, setting up the pipe costs more than the copies it saves.
const SPLICE_MIN_BYTES: u64 = 256 * 1024;

/// True if both streams are plain TCP sockets, which splice(2) can move bytes between.
fn spliceable(src: &BufIo<BoxStream>, dst: &BufIo<BoxStream>) -> bool {
    tcp_socket(src.get_ref()).is_some() && tcp_socket(dst.get_ref()).is_some()
}

/// Sends a body of `n` bytes from `src` to `dst`: what is buffered already by a write, the rest by splice(2).
async fn splice_body(
    src: &mut BufIo<BoxStream>,
    dst: &mut BufIo<BoxStream>,
    n: u64,
    read_timeout: Duration,
) -> Result<u64, BodyError> {
    let buffered = (src.buffered().len() as u64).min(n) as usize;
    dst.write_all(&src.buffered()[..buffered]).await.map_err(BodyError::Write)?;
    src.consume(buffered);
    let (Some(from), Some(to)) = (tcp_socket(src.get_ref()), tcp_socket(dst.get_ref())) else {
        unreachable!("checked by spliceable")
    };
    splice_exact(from, to, n - buffered as u64, read_timeout).await.map_err(|e| match e {
        SpliceError::Read(e) => BodyError::Read(e),
        SpliceError::Truncated => BodyError::Truncated,
        SpliceError::Timeout => BodyError::Timeout,
        SpliceError::Write(e) => BodyError::Write(e),
    })?;
    Ok(n)
}

/// What is left of an HTTP/1 body in its sender's stream.
#[derive(Debug)]
pub enum Remaining {
    /// Nothing has been read yet; it is framed like this.
    Unread(Framing),
    /// `collect` stopped at the limit: this prefix was read, the rest is still in the stream.
    Partial { prefix: Vec<u8>, rest: Rest },
    /// All of it has been read (into memory, or dropped).
    Done,
    /// It was streamed to a server: gone, and not to be sent again.
    Sent,
}

impl Remaining {
    /// Reads the body into memory if it fits in `limit`: `Some(body)`, or `None` when it is larger (what
    /// was read stays here, to be sent on before the rest).
    pub(super) async fn collect(
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

    /// Sends what is left to `dst` with the same framing; the payload bytes sent, if any were left. With a
    /// tap, the body goes piece by piece through `pump` (re-chunked as it was chunked), so that the tap
    /// sees the payload; without one, through the codec's copy loop.
    pub(super) async fn relay(
        &mut self,
        src: &mut BufIo<BoxStream>,
        dst: &mut BufIo<BoxStream>,
        read_timeout: Duration,
        tap: Option<&mut BodyTap>,
    ) -> Result<Option<u64>, BodyError> {
        let sent = match std::mem::replace(self, Remaining::Sent) {
            Remaining::Done | Remaining::Unread(Framing::Empty) => {
                *self = Remaining::Done;
                None
            }
            Remaining::Sent => None,
            remaining @ (Remaining::Unread(_) | Remaining::Partial { .. }) if tap.is_some() => {
                let chunked = matches!(
                    remaining,
                    Remaining::Unread(Framing::Chunked) | Remaining::Partial { rest: Rest::Chunked { .. }, .. }
                );
                let mut sink = Sink::Http1 { io: dst, chunked };
                Some(pump(&mut remaining.into_source(src), &mut sink, read_timeout, tap).await?)
            }
            Remaining::Unread(Framing::Length(n)) if n >= SPLICE_MIN_BYTES && spliceable(src, dst) => {
                Some(splice_body(src, dst, n, read_timeout).await?)
            }
            Remaining::Unread(framing) => Some(copy_body(src, dst, framing, read_timeout).await?),
            Remaining::Partial { prefix, rest } => Some(forward_partial(src, dst, &prefix, rest, read_timeout).await?),
        };
        dst.flush().await.map_err(BodyError::Write)?;
        Ok(sent)
    }

    /// Reads and drops what is left.
    pub(super) async fn drain(&mut self, src: &mut BufIo<BoxStream>, read_timeout: Duration) -> Result<(), BodyError> {
        let mut sink = tokio::io::sink();
        match std::mem::replace(self, Remaining::Done) {
            Remaining::Done | Remaining::Sent => Ok(()),
            Remaining::Unread(framing) => copy_body(src, &mut sink, framing, read_timeout).await.map(drop),
            Remaining::Partial { rest, .. } => forward_partial(src, &mut sink, &[], rest, read_timeout).await.map(drop),
        }
    }
}

impl Remaining {
    /// What is left, as a source of pieces for a receiver of another version.
    pub(super) fn into_source(self, io: &mut BufIo<BoxStream>) -> Source<'_> {
        let (decoder, prefix) = match self {
            Remaining::Unread(framing) => (BodyDecoder::new(framing), None),
            Remaining::Partial { prefix, rest } => (BodyDecoder::resume(rest), Some(prefix)),
            Remaining::Done | Remaining::Sent => (BodyDecoder::Done, None),
        };
        Source::Http1 { io, decoder, prefix }
    }
}

/// Where the pieces of a body come from when it crosses versions.
pub(super) enum Source<'s> {
    Http1 {
        io: &'s mut BufIo<BoxStream>,
        decoder: BodyDecoder,
        prefix: Option<Vec<u8>>,
    },
    /// An HTTP/2 stream; `prefix` was read before, and `trailers` too if the stream had already ended.
    Http2 {
        recv: &'s mut h2::RecvStream,
        prefix: Option<Vec<u8>>,
        trailers: Option<Headers>,
    },
    /// A body already in memory.
    Whole {
        data: Option<Vec<u8>>,
        trailers: Option<Headers>,
    },
}

impl Source<'_> {
    /// The next piece: payload, then the trailers (if any); `None` at the end.
    pub(super) async fn next(&mut self, read_timeout: Duration) -> Result<Option<BodyPiece>, BodyError> {
        match self {
            Source::Http1 { prefix: prefix @ Some(_), .. } | Source::Http2 { prefix: prefix @ Some(_), .. } => {
                Ok(prefix.take().map(|p| BodyPiece::Data(Bytes::from(p))))
            }
            Source::Http1 { io, decoder, .. } => decoder.next(io, read_timeout).await,
            Source::Http2 { trailers: trailers @ Some(_), .. } => Ok(trailers.take().map(BodyPiece::Trailers)),
            Source::Whole { data, trailers } => match data.take().filter(|d| !d.is_empty()) {
                Some(data) => Ok(Some(BodyPiece::Data(Bytes::from(data)))),
                None => Ok(trailers.take().map(BodyPiece::Trailers)),
            },
            Source::Http2 { recv, .. } => next_http2_piece(recv, read_timeout).await,
        }
    }
}

/// The next piece of an HTTP/2 body; flow-control window is given back as data is read.
pub(super) async fn next_http2_piece(
    recv: &mut h2::RecvStream,
    read_timeout: Duration,
) -> Result<Option<BodyPiece>, BodyError> {
    if !recv.is_end_stream() {
        match timeout(read_timeout, recv.data()).await.map_err(|_| BodyError::Timeout)? {
            Some(Ok(data)) => {
                let _ = recv.flow_control().release_capacity(data.len());
                return Ok(Some(BodyPiece::Data(data)));
            }
            Some(Err(e)) => return Err(BodyError::Read(h2_io_error(e))),
            None => {}
        }
    }
    match timeout(read_timeout, recv.trailers()).await.map_err(|_| BodyError::Timeout)? {
        Ok(Some(map)) => Ok(Some(BodyPiece::Trailers(trailer_fields(&map)))),
        Ok(None) => Ok(None),
        Err(e) => Err(BodyError::Read(h2_io_error(e))),
    }
}

/// An HTTP/2 body read into memory by `collect_http2`.
pub(super) struct Kept {
    /// The payload read: all of it if `complete`, else the prefix read before the limit was passed.
    pub data: Vec<u8>,
    pub complete: bool,
    pub trailers: Option<Headers>,
}

/// Reads an HTTP/2 body into memory while it fits in `limit`.
pub(super) async fn collect_http2(
    recv: &mut h2::RecvStream,
    limit: usize,
    read_timeout: Duration,
) -> Result<Kept, BodyError> {
    let mut kept = Kept { data: Vec::new(), complete: false, trailers: None };
    while let Some(piece) = next_http2_piece(recv, read_timeout).await? {
        match piece {
            BodyPiece::Data(data) => kept.data.extend_from_slice(&data),
            BodyPiece::Trailers(fields) => kept.trailers = Some(fields),
        }
        if kept.data.len() > limit {
            return Ok(kept);
        }
    }
    kept.complete = true;
    Ok(kept)
}

/// Where the pieces of a body go when it crosses versions.
pub(super) enum Sink<'s> {
    /// An HTTP/1 stream: raw (the length was announced) or chunked.
    Http1 {
        io: &'s mut BufIo<BoxStream>,
        chunked: bool,
    },
    Http2 {
        send: &'s mut h2::SendStream<Bytes>,
        read_timeout: Duration,
    },
}

impl Sink<'_> {
    async fn write(&mut self, data: Bytes) -> Result<(), BodyError> {
        match self {
            Sink::Http1 { io, chunked: true } => {
                let mut out = Vec::with_capacity(data.len() + 16);
                codec::encode_chunk(&data, &mut out);
                io.write_all(&out).await.map_err(BodyError::Write)
            }
            Sink::Http1 { io, chunked: false } => io.write_all(&data).await.map_err(BodyError::Write),
            Sink::Http2 { send, read_timeout } => send_flow_controlled(send, data, *read_timeout).await,
        }
    }

    /// Ends the body, with the trailers where the receiver can take them.
    async fn finish(&mut self, trailers: Option<Headers>) -> Result<(), BodyError> {
        match self {
            Sink::Http1 { io, chunked } => {
                if *chunked {
                    let mut out = Vec::new();
                    codec::encode_last_chunk(&trailers.unwrap_or_default(), &mut out);
                    io.write_all(&out).await.map_err(BodyError::Write)?;
                }
                io.flush().await.map_err(BodyError::Write)
            }
            Sink::Http2 { send, .. } => match trailers.map(|t| header_map(&t)).filter(|map| !map.is_empty()) {
                Some(map) => send.send_trailers(map).map_err(|e| BodyError::Write(h2_io_error(e))),
                None => send.send_data(Bytes::new(), true).map_err(|e| BodyError::Write(h2_io_error(e))),
            },
        }
    }
}

/// Moves a body from `source` to `sink`, trailers included, showing each piece to `tap` first. Returns
/// the payload bytes moved.
pub(super) async fn pump(
    source: &mut Source<'_>,
    sink: &mut Sink<'_>,
    read_timeout: Duration,
    mut tap: Option<&mut BodyTap>,
) -> Result<u64, BodyError> {
    let mut moved = 0u64;
    let mut trailers = None;
    while let Some(piece) = source.next(read_timeout).await? {
        match piece {
            BodyPiece::Data(data) => {
                moved += data.len() as u64;
                if let Some(tap) = tap.as_deref_mut() {
                    tap.chunk(&data).await;
                }
                sink.write(data).await?;
            }
            BodyPiece::Trailers(fields) => {
                if let Some(tap) = tap.as_deref_mut() {
                    tap.trailers(&fields).await;
                }
                trailers = Some(fields);
            }
        }
    }
    sink.finish(trailers).await?;
    Ok(moved)
}

/// Sends `data` on an HTTP/2 stream as its flow-control window allows: a slow receiver holds the sender
/// back instead of strata buffering for it.
pub(super) async fn send_flow_controlled(
    send: &mut h2::SendStream<Bytes>,
    mut data: Bytes,
    read_timeout: Duration,
) -> Result<(), BodyError> {
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        let window = timeout(read_timeout, std::future::poll_fn(|cx| send.poll_capacity(cx)))
            .await
            .map_err(|_| BodyError::Timeout)?;
        let granted = match window {
            Some(Ok(n)) => n,
            Some(Err(e)) => return Err(BodyError::Write(h2_io_error(e))),
            None => return Err(BodyError::Write(io::ErrorKind::ConnectionReset.into())),
        };
        let piece = data.split_to(granted.min(data.len()));
        send.send_data(piece, false).map_err(|e| BodyError::Write(h2_io_error(e)))?;
    }
    Ok(())
}

/// Trailer fields from an HTTP/2 HEADERS frame, keeping only those that may be trailers.
pub(super) fn trailer_fields(map: &http::HeaderMap) -> Headers {
    let mut fields = Headers::default();
    for (name, value) in map {
        if is_allowed_in_trailers(name.as_str()) {
            fields.append(name.as_str(), value.as_bytes());
        }
    }
    fields
}

/// Header fields as an HTTP/2 header map; names are lower-cased, fields HTTP/2 cannot carry are dropped.
pub(super) fn header_map(fields: &Headers) -> http::HeaderMap {
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

pub(super) fn response_head_error(e: HeadError, host: &str) -> ProtocolError {
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

pub(super) fn request_body_error(e: BodyError, host: &str) -> ProtocolError {
    match e {
        BodyError::Read(e) => ProtocolError::ClientIo(e),
        BodyError::Truncated => ProtocolError::ClientIo(std::io::ErrorKind::UnexpectedEof.into()),
        BodyError::Timeout => ProtocolError::Timeout { side: Side::Client, step: "request body" },
        BodyError::Malformed(reason) => ProtocolError::BadRequest(reason),
        BodyError::Write(e) => ProtocolError::server_io(host, e),
    }
}

pub(super) fn response_body_error(e: BodyError, host: &str) -> ProtocolError {
    match e {
        BodyError::Read(e) => ProtocolError::server_io(host, e),
        BodyError::Truncated => ProtocolError::server_io(host, std::io::ErrorKind::UnexpectedEof.into()),
        BodyError::Timeout => ProtocolError::Timeout { side: Side::Server, step: "response body" },
        BodyError::Malformed(reason) => ProtocolError::BadResponse { host: host.to_string(), reason },
        BodyError::Write(e) => ProtocolError::ClientIo(e),
    }
}
