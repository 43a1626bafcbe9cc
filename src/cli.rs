//! The command line, as clap derive structs. Each field's doc comment is its `--help` text.
//!
//! Names follow mitmproxy/mitmdump (`--mode`, `--listen-host`, `--confdir`, `--flow-detail`, ...) so that its
//! users feel at home. Nothing here checks more than the shape of a value: `config::Config::from_cli`
//! does the rest.

use std::path::PathBuf;

use clap::Parser;

use crate::config::Mode;

/// strata: an intercepting proxy for HTTP, HTTPS, WebSocket and raw TCP.
#[derive(Debug, Parser)]
#[command(name = "strata", version, about, max_term_width = 100)]
pub struct Cli {
    /// Proxy mode: regular, transparent, socks5, reverse:URL or upstream:URL, each optionally followed by
    /// @PORT or @HOST:PORT to give it its own listen address. Repeat to run several listeners at once.
    #[arg(short = 'm', long = "mode", value_name = "MODE", default_value = "regular")]
    pub modes: Vec<Mode>,

    /// Address to listen on.
    #[arg(long, value_name = "HOST", default_value = "127.0.0.1")]
    pub listen_host: String,

    /// Port to listen on; 0 picks a free port (the `listening on` line tells which).
    #[arg(short = 'p', long, value_name = "PORT", default_value_t = 8080)]
    pub listen_port: u16,

    /// Configuration directory, holding the certificate authority. Created if missing. [default: ~/.strata]
    #[arg(long, value_name = "DIR")]
    pub confdir: Option<PathBuf>,

    /// Print no flow lines.
    #[arg(short = 'q', long)]
    pub quiet: bool,

    /// How much of each flow to print: 0 nothing, 1 one line per flow, 2 with headers (3 and 4 as 2 for now).
    #[arg(long, value_name = "LEVEL", default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=4))]
    pub flow_detail: u8,

    /// Log more to stderr: -v for debug, -vv for trace. RUST_LOG overrides.
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Do not verify servers' TLS certificates.
    #[arg(short = 'k', long)]
    pub ssl_insecure: bool,

    /// PEM file of CA certificates to trust for servers, in addition to the built-in roots. Repeatable.
    #[arg(long, value_name = "PEM")]
    pub upstream_ca: Vec<PathBuf>,

    /// Relay connections to matching servers untouched (TLS is not decrypted). REGEX is matched against
    /// `host:port`, case-insensitively. Repeatable.
    #[arg(long, value_name = "REGEX")]
    pub ignore_hosts: Vec<String>,

    /// Intercept only matching servers and relay all others untouched; the inverse of --ignore-hosts.
    /// Repeatable.
    #[arg(long, value_name = "REGEX")]
    pub allow_hosts: Vec<String>,

    /// Relay connections to matching servers as raw TCP after TLS (if any), logged as TCP flows. Repeatable.
    #[arg(long, value_name = "REGEX")]
    pub tcp_hosts: Vec<String>,

    /// Reverse mode: keep the client's Host header instead of setting it to the server's.
    #[arg(long)]
    pub keep_host_header: bool,

    /// Seconds to wait for a server connection to be established.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub connect_timeout: f64,

    /// Seconds to wait for a request or response head, and for each read of a body, before giving up.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub read_timeout: f64,

    /// Seconds an idle keep-alive client connection is kept open between requests.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub idle_timeout: f64,

    /// Largest request or response head accepted, in bytes; a larger request head gets 431.
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024)]
    pub max_head_size: usize,

    /// Most header fields accepted in one request or response head; more gets 431.
    #[arg(long, value_name = "COUNT", default_value_t = 100)]
    pub max_headers: usize,
}
