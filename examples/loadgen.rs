//! loadgen: a small HTTP/1.1 load client for strata's benchmark (`bench/run.sh`, scenarios 3 and 4).
//!
//! wrk cannot speak CONNECT + TLS through a proxy, so this does: each of `--connections` tasks opens a TCP
//! connection (to `--proxy` if given, else straight to `--target`), sends `CONNECT target` first when both
//! `--proxy` and `--tls` are given, does a TLS handshake when `--tls` is given (trusting `--cacert`, else the
//! Mozilla roots), then sends keep-alive `GET --path` requests one after another, reading each response by
//! its Content-Length (or chunked encoding) until `--duration` seconds have passed. With
//! `--new-connection-per-request` every request gets a fresh TCP connection (and CONNECT and TLS handshake),
//! so the rate is a handshake rate. TLS session resumption is off unless `--resume` is given: every
//! handshake is a full one. Without TLS but with a proxy, requests are sent in absolute form
//! (`GET http://target/path`), as to an explicit proxy.
//!
//! It prints one line on stdout, `key=value` pairs separated by spaces:
//!
//! ```text
//! requests=123456 seconds=5.00 rps=24691.2 p50_ms=2.512 p99_ms=6.104 errors=0 bad_status=0 connections=64
//! ```
//!
//! `errors` counts failed connections or requests (each is retried on a new connection), `bad_status` counts
//! responses whose status was not 2xx. Latency is per request, from writing the request (or from starting
//! to connect, with `--new-connection-per-request`) to the last byte of the response body.
//!
//! ```sh
//! cargo build --release --example loadgen
//! target/release/examples/loadgen --proxy 127.0.0.1:8080 --target 127.0.0.1:8443 --tls \
//!     --cacert ~/.strata/strata-ca-cert.pem --path /1k --connections 64 --duration 5
//! ```

use std::io::BufReader;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout_at;
use tokio_rustls::TlsConnector;

#[derive(Debug, Parser)]
#[command(name = "loadgen", about = "HTTP/1.1 load client with CONNECT + TLS support", max_term_width = 100)]
struct Args {
    /// Explicit proxy to go through, HOST:PORT. Without it, connect straight to --target.
    #[arg(long, value_name = "HOST:PORT")]
    proxy: Option<String>,

    /// The server, HOST:PORT (the CONNECT target and Host header when a proxy is used).
    #[arg(long, value_name = "HOST:PORT")]
    target: String,

    /// Speak TLS to the target (through a CONNECT tunnel when --proxy is given).
    #[arg(long)]
    tls: bool,

    /// PEM file of CA certificates to trust instead of the Mozilla roots.
    #[arg(long, value_name = "PEM")]
    cacert: Option<PathBuf>,

    /// Server name for TLS (SNI and certificate check); default: the host part of --target.
    #[arg(long, value_name = "NAME")]
    sni: Option<String>,

    /// Request path.
    #[arg(long, default_value = "/1k")]
    path: String,

    /// Concurrent connections.
    #[arg(short = 'c', long, default_value_t = 64)]
    connections: usize,

    /// Seconds to run.
    #[arg(short = 'd', long, default_value_t = 5.0)]
    duration: f64,

    /// Open a new connection (CONNECT, TLS handshake) for every request.
    #[arg(long)]
    new_connection_per_request: bool,

    /// Allow TLS session resumption (default: every handshake is a full one).
    #[arg(long)]
    resume: bool,

    /// Worker threads of the client's runtime.
    #[arg(short = 't', long, default_value_t = 2)]
    threads: usize,

    /// Seconds to wait for any single connect, handshake or response before counting an error.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
}

