//! `Config::from_cli` turns the parsed command line into the checked configuration the proxy runs with.
//!
//! All checking happens here (mode syntax, listen addresses, durations, limits, the confdir path), before
//! anything binds, creates or writes, so a bad flag leaves nothing behind. Mode syntax follows mitmproxy:
//! `regular`, `transparent`, `socks5`, `reverse:URL`, `upstream:URL`, each with an optional `@PORT` or
//! `@HOST:PORT` suffix that gives the listener its own address.

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use regex::{Regex, RegexBuilder};
use rustls::pki_types::CertificateDer;

use crate::addons::AddonOptions;
use crate::cli::Cli;
use crate::error::ConfigError;
use crate::http::url::{split_host_port, Scheme};
use crate::options::Unclaimed;

/// A server named by a mode, e.g. the `http://127.0.0.1:5173` of `reverse:http://127.0.0.1:5173`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    /// `h2c://`: plain HTTP/2 with prior knowledge (RFC 9113 section 3.3), for servers that speak only
    /// that (gRPC servers without TLS, h2c dev servers).
    pub h2c: bool,
}

impl fmt::Display for ServerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        let scheme = if self.h2c { "h2c" } else { self.scheme.as_str() };
        write!(f, "{scheme}://{host}:{}", self.port)
    }
}

impl FromStr for ServerSpec {
    type Err = String;

    /// Parses `scheme://host[:port][/]` (`http`, `https`, or `h2c` for HTTP/2 with prior knowledge); a path
    /// other than `/` is refused.
    fn from_str(s: &str) -> Result<Self, String> {
        let (scheme, rest) =
            s.split_once("://").ok_or_else(|| format!("'{s}' is not a URL (expected http://HOST[:PORT])"))?;
        let h2c = scheme.eq_ignore_ascii_case("h2c");
        let scheme = if h2c { Some(Scheme::Http) } else { Scheme::from_name(scheme) }
            .ok_or_else(|| format!("unsupported scheme '{scheme}' (expected http, https or h2c)"))?;
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains('/') {
            return Err(format!("'{s}' has a path; only scheme://host[:port] is supported"));
        }
        let (host, port) = split_host_port(authority).ok_or_else(|| format!("'{s}' has no valid host"))?;
        Ok(ServerSpec { scheme, host, port: port.unwrap_or(scheme.default_port()), h2c })
    }
}

/// What a listener does with the connections it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModeKind {
    /// Explicit HTTP proxy: absolute-form requests and CONNECT.
    Regular,
    /// Behind an iptables REDIRECT: the original destination is the server.
    Transparent,
    /// SOCKS5 proxy.
    Socks5,
    /// Every request goes to one fixed server.
    Reverse(ServerSpec),
    /// Requests are forwarded to another HTTP proxy.
    Upstream(ServerSpec),
}

/// One `--mode` value: the kind plus an optional listen address of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mode {
    pub kind: ModeKind,
    pub listen_host: Option<String>,
    pub listen_port: Option<u16>,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ModeKind::Regular => f.write_str("regular"),
            ModeKind::Transparent => f.write_str("transparent"),
            ModeKind::Socks5 => f.write_str("socks5"),
            ModeKind::Reverse(s) => write!(f, "reverse:{s}"),
            ModeKind::Upstream(s) => write!(f, "upstream:{s}"),
        }
    }
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        // The listen suffix is whatever follows the last '@', if that is a port or host:port; an '@' inside
        // a URL's userinfo is not followed by one.
        let (spec, listen) = match s.rsplit_once('@') {
            Some((spec, suffix)) if !spec.is_empty() => match parse_listen_suffix(suffix) {
                Some(listen) => (spec, Some(listen)),
                None => return Err(format!("'@{suffix}' is not a listen port or HOST:PORT")),
            },
            _ => (s, None),
        };
        let (name, arg) = match spec.split_once(':') {
            Some((name, arg)) => (name, Some(arg)),
            None => (spec, None),
        };
        let kind = match (name, arg) {
            ("regular", None) => ModeKind::Regular,
            ("transparent", None) => ModeKind::Transparent,
            ("socks5", None) => ModeKind::Socks5,
            ("reverse", Some(url)) => ModeKind::Reverse(url.parse()?),
            ("upstream", Some(url)) => ModeKind::Upstream(url.parse()?),
            ("reverse" | "upstream", None) => {
                return Err(format!("mode '{name}' needs a URL: {name}:http://HOST:PORT"))
            }
            ("regular" | "transparent" | "socks5", Some(_)) => return Err(format!("mode '{name}' takes no argument")),
            _ => {
                return Err(format!(
                    "unknown mode '{name}' (expected regular, transparent, socks5, reverse:URL or upstream:URL)"
                ))
            }
        };
        let (listen_host, listen_port) = match listen {
            Some((host, port)) => (host, Some(port)),
            None => (None, None),
        };
        Ok(Mode { kind, listen_host, listen_port })
    }
}

