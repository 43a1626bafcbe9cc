//! strata: an intercepting proxy for HTTP, HTTPS, WebSocket and raw TCP, built as a stack of protocol
//! layers. The binary (`main.rs`) is a thin shell around `server::run`.

pub mod addon; // the Addon trait (mitmproxy's events) and the addon chain
pub mod addons; // the built-in addons and their options
pub mod certs; // certificate authority and leaf certificates
pub mod cli; // command-line flags (clap)
pub mod client_replay; // --client-replay: recorded requests through a regular-mode stack
pub mod config; // checked configuration: modes, listen addresses, limits
pub mod context; // RootContext and the read-only context chain
pub mod error; // ProtocolError, ConfigError, Side
pub mod filter; // flow filter expressions (mitmproxy syntax)
pub mod flow; // flow records and the stdout flow log
pub mod http; // version-free message rules: field syntax, trailers, authorities
pub mod io; // buffered stream that keeps peeked bytes
pub mod layer; // Layer trait and next_layer()
pub mod layers; // the layers themselves
pub mod mitmproxy_flows; // mitmproxy flow files (mitmdump -w), read
pub mod options; // --set, config.yaml and --options, derived from the flags
pub mod read_flows; // -r: flows from a session or HAR file through the addon chain
pub mod server; // listeners, accept loop, shutdown
pub mod server_conn; // lazy server connections
pub mod store; // the flow store: sessions in SQLite (-w, -r)
pub mod web; // --web: the flow browser and its API
