//! HAR 1.2 (HTTP Archive) files: recording finished flows and reading recorded exchanges back.
//!
//! Writing: `entry` turns an `HttpFlow` into one HAR entry; `SaveHar` is the addon; `HarRecorder`
//! (`file`) appends each entry to the file as its flow finishes, so the file is a complete document at
//! every moment, even after a `kill -9`, and memory stays flat however long the recording. Reading: `read_har` accepts files from strata, browsers' devtools and mitmproxy and yields
//! `RecordedExchange`s for replay. Bodies are recorded as strata relayed them (still content-encoded).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::addon::Addon;
use crate::flow::{HttpFlow, WebSocketMessage};
use crate::http::fields::is_token;
use crate::http::message::Headers;
use crate::http::url::{split_host_port, Scheme};

mod file;

pub use file::{document_head, run_writer_process, use_writer_process, HarRecorder, CLOSING, WRITER_PROCESS_ARG};

/// `creator.name` of the files this module writes; `read_har` trusts their bodies to be wire bytes.
const CREATOR_NAME: &str = "strata";

/// Base64 as browsers and mitmproxy write it, tolerating missing padding on input.
const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

// ---------------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------------

/// The HAR 1.2 entry of one flow, with Chrome's `_resourceType`/`_webSocketMessages` for a WebSocket
/// session and `response._error` for a failed exchange (which gets status 0 when it has no response).
///
/// Bodies go into `postData.text`/`content.text` as they were kept: as text when valid UTF-8, else
/// base64 with `"encoding": "base64"`. A body that was not kept gives its size only.
pub fn entry(flow: &HttpFlow) -> Value {
    let t = &flow.timings;
    let connect = if t.connect_ms >= 0.0 { t.connect_ms } else { -1.0 };
    // Part of `connect`, as HAR has it.
    let ssl = if t.ssl_ms >= 0.0 && connect >= 0.0 { t.ssl_ms } else { -1.0 };
    // HAR requires send, wait and receive to be non-negative (`max` also maps NaN to 0).
    let (send, wait, receive) = (t.send_ms.max(0.0), t.wait_ms.max(0.0), t.receive_ms.max(0.0));
    let mut entry = json!({
        "startedDateTime": rfc3339(flow.started_at),
        "time": connect.max(0.0) + send + wait + receive,
        "request": request_json(flow),
        "response": response_json(flow),
        "cache": {},
        "timings": {
            "blocked": -1, "dns": -1, "connect": connect, "ssl": ssl,
            "send": send, "wait": wait, "receive": receive,
        },
    });
    let obj = entry.as_object_mut().expect("entry is built as an object");
    if let Some(addr) = flow.server_addr {
        // HAR wants the bare address; `to_canonical` turns `::ffff:a.b.c.d` back into IPv4.
        obj.insert("serverIPAddress".into(), addr.ip().to_canonical().to_string().into());
    }
    if let Some(websocket) = &flow.websocket {
        obj.insert("_resourceType".into(), "websocket".into());
        obj.insert("_webSocketMessages".into(), websocket_json(&websocket.messages));
    }
    entry
}

fn request_json(flow: &HttpFlow) -> Value {
    let request = &flow.request;
    let cookies: Vec<Value> = request
        .headers
        .get_all("cookie")
        .flat_map(|value| parse_cookie_header(&String::from_utf8_lossy(value)))
        .map(|(name, value)| json!({ "name": name, "value": value }))
        .collect();
    let mut out = json!({
        "method": request.method,
        "url": request.url(),
        "httpVersion": request.version.as_str(),
        "headers": headers_json(&request.headers),
        "queryString": query_string(&request.path)
            .into_iter()
            .map(|(name, value)| json!({ "name": name, "value": value }))
            .collect::<Vec<_>>(),
        "cookies": cookies,
        "headersSize": -1,
        "bodySize": request.body_len,
    });
    if let Some(body) = request.body.as_deref().filter(|b| !b.is_empty()) {
        let mut post_data = Map::new();
        post_data.insert("mimeType".into(), content_type(&request.headers).into());
        insert_body(&mut post_data, body, request.body_len);
        out["postData"] = Value::Object(post_data);
    }
    out
}