/// Parses the part after '@': `PORT` or `HOST:PORT`.
fn parse_listen_suffix(s: &str) -> Option<(Option<String>, u16)> {
    if let Ok(port) = s.parse::<u16>() {
        return Some((None, port));
    }
    match split_host_port(s)? {
        (host, Some(port)) => Some((Some(host), port)),
        _ => None,
    }
}

/// Deadlines for every wait on a peer.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Establishing a TCP connection to a server.
    pub connect: Duration,
    /// Waiting for a head, or for the next bytes of a body, from either peer.
    pub read: Duration,
    /// Waiting for the next request on a keep-alive client connection.
    pub idle: Duration,
}

/// Size limits on what a peer may send.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request or response head, in bytes.
    pub max_head_bytes: usize,
    /// Most header fields in one head.
    pub max_headers: usize,
    /// Most client connections served at once.
    pub max_connections: usize,
}

/// Which servers get which treatment, by regexes over `host:port` (mitmproxy's ignore/allow/tcp hosts).
#[derive(Debug, Clone, Default)]
pub struct HostRules {
    pub ignore: Vec<Regex>,
    pub allow: Vec<Regex>,
    pub tcp: Vec<Regex>,
}

impl HostRules {
    /// True if connections to `host_port` are relayed untouched, without interception.
    pub fn is_ignored(&self, host_port: &str) -> bool {
        self.ignore.iter().any(|r| r.is_match(host_port))
            || (!self.allow.is_empty() && !self.allow.iter().any(|r| r.is_match(host_port)))
    }

    /// True if connections to `host_port` are relayed as raw TCP after TLS.
    pub fn is_tcp(&self, host_port: &str) -> bool {
        self.tcp.iter().any(|r| r.is_match(host_port))
    }
}

/// How strata talks TLS to servers.
#[derive(Debug, Clone, Default)]
pub struct UpstreamTls {
    /// `-k`: accept any server certificate.
    pub insecure: bool,
    /// Extra trusted CA certificates from `--upstream-ca`.
    pub extra_roots: Vec<CertificateDer<'static>>,
}

/// One listener to open: where, and in which mode.
#[derive(Debug, Clone)]
pub struct ListenSpec {
    pub mode: Mode,
    pub addr: SocketAddr,
}

/// `--web`, `--web-host`, `--web-port`, `--web-token`, `--web-keep-session`: the web UI (`crate::web`).
#[derive(Debug, Clone)]
pub struct WebOptions {
    pub addr: SocketAddr,
    /// The token every request needs; random per start unless `--web-token`.
    pub token: String,
    pub keep_session: bool,
}

