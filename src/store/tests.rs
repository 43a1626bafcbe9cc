//! The store's filtered reads against the in-memory filter: for any session and any filter,
//! `SessionReader::query` and `count` (SQL, with body searches narrowed by the trigram index) return
//! exactly the flows `Filter::matches` accepts among those `read_all` returns, in the same order, and a
//! paged query is the matching slice. Sessions mix HTTP flows (kept and streamed bodies, text and binary,
//! encoded, no response, errors), WebSocket flows and TCP flows, written in an interleaved order as a
//! proxy writes them; filters come from a grammar over the same vocabulary, so they match sometimes.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use proptest::prelude::*;
use proptest::sample::{select, subsequence, Index};
use proptest::test_runner::Config as ProptestConfig;

use super::{read_all, SessionReader, StoreWriter, StoredFlow};
use crate::addon::BodySide;
use crate::filter::{Filter, FlowRef};
use crate::flow::{
    reason_phrase, FlowId, HttpFlow, Request, Response, TcpFlow, WebSocketData, WebSocketMessage, KILLED,
};
use crate::http::message::{Headers, Version};
use crate::http::url::Scheme;

/// Sessions per run: each writes up to 40 flows and checks several filters on them.
const CASES: u32 = 24;

/// `CASES` cases, and no regression files written into the source tree (a failure prints its minimal
/// input; turn it into a plain test).
fn config() -> ProptestConfig {
    ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() }
}

// ---- the vocabulary flows and filters share ----

const WORDS: &[&str] = &[
    "secret",
    "password",
    "colour",
    "color",
    "token",
    "hello",
    "world",
    "example.com",
    "GET",
    "ok",
    "id",
    "SECRET",
    "Colour",
    "hello world",
    // Letters the regex folds to `s` and `k` (long s, Kelvin sign), as the index must too.
    "ſecret",
    "toKen",
];
const SEPARATORS: &[&str] = &[" ", "\n", "=", "&", ", ", "\":\"", ""];
/// Hosts as a request holds them (an IPv6 one without brackets; its URL adds them).
const HOSTS: &[&str] = &["api.example.com", "cdn.example.org", "127.0.0.1", "::1"];
const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "OPTIONS"];
const PORTS: &[Option<u16>] = &[None, None, Some(8080), Some(8443)];
const PATHS: &[&str] =
    &["/", "/api/v1/users", "/login?next=/colour", "/static/logo.png", "/search?q=secret&x=GET", "/Example.COM/ok"];
const CLIENTS: &[&str] = &["10.0.0.1:5000", "192.168.1.7:41000", "[::1]:52000"];
const SERVERS: &[&str] = &["93.184.216.34:443", "127.0.0.1:8080", "[::1]:443"];
const TCP_SERVERS: &[&str] = &["db.internal:5432", "127.0.0.1:6379", "[::1]:22"];
const STATUSES: &[u16] = &[200, 201, 204, 301, 404, 500, 502];
const ERRORS: &[&str] = &["connection reset by peer", KILLED, "server sent an invalid response"];
const REQUEST_FIELDS: &[(&str, &str)] = &[
    ("User-Agent", "curl/8.5.0"),
    ("Cookie", "session=secret"),
    ("X-Token", "Colour"),
    ("Accept", "application/json"),
];
const RESPONSE_FIELDS: &[(&str, &str)] =
    &[("Server", "nginx"), ("Set-Cookie", "token=ok; HttpOnly"), ("Cache-Control", "no-store")];

/// The Content-Type (and Content-Encoding) of a message.
#[derive(Debug, Clone, Copy)]
enum Kind {
    None,
    Plain,
    Json,
    Png,
    HtmlGzip,
}

const KINDS: &[Kind] = &[Kind::None, Kind::Plain, Kind::Json, Kind::Png, Kind::HtmlGzip];

fn add_content_type(headers: &mut Headers, kind: Kind) {
    match kind {
        Kind::None => {}
        Kind::Plain => headers.append("Content-Type", "text/plain; charset=utf-8"),
        Kind::Json => headers.append("Content-Type", "application/json"),
        Kind::Png => headers.append("Content-Type", "image/png"),
        Kind::HtmlGzip => {
            headers.append("Content-Type", "text/html");
            headers.append("Content-Encoding", "gzip");
        }
    }
}

