//! The protocol layers. A mode layer (`mode`, or `socks5` for its handshake) comes first on every
//! connection; protocol layers follow in the order `next_layer()` stacks them: `tls` (client-side
//! interception), `http1` (HTTP/1 connections; its `codec` turns bytes into heads and bodies), `http2`
//! (HTTP/2 connections, a task per stream), `http` (what one exchange means), `tcp` (raw relay), and
//! `websocket`, which follows a 101. `http_conn` is the seam between `http` and the wire versions.

pub mod http;
pub mod http1;
pub mod http2;
pub mod http_conn;
pub mod mode;
pub mod socks5;
pub mod tcp;
pub mod tls;
pub mod websocket;
