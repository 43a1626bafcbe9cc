//! The request-smuggling and routing corpus: every class of desync and mis-routing an outside corpus found,
//! sent on raw sockets through the real binary in regular and in reverse mode, to a strict origin that
//! records message boundaries (`common::strict`). For each vector, either strata answers 4xx and the
//! origin never sees a complete message, or exactly one well-framed request reaches it. A differential
//! property at the end sends random framing spellings and chunk encodings and checks that strata and the
//! strict origin always agree on where each message ends.
//!
//! The RFC rule behind each class is named at its table. `tests/hostile.rs` has the older corpus (head
//! syntax, Content-Length, response framing) and the resource and fault tests.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::strict::{body_of, head_of, show, strict_request, RecordingOrigin, Strict};
use common::{connect, raw_exchange, read_until_close, Strata};
use proptest::prelude::*;

/// Bound on waits for something that should happen at once (a reply, a close).
const SOON: Duration = Duration::from_secs(10);

/// The listeners every vector is sent to.
#[derive(Debug, Clone, Copy)]
enum Front {
    /// `-m regular`: absolute-form targets.
    Regular,
    /// `-m reverse:http://ORIGIN`: origin-form targets.
    Reverse,
}

const FRONTS: [Front; 2] = [Front::Regular, Front::Reverse];

/// A strata listener of one kind in front of its own fresh recording origin.
struct Setup {
    proxy: Strata,
    origin: RecordingOrigin,
    front: Front,
}

impl Setup {
    fn new(front: Front) -> Setup {
        let origin = RecordingOrigin::start();
        let proxy = match front {
            Front::Regular => Strata::start(&[]),
            Front::Reverse => Strata::start(&["-m", &format!("reverse:http://{}", origin.authority())]),
        };
        Setup { proxy, origin, front }
    }

    /// `{target}` (the request target for `path` this listener expects) and `{host}` filled in.
    fn request(&self, template: &str, path: &str) -> Vec<u8> {
        let target = match self.front {
            Front::Regular => self.origin.url(path),
            Front::Reverse => path.to_string(),
        };
        template.replace("{target}", &target).replace("{host}", &self.origin.authority()).into_bytes()
    }

    /// The origin's connections once every one of them has been closed.
    fn origin_connections(&self) -> Result<Vec<Vec<u8>>, String> {
        if !self.origin.wait_until_all_closed(SOON) {
            return Err("an origin connection stayed open".into());
        }
        Ok(self.origin.connections())
    }
}

/// None if `bytes` is empty or a strictly valid but incomplete message; else what is wrong with it.
fn only_a_truncated_message(bytes: &[u8]) -> Option<String> {
    match strict_request(bytes) {
        Ok(None) => None,
        Ok(Some(message)) => Some(format!("the origin received a complete message {:?}", message.head)),
        Err(e) => Some(format!("the origin received an invalid message ({e}): {}", show(bytes))),
    }
}

/// Sends a request that must be refused with `status`: checks the reply, that the origin never saw a
/// complete message, and that the next client is served. Returns what went wrong.
fn expect_refused(front: Front, template: &str, status: u16) -> Vec<String> {
    let setup = Setup::new(front);
    let mut problems = Vec::new();
    let reply = raw_exchange(setup.proxy.port, &setup.request(template, "/target"), SOON);
    if !head_of(&reply).starts_with(&format!("HTTP/1.1 {status} ")) {
        problems.push(format!("expected {status}, got {:?}", reply.text()));
    }
    if !reply.closed {
        problems.push(format!("connection left open after the {status}"));
    }
    match setup.origin_connections() {
        Ok(conns) => problems.extend(conns.iter().filter_map(|bytes| only_a_truncated_message(bytes))),
        Err(e) => problems.push(e),
    }
    let good = setup.request("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n", "/good");
    let next = raw_exchange(setup.proxy.port, &good, SOON);
    if !next.text().starts_with("HTTP/1.1 200 ") || body_of(&next) != b"ok" {
        problems.push(format!("the next client was not served: {:?}", next.text()));
    }
    problems
}

