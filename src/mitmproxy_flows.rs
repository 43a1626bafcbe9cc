//! Reading mitmproxy's flow files (`mitmdump -w`): a sequence of tnetstring values, one flow state each,
//! in the formats of mitmproxy 10 to 12 (flow format versions 20 and 21). HTTP flows (with their
//! WebSocket messages) and TCP flows become strata's flows; other kinds (UDP, DNS) are skipped. Older
//! files are refused with a message saying how to upgrade them (mitmproxy itself converts on load).

use std::net::SocketAddr;
use std::time::Duration;

use crate::flow::{
    from_unix_seconds, FlowId, HttpFlow, Request, Response, TcpFlow, TcpMessage, WebSocketData, WebSocketMessage,
};
use crate::http::message::{Headers, Version};
use crate::http::url::Scheme;
use crate::store::StoredFlow;

/// The flow format versions read (mitmproxy 10 wrote 20, 11 and 12 write 21).
const VERSIONS: std::ops::RangeInclusive<i64> = 20..=21;

/// One tnetstring value.
#[derive(Debug, Clone, PartialEq)]
pub enum TValue {
    Bytes(Vec<u8>),
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Null,
    List(Vec<TValue>),
    Dict(Vec<(Vec<u8>, TValue)>),
}

impl TValue {
    fn get(&self, key: &str) -> Option<&TValue> {
        match self {
            TValue::Dict(entries) => entries.iter().find(|(k, _)| k == key.as_bytes()).map(|(_, v)| v),
            _ => None,
        }
    }

    fn bytes(&self) -> Option<&[u8]> {
        match self {
            TValue::Bytes(b) => Some(b),
            TValue::Text(t) => Some(t.as_bytes()),
            _ => None,
        }
    }

    fn text(&self) -> Option<String> {
        self.bytes().map(|b| String::from_utf8_lossy(b).into_owned())
    }

    fn int(&self) -> Option<i64> {
        match self {
            TValue::Int(n) => Some(*n),
            TValue::Float(f) => Some(*f as i64),
            _ => None,
        }
    }

    fn float(&self) -> Option<f64> {
        match self {
            TValue::Float(f) => Some(*f),
            TValue::Int(n) => Some(*n as f64),
            _ => None,
        }
    }

    fn list(&self) -> &[TValue] {
        match self {
            TValue::List(items) => items,
            _ => &[],
        }
    }
}

/// Parses one tnetstring at the start of `data`; returns it and the rest.
pub fn parse_tnetstring(data: &[u8]) -> Result<(TValue, &[u8]), String> {
    let colon = data.iter().take(12).position(|&b| b == b':').ok_or("no length prefix")?;
    let len: usize = std::str::from_utf8(&data[..colon])
        .ok()
        .and_then(|digits| digits.parse().ok())
        .ok_or_else(|| format!("bad length {:?}", String::from_utf8_lossy(&data[..colon])))?;
    let start = colon + 1;
    let end = start.checked_add(len).filter(|&end| end < data.len()).ok_or("value runs past the end of the file")?;
    let (payload, kind, rest) = (&data[start..end], data[end], &data[end + 1..]);
    let number = || std::str::from_utf8(payload).map_err(|_| "bad number".to_string());
    let value = match kind {
        b',' => TValue::Bytes(payload.to_vec()),
        b';' => TValue::Text(String::from_utf8_lossy(payload).into_owned()),
        b'#' => TValue::Int(number()?.parse().map_err(|_| "bad integer")?),
        b'^' => TValue::Float(number()?.parse().map_err(|_| "bad float")?),
        b'!' => TValue::Bool(payload == b"true"),
        b'~' => TValue::Null,
        b']' => {
            let mut items = Vec::new();
            let mut inner = payload;
            while !inner.is_empty() {
                let (item, more) = parse_tnetstring(inner)?;
                items.push(item);
                inner = more;
            }
            TValue::List(items)
        }
        b'}' => {
            let mut entries = Vec::new();
            let mut inner = payload;
            while !inner.is_empty() {
                let (key, more) = parse_tnetstring(inner)?;
                let (value, more) = parse_tnetstring(more)?;
                entries.push((key.bytes().ok_or("a dictionary key that is not a string")?.to_vec(), value));
                inner = more;
            }
            TValue::Dict(entries)
        }
        other => return Err(format!("unknown type tag {:?}", other as char)),
    };
    Ok((value, rest))
}

