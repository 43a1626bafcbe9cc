//! The flow log on stdout (mitmdump's dumper): one line per finished flow,
//! `CLIENT METHOD URL -> STATUS SIZE DURATION`, with headers from `--flow-detail 2` and WebSocket
//! messages from 2 as well. Each line is flushed at once, so a reader of stdout sees each exchange as it
//! finishes; stdout carries nothing else. The positional FILTER chooses which flows are shown.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use crate::addon::Addon;
use crate::filter::{Filter, FlowRef};
use crate::flow::{HttpFlow, TcpFlow, WebSocketMessage};
use crate::http::message::Headers;

/// The addon; only in the chain when `--flow-detail` is above 0.
pub struct Dumper {
    /// 1 one line per flow, 2 and more adds headers and WebSocket messages.
    detail: u8,
    /// The view filter: flows it does not match are not printed.
    view: Option<Filter>,
}

#[async_trait::async_trait]
impl Addon for Dumper {
    fn name(&self) -> &str {
        "dumper"
    }

    fn wants_messages(&self) -> bool {
        self.detail >= 2
    }

    /// It records messages; it never changes them.
    fn changes_messages(&self) -> bool {
        false
    }

    /// The log shows no bodies; only a view filter may look at them.
    fn reads_bodies(&self) -> bool {
        self.view.as_ref().is_some_and(Filter::reads_bodies)
    }

    /// A view filter that looks at bodies has them kept for it.
    async fn requestheaders(&self, flow: &mut HttpFlow) {
        if self.reads_bodies() {
            flow.request.stream = false;
        }
    }

    async fn responseheaders(&self, flow: &mut HttpFlow) {
        if let Some(response) = flow.response.as_mut().filter(|_| self.reads_bodies()) {
            response.stream = false;
        }
    }

    async fn response(&self, flow: &mut HttpFlow) {
        if self.shows((&*flow).into()) {
            self.http(flow);
        }
    }

    async fn error(&self, flow: &mut HttpFlow) {
        if self.shows((&*flow).into()) {
            self.http(flow);
        }
    }

    async fn websocket_message(&self, flow: &mut HttpFlow, message: &mut WebSocketMessage) {
        if self.detail >= 2 && self.shows((&*flow).into()) {
            self.websocket_message(flow, message);
        }
    }

    async fn websocket_end(&self, flow: &mut HttpFlow) {
        if self.shows((&*flow).into()) {
            self.websocket_end(flow);
        }
    }

    async fn tcp_end(&self, flow: &mut TcpFlow) {
        if self.shows((&*flow).into()) {
            self.tcp(flow);
        }
    }
}

/// The `ws://` or `wss://` URL of a WebSocket flow's handshake.
fn websocket_url(flow: &HttpFlow) -> String {
    flow.request.url().replacen("http", "ws", 1)
}

impl Dumper {
    pub fn new(detail: u8, view: Option<Filter>) -> Self {
        Dumper { detail, view }
    }

    fn shows(&self, flow: FlowRef<'_>) -> bool {
        self.view.as_ref().is_none_or(|filter| filter.matches(flow))
    }

    fn http(&self, flow: &HttpFlow) {
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

    fn tcp(&self, flow: &TcpFlow) {
        emit(&format!(
            "{} TCP {} -> {} up {} down {}\n",
            flow.client_addr,
            flow.server,
            pretty_size(flow.bytes_to_server),
            pretty_size(flow.bytes_to_client),
            pretty_duration(flow.duration)
        ));
    }

    /// A line per WebSocket message, at detail 2 and up: `CLIENT WS URL -> text 5b: hello`
    /// (`->` client to server, `<-` server to client).
    fn websocket_message(&self, flow: &HttpFlow, message: &WebSocketMessage) {
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
            websocket_url(flow),
            message.kind,
            pretty_size(message.payload.len() as u64)
        ));
    }

    /// The closing line of a WebSocket session.
    fn websocket_end(&self, flow: &HttpFlow) {
        let Some(ws) = &flow.websocket else { return };
        emit(&format!(
            "{} WS {} closed: {} messages ({}) up, {} messages ({}) down {}\n",
            flow.client_addr,
            websocket_url(flow),
            ws.messages_from_client,
            pretty_size(ws.bytes_from_client),
            ws.messages_from_server,
            pretty_size(ws.bytes_from_server),
            pretty_duration(ws.duration)
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
