//! Byte-level plumbing shared by all layers: the boxed stream type and `BufIo`, a buffered stream that
//! never loses bytes.
//!
//! `BufIo` is how a layer peeks: bytes read while deciding (a ClientHello, a request head, what followed a
//! CONNECT) stay in its buffer, and the next reader, whether a parser or a layer that wraps the stream,
//! gets them first through `AsyncRead`. Memory is bounded: the buffer starts empty, grows only as far as
//! its caller allows, and is released while a connection idles.

pub mod splice;

use std::any::Any;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// Anything a layer can read from and write to: a TCP socket, a TLS session, a `BufIo` over either.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static {
    /// The stream as its own type, for `tcp_socket`.
    fn as_any(&self) -> &dyn Any;
}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static> Stream for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A type-erased stream, so layers can stack without their types nesting.
pub type BoxStream = Box<dyn Stream>;

/// The TCP socket a boxed stream is, if it is a plain one (not TLS, not a tunnel): what splice(2) needs.
pub fn tcp_socket(stream: &BoxStream) -> Option<&tokio::net::TcpStream> {
    // Through the box: `Box<dyn Stream>` is a `Stream` too, and would answer for itself.
    let inner: &dyn Stream = &**stream;
    inner.as_any().downcast_ref()
}

/// What an incremental parser returns: the parsed value and how many bytes it used, `None` when the
/// input is incomplete, or the error that makes it invalid.
pub type Parsed<T, E> = Result<Option<(T, usize)>, E>;

/// Size of the first allocation of an empty buffer: enough for a typical head in one read.
const FIRST_READ_BYTES: usize = 4 * 1024;

/// Buffer size for relaying bodies: large reads keep the syscall count per megabyte low.
pub const RELAY_BUF_BYTES: usize = 64 * 1024;

/// A stream with a read buffer whose contents can be inspected, parsed and consumed in place.
pub struct BufIo<S> {
    inner: S,
    buf: Vec<u8>,
    pos: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> BufIo<S> {
    pub fn new(inner: S) -> Self {
        BufIo { inner, buf: Vec::new(), pos: 0 }
    }

    /// The bytes read but not yet consumed.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Marks `n` buffered bytes as used.
    pub fn consume(&mut self, n: usize) {
        self.pos += n;
        debug_assert!(self.pos <= self.buf.len());
        if self.pos == self.buf.len() {
            self.pos = 0;
            self.buf.clear();
        }
    }

    /// Makes room for reads of up to `bytes` at a time (used when relaying bodies).
    pub fn reserve_read(&mut self, bytes: usize) {
        if self.buf.capacity() < bytes {
            self.buf.reserve_exact(bytes - self.buf.len());
        }
    }

    /// Frees the buffer's memory if it holds nothing: called before a connection idles.
    pub fn release_if_empty(&mut self) {
        if self.buffered().is_empty() {
            self.buf = Vec::new();
            self.pos = 0;
        }
    }

    /// Reads more bytes after those already buffered, letting the buffer grow to at most `limit` bytes
    /// (at least one byte of room is always made). Returns how many were read; 0 means end of stream.
    pub async fn fill_more(&mut self, limit: usize) -> io::Result<usize> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let len = self.buf.len();
        let grown = match self.buf.capacity() {
            0 => FIRST_READ_BYTES,
            cap if cap == len => cap * 2,
            cap => cap,
        };
        let target = grown.min(limit).max(len + 1);
        if target > self.buf.capacity() {
            self.buf.reserve_exact(target - len);
        }
        // `read_buf` fills the spare capacity without zeroing it first.
        self.inner.read_buf(&mut self.buf).await
    }