fn response_json(flow: &HttpFlow) -> Value {
    let Some(response) = &flow.response else {
        return json!({
            "status": 0, "statusText": "", "httpVersion": "", "headers": [], "cookies": [],
            "content": { "size": 0, "mimeType": "" },
            "redirectURL": "", "headersSize": -1, "bodySize": -1,
            "_error": flow.error.as_deref().unwrap_or("no response"),
        });
    };
    let mut content = Map::new();
    content.insert("size".into(), response.body_len.into());
    content.insert("mimeType".into(), content_type(&response.headers).into());
    if let Some(body) = response.body.as_deref().filter(|b| !b.is_empty()) {
        insert_body(&mut content, body, response.body_len);
    }
    let cookies: Vec<Value> = response
        .headers
        .get_all("set-cookie")
        .filter_map(|value| set_cookie_json(&String::from_utf8_lossy(value), flow.started_at))
        .collect();
    let mut out = json!({
        "status": response.status,
        "statusText": response.reason,
        "httpVersion": response.version.as_str(),
        "headers": headers_json(&response.headers),
        "cookies": cookies,
        "content": content,
        "redirectURL": response.headers.get("location").map(String::from_utf8_lossy).unwrap_or_default(),
        "headersSize": -1,
        "bodySize": response.body_len,
    });
    if let Some(error) = &flow.error {
        // The response head arrived but the exchange failed later (e.g. the body was cut short).
        out["_error"] = error.as_str().into();
    }
    out
}

/// `[{name, value}]`; values that are not UTF-8 are written lossily (JSON strings cannot hold them).
fn headers_json(headers: &Headers) -> Value {
    headers.0.iter().map(|(name, value)| json!({ "name": name, "value": String::from_utf8_lossy(value) })).collect()
}

fn content_type(headers: &Headers) -> String {
    headers.get("content-type").map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default()
}

/// Adds `text` (and `encoding` for binary bodies) to a `postData` or `content` object; a kept body shorter
/// than what passed (a capped buffer) says so in `comment`.
fn insert_body(obj: &mut Map<String, Value>, body: &[u8], body_len: u64) {
    match std::str::from_utf8(body) {
        Ok(text) => {
            obj.insert("text".into(), text.into());
        }
        Err(_) => {
            obj.insert("text".into(), BASE64.encode(body).into());
            obj.insert("encoding".into(), "base64".into());
        }
    }
    if (body.len() as u64) < body_len {
        obj.insert("comment".into(), format!("body truncated to {} of {body_len} bytes", body.len()).into());
    }
}

/// Chrome's `_webSocketMessages`. Text and close payloads are written as text, the others in base64 as
/// Chrome does for binary frames; `time` is when strata read the message (seconds since the epoch).
fn websocket_json(messages: &[WebSocketMessage]) -> Value {
    messages
        .iter()
        .map(|message| {
            let time = message.at.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
            let opcode = match message.kind {
                "text" => 1,
                "close" => 8,
                "ping" => 9,
                "pong" => 10,
                _ => 2,
            };
            let data = match opcode {
                1 | 8 => String::from_utf8_lossy(&message.payload).into_owned(),
                _ => BASE64.encode(&message.payload),
            };
            let kind = if message.from_client { "send" } else { "receive" };
            json!({ "type": kind, "time": time, "opcode": opcode, "data": data })
        })
        .collect()
}

/// The `name=value` pairs of an origin-form target's query, raw (not percent-decoded). A pair without
/// `=` has an empty value; empty pairs (`a=1&&b=2`) are dropped.
fn query_string(path: &str) -> Vec<(&str, &str)> {
    let Some((_, query)) = path.split_once('?') else { return Vec::new() };
    query.split('&').filter(|pair| !pair.is_empty()).map(|pair| pair.split_once('=').unwrap_or((pair, ""))).collect()
}

/// The pairs of a `Cookie` header (RFC 6265 section 4.2.1): `a=1; b=2`. A part without `=` is a cookie
/// with an empty name, as browsers treat it.
fn parse_cookie_header(value: &str) -> Vec<(String, String)> {
    value
        .split(';')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| match part.split_once('=') {
            Some((name, value)) => (name.trim().to_string(), value.trim().to_string()),
            None => (String::new(), part.to_string()),
        })
        .collect()
}