// ---- generated sessions ----

/// A body, kept whole on the flow or (with the cut points of its pieces) streamed through `body()`.
#[derive(Debug, Clone)]
struct BodyGen {
    bytes: Vec<u8>,
    streamed: Option<Vec<Index>>,
}

#[derive(Debug, Clone)]
struct ResponseGen {
    status: u16,
    kind: Kind,
    fields: Vec<(&'static str, &'static str)>,
    body: BodyGen,
}

#[derive(Debug, Clone)]
struct HttpGen {
    method: &'static str,
    https: bool,
    host: &'static str,
    port: Option<u16>,
    path: &'static str,
    client: &'static str,
    server: Option<&'static str>,
    kind: Kind,
    fields: Vec<(&'static str, &'static str)>,
    body: BodyGen,
    response: Option<ResponseGen>,
    error: Option<&'static str>,
}

#[derive(Debug, Clone)]
struct MessageGen {
    from_client: bool,
    kind: &'static str,
    payload: Vec<u8>,
}

#[derive(Debug, Clone)]
enum FlowGen {
    Http(HttpGen),
    WebSocket { host: &'static str, client: &'static str, messages: Vec<MessageGen>, error: Option<&'static str> },
    Tcp { client: &'static str, server: &'static str, to_server: u64, to_client: u64 },
}

/// Words of the vocabulary with separators.
fn text() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec((select(WORDS), select(SEPARATORS)), 1..10)
        .prop_map(|parts| parts.into_iter().flat_map(|(w, s)| [w, s]).collect::<String>().into_bytes())
}

/// Arbitrary bytes (NUL, invalid UTF-8) with words of the vocabulary among them.
fn binary() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![prop::collection::vec(any::<u8>(), 1..8), select(WORDS).prop_map(|w| w.as_bytes().to_vec())],
        1..8,
    )
    .prop_map(|parts| parts.concat())
}

fn body() -> impl Strategy<Value = BodyGen> {
    (
        prop_oneof![1 => Just(Vec::new()), 3 => text(), 2 => binary()],
        prop::option::of(prop::collection::vec(any::<Index>(), 0..4)),
    )
        .prop_map(|(bytes, streamed)| BodyGen { bytes, streamed })
}

fn response() -> impl Strategy<Value = ResponseGen> {
    (select(STATUSES), select(KINDS), subsequence(RESPONSE_FIELDS, 0..=RESPONSE_FIELDS.len()), body())
        .prop_map(|(status, kind, fields, body)| ResponseGen { status, kind, fields, body })
}

fn http() -> impl Strategy<Value = HttpGen> {
    (
        (select(METHODS), any::<bool>(), select(HOSTS), select(PORTS), select(PATHS)),
        (select(CLIENTS), prop::option::of(select(SERVERS))),
        (select(KINDS), subsequence(REQUEST_FIELDS, 0..=REQUEST_FIELDS.len()), body()),
        prop::option::weighted(0.8, response()),
        prop::option::weighted(0.2, select(ERRORS)),
    )
        .prop_map(
            |((method, https, host, port, path), (client, server), (kind, fields, body), response, error)| HttpGen {
                method,
                https,
                host,
                port,
                path,
                client,
                server,
                kind,
                fields,
                body,
                response,
                error,
            },
        )
}

fn message() -> impl Strategy<Value = MessageGen> {
    (any::<bool>(), select(&["text", "binary", "ping"][..]), prop_oneof![text(), binary()])
        .prop_map(|(from_client, kind, payload)| MessageGen { from_client, kind, payload })
}

fn flow() -> impl Strategy<Value = FlowGen> {
    prop_oneof![
        6 => http().prop_map(FlowGen::Http),
        2 => (select(HOSTS), select(CLIENTS), prop::collection::vec(message(), 0..5), prop::option::weighted(0.2, select(ERRORS)))
            .prop_map(|(host, client, messages, error)| FlowGen::WebSocket { host, client, messages, error }),
        1 => (select(CLIENTS), select(TCP_SERVERS), 0u64..5000, 0u64..5000)
            .prop_map(|(client, server, to_server, to_client)| FlowGen::Tcp { client, server, to_server, to_client }),
    ]
}

