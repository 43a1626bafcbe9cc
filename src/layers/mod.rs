//! The protocol layers. A mode layer (`mode`, or `socks5` for its handshake) comes first on every
//! connection; protocol layers follow in the order `next_layer()` stacks them: `tls` (client-side
//! interception), `http1` (bytes to heads and bodies), `http` (flow semantics), `tcp` (raw relay), and
//! `websocket`, which `http` starts itself after a 101.

pub mod http;
pub mod http1;
pub mod mode;
pub mod socks5;
pub mod tcp;
pub mod tls;
pub mod websocket;