/// One HAR cookie from a `Set-Cookie` value (RFC 6265 section 5.2). `expires` comes from Max-Age (which
/// wins, section 5.3 step 3) or Expires, as an RFC 3339 date; an unparsable Expires is left out because
/// HAR requires ISO 8601 there.
fn set_cookie_json(header: &str, received_at: SystemTime) -> Option<Value> {
    let mut parts = header.split(';');
    let pair = parts.next()?.trim();
    if pair.is_empty() {
        return None;
    }
    let (name, value) = pair.split_once('=').map(|(n, v)| (n.trim(), v.trim())).unwrap_or(("", pair));
    let mut cookie = json!({ "name": name, "value": value, "httpOnly": false, "secure": false });
    let (mut expires, mut max_age) = (None, None);
    for attribute in parts {
        let (key, val) = attribute.split_once('=').unwrap_or((attribute, ""));
        let val = val.trim();
        match key.trim().to_ascii_lowercase().as_str() {
            "path" => cookie["path"] = val.into(),
            "domain" => cookie["domain"] = val.into(),
            // An attribute whose value does not parse is ignored (section 5.2.1, 5.2.2).
            "expires" => expires = parse_cookie_date(val).or(expires),
            "max-age" => max_age = val.parse::<i64>().ok().or(max_age),
            "httponly" => cookie["httpOnly"] = true.into(),
            "secure" => cookie["secure"] = true.into(),
            "samesite" => cookie["sameSite"] = val.into(),
            _ => {}
        }
    }
    let expires_ms = match (max_age, expires) {
        (Some(seconds), _) => Some(epoch_millis(received_at) + i128::from(seconds.max(0)) * 1000),
        (None, Some(seconds)) => Some(i128::from(seconds) * 1000),
        (None, None) => None,
    };
    if let Some(ms) = expires_ms {
        cookie["expires"] = format_epoch_millis(ms).into();
    }
    Some(cookie)
}

/// Seconds since the epoch of a cookie date, by the algorithm of RFC 6265 section 5.1.1, which accepts
/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), `06-Nov-94` and the other forms servers send.
fn parse_cookie_date(s: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
    let is_delimiter =
        |c: char| matches!(c, '\x09' | '\x20'..='\x2f' | '\x3b'..='\x40' | '\x5b'..='\x60' | '\x7b'..='\x7e');
    let (mut time, mut day, mut month, mut year) = (None, None, None, None);
    for token in s.split(is_delimiter).filter(|t| !t.is_empty()) {
        let digits = token.bytes().take_while(u8::is_ascii_digit).count();
        if time.is_none() {
            let fields: Vec<&str> = token.split(':').collect();
            if fields.len() == 3
                && fields.iter().all(|f| (1..=2).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_digit()))
            {
                let n: Vec<i64> = fields.iter().filter_map(|f| f.parse().ok()).collect();
                if let [hour, minute, second] = n[..] {
                    time = Some((hour, minute, second));
                    continue;
                }
            }
        }
        if day.is_none() && (1..=2).contains(&digits) {
            day = token[..digits].parse::<i64>().ok();
            continue;
        }
        if month.is_none() && token.len() >= 3 {
            let prefix = &token.as_bytes()[..3];
            if let Some(i) = MONTHS.iter().position(|m| prefix.eq_ignore_ascii_case(m.as_bytes())) {
                month = Some(i as i64 + 1);
                continue;
            }
        }
        if year.is_none() && (2..=4).contains(&digits) {
            year = token[..digits].parse::<i64>().ok();
        }
    }
    let ((hour, minute, second), day, month, mut year) = (time?, day?, month?, year?);
    year += match year {
        70..=99 => 1900,
        0..=69 => 2000,
        _ => 0,
    };
    if year < 1601 || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    // Rejects dates that do not exist (Feb 30): they do not survive the round trip.
    if civil_from_days(days) != (year, month, day) {
        return None;
    }
    Some(days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// RFC 3339 in UTC with milliseconds, e.g. `2023-11-14T22:13:20.123Z`.
fn rfc3339(t: SystemTime) -> String {
    format_epoch_millis(epoch_millis(t))
}

fn epoch_millis(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i128,
        Err(e) => -(e.duration().as_millis() as i128),
    }
}