// ---- generated filters ----

const FLAGS: &[&str] = &["~all", "~http", "~tcp", "~websocket", "~q", "~s", "~e"];
const CODES: &[u16] = &[200, 101, 404, 500, 502, 418];
const BODY_PATTERNS: &[&str] = &[
    // plain, three letters or more: looked up in the index
    "secret",
    "password",
    "colour",
    "hello",
    "token",
    "world",
    "SECRET",
    "=secret",
    "\":\"token",
    "hello world",
    // with `.`, or escaped punctuation: looked up piece by piece
    "example.com",
    r"example\.com",
    "hello.world",
    "tok.n",
    // short: every flow a candidate
    "ok",
    "id",
    "GE",
    // real regexes: every flow a candidate
    "colou?r",
    "^GET$",
    "sec(ret|ure)",
    "[0-9]",
    r"\x00",
    "pass|word",
];
/// Each regex filter with the patterns it is given (body searches listed thrice, for weight).
const REGEX_FILTERS: &[(&str, &[&str])] = &[
    ("~d", &["example", r"example\.com", r"^api\.", "org$", r"127\.0\.0\.1", "::1", "EXAMPLE.ORG", "cdn|api"]),
    ("~u", &["/api", "login", "^https://", ":8080", r"\[::1\]", "colour", "secret", r"Example\.COM", r"\?q="]),
    ("~m", &["GET", "^post$", "P", "delete|put", "options"]),
    ("~h", &["content-type", "gzip", "secret", "user-agent: curl", "json", "^server", "upgrade: websocket"]),
    ("~hq", &["content-type", "secret", "colour", "^accept"]),
    ("~hs", &["content-type", "gzip", "token=ok", "^server: nginx$"]),
    ("~t", &["json", "text", "^text/html$", "image", "plain", "png|html"]),
    ("~tq", &["json", "text", "plain"]),
    ("~ts", &["json", "^text/html$", "image"]),
    ("~src", &[r"10\.0\.0\.1", "::1", ":5000", r"^192\."]),
    ("~dst", &["443", r"db\.internal", r"127\.0\.0\.1", "::1", ":8080$"]),
    ("~b", BODY_PATTERNS),
    ("~b", BODY_PATTERNS),
    ("~b", BODY_PATTERNS),
    ("~bq", BODY_PATTERNS),
    ("~bq", BODY_PATTERNS),
    ("~bs", BODY_PATTERNS),
    ("~bs", BODY_PATTERNS),
];
/// Bare words (`~u`).
const BARE: &[&str] = &["example", "/api", "colour"];

/// A filter argument: bare when it can be, else quoted.
fn argument(pattern: &str) -> String {
    let bare = !pattern.is_empty()
        && !pattern.starts_with(['&', '|', '!'])
        && !pattern.chars().any(|c| c.is_whitespace() || matches!(c, '(' | ')' | '~' | '\'' | '"'));
    if bare {
        pattern.to_string()
    } else {
        format!("\"{}\"", pattern.replace('"', "\\\""))
    }
}

fn atom() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => select(FLAGS).prop_map(String::from),
        1 => select(CODES).prop_map(|code| format!("~c {code}")),
        1 => select(BARE).prop_map(String::from),
        12 => (select(REGEX_FILTERS), any::<Index>())
            .prop_map(|((name, patterns), i)| format!("{name} {}", argument(i.get::<&str>(patterns)))),
    ]
}

/// Filter expressions: negations, and/or (and side by side) nested a few levels.
fn filter_text() -> impl Strategy<Value = String> {
    atom().prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| format!("!{e}")),
            prop::collection::vec(inner.clone(), 2..4).prop_map(|items| format!("({})", items.join(" & "))),
            prop::collection::vec(inner.clone(), 2..4).prop_map(|items| format!("({})", items.join(" | "))),
            prop::collection::vec(inner, 2..3).prop_map(|items| items.join(" ")),
        ]
    })
}

// ---- writing a session ----

