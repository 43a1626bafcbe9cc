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

    /// Configuration directory, holding the certificate authority and config.yaml. Created if missing.
    /// [default: ~/.strata]
    #[arg(long, value_name = "DIR")]
    pub confdir: Option<PathBuf>,

    /// Set an option by name, as in config.yaml: NAME=VALUE, e.g. `--set anticache=true`. A name is a long
    /// flag with `_` for `-`; booleans take true/false (or yes/no, on/off, 1/0; NAME alone means true); a
    /// list option takes one value per --set. Beats config.yaml. Repeatable; --options lists the names.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,

    /// Print every option (the names of --set and config.yaml) with its type, default and help, then exit.
    #[arg(long)]
    pub options: bool,

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

    /// Refuse clients with publicly routable addresses (the default, as mitmproxy's block_global): they get
    /// a 403, a SOCKS5 refusal or a closed connection. Loopback and link-local clients are never refused;
    /// --proxyauth does not lift this.
    #[arg(long, overrides_with = "no_block_global")]
    pub block_global: bool,

    /// Serve clients with publicly routable addresses too: anyone who can reach the port may use the proxy.
    #[arg(long, overrides_with = "block_global")]
    pub no_block_global: bool,

    /// Refuse clients with private addresses (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7, ...).
    #[arg(long, overrides_with = "no_block_private")]
    pub block_private: bool,

    /// Serve clients with private addresses (the default).
    #[arg(long, overrides_with = "block_private")]
    pub no_block_private: bool,

    /// Speak HTTP/1.1 only: do not offer HTTP/2 to clients (mitmproxy's http2=false).
    #[arg(long)]
    pub no_http2: bool,

    /// Reverse mode: keep the client's Host header instead of setting it to the server's.
    #[arg(long)]
    pub keep_host_header: bool,

    /// Record every HTTP flow (and WebSocket messages) to FILE as HAR 1.2. Entries are appended as flows
    /// finish; the file is a complete HAR document at every moment.
    #[arg(long, value_name = "FILE")]
    pub save_har: Option<PathBuf>,

    /// Write every flow to a session file (SQLite) as it happens; +FILE appends to an existing session.
    /// An existing FILE without + is refused.
    #[arg(short = 'w', long = "save-stream-file", value_name = "FILE")]
    pub save_stream_file: Option<String>,

    /// Largest size of the -w session, like 2g: past it, the oldest flows are dropped (and the log says so).
    #[arg(long, value_name = "SIZE")]
    pub store_max_size: Option<String>,

    /// Bytes stored of each request or response body in the -w session, like 32m (the rest is dropped and
    /// the body marked truncated).
    #[arg(long, value_name = "SIZE", default_value = "32m")]
    pub store_body_limit: String,

    /// Only flows matching this filter go to the -w session (default: the positional FILTER, if any).
    #[arg(long, value_name = "FILTER")]
    pub save_stream_filter: Option<String>,

    /// Read flows from FILE (a strata session or a HAR file) and show them as flow lines (the view filter
    /// and --flow-detail apply); they also go to -w and --save-har.
    #[arg(short = 'r', long = "rfile", value_name = "FILE")]
    pub rfile: Option<PathBuf>,

    /// Start no proxy: with -r, exit once the flows are read.
    #[arg(short = 'n', long = "no-server")]
    pub no_server: bool,

    /// Load a Lua 5.4 script as an addon: its functions named after events (request, response, ...) see
    /// and change flows. Repeatable; reloaded when the file changes.
    #[arg(short = 's', long = "scripts", value_name = "FILE")]
    pub scripts: Vec<PathBuf>,

    /// Answer requests from the responses recorded in FILE.har instead of asking servers. Repeatable.
    #[arg(short = 'S', long, value_name = "FILE")]
    pub server_replay: Vec<PathBuf>,

    /// Server replay: ignore this query parameter when matching requests. Repeatable.
    #[arg(long, value_name = "NAME")]
    pub server_replay_ignore_params: Vec<String>,

    /// Server replay: ignore the host (not the port) when matching requests.
    #[arg(long)]
    pub server_replay_ignore_host: bool,

    /// Server replay: ignore request bodies when matching requests.
    #[arg(long)]
    pub server_replay_ignore_content: bool,

    /// Server replay: use each recorded response any number of times instead of once.
    #[arg(long)]
    pub server_replay_reuse: bool,

    /// Server replay: what to do with requests that match no recorded one: forward, kill, 204, 400, 404
    /// or 500.
    #[arg(long, value_name = "ACTION", default_value = "forward")]
    pub server_replay_extra: String,

    /// Re-send the requests recorded in FILE.har to their servers, one at a time, then exit (0 if all got
    /// a response).
    #[arg(short = 'C', long, value_name = "FILE")]
    pub client_replay: Option<PathBuf>,

    /// Set or remove a header: /FILTER/NAME/VALUE or /NAME/VALUE (any first character is the separator;
    /// an empty VALUE removes; @path reads the value from a file). Repeatable.
    #[arg(long, value_name = "SPEC")]
    pub modify_headers: Vec<String>,

    /// Replace in bodies: /FILTER/REGEX/REPLACEMENT or /REGEX/REPLACEMENT (@path reads the replacement from
    /// a file). Bodies over --body-size-limit stream unmodified. Repeatable.
    #[arg(long, value_name = "SPEC")]
    pub modify_body: Vec<String>,

    /// Send requests elsewhere: |FILTER|URL-REGEX|REPLACEMENT, rewriting the URL. Repeatable.
    #[arg(long, value_name = "SPEC")]
    pub map_remote: Vec<String>,

    /// Answer requests from local files: |FILTER|URL-REGEX|PATH (a file, or a directory the rest of the URL
    /// path is looked up in; `..` never leaves it). Repeatable.
    #[arg(long, value_name = "SPEC")]
    pub map_local: Vec<String>,

    /// Answer matching requests with a status: :FILTER:STATUS (444 closes the connection). Repeatable.
    #[arg(long, value_name = "SPEC")]
    pub block_list: Vec<String>,

    /// Remove If-None-Match and If-Modified-Since, so servers send full responses.
    #[arg(long)]
    pub anticache: bool,

    /// Ask servers for uncompressed responses (Accept-Encoding: identity).
    #[arg(long)]
    pub anticomp: bool,

    /// Largest body held in memory for HAR, replay or modification (e.g. 32m, 512k); larger bodies stream
    /// through unrecorded and unmodified.
    #[arg(long, value_name = "SIZE", default_value = "32m")]
    pub body_size_limit: String,

    /// Require proxy credentials: USER:PASS, @htpasswd-file (bcrypt and {SHA} entries), or `any`.
    #[arg(long, value_name = "SPEC")]
    pub proxyauth: Option<String>,

    /// Only print flows matching this filter expression (mitmproxy syntax, e.g. `~d example.org & ~s`).
    #[arg(value_name = "FILTER", trailing_var_arg = true)]
    pub filter: Vec<String>,

    /// Serve the web UI (a flow browser) beside the proxy; it prints its URL, with the token every request
    /// needs, on stderr.
    #[arg(long)]
    pub web: bool,

    /// Address the web UI listens on.
    #[arg(long, value_name = "HOST", default_value = "127.0.0.1")]
    pub web_host: String,

    /// Port the web UI listens on (0 picks a free one).
    #[arg(long, value_name = "PORT", default_value_t = 8081)]
    pub web_port: u16,

    /// The web UI's token, instead of a random one per start (at least 16 characters).
    #[arg(long, value_name = "TOKEN")]
    pub web_token: Option<String>,

    /// Keep the session the web UI records into the confdir at exit (without -w it is removed).
    #[arg(long)]
    pub web_keep_session: bool,

    /// Seconds to wait for a server connection to be established.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub connect_timeout: f64,

    /// Seconds to wait for a request or response head, and for each read of a body, before giving up.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub read_timeout: f64,

    /// Seconds an idle keep-alive client connection is kept open between requests.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub idle_timeout: f64,

    /// Most client connections served at once; further clients wait in the listen backlog until one ends.
    #[arg(long, value_name = "COUNT", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Largest request or response head accepted, in bytes; a larger request head gets 431.
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024)]
    pub max_head_size: usize,

    /// Most header fields accepted in one request or response head; more gets 431.
    #[arg(long, value_name = "COUNT", default_value_t = 100)]
    pub max_headers: usize,
}