type Stream = Box<dyn AsyncStream>;
trait AsyncStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> AsyncStream for T {}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Shared {
    args: Args,
    connector: Option<(TlsConnector, ServerName<'static>)>,
    request: Vec<u8>,
    connect_request: Vec<u8>,
    errors: AtomicU64,
    bad_status: AtomicU64,
}

fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads.max(1)).enable_all().build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> Result<(), BoxError> {
    let connector = if args.tls { Some(tls_connector(&args)?) } else { None };
    let host_header = &args.target;
    let request_target = if args.proxy.is_some() && !args.tls {
        format!("http://{}{}", args.target, args.path)
    } else {
        args.path.clone()
    };
    let request = format!("GET {request_target} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: loadgen\r\n\r\n");
    let connect_request = format!("CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n\r\n", args.target);
    let shared = Arc::new(Shared {
        request: request.into_bytes(),
        connect_request: connect_request.into_bytes(),
        connector,
        errors: AtomicU64::new(0),
        bad_status: AtomicU64::new(0),
        args,
    });

    let start = Instant::now();
    let deadline = tokio::time::Instant::from_std(start + Duration::from_secs_f64(shared.args.duration));
    let mut tasks = Vec::with_capacity(shared.args.connections);
    for _ in 0..shared.args.connections {
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move { worker(shared, deadline).await }));
    }
    let mut latencies: Vec<u32> = Vec::new();
    for task in tasks {
        latencies.extend(task.await?);
    }
    let seconds = start.elapsed().as_secs_f64().min(shared.args.duration).max(1e-9);
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i] as f64 / 1000.0
    };
    println!(
        "requests={} seconds={:.2} rps={:.1} p50_ms={:.3} p99_ms={:.3} errors={} bad_status={} connections={}",
        latencies.len(),
        seconds,
        latencies.len() as f64 / seconds,
        pct(0.50),
        pct(0.99),
        shared.errors.load(Ordering::Relaxed),
        shared.bad_status.load(Ordering::Relaxed),
        shared.args.connections,
    );
    Ok(())
}