/// One call on the writer.
enum Step {
    Http(Box<HttpFlow>, bool),
    Body(FlowId, BodySide, u64, Bytes),
    Message(FlowId, u64, WebSocketMessage),
    Tcp(TcpFlow),
}

impl Step {
    fn flow_id(&self) -> FlowId {
        match self {
            Step::Http(flow, _) => flow.id,
            Step::Body(id, ..) | Step::Message(id, ..) => *id,
            Step::Tcp(flow) => flow.id,
        }
    }
}

/// What the store should give back as a body: at most `limit` bytes; a streamed body of no bytes is
/// none.
fn stored_body(body: &BodyGen, limit: u64) -> Option<Vec<u8>> {
    let kept = &body.bytes[..body.bytes.len().min(limit as usize)];
    (body.streamed.is_none() || !kept.is_empty()).then(|| kept.to_vec())
}

/// Sets the body on `body`/`body_len` (kept) or queues its pieces (streamed).
fn put_body(
    gen: &BodyGen,
    id: FlowId,
    side: BodySide,
    body: &mut Option<Vec<u8>>,
    body_len: &mut u64,
    steps: &mut Vec<Step>,
) {
    *body_len = gen.bytes.len() as u64;
    match &gen.streamed {
        None => *body = Some(gen.bytes.clone()),
        Some(cuts) => {
            let mut offsets: Vec<usize> = cuts.iter().map(|cut| cut.index(gen.bytes.len() + 1)).collect();
            offsets.extend([0, gen.bytes.len()]);
            offsets.sort_unstable();
            offsets.dedup();
            for piece in offsets.windows(2) {
                let data = Bytes::copy_from_slice(&gen.bytes[piece[0]..piece[1]]);
                steps.push(Step::Body(id, side, piece[0] as u64, data));
            }
        }
    }
}

fn request(method: &str, https: bool, host: &str, port: Option<u16>, path: &str, headers: Headers) -> Request {
    let scheme = if https { Scheme::Https } else { Scheme::Http };
    Request {
        method: method.to_string(),
        scheme,
        host: host.to_string(),
        port: port.unwrap_or(scheme.default_port()),
        path: path.to_string(),
        version: Version::Http11,
        headers,
        body: None,
        body_len: 0,
        stream: true,
        trailers: None,
    }
}

/// `Host` as a client sends it.
fn host_field(host: &str, port: Option<u16>) -> String {
    let host = if host.contains(':') { format!("[{host}]") } else { host.to_string() };
    match port {
        Some(port) => format!("{host}:{port}"),
        None => host,
    }
}

/// Stored bodies expected of each HTTP flow: request, and response if it has one.
type Bodies = HashMap<FlowId, (Option<Vec<u8>>, Option<Option<Vec<u8>>>)>;