/// Sends a request that must be forwarded: checks that the origin received exactly one strictly framed
/// message and nothing after it, and returns it (or what went wrong).
fn expect_forwarded(front: Front, template: &str) -> Result<Strict, String> {
    let setup = Setup::new(front);
    let reply = raw_exchange(setup.proxy.port, &setup.request(template, "/accepted"), SOON);
    if !reply.text().starts_with("HTTP/1.1 200 ") || body_of(&reply) != b"ok" {
        return Err(format!("client got {:?}", reply.text()));
    }
    let conns = setup.origin_connections()?;
    let [bytes] = conns.as_slice() else { return Err(format!("origin saw {} connections", conns.len())) };
    match strict_request(bytes) {
        Ok(Some(m)) if m.len == bytes.len() => Ok(m),
        Ok(Some(m)) => Err(format!("bytes after the message: {}", show(&bytes[m.len..]))),
        Ok(None) => Err(format!("incomplete message: {}", show(bytes))),
        Err(e) => Err(format!("ambiguous or invalid message ({e}): {}", show(bytes))),
    }
}

/// Runs `check` for every vector in both modes and fails with every problem found.
fn for_each_vector<V>(vectors: &[(&str, V)], check: impl Fn(Front, &V) -> Vec<String>) {
    let mut failures = Vec::new();
    for front in FRONTS {
        for (name, vector) in vectors {
            for problem in check(front, vector) {
                failures.push(format!("{front:?} / {name}: {problem}"));
            }
        }
    }
    assert!(failures.is_empty(), "{} problems:\n{}", failures.len(), failures.join("\n"));
}

const CHUNKED_HEAD: &str =
    "POST {target} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";

// ---- chunk lines: RFC 9112 section 7.1 (CRLF only; extensions are token / quoted-string) ----

/// Bodies whose chunk lines a lenient parser reads differently. The second request hidden in each must
/// never reach the origin on its own.
const BAD_CHUNK_LINES: &[(&str, &str)] = &[
    ("bare LF inside a chunk extension", "2;ext\nGET /smuggled HTTP/1.1\r\nHost: victim\r\n\r\n\r\nAB\r\n0\r\n\r\n"),
    ("bare LF ending a chunk extension", "2;ext\nAB\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: victim\r\n\r\n"),
    ("bare CR inside a chunk extension", "2;a\rb\r\nAB\r\n0\r\n\r\n"),
    ("extension without a name", "2;\r\nAB\r\n0\r\n\r\n"),
    ("extension value with a space", "2;a=b c\r\nAB\r\n0\r\n\r\n"),
    ("unterminated quoted extension value", "2;a=\"b\r\nAB\r\n0\r\n\r\n"),
    ("control character in an extension", "2;a\x0bb\r\nAB\r\n0\r\n\r\n"),
    ("whitespace after the chunk size", "2 \r\nAB\r\n0\r\n\r\n"),
];

#[test]
fn bare_lf_or_junk_in_a_chunk_line_gets_400_and_smuggles_nothing() {
    for_each_vector(BAD_CHUNK_LINES, |front, body| expect_refused(front, &format!("{CHUNKED_HEAD}{body}"), 400));
}

// ---- Transfer-Encoding: a list (RFC 9110 section 5.6.1), chunked last (RFC 9112 section 6.1) ----

/// Spellings of `chunked` that are valid lists: forwarded as exactly `Transfer-Encoding: chunked`.
const CHUNKED_SPELLINGS: &[(&str, &str)] = &[
    ("empty member before chunked", ",chunked"),
    ("empty member and space before chunked", " , chunked"),
    ("empty member after chunked", "chunked,"),
    ("upper-case CHUNKED", "CHUNKED"),
];

