//! The `Layer` trait and `next_layer()`, the one place that decides how a connection is classified.
//!
//! A layer runs one protocol on the client stream it is given, to completion. When it has consumed what it
//! owns (a CONNECT, a TLS handshake), it asks `next_layer()` for the layer that handles the rest, passing
//! the stream on with every byte it peeked still in the buffer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::timeout;

use crate::config::HostRules;
use crate::context::Context;
use crate::error::ProtocolError;
use crate::io::{BoxStream, BufIo};
use crate::layers::http2::{Http2Layer, H2_PREFACE_START};
use crate::layers::tls::{peek_sni, HelloSni, TlsLayer, MAX_HELLO_RECORD_BYTES};
use crate::layers::{http1::Http1Layer, socks5::Socks5Layer, tcp::TcpLayer};
use crate::server_conn::ALPN_H2;

/// A boxed, sendable future: what a layer's `run` returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The client side of a connection as a layer receives it: a buffered stream whose buffer may already
/// hold bytes that an outer layer peeked.
pub type ClientIo = BufIo<BoxStream>;

/// One protocol layer. `run` returns `Ok(())` when the protocol finished, or the error that ended it.
pub trait Layer: Send {
    fn run(self: Box<Self>, io: ClientIo) -> BoxFuture<'static, Result<(), ProtocolError>>;
}

/// The kinds of layer, as the context chain records them and logs print them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    RegularProxy,
    UpstreamProxy,
    ReverseProxy,
    TransparentProxy,
    Socks5Proxy,
    Socks5,
    Http1,
    Http2,
    Http,
    Tls,
    Tcp,
    Websocket,
}

impl LayerKind {
    pub fn name(self) -> &'static str {
        match self {
            LayerKind::RegularProxy => "RegularProxy",
            LayerKind::UpstreamProxy => "UpstreamProxy",
            LayerKind::ReverseProxy => "ReverseProxy",
            LayerKind::TransparentProxy => "TransparentProxy",
            LayerKind::Socks5Proxy => "Socks5Proxy",
            LayerKind::Socks5 => "Socks5Layer",
            LayerKind::Http1 => "Http1Layer",
            LayerKind::Http2 => "Http2Layer",
            LayerKind::Http => "HttpLayer",
            LayerKind::Tls => "TlsLayer",
            LayerKind::Tcp => "TcpLayer",
            LayerKind::Websocket => "WebsocketLayer",
        }
    }
}

/// How long to wait for a client to speak first after a tunnel opens before treating the connection as
/// a server-speaks-first protocol (SMTP, SSH) and relaying it as TCP.
const CLIENT_FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(3);

/// Longest prefix peeked to classify a connection.
const PEEK_BYTES: usize = 16;