/// The writer calls for one flow, in the order a proxy makes them: the request head, its body's pieces,
/// the response head, its pieces (or the WebSocket messages), the finished flow.
fn flow_steps(gen: &FlowGen, limit: u64, bodies: &mut Bodies) -> Vec<Step> {
    let mut steps = Vec::new();
    match gen {
        FlowGen::Http(g) => {
            let mut headers = Headers::default();
            headers.append("Host", host_field(g.host, g.port));
            for (name, value) in &g.fields {
                headers.append(name, *value);
            }
            add_content_type(&mut headers, g.kind);
            let request = request(g.method, g.https, g.host, g.port, g.path, headers);
            let mut flow = HttpFlow::new(g.client.parse().unwrap(), false, request);
            flow.server_addr = g.server.map(|s| s.parse().unwrap());
            steps.push(Step::Http(Box::new(flow.clone()), false));
            let id = flow.id;
            let request = &mut flow.request;
            put_body(&g.body, id, BodySide::Request, &mut request.body, &mut request.body_len, &mut steps);
            let mut expected = (stored_body(&g.body, limit), None);
            if let Some(r) = &g.response {
                let mut headers = Headers::default();
                add_content_type(&mut headers, r.kind);
                for (name, value) in &r.fields {
                    headers.append(name, *value);
                }
                let mut response = Response {
                    status: r.status,
                    reason: reason_phrase(r.status).to_string(),
                    version: Version::Http11,
                    headers,
                    body: None,
                    body_len: 0,
                    stream: true,
                    trailers: None,
                };
                flow.response = Some(response.clone());
                steps.push(Step::Http(Box::new(flow.clone()), false));
                put_body(&r.body, id, BodySide::Response, &mut response.body, &mut response.body_len, &mut steps);
                flow.response = Some(response);
                expected.1 = Some(stored_body(&r.body, limit));
            }
            flow.error = g.error.map(String::from);
            steps.push(Step::Http(Box::new(flow), true));
            bodies.insert(id, expected);
        }
        FlowGen::WebSocket { host, client, messages, error } => {
            let mut headers = Headers::default();
            headers.append("Host", host_field(host, None));
            headers.append("Upgrade", "websocket");
            headers.append("Connection", "Upgrade");
            let request = request("GET", true, host, None, "/socket", headers);
            let mut flow = HttpFlow::new(client.parse().unwrap(), false, request);
            flow.server_addr = Some(SERVERS[0].parse().unwrap());
            steps.push(Step::Http(Box::new(flow.clone()), false));
            let mut headers = Headers::default();
            headers.append("Upgrade", "websocket");
            flow.response = Some(Response {
                status: 101,
                reason: reason_phrase(101).to_string(),
                version: Version::Http11,
                headers,
                body: None,
                body_len: 0,
                stream: true,
                trailers: None,
            });
            flow.websocket = Some(WebSocketData::new());
            steps.push(Step::Http(Box::new(flow.clone()), false));
            let mut data = WebSocketData::new();
            for (n, m) in messages.iter().enumerate() {
                let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + n as u64);
                let message =
                    WebSocketMessage { from_client: m.from_client, kind: m.kind, payload: m.payload.clone(), at };
                data.count(&message);
                data.messages.push(message.clone());
                steps.push(Step::Message(flow.id, n as u64, message));
            }
            data.finish();
            flow.websocket = Some(data);
            flow.error = error.map(String::from);
            bodies.insert(flow.id, (None, Some(None)));
            steps.push(Step::Http(Box::new(flow), true));
        }
        FlowGen::Tcp { client, server, to_server, to_client } => steps.push(Step::Tcp(TcpFlow {
            id: FlowId::next(),
            client_addr: client.parse().unwrap(),
            server: server.to_string(),
            bytes_to_server: *to_server,
            bytes_to_client: *to_client,
            duration: Duration::from_millis(12),
            messages: Vec::new(),
        })),
    }
    steps
}

/// The calls of all flows, interleaved as `schedule` picks (then the rest in order), and the flow ids in
/// the order each first reaches the store (the order the session keeps).
fn interleave(flows: Vec<Vec<Step>>, schedule: &[Index]) -> (Vec<Step>, Vec<FlowId>) {
    let mut queues: Vec<VecDeque<Step>> = flows.into_iter().map(VecDeque::from).collect();
    let mut picks = schedule.iter();
    let (mut steps, mut order) = (Vec::new(), Vec::new());
    loop {
        let open: Vec<usize> = (0..queues.len()).filter(|&i| !queues[i].is_empty()).collect();
        if open.is_empty() {
            return (steps, order);
        }
        let queue = open[picks.next().map_or(0, |pick| pick.index(open.len()))];
        let step = queues[queue].pop_front().unwrap();
        if !order.contains(&step.flow_id()) {
            order.push(step.flow_id());
        }
        steps.push(step);
    }
}

