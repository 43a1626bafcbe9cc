//! The mode layers: the outermost layer of every connection, one per kind of listener.
//!
//! A mode layer speaks no protocol of its own (SOCKS5 is the exception, in `socks5.rs`); it records who
//! the client is, how it arrived and what the mode already knows about the server, then lets
//! `next_layer()` pick the protocol layer. What each mode contributes:
//!
//! | mode | layer | server known up front |
//! |---|---|---|
//! | `regular` | `RegularProxy` | none: each request or CONNECT names one |
//! | `upstream:URL` | `UpstreamProxy` | none; `ServerConnection` dials the next proxy |
//! | `reverse:URL` | `ReverseProxy` | the URL's host, spoken to with the URL's scheme |
//! | `transparent` | `TransparentProxy` | the original destination of the redirected socket |

use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::{Mode, ModeKind};
use crate::context::{Address, Context, Facts, RootContext};
use crate::error::ProtocolError;
use crate::layer::{run_next_layer, BoxFuture, ClientIo, Layer, LayerKind};

/// A mode layer: the connection's first context frame.
pub struct ModeLayer {
    ctx: Arc<Context>,
}

impl ModeLayer {
    /// The layer for a connection accepted by a listener in `mode`. `local_addr` is the address the client
    /// reached; `original_dst` is the pre-redirect destination (transparent mode only).
    pub fn new(
        root: Arc<RootContext>,
        mode: &Arc<Mode>,
        client_addr: SocketAddr,
        local_addr: SocketAddr,
        original_dst: Option<SocketAddr>,
    ) -> Self {
        let blocked = root.config.addons.access.check(client_addr.ip());
        let mut facts = Facts { client_addr: Some(client_addr), mode: Some(mode.clone()), blocked, ..Facts::default() };
        let kind = match &mode.kind {
            ModeKind::Regular => LayerKind::RegularProxy,
            ModeKind::Upstream(_) => LayerKind::UpstreamProxy,
            ModeKind::Socks5 => LayerKind::Socks5Proxy,
            ModeKind::Reverse(server) => {
                facts.server = Some(Address::new(server.host.clone(), server.port));
                facts.server_scheme = Some(server.scheme);
                facts.tls_cert_host = Some(local_addr.ip().to_string());
                LayerKind::ReverseProxy
            }
            ModeKind::Transparent => {
                facts.server = original_dst.map(|dst| Address::new(dst.ip().to_string(), dst.port()));
                LayerKind::TransparentProxy
            }
        };
        ModeLayer { ctx: Context::new(root, kind, facts) }
    }

    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }
}

impl Layer for ModeLayer {
    fn run(self: Box<Self>, io: ClientIo) -> BoxFuture<'static, Result<(), ProtocolError>> {
        Box::pin(run_next_layer(self.ctx, io))
    }
}

/// The destination a redirected connection was originally sent to (iptables REDIRECT/DNAT), read with
/// SO_ORIGINAL_DST (IPv4) or IP6T_SO_ORIGINAL_DST (IPv6).
pub fn original_destination(socket: &tokio::net::TcpStream) -> std::io::Result<SocketAddr> {
    let sock = socket2::SockRef::from(socket);
    let local = socket.local_addr()?;
    let dst = if local.is_ipv4() { sock.original_dst()? } else { sock.original_dst_ipv6()? };
    dst.as_socket().ok_or_else(|| std::io::Error::other("original destination is not an IP address"))
}