/// Chooses the layer for the rest of the connection from the context and the client's first bytes.
/// `Ok(None)` means the client closed without sending anything: there is nothing to do, and no server
/// connection is made.
pub async fn next_layer(ctx: &Arc<Context>, io: &mut ClientIo) -> Result<Option<Box<dyn Layer>>, ProtocolError> {
    let hosts = &ctx.config().hosts;
    let server = ctx.server().map(|a| a.to_string());

    // Rule 0: a client that --block-global or --block-private refuses gets only a refusal, from a layer that
    // can say why (HTTP/1 and SOCKS5: rules 1 and 2); any other connection of it is closed unread.
    let says_why = matches!(ctx.layer(), LayerKind::RegularProxy | LayerKind::UpstreamProxy | LayerKind::Socks5Proxy);
    if let Some(blocked) = ctx.blocked().filter(|_| !says_why) {
        let first = timeout(CLIENT_FIRST_BYTES_TIMEOUT, peek(io)).await;
        if first.is_ok_and(|peeked| peeked.is_ok_and(|p| is_http1_request_start(&p))) {
            return Ok(Some(Box::new(Http1Layer::new(ctx))));
        }
        return Err(ProtocolError::Blocked(*blocked));
    }

    // Rule 1: regular and upstream listeners speak HTTP/1 to their clients (a malformed request gets a
    // 400 there), or HTTP/2 with prior knowledge; the requests and CONNECTs name the servers.
    if matches!(ctx.layer(), LayerKind::RegularProxy | LayerKind::UpstreamProxy) {
        if ctx.config().http2 && starts_with_h2_preface(io).await {
            return Ok(Some(Box::new(Http2Layer::new(ctx))));
        }
        return Ok(Some(Box::new(Http1Layer::new(ctx))));
    }

    // Rule 2: a SOCKS5 listener's client first speaks SOCKS5, which names the server.
    if ctx.layer() == LayerKind::Socks5Proxy {
        return Ok(Some(Box::new(Socks5Layer::new(ctx))));
    }

    // Rule 3: --ignore-hosts (or outside --allow-hosts): relay untouched, TLS and all, before reading a byte.
    if !ctx.is_client_tls() && server.as_deref().is_some_and(|s| hosts.is_ignored(s)) {
        return Ok(Some(Box::new(TcpLayer::new(ctx))));
    }

    // From here on the decision needs the client's first bytes. A client that stays silent is waiting for
    // the server to speak first.
    let peeked = match timeout(CLIENT_FIRST_BYTES_TIMEOUT, peek(io)).await {
        Ok(result) => result.map_err(ProtocolError::ClientIo)?,
        Err(_) => return Ok(Some(Box::new(TcpLayer::new(ctx)))),
    };
    if peeked.is_empty() {
        return Ok(None);
    }

    // Rule 4: a TLS ClientHello on a connection not yet decrypted: intercept it, unless its SNI is an
    // ignored host (transparent and SOCKS clients name the server only there).
    if is_tls_client_hello(&peeked) && !ctx.is_client_tls() {
        if let (Some(sni), Some(server)) = (read_sni(io, hosts).await?, ctx.server()) {
            if hosts.is_ignored(&format!("{sni}:{}", server.port)) {
                return Ok(Some(Box::new(TcpLayer::new(ctx))));
            }
        }
        return Ok(Some(Box::new(TlsLayer::new(ctx))));
    }

    // Rule 5: --tcp-hosts: relay as raw TCP (after TLS, if any).
    if server.as_deref().is_some_and(|s| hosts.is_tcp(s)) {
        return Ok(Some(Box::new(TcpLayer::new(ctx))));
    }

    // Rule 6: HTTP/2, agreed by ALPN over TLS, or h2c with prior knowledge (the connection preface).
    if ctx.config().http2 && (ctx.alpn() == Some(ALPN_H2) || starts_with_h2_preface(io).await) {
        return Ok(Some(Box::new(Http2Layer::new(ctx))));
    }

    // Rule 7: an HTTP/1 request line, or anything at all on a reverse proxy, whose server speaks HTTP: a
    // request that does not parse gets a 400 there instead of reaching the server unrecorded as TCP.
    if is_http1_request_start(&peeked) || ctx.layers().contains(&LayerKind::ReverseProxy) {
        return Ok(Some(Box::new(Http1Layer::new(ctx))));
    }

    // Rule 8: anything else is relayed as raw TCP.
    Ok(Some(Box::new(TcpLayer::new(ctx))))
}

/// True if the client's first bytes are the HTTP/2 connection preface; reads only as far as needed to tell,
/// and gives up (false) after the first-bytes timeout.
async fn starts_with_h2_preface(io: &mut ClientIo) -> bool {
    let work = async {
        loop {
            let have = io.buffered();
            let n = have.len().min(H2_PREFACE_START.len());
            if have[..n] != H2_PREFACE_START[..n] {
                return false;
            }
            if n == H2_PREFACE_START.len() {
                return true;
            }
            if !matches!(io.fill_more(H2_PREFACE_START.len().max(have.len() + 1)).await, Ok(more) if more > 0) {
                return false;
            }
        }
    };
    timeout(CLIENT_FIRST_BYTES_TIMEOUT, work).await.unwrap_or(false)
}