fn tls_connector(args: &Args) -> Result<(TlsConnector, ServerName<'static>), BoxError> {
    let mut roots = rustls::RootCertStore::empty();
    match &args.cacert {
        Some(path) => {
            let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
            for cert in rustls_pemfile::certs(&mut BufReader::new(file)) {
                roots.add(cert?)?;
            }
            if roots.is_empty() {
                return Err(format!("{}: no certificate found", path.display()).into());
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    if !args.resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    let name = match &args.sni {
        Some(name) => name.clone(),
        None => host_of(&args.target).to_string(),
    };
    let server_name = match name.parse::<IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => ServerName::try_from(name)?,
    };
    Ok((TlsConnector::from(Arc::new(config)), server_name))
}

fn host_of(authority: &str) -> &str {
    let host = match authority.rfind(':') {
        Some(i) if !authority[i + 1..].contains(']') => &authority[..i],
        _ => authority,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

/// One connection's loop: returns the latencies (microseconds) of the requests it completed in time.
async fn worker(shared: Arc<Shared>, deadline: tokio::time::Instant) -> Vec<u32> {
    let mut latencies = Vec::with_capacity(4096);
    let mut conn: Option<(Stream, Buf)> = None;
    let step = Duration::from_secs_f64(shared.args.timeout);
    while tokio::time::Instant::now() < deadline {
        let started = Instant::now();
        let until = deadline.min(tokio::time::Instant::now() + step);
        if conn.is_none() {
            match timeout_at(until, open(&shared)).await {
                Ok(Ok(stream)) => conn = Some((stream, Buf::new())),
                Ok(Err(_)) => {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                Err(_) => {
                    if tokio::time::Instant::now() < deadline {
                        shared.errors.fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                }
            }
        }
        let (stream, buf) = conn.as_mut().expect("connected");
        let measured_from = if shared.args.new_connection_per_request { started } else { Instant::now() };
        match timeout_at(until, exchange(stream, buf, &shared.request)).await {
            Ok(Ok((status, keep_alive))) => {
                latencies.push(measured_from.elapsed().as_micros().min(u32::MAX as u128) as u32);
                if !(200..300).contains(&status) {
                    shared.bad_status.fetch_add(1, Ordering::Relaxed);
                }
                if !keep_alive || shared.args.new_connection_per_request {
                    if let Some((mut stream, _)) = conn.take() {
                        let _ = timeout_at(until, stream.shutdown()).await;
                    }
                }
            }
            Ok(Err(_)) => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                conn = None;
            }
            Err(_) => {
                if tokio::time::Instant::now() < deadline {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                }
                conn = None;
            }
        }
    }
    latencies
}

async fn open(shared: &Shared) -> Result<Stream, BoxError> {
    let args = &shared.args;
    let tcp = TcpStream::connect(args.proxy.as_deref().unwrap_or(&args.target)).await?;
    tcp.set_nodelay(true)?;
    let Some((connector, name)) = &shared.connector else {
        return Ok(Box::new(tcp));
    };
    let mut tcp = tcp;
    if args.proxy.is_some() {
        tcp.write_all(&shared.connect_request).await?;
        let mut buf = Buf::new();
        let head = buf.read_head(&mut tcp).await?;
        let status = parse_status(&head)?;
        if status != 200 {
            return Err(format!("CONNECT answered {status}").into());
        }
        if buf.len() > 0 {
            return Err("data after the CONNECT response".into());
        }
    }
    let tls = connector.connect(name.clone(), tcp).await?;
    Ok(Box::new(tls))
}

/// Sends one request and reads its response; returns the status and whether the connection stays open.
async fn exchange(stream: &mut Stream, buf: &mut Buf, request: &[u8]) -> Result<(u16, bool), BoxError> {
    stream.write_all(request).await?;
    stream.flush().await?;
    let head = buf.read_head(stream).await?;
    let status = parse_status(&head)?;
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut close = false;
    for line in head.split(|&b| b == b'\n').skip(1) {
        let line = std::str::from_utf8(line).map_err(|_| "non-UTF-8 header")?.trim_end_matches('\r');
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(value.parse().map_err(|_| "bad Content-Length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().ends_with("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.to_ascii_lowercase().split(',').any(|t| t.trim() == "close");
        }
    }
    if chunked {
        loop {
            let line = buf.read_line(stream).await?;
            let size_text = std::str::from_utf8(&line)?.trim();
            let size_text = size_text.split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(size_text, 16).map_err(|_| "bad chunk size")?;
            if size == 0 {
                // trailers, then the empty line
                while !buf.read_line(stream).await?.is_empty() {}
                break;
            }
            buf.skip(stream, size).await?;
            if !buf.read_line(stream).await?.is_empty() {
                return Err("missing CRLF after chunk".into());
            }
        }
    } else if let Some(n) = content_length {
        buf.skip(stream, n).await?;
    } else if !(status == 204 || status == 304 || (100..200).contains(&status)) {
        return Err("response without Content-Length or chunked encoding".into());
    }
    Ok((status, !close))
}

fn parse_status(head: &[u8]) -> Result<u16, BoxError> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or(&[]);
    let text = std::str::from_utf8(line)?;
    let mut parts = text.split_ascii_whitespace();
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1 response: {text:?}").into());
    }
    Ok(parts.next().ok_or("no status")?.parse()?)
}

/// A read buffer: bytes `data[start..end]` are received but not yet consumed.
struct Buf {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl Buf {
    fn new() -> Self {
        Buf { data: vec![0; 64 * 1024], start: 0, end: 0 }
    }

    fn len(&self) -> usize {
        self.end - self.start
    }

    async fn fill<S: AsyncRead + Unpin + ?Sized>(&mut self, stream: &mut S) -> Result<(), BoxError> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.data.len() {
            if self.start == 0 {
                return Err("response head too large".into());
            }
            self.data.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let n = stream.read(&mut self.data[self.end..]).await?;
        if n == 0 {
            return Err("connection closed".into());
        }
        self.end += n;
        Ok(())
    }

    /// Reads up to and including the empty line ending a head; returns the head without it.
    async fn read_head<S: AsyncRead + Unpin + ?Sized>(&mut self, stream: &mut S) -> Result<Vec<u8>, BoxError> {
        let mut searched: usize = 0;
        loop {
            let window = &self.data[self.start..self.end];
            if let Some(i) = find(&window[searched.saturating_sub(3)..], b"\r\n\r\n") {
                let i = searched.saturating_sub(3) + i;
                let head = window[..i].to_vec();
                self.start += i + 4;
                return Ok(head);
            }
            searched = window.len(); // relative to start, so still right after fill() compacts
            self.fill(stream).await?;
        }
    }

    /// Reads one CRLF-terminated line; returns it without the CRLF.
    async fn read_line<S: AsyncRead + Unpin + ?Sized>(&mut self, stream: &mut S) -> Result<Vec<u8>, BoxError> {
        loop {
            let window = &self.data[self.start..self.end];
            if let Some(i) = find(window, b"\r\n") {
                let line = window[..i].to_vec();
                self.start += i + 2;
                return Ok(line);
            }
            self.fill(stream).await?;
        }
    }

    /// Consumes `n` body bytes.
    async fn skip<S: AsyncRead + Unpin + ?Sized>(&mut self, stream: &mut S, mut n: u64) -> Result<(), BoxError> {
        loop {
            let have = self.len() as u64;
            if have >= n {
                self.start += n as usize;
                return Ok(());
            }
            n -= have;
            self.start = self.end;
            self.fill(stream).await?;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