fn format_epoch_millis(ms: i128) -> String {
    let (secs, millis) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let (days, second_of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Only a SystemTime billions of years away reaches the clamp; it keeps the arithmetic in range.
    let days = i64::try_from(days.clamp(-(1 << 40), 1 << 40)).unwrap_or_default();
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day count since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

// ---------------------------------------------------------------------------------------------------
// Recording
// ---------------------------------------------------------------------------------------------------

/// The addon (`--save-har`): keeps bodies (up to `--body-size-limit`) and records every finished flow;
/// a WebSocket handshake is recorded when its session ends, with its messages.
pub struct SaveHar(Arc<HarRecorder>);

impl SaveHar {
    /// Starts the background writer for `path` (inside the runtime).
    /// Creates the file; the error names it.
    pub fn create(path: PathBuf) -> Result<Self, String> {
        HarRecorder::create(path).map(|recorder| SaveHar(Arc::new(recorder)))
    }
}

#[async_trait::async_trait]
impl Addon for SaveHar {
    fn name(&self) -> &str {
        "savehar"
    }

    fn wants_messages(&self) -> bool {
        true
    }

    /// It records messages; it never changes them.
    fn changes_messages(&self) -> bool {
        false
    }

    async fn done(&self) {
        if let Err(reason) = self.0.flush() {
            tracing::error!("{reason}");
        }
    }

    async fn requestheaders(&self, flow: &mut HttpFlow) {
        flow.request.stream = false;
    }

    async fn responseheaders(&self, flow: &mut HttpFlow) {
        if let Some(response) = &mut flow.response {
            response.stream = false;
        }
    }

    async fn response(&self, flow: &mut HttpFlow) {
        // A 101 is recorded with its session, at `websocket_end`.
        if flow.response.as_ref().is_none_or(|r| r.status != 101) {
            self.0.record(flow);
        }
    }

    async fn error(&self, flow: &mut HttpFlow) {
        self.0.record(flow);
    }

    async fn websocket_message(&self, flow: &mut HttpFlow, message: &mut WebSocketMessage) {
        if let Some(websocket) = &mut flow.websocket {
            websocket.messages.push(message.clone());
        }
    }

    async fn websocket_end(&self, flow: &mut HttpFlow) {
        self.0.record(flow);
    }
}

// ---------------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------------

/// One request and its response, read from a HAR file, ready to be matched and replayed.
///
/// Bodies are payloads without transfer framing (every HAR writer stores them de-chunked; a
/// `Transfer-Encoding` header may still be listed). Browsers and mitmproxy store response bodies
/// decoded, so for their files `Content-Encoding` is removed from `response_headers`; strata stores
/// wire bytes and keeps it, unless the body was not kept. `Content-Length` fields are set to the
/// body's length. HTTP/2 pseudo-header fields (`:authority`, ...) are dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedExchange {
    pub method: String,
    /// `ws`/`wss` URLs of WebSocket handshakes read as `http`/`https`.
    pub scheme: Scheme,
    /// Lowercase; an IPv6 address without brackets.
    pub host: String,
    pub port: u16,
    /// Origin-form target: path and query, `/` when the URL has neither; no fragment.
    pub path: String,
    pub request_headers: Headers,
    pub request_body: Vec<u8>,
    pub status: u16,
    pub reason: String,
    pub response_headers: Headers,
    pub response_body: Vec<u8>,
}

/// Why a HAR file cannot be read. Each message starts with the file's path.
#[derive(Debug, thiserror::Error)]
pub enum HarError {
    /// The file cannot be opened or read.
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The file is not JSON.
    #[error("{path}: not valid JSON: {source}")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    /// The JSON is not a HAR document (no `log.entries` array).
    #[error("{path}: {reason}")]
    Format { path: String, reason: String },
    /// An entry lacks a field it needs or has an unusable value; `index` counts from 0, as in
    /// `log.entries[index]`.
    #[error("{path}: entry {index}: {reason}")]
    Entry { path: String, index: usize, reason: String },
}

/// The exchanges recorded in the HAR file at `path`, in file order. Entries without a response or with
/// status 0 (failed requests) are skipped, as are URLs other than http, https, ws and wss (`data:`,
/// extension pages). Optional HAR fields may be missing; fields that are present must be well-formed.
pub fn read_har(path: &Path) -> Result<Vec<RecordedExchange>, HarError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| HarError::Read { path: name.clone(), source })?;
    // Some Windows tools start the file with a UTF-8 byte order mark, which JSON does not allow.
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&bytes);
    let document: Value =
        serde_json::from_slice(bytes).map_err(|source| HarError::Json { path: name.clone(), source })?;
    let format_error = |reason: &str| HarError::Format { path: name.clone(), reason: reason.to_string() };
    let log = document.get("log").ok_or_else(|| format_error("log is missing (not a HAR file)"))?;
    let entries = match log.get("entries") {
        Some(Value::Array(entries)) => entries,
        Some(_) => return Err(format_error("log.entries is not an array")),
        None => return Err(format_error("log.entries is missing")),
    };
    let from_strata = log.pointer("/creator/name").and_then(Value::as_str) == Some(CREATOR_NAME);
    let mut out = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        match read_entry(entry, from_strata) {
            Ok(Some(exchange)) => out.push(exchange),
            Ok(None) => {}
            Err(reason) => return Err(HarError::Entry { path: name, index, reason }),
        }
    }
    Ok(out)
}