#[test]
fn transfer_encoding_with_empty_list_members_is_forwarded_normalized() {
    for_each_vector(CHUNKED_SPELLINGS, |front, spelling| {
        let template = format!(
            "POST {{target}} HTTP/1.1\r\nHost: {{host}}\r\nTransfer-Encoding: {spelling}\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        );
        match expect_forwarded(front, &template) {
            Ok(m) if m.transfer_encoding.as_deref() == Some("chunked") && m.payload == b"hello" => vec![],
            Ok(m) => vec![format!("forwarded as {:?} with payload {}", m.transfer_encoding, show(&m.payload))],
            Err(e) => vec![e],
        }
    });
}

/// Codings strata does not implement (only `chunked` is required of a server): 501, nothing forwarded.
const UNSUPPORTED_CODINGS: &[(&str, &str)] =
    &[("gzip before chunked", "gzip, chunked"), ("identity before chunked", "identity, chunked")];

#[test]
fn transfer_codings_other_than_chunked_get_501() {
    for_each_vector(UNSUPPORTED_CODINGS, |front, codings| {
        let template = format!(
            "POST {{target}} HTTP/1.1\r\nHost: {{host}}\r\nTransfer-Encoding: {codings}\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        );
        expect_refused(front, &template, 501)
    });
}

/// Transfer-Encoding values that are not a list of tokens: 400.
const INVALID_CODINGS: &[(&str, &str)] = &[
    ("quoted chunked", "\"chunked\""),
    ("chunked with a parameter", "chunked;q=1"),
    ("vertical tab after chunked", "chunked\x0b"),
    ("only a comma", ","),
];

#[test]
fn transfer_encoding_that_is_not_a_token_list_gets_400() {
    for_each_vector(INVALID_CODINGS, |front, value| {
        let template = format!(
            "POST {{target}} HTTP/1.1\r\nHost: {{host}}\r\nTransfer-Encoding: {value}\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        );
        expect_refused(front, &template, 400)
    });
}

// ---- trailers: field syntax (RFC 9110 section 5), and what must not be a trailer (section 6.5.1) ----

/// Trailer fields that frame, route or authenticate: the message is forwarded without them.
const FORBIDDEN_TRAILERS: &[(&str, &str)] = &[
    ("Content-Length trailer", "Content-Length: 50"),
    ("Transfer-Encoding trailer", "Transfer-Encoding: chunked"),
    ("Host trailer", "Host: victim.example"),
    ("Authorization trailer", "Authorization: Basic YWRtaW46YWRtaW4="),
    ("Trailer trailer", "Trailer: X-Smuggled"),
];

#[test]
fn framing_routing_and_auth_trailers_are_dropped_not_forwarded() {
    for_each_vector(FORBIDDEN_TRAILERS, |front, trailer| {
        let template = format!("{CHUNKED_HEAD}5\r\nhello\r\n0\r\nX-Checksum: 42\r\n{trailer}\r\n\r\n");
        match expect_forwarded(front, &template) {
            Ok(m) if m.trailers == ["X-Checksum: 42"] && m.payload == b"hello" => vec![],
            Ok(m) => vec![format!("forwarded trailers {:?}", m.trailers)],
            Err(e) => vec![e],
        }
    });
}

/// Trailer lines that are not fields at all: 400, and the origin never sees a complete message.
const MALFORMED_TRAILERS: &[(&str, &str)] = &[
    ("space before the colon", "X-A : 1"),
    ("tab before the colon", "X-A\t: 1"),
    ("a request line as a trailer", "GET http://victim.example/ HTTP/1.1"),
    ("a field name with a parenthesis", "X(A): 1"),
];

#[test]
fn malformed_trailer_fields_get_400() {
    for_each_vector(MALFORMED_TRAILERS, |front, trailer| {
        expect_refused(front, &format!("{CHUNKED_HEAD}5\r\nhello\r\n0\r\n{trailer}\r\n\r\n"), 400)
    });
}

// ---- methods: a token (RFC 9110 section 9.1) ----

const INVALID_METHODS: &[(&str, &str)] =
    &[("parenthesis", "G(T"), ("comma", "GET,POST"), ("slash", "GE/T"), ("quote", "\"GET\"")];

#[test]
fn invalid_method_token_gets_400() {
    for_each_vector(INVALID_METHODS, |front, method| {
        expect_refused(front, &format!("{method} {{target}} HTTP/1.1\r\nHost: {{host}}\r\n\r\n"), 400)
    });
}

// ---- Host: exactly one, a valid authority (RFC 9112 section 3.2), agreeing with the target ----

const INVALID_HOSTS: &[(&str, &str)] = &[
    ("two Host fields", "Host: {host}\r\nHost: victim.example"),
    ("Host with a space", "Host: victim.example {host}"),
    ("Host with a NUL", "Host: victim\0.example"),
    ("empty Host", "Host: "),
    ("Host with user information", "Host: user@{host}"),
    ("Host with a path", "Host: {host}/x"),
];

#[test]
fn duplicated_or_invalid_host_gets_400() {
    for_each_vector(INVALID_HOSTS, |front, field| {
        expect_refused(front, &format!("GET {{target}} HTTP/1.1\r\n{field}\r\n\r\n"), 400)
    });
}

#[test]
fn host_disagreeing_with_an_absolute_form_target_gets_400() {
    let template = "GET http://{host}/x HTTP/1.1\r\nHost: victim.example\r\n\r\n";
    for_each_vector(&[("absolute-form target", template)], |front, template| expect_refused(front, template, 400));
}

// ---- upgrades: only WebSocket is relayed ----

/// The answer of an origin that switches to any protocol it is asked for, and says `ok` otherwise.
fn switch_when_asked(request: &Strict) -> String {
    let upgrade = request.head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("upgrade").then(|| value.trim().to_string())
    });
    match upgrade {
        Some(protocol) => {
            format!("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: {protocol}\r\n\r\n")
        }
        None => OK.to_string(),
    }
}

/// `Upgrade: h2c` (or any protocol strata does not speak) is not relayed: the request reaches the
/// server without it, and the next request on the connection is an HTTP exchange strata sees and logs,
/// not bytes in a tunnel.
#[test]
fn h2c_upgrade_is_stripped_and_later_requests_stay_visible() {
    for front in FRONTS {
        let origin = StrictOrigin::start(switch_when_asked);
        let authority = format!("127.0.0.1:{}", origin.port);
        let proxy = match front {
            Front::Regular => Strata::start(&[]),
            Front::Reverse => Strata::start(&["-m", &format!("reverse:http://{authority}")]),
        };
        let target = |path: &str| match front {
            Front::Regular => format!("http://{authority}{path}"),
            Front::Reverse => path.to_string(),
        };
        let mut stream = connect(proxy.port, SOON);
        let requests = format!(
            "GET {} HTTP/1.1\r\nHost: {authority}\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\
             HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n\
             GET {} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n",
            target("/first"),
            target("/second")
        );
        stream.write_all(requests.as_bytes()).unwrap();
        let reply = read_until_close(&mut stream).text();
        assert_eq!(reply.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{front:?}: {reply}");
        assert!(!reply.contains("101"), "{front:?}: {reply}");
        let heads = origin.heads();
        assert_eq!(heads.len(), 2, "{front:?}: {heads:?}");
        for head in &heads {
            let lower = head.to_ascii_lowercase();
            assert!(!lower.contains("upgrade") && !lower.contains("http2-settings"), "{front:?}: forwarded {head:?}");
        }
        proxy.wait_for_stdout_line(|l| l.contains("/second -> 200"), SOON);
        assert!(proxy.stdout_lines().iter().any(|l| l.contains("/first -> 200")), "{front:?}");
    }
}

// ---- routing: a fixed server is never re-routed (RFC 9112 section 3.2.2) ----

/// In reverse mode an absolute-form request goes to the configured server, whatever host it names: the
/// other server is never dialled (no open proxy in front of a dev server).
#[test]
fn reverse_mode_absolute_form_request_goes_to_the_configured_server_only() {
    let setup = Setup::new(Front::Reverse);
    let other = RecordingOrigin::start();
    let request = format!(
        "GET http://{}/secret HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        other.authority(),
        other.authority()
    );
    let reply = raw_exchange(setup.proxy.port, request.as_bytes(), SOON);
    assert!(reply.text().starts_with("HTTP/1.1 200 "), "{}", reply.text());
    let conns = setup.origin_connections().unwrap();
    assert_eq!(conns.len(), 1);
    let message = strict_request(&conns[0]).unwrap().expect("a complete request reached the configured server");
    assert!(message.head.starts_with("GET /secret HTTP/1.1\r\n"), "{:?}", message.head);
    let host_field = format!("host: {}", setup.origin.authority());
    assert!(message.head.to_ascii_lowercase().contains(&host_field), "{:?}", message.head);
    assert_eq!(other.accepted.get(), 0, "the host named in the target was dialled");
}

/// Inside a CONNECT tunnel the same holds: requests go to the tunnel's server, not to the host an
/// absolute-form target names.
#[test]
fn request_inside_a_tunnel_cannot_leave_it_with_an_absolute_form_target() {
    let proxy = Strata::start(&[]);
    let tunnel_end = RecordingOrigin::start();
    let other = RecordingOrigin::start();
    let mut stream = connect(proxy.port, SOON);
    let connect = format!("CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n\r\n", tunnel_end.authority());
    stream.write_all(connect.as_bytes()).unwrap();
    let mut established = [0u8; 39];
    stream.read_exact(&mut established).unwrap();
    assert!(established.starts_with(b"HTTP/1.1 200 "), "{}", show(&established));
    let request = format!("GET http://{0}/x HTTP/1.1\r\nHost: {0}\r\nConnection: close\r\n\r\n", other.authority());
    stream.write_all(request.as_bytes()).unwrap();
    let reply = read_until_close(&mut stream);
    assert!(reply.text().starts_with("HTTP/1.1 200 "), "{}", reply.text());
    assert!(tunnel_end.wait_until_all_closed(SOON));
    assert_eq!(tunnel_end.connections().len(), 1);
    assert_eq!(other.accepted.get(), 0, "the request left the tunnel");
}

// ---- differential: random framing spellings and chunk encodings ----

/// One way of spelling the framing of a body, and whether a strict reading of it frames `payload`.
#[derive(Debug, Clone)]
enum Spelling {
    Length(String),
    Chunked { te: String, sizes: Vec<usize>, extension: String, trailer: String, line_end: String },
}

fn spelling() -> impl Strategy<Value = Spelling> {
    let length = prop_oneof![Just("{n}"), Just(" {n} "), Just("{n}, {n}"), Just("+{n}"), Just("{n}x"), Just("0{n}")]
        .prop_map(|s| Spelling::Length(s.to_string()));
    let te = prop_oneof![
        Just("chunked"),
        Just(",chunked"),
        Just("chunked, "),
        Just("Chunked"),
        Just("chunked, chunked"),
        Just("gzip, chunked"),
        Just("\"chunked\""),
        Just("chunked\u{b}"),
        Just("identity"),
    ];
    let extension = prop_oneof![
        Just(""),
        Just(";a"),
        Just(" ; a=b"),
        Just(";a=\"x;y\""),
        Just(";a\nb"),
        Just(";a=\"x"),
        Just(" "),
        Just(";a\rb")
    ];
    let trailer =
        prop_oneof![Just(""), Just("X-T: 1\r\n"), Just("Content-Length: 9\r\n"), Just("X-T : 1\r\n"), Just("X-T: 1\n")];
    let line_end = prop_oneof![4 => Just("\r\n"), 1 => Just("\n")];
    let chunked = (te, prop::collection::vec(1usize..6, 0..4), extension, trailer, line_end).prop_map(
        |(te, sizes, extension, trailer, line_end)| Spelling::Chunked {
            te: te.to_string(),
            sizes,
            extension: extension.to_string(),
            trailer: trailer.to_string(),
            line_end: line_end.to_string(),
        },
    );
    prop_oneof![length, chunked]
}

/// The framing fields and body bytes for `payload` spelled as `spelling`.
fn frame(payload: &[u8], spelling: &Spelling) -> (String, Vec<u8>) {
    match spelling {
        Spelling::Length(form) => {
            (format!("Content-Length: {}\r\n", form.replace("{n}", &payload.len().to_string())), payload.to_vec())
        }
        Spelling::Chunked { te, sizes, extension, trailer, line_end } => {
            let mut body = Vec::new();
            let mut at = 0;
            for &size in sizes {
                let size = size.min(payload.len() - at);
                if size == 0 {
                    break;
                }
                body.extend_from_slice(format!("{size:x}{extension}{line_end}").as_bytes());
                body.extend_from_slice(&payload[at..at + size]);
                body.extend_from_slice(b"\r\n");
                at += size;
            }
            if at < payload.len() {
                body.extend_from_slice(format!("{:x}\r\n", payload.len() - at).as_bytes());
                body.extend_from_slice(&payload[at..]);
                body.extend_from_slice(b"\r\n");
            }
            body.extend_from_slice(format!("0\r\n{trailer}\r\n").as_bytes());
            (format!("Transfer-Encoding: {te}\r\n"), body)
        }
    }
}

const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// An origin that reads each connection strictly, message by message, and sends `answer(message)` for
/// each; it records every complete message it read, and the error if the bytes stop being strictly
/// valid (then it closes the connection).
struct StrictOrigin {
    port: u16,
    log: Arc<Mutex<Vec<Result<Strict, String>>>>,
}

impl StrictOrigin {
    fn start(answer: fn(&Strict) -> String) -> StrictOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind strict origin");
        let port = listener.local_addr().unwrap().port();
        let log: Arc<Mutex<Vec<Result<Strict, String>>>> = Arc::default();
        let recorded = log.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let recorded = recorded.clone();
                thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        loop {
                            match strict_request(&buf) {
                                Ok(Some(m)) => {
                                    buf.drain(..m.len);
                                    // Recorded before it is answered, so a client holding the answer finds it here.
                                    let reply = answer(&m);
                                    recorded.lock().unwrap().push(Ok(m));
                                    let _ = stream.write_all(reply.as_bytes());
                                }
                                Ok(None) => break,
                                Err(e) => {
                                    recorded.lock().unwrap().push(Err(e));
                                    return;
                                }
                            }
                        }
                        match stream.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        });
        StrictOrigin { port, log }
    }

    /// The heads of the messages read so far.
    fn heads(&self) -> Vec<String> {
        self.log.lock().unwrap().iter().filter_map(|m| m.as_ref().ok().map(|m| m.head.clone())).collect()
    }
}