/// True if `data` looks like a mitmproxy flow file (a tnetstring dictionary first).
pub fn looks_like_flows(data: &[u8]) -> bool {
    let digits = data.iter().take_while(|b| b.is_ascii_digit()).count();
    digits > 0 && data.get(digits) == Some(&b':')
}

/// Every HTTP and TCP flow in a mitmproxy flow file.
pub fn read(data: &[u8]) -> Result<Vec<StoredFlow>, String> {
    let mut flows = Vec::new();
    let mut rest = data;
    let mut index = 0;
    while !rest.iter().all(u8::is_ascii_whitespace) {
        index += 1;
        let (state, more) = parse_tnetstring(rest).map_err(|e| format!("flow {index}: {e}"))?;
        rest = more;
        let version = state.get("version").and_then(TValue::int).unwrap_or(0);
        if !VERSIONS.contains(&version) {
            return Err(format!(
                "flow {index}: flow format {version} (strata reads mitmproxy 10 to 12, formats 20-21; \
                 load and save it with a newer mitmproxy first)"
            ));
        }
        match state.get("type").and_then(TValue::text).as_deref() {
            Some("http") => flows.push(StoredFlow::Http(Box::new(http_flow(&state)))),
            Some("tcp") => flows.push(StoredFlow::Tcp(Box::new(tcp_flow(&state)))),
            _ => {}
        }
    }
    Ok(flows)
}

fn address(connection: Option<&TValue>, key: &str) -> Option<SocketAddr> {
    let pair = connection?.get(key)?.list();
    let host = pair.first()?.text()?;
    let port = u16::try_from(pair.get(1)?.int()?).ok()?;
    format!("{}:{port}", if host.contains(':') { format!("[{host}]") } else { host }).parse().ok()
}

fn headers(value: Option<&TValue>) -> Headers {
    let mut headers = Headers::default();
    for field in value.map(TValue::list).unwrap_or_default() {
        if let [name, value] = field.list() {
            if let (Some(name), Some(value)) = (name.text(), value.bytes()) {
                headers.append(&name, value.to_vec());
            }
        }
    }
    headers
}

fn version(value: Option<&TValue>) -> Version {
    match value.and_then(TValue::text).as_deref() {
        Some("HTTP/1.0") => Version::Http10,
        Some("HTTP/2.0") => Version::Http2,
        _ => Version::Http11,
    }
}

fn millis(from: Option<f64>, to: Option<f64>) -> f64 {
    match (from, to) {
        (Some(from), Some(to)) if to >= from => (to - from) * 1000.0,
        _ => 0.0,
    }
}

fn http_flow(state: &TValue) -> HttpFlow {
    let request_state = state.get("request");
    let field = |key: &str| request_state.and_then(|r| r.get(key));
    let content = field("content").and_then(TValue::bytes).map(<[u8]>::to_vec);
    let request = Request {
        method: field("method").and_then(TValue::text).unwrap_or_default(),
        scheme: field("scheme").and_then(TValue::text).as_deref().and_then(Scheme::from_name).unwrap_or(Scheme::Http),
        host: field("host").and_then(TValue::text).unwrap_or_default(),
        port: field("port").and_then(TValue::int).and_then(|p| u16::try_from(p).ok()).unwrap_or(80),
        path: field("path").and_then(TValue::text).unwrap_or_default(),
        version: version(field("http_version")),
        headers: headers(field("headers")),
        body_len: content.as_ref().map_or(0, |c| c.len() as u64),
        body: content,
        stream: true,
        trailers: None,
    };
    let client = address(state.get("client_conn"), "peername").unwrap_or_else(|| ([0, 0, 0, 0], 0).into());
    let mut flow = HttpFlow::new(client, false, request);
    flow.id = state.get("id").and_then(TValue::text).and_then(|id| FlowId::parse(&id)).unwrap_or(flow.id);
    flow.server_addr = address(state.get("server_conn"), "peername");
    let started = field("timestamp_start").and_then(TValue::float);
    if let Some(started) = started {
        flow.started_at = from_unix_seconds(Some(started));
    }
    let request_end = field("timestamp_end").and_then(TValue::float);
    flow.timings.send_ms = millis(started, request_end);
    if let Some(response_state) = state.get("response").filter(|r| **r != TValue::Null) {
        let field = |key: &str| response_state.get(key);
        let content = field("content").and_then(TValue::bytes).map(<[u8]>::to_vec);
        flow.response = Some(Response {
            status: field("status_code").and_then(TValue::int).and_then(|s| u16::try_from(s).ok()).unwrap_or(0),
            reason: field("reason").and_then(TValue::text).unwrap_or_default(),
            version: version(field("http_version")),
            headers: headers(field("headers")),
            body_len: content.as_ref().map_or(0, |c| c.len() as u64),
            body: content,
            stream: true,
            trailers: None,
        });
        let (start, end) =
            (field("timestamp_start").and_then(TValue::float), field("timestamp_end").and_then(TValue::float));
        flow.timings.wait_ms = millis(request_end, start);
        flow.timings.receive_ms = millis(start, end);
    }
    flow.error = state.get("error").and_then(|e| e.get("msg")).and_then(TValue::text);
    if let Some(websocket) = state.get("websocket").filter(|w| **w != TValue::Null) {
        let mut data = WebSocketData::new();
        for message in websocket.get("messages").map(TValue::list).unwrap_or_default() {
            let fields = message.list();
            let kind = match fields.first().and_then(TValue::int) {
                Some(1) => "text",
                _ => "binary",
            };
            let from_client = matches!(fields.get(1), Some(TValue::Bool(true)));
            let payload = fields.get(2).and_then(TValue::bytes).map(<[u8]>::to_vec).unwrap_or_default();
            let at = from_unix_seconds(fields.get(3).and_then(TValue::float));
            let message = WebSocketMessage { from_client, kind, payload, at };
            data.count(&message);
            data.messages.push(message);
        }
        flow.websocket = Some(data);
    }
    flow
}