/// Asks `next_layer()` for the layer after `ctx` and runs it on `io`.
///
/// The outer layers wait in this future for the whole connection, so it holds little: the classifying step
/// is boxed; it owns its context, so that a layer can return it as its own future instead of awaiting it
/// inside another (which would hold both); and it is an `async move` block, not an async fn (which would
/// hold its arguments twice).
#[allow(clippy::manual_async_fn)] // on purpose: see above
pub fn run_next_layer(
    ctx: Arc<Context>,
    mut io: ClientIo,
) -> impl std::future::Future<Output = Result<(), ProtocolError>> + Send {
    async move {
        match Box::pin(next_layer(&ctx, &mut io)).await? {
            Some(layer) => layer.run(io).await,
            None => Ok(()),
        }
    }
}

/// Reads until enough bytes are buffered to classify them (or the client closes) and returns a copy:
/// at least three, and past the first byte that cannot belong to a method token.
async fn peek(io: &mut ClientIo) -> std::io::Result<Vec<u8>> {
    let undecided = |b: &[u8]| b.len() < 3 || (b.len() < PEEK_BYTES && b.iter().all(u8::is_ascii_uppercase));
    while undecided(io.buffered()) {
        if io.fill_more(PEEK_BYTES.max(io.buffered().len() + 1)).await? == 0 {
            break;
        }
    }
    Ok(io.buffered()[..io.buffered().len().min(PEEK_BYTES)].to_vec())
}

/// The SNI of the buffered ClientHello, reading the rest of its first record if needed. Only done when
/// host rules exist that could match it; a client too slow to send its hello is left to the TLS layer.
async fn read_sni(io: &mut ClientIo, hosts: &HostRules) -> Result<Option<String>, ProtocolError> {
    if hosts.ignore.is_empty() && hosts.allow.is_empty() {
        return Ok(None);
    }
    let work = async {
        loop {
            match peek_sni(io.buffered()) {
                HelloSni::Name(name) => return Ok(Some(name)),
                HelloSni::NoName | HelloSni::Malformed => return Ok(None),
                HelloSni::Incomplete if io.buffered().len() >= MAX_HELLO_RECORD_BYTES => return Ok(None),
                HelloSni::Incomplete => {
                    if io.fill_more(MAX_HELLO_RECORD_BYTES).await.map_err(ProtocolError::ClientIo)? == 0 {
                        return Ok(None);
                    }
                }
            }
        }
    };
    timeout(CLIENT_FIRST_BYTES_TIMEOUT, work).await.unwrap_or(Ok(None))
}

/// A TLS handshake record (type 22) of TLS 1.x carrying a ClientHello (handshake type 1).
pub fn is_tls_client_hello(b: &[u8]) -> bool {
    b.len() >= 3 && b[0] == 0x16 && b[1] == 0x03 && b[2] <= 0x04 && (b.len() < 6 || b[5] == 0x01)
}

/// Starts like an HTTP/1 request line: an upper-case method token followed by a space.
pub fn is_http1_request_start(b: &[u8]) -> bool {
    let token_len = b.iter().take_while(|c| c.is_ascii_uppercase()).count();
    token_len > 0 && (token_len == b.len() || b[token_len] == b' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_first_bytes() {
        assert!(is_tls_client_hello(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00]));
        assert!(!is_tls_client_hello(b"GET / HTTP/1.1"));
        assert!(is_http1_request_start(b"GET / HTTP/1.1"));
        assert!(is_http1_request_start(b"OPTIONS"));
        assert!(!is_http1_request_start(b"SSH-2.0-OpenSSH"));
        assert!(!is_http1_request_start(b"\x00\x01"));
    }
}
