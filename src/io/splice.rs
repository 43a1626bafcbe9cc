//! splice(2) for bodies that nothing in strata needs to see: the bytes go from one TCP socket to another
//! through a pipe inside the kernel, never copied into the process. (strata is Linux-only: transparent mode
//! and this.) For a stream that is not a plain TCP socket (TLS, a tunnel), the caller copies as usual.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::timeout;

/// The pipe size asked for: each round moves up to this much (the kernel may grant less).
const PIPE_BYTES: usize = 1 << 20;

/// Why a splice stopped.
#[derive(Debug)]
pub enum SpliceError {
    /// Reading from the source failed.
    Read(io::Error),
    /// The source ended before `n` bytes.
    Truncated,
    /// The source sent nothing for the read timeout.
    Timeout,
    /// Writing to the destination failed.
    Write(io::Error),
}

/// Moves exactly `n` bytes from `src` to `dst`, waiting at most `read_timeout` for each read. The pipe is
/// emptied into `dst` after every read, so a read never finds it full (a full pipe would look like a socket
/// with nothing to read).
pub async fn splice_exact(
    src: &TcpStream,
    dst: &TcpStream,
    mut n: u64,
    read_timeout: Duration,
) -> Result<(), SpliceError> {
    let (pipe_read, pipe_write, capacity) = pipe().map_err(SpliceError::Read)?;
    let (src_fd, dst_fd) = (src.as_raw_fd(), dst.as_raw_fd());
    while n > 0 {
        let want = (n as usize).min(capacity);
        let read = src.async_io(Interest::READABLE, || splice(src_fd, pipe_write.as_raw_fd(), want));
        let mut in_pipe = match timeout(read_timeout, read).await {
            Err(_) => return Err(SpliceError::Timeout),
            Ok(Err(e)) => return Err(SpliceError::Read(e)),
            Ok(Ok(0)) => return Err(SpliceError::Truncated),
            Ok(Ok(moved)) => moved,
        };
        n -= in_pipe as u64;
        while in_pipe > 0 {
            let write = dst.async_io(Interest::WRITABLE, || splice(pipe_read.as_raw_fd(), dst_fd, in_pipe));
            match write.await {
                Ok(0) => return Err(SpliceError::Write(io::ErrorKind::WriteZero.into())),
                Ok(moved) => in_pipe -= moved,
                Err(e) => return Err(SpliceError::Write(e)),
            }
        }
    }
    Ok(())
}

/// A non-blocking pipe, as large as the system lets it be: (read end, write end, capacity).
fn pipe() -> io::Result<(OwnedFd, OwnedFd, usize)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both are open descriptors that nothing else owns.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // A larger pipe means fewer rounds; failing that (a limit on pipe sizes), the default is used.
    // SAFETY: fcntl on a descriptor this function owns.
    let granted = unsafe {
        libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BYTES as libc::c_int);
        libc::fcntl(write.as_raw_fd(), libc::F_GETPIPE_SZ)
    };
    let capacity = if granted > 0 { granted as usize } else { 64 * 1024 };
    Ok((read, write, capacity))
}

/// One non-blocking splice of up to `len` bytes; WouldBlock when the socket side is not ready.
fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    let flags = libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK;
    // SAFETY: plain descriptors and null offsets (both ends are a socket or a pipe).
    let moved = unsafe { libc::splice(from, std::ptr::null_mut(), to, std::ptr::null_mut(), len, flags) };
    if moved < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(moved as usize)
    }
}
