//! Flow records and the flow log on stdout.
//!
//! A flow is the record of one HTTP exchange or TCP session. When it ends, it is written to the flow log
//! as one mitmdump-style line (`CLIENT METHOD URL -> STATUS SIZE DURATION`), flushed at once so that a
//! reader of stdout sees each exchange as it finishes. stdout carries nothing else.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use crate::http::message::{Headers, Version};
use crate::http::url::{split_host_port, split_url, Scheme};

/// The request of an HTTP flow, as forwarded (hop-by-hop fields removed).
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub scheme: Scheme,
    /// Host as the URL shows it (the Host header's name inside a tunnel).
    pub host: String,
    pub port: u16,
    /// origin-form target: path and query (`*` for `OPTIONS *`).
    pub path: String,
    pub version: Version,
    pub headers: Headers,
    /// The body, when a feature needed it kept (HAR, replay, body filters, modification); `None` if it
    /// was only streamed.
    pub body: Option<Vec<u8>>,
    /// Body bytes seen, kept or not.
    pub body_len: u64,
}

impl Request {
    /// Absolute URL, with the port only when it is not the scheme's default.
    pub fn url(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        let path = if self.path == "*" { "" } else { self.path.as_str() };
        if self.port == self.scheme.default_port() {
            format!("{}://{host}{path}", self.scheme.as_str())
        } else {
            format!("{}://{host}:{}{path}", self.scheme.as_str(), self.port)
        }
    }
}

impl Request {
    /// Points the request at an absolute `http://` or `https://` URL (map-remote, replay). Returns false,
    /// changing nothing, if `url` is not one.
    pub fn set_url(&mut self, url: &str) -> bool {
        let Some(url) = split_url(url) else { return false };
        let Some((host, port)) = split_host_port(url.authority) else { return false };
        self.scheme = url.scheme;
        self.host = host;
        self.port = port.unwrap_or(url.scheme.default_port());
        self.path = url.path;
        true
    }
}

/// The response of an HTTP flow.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub version: Version,
    pub headers: Headers,
    /// The body, when kept (see `Request::body`).
    pub body: Option<Vec<u8>>,
    /// Payload bytes relayed (after removing chunked framing).
    pub body_len: u64,
}

/// One HTTP exchange (and, after an upgrade, its WebSocket session).
#[derive(Debug, Clone)]
pub struct HttpFlow {
    pub client_addr: SocketAddr,
    /// The server's IP address and port, once connected.
    pub server_addr: Option<SocketAddr>,
    pub request: Request,
    pub response: Option<Response>,
    /// Why the exchange failed, if it did (the client then got an error response or a closed connection).
    pub error: Option<String>,
    /// The messages of a WebSocket session that followed a 101, when kept.
    pub websocket: Option<Vec<WebSocketMessage>>,
    /// Wall-clock start, for records such as HAR.
    pub started_at: SystemTime,
    pub timings: Timings,
}

/// Where the time of an exchange went (HAR's `timings`), in milliseconds; -1 when it does not apply.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    pub connect_ms: f64,
    pub send_ms: f64,
    pub wait_ms: f64,
    pub receive_ms: f64,
}

impl Default for Timings {
    fn default() -> Self {
        Timings { connect_ms: -1.0, send_ms: 0.0, wait_ms: 0.0, receive_ms: 0.0 }
    }
}

impl Timings {
    /// The whole exchange.
    pub fn total(&self) -> Duration {
        let ms = self.connect_ms.max(0.0) + self.send_ms + self.wait_ms + self.receive_ms;
        Duration::from_secs_f64(ms.max(0.0) / 1000.0)
    }
}

/// One finished TCP relay.
#[derive(Debug, Clone)]
pub struct TcpFlow {
    pub client_addr: SocketAddr,
    /// `host:port` of the server.
    pub server: String,
    pub bytes_to_server: u64,
    pub bytes_to_client: u64,
    pub duration: Duration,
}

/// One WebSocket message, as recorded on its flow.
#[derive(Debug, Clone)]
pub struct WebSocketMessage {
    pub from_client: bool,
    /// `text`, `binary`, `ping`, `pong` or `close`.
    pub kind: &'static str,
    /// The payload (for close: the status code and reason, as text).
    pub payload: Vec<u8>,
}

impl WebSocketMessage {
    pub fn from_message(from_client: bool, message: &tokio_tungstenite::tungstenite::Message) -> Self {
        use tokio_tungstenite::tungstenite::Message;
        let (kind, payload) = match message {
            Message::Text(text) => ("text", text.as_bytes().to_vec()),
            Message::Binary(data) => ("binary", data.to_vec()),
            Message::Ping(data) => ("ping", data.to_vec()),
            Message::Pong(data) => ("pong", data.to_vec()),
            Message::Close(Some(frame)) => {
                ("close", format!("{} {}", u16::from(frame.code), frame.reason).into_bytes())
            }
            Message::Close(None) => ("close", Vec::new()),
            Message::Frame(frame) => ("frame", frame.payload().to_vec()),
        };
        WebSocketMessage { from_client, kind, payload }
    }
}

/// A WebSocket session: counts of what passed, for the closing line.
#[derive(Debug, Clone)]
pub struct WebSocketFlow {
    pub client_addr: SocketAddr,
    /// `ws://` or `wss://` URL of the handshake.
    pub url: String,
    pub messages_from_client: u64,
    pub messages_from_server: u64,
    pub bytes_from_client: u64,
    pub bytes_from_server: u64,
    pub started: Instant,
    pub duration: Duration,
}