async fn write(path: &Path, body_limit: u64, steps: Vec<Step>) {
    let writer = StoreWriter::create(path, false, None, body_limit).unwrap();
    for step in steps {
        match step {
            Step::Http(flow, finished) => writer.http(&flow, finished).await,
            Step::Body(id, side, offset, data) => writer.body(id, side, offset, &data).await,
            Step::Message(id, n, message) => writer.message(id, n, &message).await,
            Step::Tcp(flow) => writer.tcp(&flow).await,
        }
    }
    writer.flush().await.unwrap();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

// ---- reading it back ----

fn id(flow: &StoredFlow) -> FlowId {
    match flow {
        StoredFlow::Http(flow) => flow.id,
        StoredFlow::Tcp(flow) => flow.id,
    }
}

fn matches(filter: &Filter, flow: &StoredFlow) -> bool {
    match flow {
        StoredFlow::Http(flow) => filter.matches(FlowRef::Http(flow)),
        StoredFlow::Tcp(flow) => filter.matches(FlowRef::Tcp(flow)),
    }
}

/// Positions in the session (`#n` in `describe`) of `flows`.
fn positions(all: &[StoredFlow], flows: &[StoredFlow]) -> Vec<usize> {
    flows.iter().map(|flow| all.iter().position(|f| id(f) == id(flow)).unwrap_or(usize::MAX)).collect()
}

fn escaped(body: &Option<Vec<u8>>) -> String {
    match body {
        None => "none".to_string(),
        Some(bytes) => format!("b\"{}\"", bytes.escape_ascii()),
    }
}

fn fields(headers: &Headers) -> String {
    let fields: Vec<String> =
        headers.0.iter().map(|(name, value)| format!("{name}: {}", value.escape_ascii())).collect();
    format!("[{}]", fields.join(", "))
}

/// The session as a failure shows it: one flow a paragraph, numbered as `positions` numbers them.
fn describe(all: &[StoredFlow]) -> String {
    let mut lines = Vec::new();
    for (n, flow) in all.iter().enumerate() {
        match flow {
            StoredFlow::Tcp(f) => lines.push(format!("#{n} tcp {} -> {}", f.client_addr, f.server)),
            StoredFlow::Http(f) => {
                let kind = if f.websocket.is_some() { "websocket" } else { "http" };
                lines.push(format!(
                    "#{n} {kind} {} {} from {} to {:?}, error {:?}",
                    f.request.method,
                    f.request.url(),
                    f.client_addr,
                    f.server_addr,
                    f.error
                ));
                let r = &f.request;
                lines.push(format!(
                    "    request {} body {} (len {})",
                    fields(&r.headers),
                    escaped(&r.body),
                    r.body_len
                ));
                if let Some(r) = &f.response {
                    lines.push(format!(
                        "    response {} {} body {} (len {})",
                        r.status,
                        fields(&r.headers),
                        escaped(&r.body),
                        r.body_len
                    ));
                }
                for m in f.websocket.iter().flat_map(|ws| &ws.messages) {
                    let from = if m.from_client { "client" } else { "server" };
                    let at = (m.at.duration_since(UNIX_EPOCH).unwrap().as_secs_f64() * 1000.0).round();
                    lines.push(format!("    {} from {from} at {at}: {}", m.kind, escaped(&Some(m.payload.clone()))));
                }
            }
        }
    }
    lines.join("\n")
}

/// The promise for one filter: `query` and `count` agree with `Filter::matches` on `all`, and so do a
/// page of the query and `next_page`.
fn check(
    path: &Path,
    all: &[StoredFlow],
    text: &str,
    with_bodies: bool,
    skip: Index,
    limit: usize,
) -> Result<(), TestCaseError> {
    let filter = Filter::parse(text).map_err(|e| TestCaseError::fail(format!("generated a bad filter: {e}")))?;
    let expected: Vec<usize> =
        all.iter().enumerate().filter(|(_, flow)| matches(&filter, flow)).map(|(n, _)| n).collect();
    let context = || format!("filter {text:?} (with_bodies {with_bodies})\nflows:\n{}", describe(all));
    let fail = |call: &str, e: String| TestCaseError::fail(format!("{call}: {e}\n{}", context()));
    let mut reader = SessionReader::open(path, with_bodies).unwrap();
    let got = positions(all, &reader.query(Some(&filter), 0, usize::MAX).map_err(|e| fail("query(f, 0, MAX)", e))?);
    let count = reader.count(Some(&filter)).map_err(|e| fail("count(f)", e))?;
    let skip = skip.index(expected.len() + 2);
    let page = reader.query(Some(&filter), skip, limit).map_err(|e| fail("query(f, skip, limit)", e))?;
    let page = positions(all, &page);
    let expected_page: Vec<usize> = expected.iter().copied().skip(skip).take(limit).collect();
    let mut paged = Vec::new();
    let mut pager = SessionReader::open(path, with_bodies).unwrap();
    loop {
        let flows = pager.next_page(Some(&filter)).map_err(|e| fail("next_page(f)", e))?;
        if flows.is_empty() {
            break;
        }
        paged.extend(positions(all, &flows));
    }
    prop_assert_eq!(&got, &expected, "query(f, 0, MAX): {}", context());
    prop_assert_eq!(count, expected.len(), "count(f): {}", context());
    prop_assert_eq!(&page, &expected_page, "query(f, {}, {}): {}", skip, limit, context());
    prop_assert_eq!(&paged, &expected, "next_page(f): {}", context());
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn query_and_count_agree_with_filter_matches_on_any_session(
        session in prop::collection::vec(flow(), 1..=40),
        schedule in prop::collection::vec(any::<Index>(), 0..200),
        body_limit in prop_oneof![4 => Just(32u64 << 20), 1 => Just(16u64), 1 => Just(40u64)],
        filters in prop::collection::vec(
            (filter_text(), any::<bool>(), any::<Index>(), prop_oneof![0usize..5, Just(usize::MAX)]),
            1..8,
        ),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("session.strata");
        let mut bodies = Bodies::new();
        let flows: Vec<Vec<Step>> = session.iter().map(|gen| flow_steps(gen, body_limit, &mut bodies)).collect();
        let (steps, order) = interleave(flows, &schedule);
        runtime().block_on(write(&path, body_limit, steps));
        let all = read_all(&path).unwrap();
        // The session holds every flow, in the order each was first written, with its bodies (else the
        // filters below would have nothing to find).
        prop_assert_eq!(all.iter().map(id).collect::<Vec<_>>(), order);
        for flow in &all {
            if let StoredFlow::Http(f) = flow {
                let got = (f.request.body.clone(), f.response.as_ref().map(|r| r.body.clone()));
                prop_assert_eq!(&got, &bodies[&f.id], "bodies of {}:\n{}", f.id, describe(&all));
            }
        }
        for (text, with_bodies, skip, limit) in &filters {
            check(&path, &all, text, *with_bodies, *skip, *limit)?;
        }
    }
}

// ---- plain tests ----

fn plain_flow(status: Option<u16>) -> HttpFlow {
    let mut headers = Headers::default();
    headers.append("Host", "api.example.com");
    let request = request("GET", false, "api.example.com", None, "/", headers);
    let mut flow = HttpFlow::new("10.0.0.1:5000".parse().unwrap(), false, request);
    flow.response = status.map(|status| Response::text(status, ""));
    flow
}

#[tokio::test]
async fn a_body_limit_of_16_keeps_the_first_16_bytes_of_a_streamed_body_and_its_whole_length() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("session.strata");
    let writer = StoreWriter::create(&path, false, None, 16).unwrap();
    let body: Vec<u8> = (0..100u8).map(|i| b'a' + i % 26).collect();
    let mut flow = plain_flow(None);
    writer.http(&flow, false).await;
    let mut response = Response::text(200, "");
    response.body = None;
    flow.response = Some(response.clone());
    writer.http(&flow, false).await;
    // The limit falls inside the second piece.
    for (offset, end) in [(0, 10), (10, 37), (37, 100)] {
        writer.body(flow.id, BodySide::Response, offset as u64, &Bytes::copy_from_slice(&body[offset..end])).await;
    }
    response.body_len = 100;
    flow.response = Some(response);
    writer.http(&flow, true).await;
    writer.flush().await.unwrap();
    let all = read_all(&path).unwrap();
    let [StoredFlow::Http(stored)] = &all[..] else { panic!("expected one HTTP flow, read {all:?}") };
    let response = stored.response.as_ref().unwrap();
    assert_eq!(response.body.as_deref(), Some(&body[..16]));
    assert_eq!(response.body_len, 100);
}