fn tcp_flow(state: &TValue) -> TcpFlow {
    let (mut up, mut down) = (0u64, 0u64);
    let (mut times, mut messages) = (Vec::new(), Vec::new());
    for message in state.get("messages").map(TValue::list).unwrap_or_default() {
        let fields = message.list();
        let content = fields.get(1).and_then(TValue::bytes).map(<[u8]>::to_vec).unwrap_or_default();
        let from_client = matches!(fields.first(), Some(TValue::Bool(true)));
        if from_client {
            up += content.len() as u64;
        } else {
            down += content.len() as u64;
        }
        let time = fields.get(2).and_then(TValue::float);
        times.extend(time);
        messages.push(TcpMessage { from_client, content, at: from_unix_seconds(time) });
    }
    let server = state.get("server_conn");
    let server_name = server
        .and_then(|s| s.get("address"))
        .map(TValue::list)
        .and_then(|pair| Some(format!("{}:{}", pair.first()?.text()?, pair.get(1)?.int()?)))
        .unwrap_or_default();
    let duration = match (times.first(), times.last()) {
        (Some(first), Some(last)) => Duration::from_secs_f64((last - first).max(0.0)),
        _ => Duration::ZERO,
    };
    TcpFlow {
        id: state.get("id").and_then(TValue::text).and_then(|id| FlowId::parse(&id)).unwrap_or_else(FlowId::next),
        client_addr: address(state.get("client_conn"), "peername").unwrap_or_else(|| ([0, 0, 0, 0], 0).into()),
        server: server_name,
        bytes_to_server: up,
        bytes_to_client: down,
        duration,
        messages,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tnetstrings_of_every_type_parse() {
        let (value, rest) = parse_tnetstring(b"8:1:a,1:1#}more").unwrap();
        assert_eq!(rest, b"more");
        assert_eq!(value.get("a"), Some(&TValue::Int(1)));
        assert_eq!(parse_tnetstring(b"3:d\xc3\xa9;").unwrap().0, TValue::Text("d\u{e9}".into()));
        assert_eq!(parse_tnetstring(b"3:0.5^").unwrap().0, TValue::Float(0.5));
        assert_eq!(parse_tnetstring(b"4:true!").unwrap().0, TValue::Bool(true));
        assert_eq!(parse_tnetstring(b"0:~").unwrap().0, TValue::Null);
        assert_eq!(parse_tnetstring(b"4:1:x,]").unwrap().0, TValue::List(vec![TValue::Bytes(b"x".to_vec())]));
    }

    #[test]
    fn truncated_or_garbage_input_is_an_error_not_a_panic() {
        for bad in [&b"10:abc,"[..], b"x:", b"3:abc?", b"99999999999999999999:", b"5:1:x,}", b""] {
            assert!(parse_tnetstring(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