impl WebSocketFlow {
    pub fn new(client_addr: SocketAddr, url: String) -> Self {
        WebSocketFlow {
            client_addr,
            url,
            messages_from_client: 0,
            messages_from_server: 0,
            bytes_from_client: 0,
            bytes_from_server: 0,
            started: Instant::now(),
            duration: Duration::ZERO,
        }
    }

    pub fn record(&mut self, message: &WebSocketMessage) {
        let len = message.payload.len() as u64;
        if message.from_client {
            self.messages_from_client += 1;
            self.bytes_from_client += len;
        } else {
            self.messages_from_server += 1;
            self.bytes_from_server += len;
        }
    }

    pub fn finish(&mut self) {
        self.duration = self.started.elapsed();
    }
}

/// Where finished flows go: the stdout log, at the configured level of detail.
pub struct FlowLog {
    /// 0 prints nothing, 1 one line per flow, 2 and more adds headers.
    detail: u8,
}

impl FlowLog {
    pub fn new(detail: u8) -> Self {
        FlowLog { detail }
    }

    pub fn http(&self, flow: &HttpFlow) {
        if self.detail == 0 {
            return;
        }
        let (status, size) = match &flow.response {
            Some(response) => (response.status.to_string(), pretty_size(response.body_len)),
            None => ("<error>".to_string(), format!("({})", flow.error.as_deref().unwrap_or("no response"))),
        };
        let mut out = format!(
            "{} {} {} -> {status} {size} {}\n",
            flow.client_addr,
            flow.request.method,
            flow.request.url(),
            pretty_duration(flow.timings.total())
        );
        if self.detail >= 2 {
            let request = &flow.request;
            out.push_str(&format!("    >> {} {} {}\n", request.method, request.path, request.version.as_str()));
            write_headers(&mut out, "    >> ", &request.headers);
            if let Some(response) = &flow.response {
                out.push_str(&format!(
                    "    << {} {} {}\n",
                    response.version.as_str(),
                    response.status,
                    response.reason
                ));
                write_headers(&mut out, "    << ", &response.headers);
            }
        }
        emit(&out);
    }

    pub fn tcp(&self, flow: &TcpFlow) {
        if self.detail == 0 {
            return;
        }
        emit(&format!(
            "{} TCP {} -> {} up {} down {}\n",
            flow.client_addr,
            flow.server,
            pretty_size(flow.bytes_to_server),
            pretty_size(flow.bytes_to_client),
            pretty_duration(flow.duration)
        ));
    }
}

impl FlowLog {
    /// A line per WebSocket message, at detail 2 and up: `CLIENT WS URL -> text 5b: hello`
    /// (`->` client to server, `<-` server to client).
    pub fn websocket_message(&self, flow: &WebSocketFlow, message: &WebSocketMessage) {
        if self.detail < 2 {
            return;
        }
        let arrow = if message.from_client { "->" } else { "<-" };
        let preview = match message.kind {
            "binary" => String::new(),
            _ => {
                let text = String::from_utf8_lossy(&message.payload);
                let mut preview: String = text.chars().take(MESSAGE_PREVIEW_CHARS).collect();
                if text.chars().count() > MESSAGE_PREVIEW_CHARS {
                    preview.push_str("...");
                }
                format!(": {}", preview.escape_debug())
            }
        };
        emit(&format!(
            "{} WS {} {arrow} {} {}{preview}\n",
            flow.client_addr,
            flow.url,
            message.kind,
            pretty_size(message.payload.len() as u64)
        ));
    }

    /// The closing line of a WebSocket session.
    pub fn websocket_end(&self, flow: &WebSocketFlow) {
        if self.detail == 0 {
            return;
        }
        emit(&format!(
            "{} WS {} closed: {} messages ({}) up, {} messages ({}) down {}\n",
            flow.client_addr,
            flow.url,
            flow.messages_from_client,
            pretty_size(flow.bytes_from_client),
            flow.messages_from_server,
            pretty_size(flow.bytes_from_server),
            pretty_duration(flow.duration)
        ));
    }
}

/// Characters of a text message shown in its log line.
const MESSAGE_PREVIEW_CHARS: usize = 80;

fn write_headers(out: &mut String, prefix: &str, headers: &Headers) {
    for (name, value) in &headers.0 {
        let _ = writeln!(out, "{prefix}{name}: {}", String::from_utf8_lossy(value));
    }
}

/// Writes and flushes in one go, so concurrent flows never interleave within a line. A closed stdout
/// (e.g. `strata | head`) is not a reason to stop proxying.
fn emit(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// Sizes as mitmdump prints them: `512b`, `1.2k`, `3.4m`, `1g`.
pub fn pretty_size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [("t", 1 << 40), ("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)];
    for (suffix, unit) in UNITS {
        if bytes >= unit {
            let value = format!("{:.1}", bytes as f64 / unit as f64);
            return format!("{}{suffix}", value.strip_suffix(".0").unwrap_or(&value));
        }
    }
    format!("{bytes}b")
}

/// Durations as mitmdump prints them: `15ms`, `1.24s`.
pub fn pretty_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 10_000 {
        format!("{:.2}s", d.as_secs_f64())
    } else {
        format!("{:.0}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_human_readable() {
        assert_eq!(pretty_size(0), "0b");
        assert_eq!(pretty_size(1023), "1023b");
        assert_eq!(pretty_size(1024), "1k");
        assert_eq!(pretty_size(1229), "1.2k");
        assert_eq!(pretty_size(1 << 30), "1g");
    }

    #[test]
    fn durations_are_human_readable() {
        assert_eq!(pretty_duration(Duration::from_millis(15)), "15ms");
        assert_eq!(pretty_duration(Duration::from_millis(1240)), "1.24s");
        assert_eq!(pretty_duration(Duration::from_secs(42)), "42s");
    }
}