#[tokio::test]
async fn count_of_status_500_in_2000_flows_is_the_number_written_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("session.strata");
    let writer = StoreWriter::create(&path, false, None, 32 << 20).unwrap();
    let mut written = 0;
    for i in 0..2000u32 {
        let status = match i % 11 {
            0 => None,
            3 | 7 => Some(500),
            5 => Some(502),
            _ => Some(200),
        };
        written += usize::from(status == Some(500));
        let mut flow = plain_flow(status);
        if let Some(response) = flow.response.as_mut().filter(|r| r.status >= 500) {
            response.body = Some(b"upstream error".to_vec());
            response.body_len = 14;
        }
        writer.http(&flow, true).await;
    }
    writer.flush().await.unwrap();
    let mut reader = SessionReader::open(&path, false).unwrap();
    assert_eq!(reader.count(Some(&Filter::parse("~c 500").unwrap())).unwrap(), written);
    // The same flows by a body search (decided page by page), and a page of them past the first.
    let filter = Filter::parse("~bs error !~c 502").unwrap();
    assert_eq!(reader.count(Some(&filter)).unwrap(), written);
    let all: Vec<FlowId> = reader.query(Some(&filter), 0, usize::MAX).unwrap().iter().map(id).collect();
    assert_eq!(all.len(), written);
    let page: Vec<FlowId> = reader.query(Some(&filter), 300, 20).unwrap().iter().map(id).collect();
    assert_eq!(page, all[300..320]);
}