/// One entry; `Ok(None)` for entries that are skipped by design.
fn read_entry(entry: &Value, from_strata: bool) -> Result<Option<RecordedExchange>, String> {
    let Some(map) = entry.as_object() else { return Err("not an object".into()) };
    let entry = Obj { map, at: String::new() };
    let Some(response) = entry.opt_obj("response")? else { return Ok(None) };
    let status = match response.field("status") {
        None => return Err("response.status is missing".into()),
        // Three digits (RFC 9110 section 15), or 0 for a request that got no response.
        Some(value) => value.as_f64().filter(|&s| s == 0.0 || (s.fract() == 0.0 && (100.0..=999.0).contains(&s))),
    };
    let status = status.ok_or("response.status is not a status code (100 to 999, or 0)")? as u16;
    if status == 0 {
        return Ok(None);
    }
    let request = entry.obj("request")?;
    let method = request.str("method")?;
    if !is_token(method.as_bytes()) {
        return Err(format!("request.method '{method}' is not a valid method"));
    }
    let url = request.str("url")?;
    let Some((scheme, host, port, path)) = parse_url(url).map_err(|e| format!("request.url '{url}' {e}"))? else {
        return Ok(None);
    };
    let mut request_headers = read_headers(&request)?;
    let request_body = match request.opt_obj("postData")? {
        Some(post_data) => read_post_data(&post_data)?,
        None => Vec::new(),
    };
    let reason = response.opt_str("statusText")?.unwrap_or_default();
    if reason.contains(|c: char| c.is_control() && c != '\t') {
        return Err("response.statusText contains control characters".into());
    }
    let mut response_headers = read_headers(&response)?;
    let response_body = match response.opt_obj("content")? {
        Some(content) => read_text(&content)?,
        None => Vec::new(),
    };
    // Other writers store decoded bodies; an empty body (not kept) cannot be decoded either.
    if !from_strata || response_body.is_empty() {
        response_headers.remove("content-encoding");
    }
    fix_content_length(&mut request_headers, request_body.len());
    fix_content_length(&mut response_headers, response_body.len());
    Ok(Some(RecordedExchange {
        method: method.to_string(),
        scheme,
        host,
        port,
        path,
        request_headers,
        request_body,
        status,
        reason: reason.to_string(),
        response_headers,
        response_body,
    }))
}

/// `headers` of a request or response: `[{name, value}]`, missing meaning none. Values end up on the
/// wire when replayed, so CR, LF and NUL are refused rather than passed on.
fn read_headers(message: &Obj<'_>) -> Result<Headers, String> {
    let mut headers = Headers::default();
    for (i, header) in message.opt_array("headers")?.unwrap_or_default().iter().enumerate() {
        let header = Obj::root(header, &format!("{}.headers[{i}]", message.at))?;
        let name = header.str("name")?;
        let value = header.str("value")?;
        if name.starts_with(':') {
            continue;
        }
        if !is_token(name.as_bytes()) {
            return Err(format!("{}.name '{name}' is not a valid header name", header.at));
        }
        if value.contains(['\r', '\n', '\0']) {
            return Err(format!("{}.value contains CR, LF or NUL", header.at));
        }
        headers.append(name, value.as_bytes());
    }
    Ok(headers)
}

/// The request body: `postData.text`, or the `params` joined as a form when there is no text (HAR says
/// the two are exclusive; Firefox and mitmproxy write both).
fn read_post_data(post_data: &Obj<'_>) -> Result<Vec<u8>, String> {
    if post_data.opt_str("text")?.is_some() {
        return read_text(post_data);
    }
    let mut pairs = Vec::new();
    for (i, param) in post_data.opt_array("params")?.unwrap_or_default().iter().enumerate() {
        let param = Obj::root(param, &format!("{}.params[{i}]", post_data.at))?;
        pairs.push(format!("{}={}", param.str("name")?, param.opt_str("value")?.unwrap_or_default()));
    }
    Ok(pairs.join("&").into_bytes())
}

