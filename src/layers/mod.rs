//! The protocol layers. Mode layers come first on a connection (`regular`); protocol layers follow in
//! the order `next_layer()` stacks them: `http1` (bytes to heads and bodies), `http` (flow semantics),
//! `tls` (client-side interception), `tcp` (raw relay).

pub mod http;
pub mod http1;
pub mod regular;
pub mod tcp;
pub mod tls;