/// A session written by the previous schema (2: no TLS time, server certificate or message times) reads
/// back, and appending to it adds those columns and keeps its flows.
#[tokio::test]
async fn a_schema_2_session_reads_back_and_takes_new_flows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("session.strata");
    let old = text_bodies(&path, &["written by schema 2"]).await;
    {
        // Back to schema 2's shape: the columns schema 3 added are dropped.
        let connection = rusqlite::Connection::open(&path).unwrap();
        connection
            .execute_batch(
                "ALTER TABLE flows DROP COLUMN ssl_ms; ALTER TABLE flows DROP COLUMN server_cert;
                 ALTER TABLE messages DROP COLUMN at; PRAGMA user_version = 2;",
            )
            .unwrap();
    }
    let read = read_all(&path).unwrap();
    assert_eq!(read.iter().map(id).collect::<Vec<_>>(), old);
    let writer = StoreWriter::create(&path, true, None, 32 << 20).unwrap();
    let mut flow = plain_flow(Some(204));
    flow.timings.connect_ms = 3.0;
    flow.timings.ssl_ms = 2.0;
    writer.http(&flow, true).await;
    writer.flush().await.unwrap();
    drop(writer);
    let read = read_all(&path).unwrap();
    assert_eq!(read.iter().map(id).collect::<Vec<_>>(), [old[0], flow.id]);
    let StoredFlow::Http(new) = &read[1] else { panic!("expected an HTTP flow: {read:?}") };
    assert_eq!(new.timings.ssl_ms, 2.0);
}

// ---- known mismatches ----

/// Writes HTTP flows with these text/plain request bodies (kept whole); returns their ids.
async fn text_bodies(path: &Path, bodies: &[&str]) -> Vec<FlowId> {
    let writer = StoreWriter::create(path, false, None, 32 << 20).unwrap();
    let mut ids = Vec::new();
    for body in bodies {
        let mut flow = plain_flow(Some(200));
        flow.request.headers.append("Content-Type", "text/plain");
        flow.request.body = Some(body.as_bytes().to_vec());
        flow.request.body_len = body.len() as u64;
        writer.http(&flow, true).await;
        ids.push(flow.id);
    }
    writer.flush().await.unwrap();
    ids
}

/// `!~b secret` matches the flow whose body is `hello`: a `!` over a body search the index looks up
/// drops that search's condition and its parameter alike (they once went out of step).
#[tokio::test]
async fn negated_body_search_with_an_indexed_pattern_matches_the_other_flows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("session.strata");
    let ids = text_bodies(&path, &["hello", "secret"]).await;
    let filter = Filter::parse("!~b secret").unwrap();
    let all = read_all(&path).unwrap();
    let expected: Vec<FlowId> = all.iter().filter(|f| matches(&filter, f)).map(id).collect();
    assert_eq!(expected, ids[..1]);
    let mut reader = SessionReader::open(&path, false).unwrap();
    let got = reader.query(Some(&filter), 0, usize::MAX).map(|flows| flows.iter().map(id).collect::<Vec<_>>());
    assert_eq!(got, Ok(expected.clone()));
    assert_eq!(reader.count(Some(&filter)), Ok(expected.len()));
}