/// A POST with a random framing spelling, then a pipelined GET on the same connection. Whatever strata
/// accepts, the strict origin must read as exactly the messages strata answered: the same count, the
/// POST's payload intact, and never a strict error or a request that strata did not answer.
#[test]
fn strata_and_a_strict_origin_agree_where_every_message_ends() {
    let origin = StrictOrigin::start(|_| OK.to_string());
    let proxy = Strata::start(&[]);
    let authority = format!("127.0.0.1:{}", origin.port);
    let config = ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let result = runner.run(&("[a-z]{1,12}", spelling()), |(payload, spelling)| {
        let before = origin.log.lock().unwrap().len();
        let (framing, body) = frame(payload.as_bytes(), &spelling);
        let mut request =
            format!("POST http://{authority}/post HTTP/1.1\r\nHost: {authority}\r\n{framing}\r\n").into_bytes();
        request.extend_from_slice(&body);
        let next = format!("GET http://{authority}/next HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
        request.extend_from_slice(next.as_bytes());
        let reply = raw_exchange(proxy.port, &request, SOON);
        let answered = reply.text().matches("HTTP/1.1 200 OK\r\n").count();
        let seen: Vec<String> = origin.log.lock().unwrap()[before..]
            .iter()
            .map(|m| match m {
                Ok(m) => format!("{} payload={}", m.head.lines().next().unwrap_or_default(), show(&m.payload)),
                Err(e) => format!("strict error: {e}"),
            })
            .collect();
        let sent = show(&request);
        prop_assert!(!seen.iter().any(|s| s.starts_with("strict error")), "origin read {seen:?} for {sent}");
        prop_assert_eq!(seen.len(), answered, "origin read {:?}, client got {:?} for {}", seen, reply.text(), sent);
        if answered > 0 {
            let expected = format!("POST /post HTTP/1.1 payload={}", show(payload.as_bytes()));
            prop_assert_eq!(&seen[0], &expected, "for {}", sent);
        }
        if answered == 2 {
            prop_assert!(seen[1].starts_with("GET /next "), "{seen:?}");
        }
        Ok(())
    });
    if let Err(e) = result {
        proxy.fail(&e.to_string());
    }
}
