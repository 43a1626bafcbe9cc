//! The flow model: what strata records of one HTTP exchange (with its WebSocket session, if any) or one
//! TCP session. Layers create and fill flows; addons (`crate::addons`) observe and change them through
//! the events of their lifecycle. Nothing here does I/O.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::http::message::{Headers, Version};
use crate::http::url::{split_host_port, split_url, Scheme};

/// A flow's identity: unique across flows and, with overwhelming probability, across runs (a random
/// per-process part and a sequence number), shown in the form of a UUID as mitmproxy shows its flow ids.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId(u128);

impl FlowId {
    /// The next id of this process.
    pub fn next() -> FlowId {
        static PROCESS: OnceLock<u64> = OnceLock::new();
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);
        let process = *PROCESS.get_or_init(|| {
            let mut bytes = [0u8; 8];
            // Without randomness the ids are still unique within the run.
            let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
            u64::from_le_bytes(bytes)
        });
        FlowId((u128::from(process) << 64) | u128::from(SEQUENCE.fetch_add(1, Ordering::Relaxed)))
    }
}

impl FlowId {
    /// Reads an id back from its `Display` form.
    pub fn parse(text: &str) -> Option<FlowId> {
        let hex: String = text.chars().filter(|c| *c != '-').collect();
        (hex.len() == 32).then(|| u128::from_str_radix(&hex, 16).ok().map(FlowId)).flatten()
    }
}

impl fmt::Display for FlowId {
    /// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = format!("{:032x}", self.0);
        write!(f, "{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
    }
}

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
    /// The body, when an addon asked for it (by clearing `stream` in `requestheaders`) and it fit in
    /// `--body-size-limit`; `None` if it was only streamed.
    pub body: Option<Vec<u8>>,
    /// Body bytes seen, kept or not.
    pub body_len: u64,
    /// True (the default) to relay the body as it arrives without keeping it; an addon that needs the
    /// body in its `request` hook sets it to false in `requestheaders` (mitmproxy's `stream`, whose default
    /// is the other way round).
    pub stream: bool,
    /// The trailer fields after the body (chunked HTTP/1.1 or HTTP/2), when known.
    pub trailers: Option<Headers>,
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
    /// As `Request::stream`, set in `responseheaders`.
    pub stream: bool,
    /// As `Request::trailers`.
    pub trailers: Option<Headers>,
}

impl Response {
    /// A complete response made by strata or an addon, with a body of `content_type` (none if empty);
    /// `content-length` is set from the body when it is sent.
    pub fn new(status: u16, content_type: &str, body: Vec<u8>) -> Self {
        let mut headers = Headers::default();
        if !content_type.is_empty() {
            headers.append("content-type", content_type);
        }
        Response::with_headers(status, headers, body)
    }

    /// A complete response with these header fields.
    pub fn with_headers(status: u16, headers: Headers, body: Vec<u8>) -> Self {
        Response {
            status,
            reason: reason_phrase(status).to_string(),
            version: Version::Http11,
            headers,
            body_len: body.len() as u64,
            body: Some(body),
            stream: false,
            trailers: None,
        }
    }

    /// A short plain-text response.
    pub fn text(status: u16, text: &str) -> Self {
        Response::new(status, "text/plain; charset=utf-8", text.as_bytes().to_vec())
    }
}

/// The reason phrase strata sends with a status.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        410 => "Gone",
        429 => "Too Many Requests",
        407 => "Proxy Authentication Required",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

/// A time given as seconds since the Unix epoch, as sessions and flow files keep it (none, or before the
/// epoch: the epoch).
pub fn from_unix_seconds(seconds: Option<f64>) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs_f64(seconds.unwrap_or(0.0).max(0.0))
}

/// Why a killed flow ended, as `HttpFlow::error` says it.
pub const KILLED: &str = "killed by an addon";

/// One HTTP exchange (and, after an upgrade, its WebSocket session).
#[derive(Debug, Clone)]
pub struct HttpFlow {
    pub id: FlowId,
    pub client_addr: SocketAddr,
    /// True when the client sent this request to strata as its HTTP proxy (regular and upstream modes,
    /// outside any CONNECT tunnel): the requests `--proxyauth` checks.
    pub at_proxy: bool,
    /// The server's IP address and port, once connected.
    pub server_addr: Option<SocketAddr>,
    pub request: Request,
    pub response: Option<Response>,
    /// Why the exchange failed, if it did (the client then got an error response or a closed connection).
    pub error: Option<String>,
    /// The WebSocket session that followed a 101.
    pub websocket: Option<WebSocketData>,
    /// Wall-clock start, for records such as HAR.
    pub started_at: SystemTime,
    pub timings: Timings,
    /// Values addons keep with the flow (mitmproxy's `flow.metadata`), as text.
    pub metadata: Vec<(String, String)>,
    /// The TLS the client spoke to strata, if it did (mitmproxy's `client_conn` TLS fields).
    pub client_tls: Option<TlsFacts>,
    /// The TLS strata spoke to the server, if it did (`server_conn`).
    pub server_tls: Option<TlsFacts>,
}

/// What a TLS handshake settled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFacts {
    /// The server name asked for (SNI).
    pub sni: Option<String>,
    /// The protocol agreed by ALPN (`h2`, `http/1.1`).
    pub alpn: Option<String>,
    /// `TLSv1.2` or `TLSv1.3`.
    pub version: Option<String>,
    /// The peer's own certificate (DER), as it presented it: the server's, toward a server; none toward
    /// the client, which presents none.
    pub certificate: Option<Bytes>,
}