impl WebOptions {
    /// A random token: 128 bits, hex.
    pub fn random_token() -> String {
        let mut bytes = [0u8; 16];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The checked configuration the proxy runs with.
#[derive(Debug)]
pub struct Config {
    pub listeners: Vec<ListenSpec>,
    pub confdir: PathBuf,
    pub verbose: u8,
    pub timeouts: Timeouts,
    pub limits: Limits,
    pub hosts: HostRules,
    pub upstream_tls: UpstreamTls,
    /// Reverse mode: forward the client's Host header unchanged.
    pub keep_host_header: bool,
    /// Offer HTTP/2 to clients (ALPN `h2`, h2c prior knowledge); off with `--no-http2`.
    pub http2: bool,
    /// `-r`: flows to read at start.
    pub rfile: Option<PathBuf>,
    /// `-n`: no listeners.
    pub no_server: bool,
    /// The built-in addons' options; `server::run` builds the addon chain from them.
    pub addons: AddonOptions,
    /// `--web`: the web UI.
    pub web: Option<WebOptions>,
}

impl Config {
    /// Checks everything on the command line; `unclaimed` are the `--set`/config.yaml entries no built-in
    /// option took, which the scripts may declare (any left over is an unknown option). Creates nothing.
    pub fn from_cli(cli: &Cli, unclaimed: &[Unclaimed]) -> Result<Config, ConfigError> {
        let mut listeners: Vec<ListenSpec> = Vec::new();
        for mode in &cli.modes {
            refuse_unbuilt(mode)?;
            let host = mode.listen_host.as_deref().unwrap_or(&cli.listen_host);
            let port = mode.listen_port.unwrap_or(cli.listen_port);
            let flag = if mode.listen_host.is_some() { "--mode" } else { "--listen-host" };
            let addr = resolve_listen(host, port, flag)?;
            if addr.port() != 0 && listeners.iter().any(|l| l.addr == addr) {
                return Err(ConfigError::InvalidValue {
                    flag: "--mode",
                    reason: format!("two modes listen on {addr}; give one its own port with MODE@PORT"),
                });
            }
            listeners.push(ListenSpec { mode: mode.clone(), addr });
        }
        Ok(Config {
            listeners,
            confdir: match &cli.confdir {
                Some(dir) => dir.clone(),
                None => default_confdir()?,
            },
            verbose: cli.verbose,
            timeouts: Timeouts {
                connect: seconds("--connect-timeout", cli.connect_timeout)?,
                read: seconds("--read-timeout", cli.read_timeout)?,
                idle: seconds("--idle-timeout", cli.idle_timeout)?,
            },
            limits: Limits {
                max_head_bytes: at_least("--max-head-size", cli.max_head_size, 1024)?,
                max_headers: at_least("--max-headers", cli.max_headers, 1)?,
                max_connections: at_least("--max-connections", cli.max_connections, 1)?,
            },
            hosts: host_rules(cli)?,
            keep_host_header: cli.keep_host_header,
            http2: !cli.no_http2,
            rfile: match &cli.rfile {
                Some(path) if !path.is_file() => {
                    return Err(ConfigError::File {
                        path: path.display().to_string(),
                        reason: "no such file (-r)".into(),
                    })
                }
                other => other.clone(),
            },
            no_server: cli.no_server,
            addons: AddonOptions::from_cli(cli, unclaimed)?,
            web: web_options(cli)?,
            upstream_tls: UpstreamTls {
                insecure: cli.ssl_insecure,
                extra_roots: cli.upstream_ca.iter().map(|p| read_ca_certs(p)).collect::<Result<Vec<_>, _>>()?.concat(),
            },
        })
    }
}

fn web_options(cli: &Cli) -> Result<Option<WebOptions>, ConfigError> {
    if !cli.web {
        return Ok(None);
    }
    let token = match &cli.web_token {
        Some(token) if token.len() < 16 || !token.chars().all(|c| c.is_ascii_alphanumeric() || "-_.~".contains(c)) => {
            return Err(ConfigError::InvalidValue {
                flag: "--web-token",
                reason: "use at least 16 letters, digits or -_.~".into(),
            })
        }
        Some(token) => token.clone(),
        None => WebOptions::random_token(),
    };
    let addr = resolve_listen(&cli.web_host, cli.web_port, "--web-host")?;
    Ok(Some(WebOptions { addr, token, keep_session: cli.web_keep_session }))
}

fn host_rules(cli: &Cli) -> Result<HostRules, ConfigError> {
    if !cli.ignore_hosts.is_empty() && !cli.allow_hosts.is_empty() {
        return Err(ConfigError::InvalidValue {
            flag: "--allow-hosts",
            reason: "cannot be combined with --ignore-hosts".into(),
        });
    }
    Ok(HostRules {
        ignore: compile_all("--ignore-hosts", &cli.ignore_hosts)?,
        allow: compile_all("--allow-hosts", &cli.allow_hosts)?,
        tcp: compile_all("--tcp-hosts", &cli.tcp_hosts)?,
    })
}

fn compile_all(flag: &'static str, patterns: &[String]) -> Result<Vec<Regex>, ConfigError> {
    patterns
        .iter()
        .map(|p| {
            RegexBuilder::new(p).case_insensitive(true).build().map_err(|e| ConfigError::InvalidValue {
                flag,
                reason: format!("'{p}' is not a valid regex: {}", crate::filter::regex_reason(&e)),
            })
        })
        .collect()
}

/// All certificates in a PEM file given to `--upstream-ca`.
fn read_ca_certs(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let fail = |reason: String| ConfigError::File { path: path.display().to_string(), reason };
    let pem = std::fs::read(path).map_err(|e| fail(format!("cannot read (--upstream-ca): {e}")))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| fail(format!("not valid PEM (--upstream-ca): {e}")))?;
    if certs.is_empty() {
        return Err(fail("no certificate found (--upstream-ca)".into()));
    }
    Ok(certs)
}

/// Modes whose layers are not built yet are refused up front rather than half-working.
fn refuse_unbuilt(mode: &Mode) -> Result<(), ConfigError> {
    match &mode.kind {
        ModeKind::Upstream(proxy) if proxy.scheme == Scheme::Https || proxy.h2c => Err(ConfigError::InvalidValue {
            flag: "--mode",
            reason: format!("mode '{mode}': only http:// upstream proxies are supported"),
        }),
        _ => Ok(()),
    }
}

fn resolve_listen(host: &str, port: u16, flag: &'static str) -> Result<SocketAddr, ConfigError> {
    if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let bad = |reason: String| ConfigError::InvalidValue { flag, reason };
    (host, port)
        .to_socket_addrs()
        .map_err(|e| bad(format!("cannot resolve '{host}': {e}")))?
        .next()
        .ok_or_else(|| bad(format!("'{host}' has no address")))
}

/// `~/.strata`, the confdir when `--confdir` is not given (also where config.yaml is looked for).
pub fn default_confdir() -> Result<PathBuf, ConfigError> {
    match std::env::var_os("HOME") {
        Some(home) if !home.is_empty() => Ok(PathBuf::from(home).join(".strata")),
        _ => Err(ConfigError::InvalidValue { flag: "--confdir", reason: "HOME is not set; pass --confdir DIR".into() }),
    }
}

fn seconds(flag: &'static str, secs: f64) -> Result<Duration, ConfigError> {
    if secs.is_finite() && secs > 0.0 && secs < 1e9 {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(ConfigError::InvalidValue { flag, reason: format!("{secs} is not a positive number of seconds") })
    }
}

fn at_least(flag: &'static str, value: usize, min: usize) -> Result<usize, ConfigError> {
    if value >= min {
        Ok(value)
    } else {
        Err(ConfigError::InvalidValue { flag, reason: format!("{value} is below the minimum of {min}") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_with_listen_suffixes() {
        let m: Mode = "reverse:http://127.0.0.1:5173@8443".parse().unwrap();
        assert_eq!(
            m.kind,
            ModeKind::Reverse(ServerSpec { scheme: Scheme::Http, host: "127.0.0.1".into(), port: 5173, h2c: false })
        );
        assert_eq!(m.listen_port, Some(8443));
        let m: Mode = "regular@0.0.0.0:9000".parse().unwrap();
        assert_eq!((m.kind, m.listen_host.as_deref(), m.listen_port), (ModeKind::Regular, Some("0.0.0.0"), Some(9000)));
        let m: Mode = "upstream:https://proxy.example".parse().unwrap();
        assert_eq!(m.to_string(), "upstream:https://proxy.example:443");
    }

    #[test]
    fn bad_modes_are_refused() {
        for bad in ["", "nope", "reverse", "reverse:ftp://x", "regular:x", "regular@notaport", "reverse:http://h/path"]
        {
            assert!(bad.parse::<Mode>().is_err(), "{bad} parsed");
        }
    }
}