/// `text` of a `content` or `postData` object, base64-decoded when `encoding` says so.
fn read_text(obj: &Obj<'_>) -> Result<Vec<u8>, String> {
    let text = obj.opt_str("text")?.unwrap_or_default();
    match obj.opt_str("encoding")? {
        None | Some("") => Ok(text.as_bytes().to_vec()),
        Some(encoding) if encoding.eq_ignore_ascii_case("base64") => {
            // Some writers wrap long base64 lines.
            let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            BASE64.decode(compact).map_err(|e| format!("{}.text is not valid base64: {e}", obj.at))
        }
        Some(other) => Err(format!("{}.encoding '{other}' is not supported (expected base64)", obj.at)),
    }
}

/// Sets every `Content-Length` field to `len`, in place (keeping its spelling and position).
fn fix_content_length(headers: &mut Headers, len: usize) {
    for (name, value) in &mut headers.0 {
        if name.eq_ignore_ascii_case("content-length") {
            *value = len.to_string().into_bytes();
        }
    }
}

/// Scheme, host, port and origin-form target of an absolute URL; `Ok(None)` for schemes other than
/// http(s) and ws(s). The error completes "request.url 'URL' ...".
fn parse_url(url: &str) -> Result<Option<(Scheme, String, u16, String)>, String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        // `data:text/plain,...`, `about:blank` and the like have no authority and are not replayable.
        return if url.contains(':') { Ok(None) } else { Err("is not an absolute URL".into()) };
    };
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => Scheme::Http,
        "https" | "wss" => Scheme::Https,
        _ => return Ok(None),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(authority_end);
    // Userinfo (`user:pass@`) is not part of the request; an empty port means the scheme's default
    // (RFC 3986 section 3.2.3).
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let host_port = host_port.strip_suffix(':').unwrap_or(host_port);
    let (host, port) =
        split_host_port(host_port).ok_or_else(|| format!("has an invalid host or port '{host_port}'"))?;
    let port = port.unwrap_or(scheme.default_port());
    if port == 0 {
        return Err(format!("has an invalid port '{port}'"));
    }
    let target = target.split('#').next().unwrap_or_default();
    if target.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err("contains whitespace or control characters in its path".into());
    }
    let path = match target.chars().next() {
        None => "/".to_string(),
        Some('?') => format!("/{target}"),
        Some(_) => target.to_string(),
    };
    Ok(Some((scheme, host.to_ascii_lowercase(), port, path)))
}

/// A JSON object being read, with its position (`request.postData`) for error messages.
struct Obj<'a> {
    map: &'a Map<String, Value>,
    at: String,
}

impl<'a> Obj<'a> {
    fn root(value: &'a Value, at: &str) -> Result<Self, String> {
        match value {
            Value::Object(map) => Ok(Obj { map, at: at.to_string() }),
            _ => Err(format!("{at} is not an object")),
        }
    }

    fn name(&self, key: &str) -> String {
        if self.at.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.at)
        }
    }

    /// The value of `key`; `null` counts as missing (mitmproxy writes `"text": null`).
    fn field(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn str(&self, key: &str) -> Result<&'a str, String> {
        self.opt_str(key)?.ok_or_else(|| format!("{} is missing", self.name(key)))
    }

    fn opt_str(&self, key: &str) -> Result<Option<&'a str>, String> {
        match self.field(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(format!("{} is not a string", self.name(key))),
        }
    }

    fn obj(&self, key: &str) -> Result<Obj<'a>, String> {
        self.opt_obj(key)?.ok_or_else(|| format!("{} is missing", self.name(key)))
    }

    fn opt_obj(&self, key: &str) -> Result<Option<Obj<'a>>, String> {
        match self.field(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Obj { map, at: self.name(key) })),
            Some(_) => Err(format!("{} is not an object", self.name(key))),
        }
    }

    fn opt_array(&self, key: &str) -> Result<Option<&'a [Value]>, String> {
        match self.field(key) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(_) => Err(format!("{} is not an array", self.name(key))),
        }
    }
}

#[cfg(test)]
mod tests;