impl TlsFacts {
    /// The facts of an established rustls connection, with the SNI it was asked for.
    pub fn of(connection: &rustls::CommonState, sni: Option<String>) -> TlsFacts {
        TlsFacts {
            sni,
            alpn: connection.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned()),
            version: connection.protocol_version().map(|v| match v {
                rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_string(),
                rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_string(),
                other => format!("{other:?}"),
            }),
            certificate: connection
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|leaf| Bytes::copy_from_slice(leaf)),
        }
    }
}

impl HttpFlow {
    /// A flow for a request that just arrived.
    pub fn new(client_addr: SocketAddr, at_proxy: bool, request: Request) -> Self {
        HttpFlow {
            id: FlowId::next(),
            client_addr,
            at_proxy,
            server_addr: None,
            request,
            response: None,
            error: None,
            websocket: None,
            started_at: SystemTime::now(),
            timings: Timings::default(),
            metadata: Vec::new(),
            client_tls: None,
            server_tls: None,
        }
    }

    /// Ends the flow without a response: the client connection is dropped (mitmproxy's `flow.kill()`).
    pub fn kill(&mut self) {
        self.error = Some(KILLED.to_string());
    }

    /// True once an addon killed the flow.
    pub fn is_killed(&self) -> bool {
        self.error.as_deref() == Some(KILLED)
    }
}

/// Where the time of an exchange went (HAR's `timings`), in milliseconds; -1 when it does not apply.
/// `connect_ms` includes `ssl_ms`, the TLS handshake with the server, as in HAR.
#[derive(Debug, Clone, Copy)]
pub struct Timings {
    pub connect_ms: f64,
    pub ssl_ms: f64,
    pub send_ms: f64,
    pub wait_ms: f64,
    pub receive_ms: f64,
}

impl Default for Timings {
    fn default() -> Self {
        Timings { connect_ms: -1.0, ssl_ms: -1.0, send_ms: 0.0, wait_ms: 0.0, receive_ms: 0.0 }
    }
}

impl Timings {
    /// The whole exchange.
    pub fn total(&self) -> Duration {
        let ms = self.connect_ms.max(0.0) + self.send_ms + self.wait_ms + self.receive_ms;
        Duration::from_secs_f64(ms.max(0.0) / 1000.0)
    }
}

/// One TCP relay.
#[derive(Debug, Clone)]
pub struct TcpFlow {
    pub id: FlowId,
    pub client_addr: SocketAddr,
    /// `host:port` of the server.
    pub server: String,
    /// Bytes relayed each way so far: they grow as the relay goes on, and are the totals at `tcp_end`.
    pub bytes_to_server: u64,
    pub bytes_to_client: u64,
    pub duration: Duration,
    /// The chunks that passed, when read back from a session that kept them (a live relay keeps none).
    pub messages: Vec<TcpMessage>,
}

/// A chunk of a TCP relay, as the `tcp_message` event sees it (and may change).
#[derive(Debug, Clone)]
pub struct TcpMessage {
    pub from_client: bool,
    pub content: Vec<u8>,
    /// When it was read.
    pub at: SystemTime,
}

/// One WebSocket message, as recorded on its flow.
#[derive(Debug, Clone)]
pub struct WebSocketMessage {
    pub from_client: bool,
    /// `text`, `binary`, `ping`, `pong` or `close`.
    pub kind: &'static str,
    /// The payload (for close: the status code and reason, as text).
    pub payload: Vec<u8>,
    /// When it was read.
    pub at: SystemTime,
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
        WebSocketMessage { from_client, kind, payload, at: SystemTime::now() }
    }

    /// The message to send for a (possibly changed) text or binary message; `None` for other kinds,
    /// whose payload is not the addons' to change. A text message whose new payload is not UTF-8 is
    /// sent as binary.
    pub fn to_message(&self) -> Option<tokio_tungstenite::tungstenite::Message> {
        use tokio_tungstenite::tungstenite::Message;
        match self.kind {
            "text" => Some(match String::from_utf8(self.payload.clone()) {
                Ok(text) => Message::Text(text.into()),
                Err(e) => Message::Binary(e.into_bytes().into()),
            }),
            "binary" => Some(Message::Binary(self.payload.clone().into())),
            _ => None,
        }
    }
}

/// A WebSocket session: counts of what passed, and the messages, when an addon keeps them.
#[derive(Debug, Clone)]
pub struct WebSocketData {
    /// Messages kept by an addon (the HAR recorder pushes them); the session itself keeps none.
    pub messages: Vec<WebSocketMessage>,
    pub messages_from_client: u64,
    pub messages_from_server: u64,
    pub bytes_from_client: u64,
    pub bytes_from_server: u64,
    pub started: Instant,
    pub duration: Duration,
}

impl WebSocketData {
    pub fn new() -> Self {
        WebSocketData::with_messages(Vec::new())
    }

    /// A session record holding `messages` (for records read back, and tests).
    pub fn with_messages(messages: Vec<WebSocketMessage>) -> Self {
        WebSocketData {
            messages,
            messages_from_client: 0,
            messages_from_server: 0,
            bytes_from_client: 0,
            bytes_from_server: 0,
            started: Instant::now(),
            duration: Duration::ZERO,
        }
    }

    /// Counts a message that passed.
    pub fn count(&mut self, message: &WebSocketMessage) {
        self.count_bytes(message.from_client, message.payload.len() as u64);
    }

    /// Counts a message of `len` bytes that nobody recorded (the relay kept its length only).
    pub fn count_bytes(&mut self, from_client: bool, len: u64) {
        if from_client {
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

impl Default for WebSocketData {
    fn default() -> Self {
        WebSocketData::new()
    }
}