    /// Waits for the next bytes of an idle stream without holding a buffer while waiting: the read goes
    /// to a stack array that exists only during each poll, and only what arrived is copied to the heap.
    /// This is what keeps an idle keep-alive connection small. Returns false at end of stream.
    pub async fn fill_idle(&mut self) -> io::Result<bool> {
        if !self.buffered().is_empty() {
            return Ok(true);
        }
        std::future::poll_fn(|cx| {
            let mut stack = [0u8; FIRST_READ_BYTES];
            let mut read = ReadBuf::new(&mut stack);
            ready!(Pin::new(&mut self.inner).poll_read(cx, &mut read))?;
            self.buf.clear();
            self.pos = 0;
            self.buf.extend_from_slice(read.filled());
            Poll::Ready(Ok(!read.filled().is_empty()))
        })
        .await
    }

    /// True if an idle stream can still carry a request: nothing has arrived unasked, it has not been
    /// closed and it has not failed. Checked without waiting; a server that closed an idle connection
    /// is seen here before strata writes a request into it.
    pub fn is_idle_usable(&mut self) -> bool {
        if !self.buffered().is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut probe = [0u8; 64];
        let mut read = ReadBuf::new(&mut probe);
        // Ready means end of stream, an error, or bytes no request asked for: all make it unusable.
        Pin::new(&mut self.inner).poll_read(&mut cx, &mut read).is_pending()
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for BufIo<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let buffered = self.buffered();
        if !buffered.is_empty() {
            let n = buffered.len().min(out.remaining());
            out.put_slice(&buffered[..n]);
            self.consume(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, out)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for BufIo<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = ready!(Pin::new(&mut self.inner).poll_shutdown(cx));
        Poll::Ready(r)
    }
}

/// An error of the `h2` crate as the I/O error it amounts to: the connection went away (broken pipe), or the
/// peer broke off the stream or the protocol (reset). Both are ordinary endings, not strata's failures.
pub fn h2_io_error(e: h2::Error) -> io::Error {
    let kind = if e.is_io() || e.is_go_away() { io::ErrorKind::BrokenPipe } else { io::ErrorKind::ConnectionReset };
    io::Error::new(kind, e.to_string())
}

/// A stream whose "closed without TLS close_notify" read error counts as a plain end of stream. Used by
/// raw relays: many servers close TLS that way, and a relay has no message framing that truncation
/// could fake (HTTP bodies are framed and checked elsewhere).
pub struct LenientEof<S>(pub S);

impl<S: AsyncRead + Unpin> AsyncRead for LenientEof<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match ready!(Pin::new(&mut self.0).poll_read(cx, out)) {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Poll::Ready(Ok(())),
            other => Poll::Ready(other),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for LenientEof<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn buffered_bytes_are_read_first_and_never_lost() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut io = BufIo::new(a);
        b.write_all(b"hello world").await.unwrap();
        while io.buffered().len() < 11 {
            io.fill_more(1024).await.unwrap();
        }
        assert_eq!(io.buffered(), b"hello world");
        io.consume(6);
        b.write_all(b"!").await.unwrap();
        drop(b);
        let mut rest = Vec::new();
        io.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"world!");
    }

    #[tokio::test]
    async fn idle_stream_is_unusable_once_the_peer_closed_or_spoke() {
        let (a, b) = tokio::io::duplex(64);
        let mut io = BufIo::new(a);
        assert!(io.is_idle_usable());
        drop(b);
        assert!(!io.is_idle_usable());

        let (a, mut b) = tokio::io::duplex(64);
        let mut io = BufIo::new(a);
        b.write_all(b"HTTP/1.1 408 Request Timeout\r\n\r\n").await.unwrap();
        assert!(!io.is_idle_usable());
    }

    #[tokio::test]
    async fn fill_more_respects_the_limit() {
        let (a, mut b) = tokio::io::duplex(1 << 16);
        b.write_all(&[7u8; 10_000]).await.unwrap();
        let mut io = BufIo::new(a);
        while io.buffered().len() < 100 {
            io.fill_more(100).await.unwrap();
        }
        assert_eq!(io.buffered().len(), 100);
        // Always room for one more byte, so a caller can see that the limit was passed.
        io.fill_more(100).await.unwrap();
        assert_eq!(io.buffered().len(), 101);
    }
}
