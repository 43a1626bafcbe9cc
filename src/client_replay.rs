//! `--client-replay FILE` (HAR, a strata session or a mitmdump flow file): re-sends the recorded requests to
//! their servers, one at a time, then reports how many failed. strata opens no listener in this mode.
//!
//! Each recorded request goes through the same layers as a proxied one: it is written, as an HTTP/1.1
//! proxy request (absolute URL, `Connection: close`), into an in-memory pipe whose other end runs a
//! regular-mode layer stack. So the flow has all its events (the flow log prints it, `--save-har`
//! records it, scripts see it), the server connection is the proxy's (TLS verification, `--upstream-ca`,
//! `-k`, HTTP/2 by ALPN, timeouts), and there is no second HTTP client. The `Playback` addon, added to
//! the chain in this mode, notes which flows failed.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::addon::Addon;
use crate::addons::har::RecordedExchange;
use crate::config::{Mode, ModeKind};
use crate::context::{Address, RootContext};
use crate::error::ConfigError;
use crate::flow::HttpFlow;
use crate::http::message::{RequestHead, Version};
use crate::io::BufIo;
use crate::layer::Layer;
use crate::layers::http1::codec::write_request_head;
use crate::layers::mode::ModeLayer;

/// The pipe's buffer each way.
const PIPE_BYTES: usize = 64 * 1024;

/// The addon that notes failed replays, as `METHOD URL: error`.
#[derive(Default)]
pub struct Playback {
    failures: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl Addon for Playback {
    fn name(&self) -> &str {
        "clientplayback"
    }

    async fn error(&self, flow: &mut HttpFlow) {
        let error = flow.error.as_deref().unwrap_or("no response");
        let failure = format!("{} {}: {error}", flow.request.method, flow.request.url());
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).push(failure);
    }
}

impl Playback {
    fn take_failures(&self) -> Vec<String> {
        std::mem::take(&mut *self.failures.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Replays every exchange in `path`; returns the number of failures (each reported on stderr).
pub async fn run(root: Arc<RootContext>, playback: &Playback, path: &Path) -> Result<usize, ConfigError> {
    let recorded = crate::read_flows::exchanges(path)
        .map_err(|reason| ConfigError::InvalidValue { flag: "--client-replay", reason })?;
    let mut failures = 0;
    for (index, exchange) in recorded.iter().enumerate() {
        let answer = replay(&root, exchange).await;
        let failed = playback.take_failures();
        if !failed.is_empty() || answer.is_empty() {
            failures += 1;
            let cause = failed.join("; ");
            let cause = if cause.is_empty() { "no response".to_string() } else { cause };
            eprintln!("client replay: request {} ({} {}) failed: {cause}", index + 1, exchange.method, url(exchange));
        }
    }
    root.addons.each(&(), |addon, _| addon.done()).await;
    eprintln!("client replay: {} of {} requests answered", recorded.len() - failures, recorded.len());
    Ok(failures)
}

/// Sends one recorded request through a regular-mode layer stack (its flow has every event, as a proxied
/// one's); returns the start of the answer the stack wrote back (empty if none).
pub async fn replay(root: &Arc<RootContext>, exchange: &RecordedExchange) -> Vec<u8> {
    let mode = Arc::new(Mode { kind: ModeKind::Regular, listen_host: None, listen_port: None });
    let client_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let (mut client, proxy_end) = tokio::io::duplex(PIPE_BYTES);
    let layer = ModeLayer::new(root.clone(), &mode, client_addr, client_addr, None);
    let stack = tokio::spawn(Box::new(layer).run(BufIo::new(Box::new(proxy_end))));
    let request = request_bytes(exchange);
    // Written and read at once, so neither a large request nor a large response fills the pipe.
    let (mut reader, mut writer) = tokio::io::split(&mut client);
    let write = async {
        let _ = writer.write_all(&request).await;
        let _ = writer.flush().await;
    };
    let mut answer = Vec::new();
    let read = async {
        let mut chunk = vec![0u8; PIPE_BYTES];
        while let Ok(n) = reader.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            // Only the status line is of interest; the body is the flow's, already recorded.
            if answer.len() < 256 {
                answer.extend_from_slice(&chunk[..n.min(256)]);
            }
        }
    };
    tokio::join!(write, read);
    let _ = stack.await;
    answer
}

/// The recorded request as an HTTP/1.1 proxy request: absolute URL, its own framing, `Connection: close`.
/// The other hop-by-hop fields are the layers' to remove, as for any proxied request.
fn request_bytes(exchange: &RecordedExchange) -> Vec<u8> {
    let mut headers = exchange.request_headers.clone();
    for name in ["transfer-encoding", "content-length", "connection", "proxy-authorization"] {
        headers.remove(name);
    }
    if !exchange.request_body.is_empty() || !matches!(exchange.method.as_str(), "GET" | "HEAD") {
        headers.set("content-length", exchange.request_body.len().to_string());
    }
    if !headers.contains("host") {
        headers.0.insert(0, ("Host".to_string(), host_field(exchange).into_bytes()));
    }
    headers.append("connection", "close");
    let target = url(exchange);
    let head =
        RequestHead { method: exchange.method.clone(), target: target.clone(), version: Version::Http11, headers };
    let mut out = Vec::with_capacity(512 + exchange.request_body.len());
    write_request_head(&head, &target, &mut out);
    out.extend_from_slice(&exchange.request_body);
    out
}

/// `host[:port]`, the port only when it is not the scheme's default.
fn host_field(exchange: &RecordedExchange) -> String {
    if exchange.port == exchange.scheme.default_port() {
        if exchange.host.contains(':') {
            format!("[{}]", exchange.host)
        } else {
            exchange.host.clone()
        }
    } else {
        Address::new(exchange.host.clone(), exchange.port).to_string()
    }
}

fn url(exchange: &RecordedExchange) -> String {
    let host = host_field(exchange);
    format!("{}://{host}{}", exchange.scheme.as_str(), exchange.path)
}
