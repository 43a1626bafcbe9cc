//! The two error types of strata.
//!
//! `ProtocolError` ends a flow or a connection; every variant carries what a human needs to understand it
//! (host, side, step, limit). `layers::http::error_response` turns it into what the client sees.
//! `ConfigError` is a startup problem: one line on stderr and exit code 2.

use std::fmt;
use std::io;

/// Which end of a proxied connection something happened on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The peer that connected to us.
    Client,
    /// The peer we connected to.
    Server,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Client => "client",
            Side::Server => "server",
        })
    }
}

/// Anything that ends a flow or a connection.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The client sent something that is not valid HTTP/1 (or is ambiguous); answered with 400.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The client's request head is larger than the limit; answered with 431.
    #[error("request head larger than {limit} bytes")]
    HeadTooLarge { limit: usize },
    /// The client's request head has more header fields than the limit; answered with 431.
    #[error("request head has more than {limit} header fields")]
    TooManyHeaders { limit: usize },
    /// The client's request target is longer than the limit; answered with 414.
    #[error("request target longer than {limit} bytes")]
    UriTooLong { limit: usize },
    /// The server's response could not be parsed; answered with 502.
    #[error("bad response from {host}: {reason}")]
    BadResponse { host: String, reason: String },
    /// Connecting to the server failed (DNS, refused, unreachable); answered with 502.
    #[error("cannot connect to {host}: {source}")]
    Connect {
        host: String,
        #[source]
        source: io::Error,
    },
    /// The server address is one of our own listeners: connecting would loop; answered with 502.
    #[error("refusing to connect to {host}: it is this proxy's own listen address")]
    SelfConnect { host: String },
    /// The TLS handshake with the server failed, certificate verification included; answered with 502.
    #[error("TLS handshake with {host} failed: {reason}")]
    ServerTls { host: String, reason: String },
    /// Reading from or writing to the server failed after connecting; answered with 502 when still possible.
    #[error("connection to {host} failed: {source}")]
    ServerIo {
        host: String,
        #[source]
        source: io::Error,
    },
    /// Reading from or writing to the client failed; nothing can be answered.
    #[error("client connection failed: {0}")]
    ClientIo(#[source] io::Error),
    /// The TLS handshake with the client failed; nothing can be answered.
    #[error("TLS handshake with client failed: {0}")]
    ClientTls(String),
    /// A peer did not answer within its deadline. A server timeout is answered with 504.
    #[error("{side} timed out during {step}")]
    Timeout { side: Side, step: &'static str },
    /// The request cannot be served by this proxy (e.g. no host known); answered with the given status.
    #[error("{reason}")]
    Refused { status: u16, reason: String },
    /// The server reset the request's HTTP/2 stream with this error code before answering; an HTTP/2 client
    /// gets the same reset on its stream, an HTTP/1 client a 502.
    #[error("{host} reset the stream (HTTP/2 error code {code:#x})")]
    ServerReset { host: String, code: u32 },
    /// `--block-global` or `--block-private` refuses this client; answered with 403 where HTTP is spoken.
    #[error("{0}")]
    Blocked(crate::addons::block::Blocked),
    /// Drop client and server connections at once, without any response.
    #[error("flow killed")]
    Kill,
}

impl ProtocolError {
    /// Wraps an IO error from the server named `host`.
    pub fn server_io(host: &str, source: io::Error) -> Self {
        ProtocolError::ServerIo { host: host.to_string(), source }
    }

    /// True for endings that are a normal part of a connection's life (the client went away, a reset,
    /// a broken pipe, a kill): they are logged at debug, not as failures.
    pub fn is_ordinary_end(&self) -> bool {
        match self {
            ProtocolError::Kill | ProtocolError::Blocked(_) => true,
            ProtocolError::ClientIo(e) => is_ordinary_io(e),
            ProtocolError::Timeout { side: Side::Client, .. } => true,
            _ => false,
        }
    }
}

/// True for IO errors that mean "the peer went away" rather than "something broke".
pub fn is_ordinary_io(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(e.kind(), UnexpectedEof | ConnectionReset | BrokenPipe | ConnectionAborted | NotConnected)
}

/// A problem with the command line or the files it names, found before anything binds or writes.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A flag's value is invalid; the message names the flag.
    #[error("invalid value for {flag}: {reason}")]
    InvalidValue { flag: &'static str, reason: String },
    /// A file named on the command line or in the confdir cannot be used.
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    /// An option from `--set` or config.yaml is unknown or cannot take its value; `origin` is `--set` or
    /// the path of config.yaml.
    #[error("{origin}: {reason}")]
    Option { origin: String, reason: String },
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: io::Error,
    },
}
