//! Hostile input and failing peers, through the real binary: a request smuggling corpus (RFC 9112
//! sections 2.2, 5, 6 and 7), resource limits (slowloris, --max-connections, --max-headers), and faults
//! (an upstream that resets, hangs or does not resolve; clients that vanish mid-body).
//!
//! The origins here are raw TCP servers defined in this file: they record exactly which bytes reach
//! them, so "nothing was forwarded" and "forwarded unambiguously" are checked on the wire, not through
//! an HTTP library that might itself be lenient.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use common::strict::{body_of, fill, head_of, show, strict_request, RecordingOrigin};
use common::{connect, fd_count, raw_exchange, read_until_close, Conn, EventCount, Origin, Strata};

/// Bound on waits for something that should happen at once (a reply, a close).
const SOON: Duration = Duration::from_secs(10);

// ---- small synchronisation helpers ----

// ---- request smuggling: refused outright ----

/// Requests whose framing is ambiguous or whose syntax is invalid where it matters: 400, connection
/// closed, and no byte reaches the origin (the head alone already shows the problem).
const REFUSED_HEADS: &[(&str, &str)] = &[
    (
        "Transfer-Encoding with Content-Length",
        "POST {url} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    ),
    (
        "Content-Length with Transfer-Encoding",
        "POST {url} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\nhello",
    ),
    (
        "repeated differing Content-Length",
        "POST {url} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    ),
    ("Content-Length list 5,6", "POST {url} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5,6\r\n\r\nhello!"),
    ("Content-Length +5", "POST {url} HTTP/1.1\r\nHost: {host}\r\nContent-Length: +5\r\n\r\nhello"),
    ("Content-Length -5", "POST {url} HTTP/1.1\r\nHost: {host}\r\nContent-Length: -5\r\n\r\nhello"),
    ("Content-Length abc", "POST {url} HTTP/1.1\r\nHost: {host}\r\nContent-Length: abc\r\n\r\nhello"),
    ("Content-Length 0x5", "POST {url} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0x5\r\n\r\nhello"),
    ("Content-Length 5 5", "POST {url} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5 5\r\n\r\nhello"),
    ("empty Content-Length", "POST {url} HTTP/1.1\r\nHost: {host}\r\nContent-Length:\r\n\r\nhello"),
    (
        "Content-Length over u64",
        "POST {url} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 99999999999999999999\r\n\r\nhello",
    ),
    (
        "Transfer-Encoding: chunked, gzip",
        "POST {url} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
    ),
    ("Transfer-Encoding: gzip", "POST {url} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: gzip\r\n\r\nhello"),
    (
        "Transfer-Encoding: chunked, chunked",
        "POST {url} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "Transfer-Encoding chunked in two fields",
        "POST {url} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ),
    (
        "Transfer-Encoding chunked then identity",
        "POST {url} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
    ),
    ("Transfer-Encoding: xchunked", "POST {url} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"),
    ("empty Transfer-Encoding", "POST {url} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding:\r\n\r\n0\r\n\r\n"),
    (
        "HTTP/1.0 with Transfer-Encoding",
        "POST {url} HTTP/1.0\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ),
    ("obs-fold", "GET {url} HTTP/1.1\r\nHost: {host}\r\nX-Folded: a\r\n b\r\n\r\n"),
    (
        "obs-fold of Transfer-Encoding",
        "POST {url} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: gzip,\r\n chunked\r\n\r\n0\r\n\r\n",
    ),
    ("folded first field", "GET {url} HTTP/1.1\r\n Host: {host}\r\n\r\n"),
    ("space before the colon", "POST {url} HTTP/1.1\r\nHost: {host}\r\nContent-Length : 5\r\n\r\nhello"),
    (
        "tab before the colon",
        "POST {url} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n",
    ),
    ("bare LF everywhere", "GET {url} HTTP/1.1\nHost: {host}\n\n"),
    ("bare LF after the request line", "GET {url} HTTP/1.1\nHost: {host}\r\n\r\n"),
    ("bare LF after a field", "GET {url} HTTP/1.1\r\nHost: {host}\nX-A: b\r\n\r\n"),
    ("bare LF ending the head", "GET {url} HTTP/1.1\r\nHost: {host}\r\n\n"),
    ("bare CR in a field", "GET {url} HTTP/1.1\r\nHost: {host}\r\nX-A: b\rc\r\n\r\n"),
    ("NUL in a field value", "GET {url} HTTP/1.1\r\nHost: {host}\r\nX-Nul: a\0b\r\n\r\n"),
    ("NUL in a field name", "GET {url} HTTP/1.1\r\nHost: {host}\r\nX-N\0ul: ab\r\n\r\n"),
    ("two spaces in the request line", "GET  {url} HTTP/1.1\r\nHost: {host}\r\n\r\n"),
    ("lower-case version", "GET {url} http/1.1\r\nHost: {host}\r\n\r\n"),
];

/// Sends the request `build` makes for a fresh origin, expects a 400 and a closed connection, then
/// serves a good request on a new connection. Returns what went wrong, and the bytes of each origin
/// connection other than the good request's.
fn refuse_with(proxy: &Strata, build: impl Fn(&str, &str) -> Vec<u8>) -> (Vec<String>, Vec<Vec<u8>>) {
    let origin = RecordingOrigin::start();
    let request = build(&origin.url("/target"), &origin.authority());
    let mut problems = Vec::new();
    let reply = raw_exchange(proxy.port, &request, SOON);
    if !head_of(&reply).starts_with("HTTP/1.1 400 ") {
        problems.push(format!("expected 400, got {:?}", reply.text()));
    }
    if !reply.closed {
        problems.push("connection left open after the 400".into());
    }
    let good =
        format!("GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", origin.url("/good"), origin.authority());
    let next = raw_exchange(proxy.port, good.as_bytes(), SOON);
    if !next.text().starts_with("HTTP/1.1 200 ") || body_of(&next) != b"ok" {
        problems.push(format!("the next client was not served: {:?}", next.text()));
    }
    // The good request's connection was accepted after any the bad one caused; once all are closed, the
    // records are complete.
    if !origin.wait_until_all_closed(SOON) {
        problems.push("an origin connection stayed open".into());
    }
    let others: Vec<Vec<u8>> = origin.connections().into_iter().filter(|c| !c.starts_with(b"GET /good ")).collect();
    (problems, others)
}

#[test]
fn ambiguous_or_invalid_request_heads_get_400_and_nothing_reaches_the_origin() {
    let proxy = Strata::start(&[]);
    let mut failures = Vec::new();
    for (name, template) in REFUSED_HEADS {
        let (mut problems, others) = refuse_with(&proxy, |url, host| fill(template, url, host));
        let forwarded: usize = others.iter().map(Vec::len).sum();
        if forwarded > 0 {
            problems.push(format!(
                "the origin received {forwarded} bytes: {:?}",
                others.iter().map(|b| show(b)).collect::<Vec<_>>()
            ));
        } else if !others.is_empty() {
            problems.push(format!("the origin was dialled ({} connections) though nothing was sent", others.len()));
        }
        if !problems.is_empty() {
            failures.push(format!("{name}: {}", problems.join("; ")));
        }
    }
    proxy.check(
        failures.is_empty(),
        format!("{} of {} cases failed:\n{}", failures.len(), REFUSED_HEADS.len(), failures.join("\n")),
    );
}

/// Requests whose head is fine but whose chunked body is not: 400 for the client, and the origin must
/// not be sent anything a strict parser could take for a complete message.
const REFUSED_BODIES: &[(&str, &str)] = &[
    ("chunk size 0x10", "0x10\r\n0123456789abcdef\r\n0\r\n\r\n"),
    ("chunk size -1", "-1\r\nx\r\n0\r\n\r\n"),
    ("chunk size 1 0", "1 0\r\n0123456789abcdef\r\n0\r\n\r\n"),
    ("chunk size +5", "+5\r\nhello\r\n0\r\n\r\n"),
    ("empty chunk size", "\r\nhello\r\n0\r\n\r\n"),
    ("overlong hex chunk size (2^64)", "10000000000000000\r\nhello\r\n0\r\n\r\n"),
    ("overlong hex chunk size (leading zeros)", "00000000000000005\r\nhello\r\n0\r\n\r\n"),
    ("missing CRLF after chunk data", "5\r\nhelloXX\r\n0\r\n\r\n"),
    ("bare LF after chunk data", "5\r\nhello\n0\r\n\r\n"),
    ("bare LF after the chunk size", "5\nhello\r\n0\r\n\r\n"),
    ("obs-fold in a trailer", "5\r\nhello\r\n0\r\nX-T: a\r\n b\r\n\r\n"),
    ("trailer without a colon", "5\r\nhello\r\n0\r\nnot a field\r\n\r\n"),
];

/// Trailer fields with control characters: strata must refuse them like it refuses them in a head.
const REFUSED_TRAILERS: &[(&str, &str)] = &[
    (
        "bare LF in a trailer (ends the trailers for a lenient origin, smuggling the rest)",
        "5\r\nhello\r\n0\r\nX-T: a\n\nGET /smuggled HTTP/1.1\nHost: victim\n\r\n\r\n",
    ),
    ("bare CR in a trailer", "5\r\nhello\r\n0\r\nX-T: a\rb\r\n\r\n"),
    ("NUL in a trailer", "5\r\nhello\r\n0\r\nX-T: a\0b\r\n\r\n"),
];

fn chunked_post(url: &str, host: &str, body: &str) -> Vec<u8> {
    format!("POST {url} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n{body}").into_bytes()
}

/// What must hold even for a streaming proxy: the client gets a 400, the next client is served, and the
/// origin only ever sees a strictly valid, incomplete prefix of a message, followed by the close.
#[test]
fn bad_chunked_bodies_never_reach_the_origin_as_a_message() {
    let proxy = Strata::start(&[]);
    let mut failures = Vec::new();
    for (name, body) in REFUSED_BODIES {
        let (mut problems, others) = refuse_with(&proxy, |url, host| chunked_post(url, host, body));
        problems.extend(others.iter().filter_map(|bytes| only_a_truncated_message(bytes)));
        if !problems.is_empty() {
            failures.push(format!("{name}: {}", problems.join("; ")));
        }
    }
    proxy.check(failures.is_empty(), format!("{} cases failed:\n{}", failures.len(), failures.join("\n")));
}

#[test]
fn trailers_with_control_characters_get_400_and_are_not_forwarded() {
    let proxy = Strata::start(&[]);
    let mut failures = Vec::new();
    for (name, body) in REFUSED_TRAILERS {
        let (mut problems, others) = refuse_with(&proxy, |url, host| chunked_post(url, host, body));
        problems.extend(others.iter().filter_map(|bytes| only_a_truncated_message(bytes)));
        if !problems.is_empty() {
            failures.push(format!("{name}: {}", problems.join("; ")));
        }
    }
    proxy.check(failures.is_empty(), format!("{} cases failed:\n{}", failures.len(), failures.join("\n")));
}

/// None if `bytes` is empty or a strictly valid but incomplete message; else what is wrong with it.
fn only_a_truncated_message(bytes: &[u8]) -> Option<String> {
    match strict_request(bytes) {
        Ok(None) => None,
        Ok(Some(message)) => {
            Some(format!("the origin received a complete message {:?} (all bytes: {})", message.head, show(bytes)))
        }
        Err(e) => Some(format!("the origin received an invalid message ({e}): {}", show(bytes))),
    }
}

// ---- request smuggling: accepted and forwarded unambiguously ----

/// A request strata must accept, and what a strict origin must then read: the payload and trailers.
struct Accepted {
    name: &'static str,
    head: &'static str,
    body: &'static str,
    payload: &'static str,
    trailers: &'static [&'static str],
}

const ACCEPTED: &[Accepted] = &[
    Accepted {
        name: "plain Content-Length",
        head: "Content-Length: 5\r\n",
        body: "hello",
        payload: "hello",
        trailers: &[],
    },
    Accepted {
        name: "chunked",
        head: "Transfer-Encoding: chunked\r\n",
        body: "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        payload: "hello world",
        trailers: &[],
    },
    Accepted {
        name: "chunk extensions",
        head: "Transfer-Encoding: chunked\r\n",
        body: "5;name=value\r\nhello\r\n6 ; q=\"a;b\\\"c\"\r\n world\r\n0;last\r\n\r\n",
        payload: "hello world",
        trailers: &[],
    },
    Accepted {
        name: "trailers",
        head: "Transfer-Encoding: chunked\r\n",
        body: "5\r\nhello\r\n0\r\nX-Checksum: 42\r\nX-Other: a b\r\n\r\n",
        payload: "hello",
        trailers: &["X-Checksum: 42", "X-Other: a b"],
    },
    Accepted {
        name: "Transfer-Encoding: CHUNKED",
        head: "Transfer-Encoding: CHUNKED\r\n",
        body: "5\r\nhello\r\n0\r\n\r\n",
        payload: "hello",
        trailers: &[],
    },
    Accepted {
        name: "upper-case hex chunk size",
        head: "Transfer-Encoding: chunked\r\n",
        body: "A\r\n0123456789\r\n0\r\n\r\n",
        payload: "0123456789",
        trailers: &[],
    },
];

/// Cases where strata must forward exactly one Content-Length field, whatever the client repeated.
const ACCEPTED_REPEATED_LENGTH: &[Accepted] = &[
    Accepted {
        name: "equal repeated Content-Length",
        head: "Content-Length: 5\r\nContent-Length: 5\r\n",
        body: "hello",
        payload: "hello",
        trailers: &[],
    },
    Accepted {
        name: "equal Content-Length list",
        head: "Content-Length: 5, 5\r\n",
        body: "hello",
        payload: "hello",
        trailers: &[],
    },
];

/// Sends each case on its own connection (with its own origin) and checks both ends; returns failures.
fn check_accepted(proxy: &Strata, cases: &[Accepted]) -> Vec<String> {
    let mut failures = Vec::new();
    for case in cases {
        let origin = RecordingOrigin::start();
        let request = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\n{}Connection: close\r\n\r\n{}",
            origin.url("/accepted"),
            origin.authority(),
            case.head,
            case.body
        );
        let reply = raw_exchange(proxy.port, request.as_bytes(), SOON);
        let mut problems = Vec::new();
        if !reply.text().starts_with("HTTP/1.1 200 ") || body_of(&reply) != b"ok" {
            problems.push(format!("client got {:?}", reply.text()));
        }
        if !origin.wait_until_all_closed(SOON) {
            problems.push("an origin connection stayed open".into());
        }
        let conns = origin.connections();
        if conns.len() != 1 {
            problems.push(format!("origin saw {} connections", conns.len()));
        }
        for bytes in &conns {
            match strict_request(bytes) {
                Ok(Some(m)) => {
                    if m.len != bytes.len() {
                        problems.push(format!("bytes after the message: {}", show(&bytes[m.len..])));
                    }
                    if m.content_length_fields > 1 {
                        problems
                            .push(format!("{} Content-Length fields forwarded: {:?}", m.content_length_fields, m.head));
                    }
                    if m.payload != case.payload.as_bytes() {
                        problems.push(format!("payload {} instead of {:?}", show(&m.payload), case.payload));
                    }
                    if m.trailers != case.trailers {
                        problems.push(format!("trailers {:?} instead of {:?}", m.trailers, case.trailers));
                    }
                    if m.transfer_encoding.is_none() && case.head.contains("Transfer-Encoding") && m.payload.is_empty()
                    {
                        problems.push("chunked framing lost".into());
                    }
                }
                Ok(None) => problems.push(format!("incomplete message: {}", show(bytes))),
                Err(e) => problems.push(format!("ambiguous or invalid message ({e}): {}", show(bytes))),
            }
        }
        if !problems.is_empty() {
            failures.push(format!("{}: {}", case.name, problems.join("; ")));
        }
    }
    failures
}

#[test]
fn unambiguous_requests_are_forwarded_with_exactly_one_framing() {
    let proxy = Strata::start(&[]);
    let failures = check_accepted(&proxy, ACCEPTED);
    proxy.check(failures.is_empty(), format!("{} cases failed:\n{}", failures.len(), failures.join("\n")));
}

#[test]
fn equal_repeated_content_length_is_forwarded_as_one_field() {
    let proxy = Strata::start(&[]);
    let failures = check_accepted(&proxy, ACCEPTED_REPEATED_LENGTH);
    proxy.check(failures.is_empty(), format!("{} cases failed:\n{}", failures.len(), failures.join("\n")));
}

/// Sends a POST whose framing field (`Content-Length` or `Transfer-Encoding`) is also named in
/// `Connection`, making it hop-by-hop. Removing it while still reading the body by it would turn the
/// body into a second request at the origin. Returns what went wrong.
fn framing_named_in_connection(framing: &str) -> Vec<String> {
    let proxy = Strata::start(&[]);
    let origin = RecordingOrigin::start();
    let smuggled = format!("GET /smuggled HTTP/1.1\r\nHost: {}\r\n\r\n", origin.authority());
    let (field, body) = match framing {
        "Content-Length" => (format!("Content-Length: {}", smuggled.len()), smuggled.clone()),
        _ => ("Transfer-Encoding: chunked".to_string(), format!("{:x}\r\n{smuggled}\r\n0\r\n\r\n", smuggled.len())),
    };
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\n{field}\r\nConnection: {framing}\r\n\r\n{body}",
        origin.url("/upload"),
        origin.authority()
    );
    let reply = raw_exchange(proxy.port, request.as_bytes(), SOON);
    let mut problems = Vec::new();
    // Either refused, or forwarded with the body as the body.
    if !reply.text().starts_with("HTTP/1.1 200 ") && !reply.text().starts_with("HTTP/1.1 400 ") {
        problems.push(format!("client got {:?}", reply.text()));
    }
    if !origin.wait_until_all_closed(SOON) {
        problems.push("an origin connection stayed open".into());
    }
    for bytes in origin.connections() {
        match strict_request(&bytes) {
            Ok(Some(m)) if m.len == bytes.len() && m.payload == smuggled.as_bytes() => {}
            Ok(None) if bytes.is_empty() => {}
            _ => problems.push(format!("the origin read {}", show(&bytes))),
        }
    }
    problems
}

#[test]
fn content_length_named_in_connection_cannot_smuggle_a_request() {
    let problems = framing_named_in_connection("Content-Length");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn transfer_encoding_named_in_connection_cannot_smuggle_a_request() {
    let problems = framing_named_in_connection("Transfer-Encoding");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---- response side ----

/// An origin whose every connection runs `handler`; `progress` is for the handler to count bytes.
struct ScriptedOrigin {
    port: u16,
    accepted: Arc<EventCount>,
    finished: Arc<EventCount>,
    progress: Arc<EventCount>,
}

impl ScriptedOrigin {
    fn start(handler: impl Fn(TcpStream, &EventCount) + Send + Sync + 'static) -> ScriptedOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind scripted origin");
        let port = listener.local_addr().unwrap().port();
        let (accepted, finished, progress) =
            (Arc::new(EventCount::default()), Arc::new(EventCount::default()), Arc::new(EventCount::default()));
        let handler = Arc::new(handler);
        let (acc, fin, prog) = (accepted.clone(), finished.clone(), progress.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
                let _ = stream.set_write_timeout(Some(Duration::from_secs(60)));
                acc.add(1);
                let (handler, fin, prog) = (handler.clone(), fin.clone(), prog.clone());
                thread::spawn(move || {
                    handler(stream, &prog);
                    fin.add(1);
                });
            }
        });
        ScriptedOrigin { port, accepted, finished, progress }
    }

    /// An origin that reads a request head and answers `response`, then waits for the close.
    fn canned(response: Vec<u8>) -> ScriptedOrigin {
        ScriptedOrigin::start(move |mut stream, _| {
            if read_request_head(&mut stream).is_some() {
                let _ = stream.write_all(&response);
                drain(&mut stream);
            }
        })
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn authority(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// Reads up to the end of a head; None if the stream ends first.
fn read_request_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(head)
}

/// Reads until the peer closes (or the read timeout passes).
fn drain(stream: &mut TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
}

fn get_request(url: &str, host: &str) -> Vec<u8> {
    format!("GET {url} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes()
}

/// A second response hidden in a body, which a desynchronised client would read as the answer to its
/// next request.
const SMUGGLED_RESPONSE: &str = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled";

#[test]
fn ambiguous_responses_get_502_not_the_message() {
    let cases: Vec<(&str, String)> = vec![
        (
            "Transfer-Encoding with Content-Length",
            format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n{:x}\r\n{SMUGGLED_RESPONSE}\r\n0\r\n\r\n",
                SMUGGLED_RESPONSE.len()
            ),
        ),
        (
            "Content-Length with Transfer-Encoding",
            format!("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n{SMUGGLED_RESPONSE}"),
        ),
        (
            "repeated differing Content-Length",
            format!("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nContent-Length: 66\r\n\r\n{SMUGGLED_RESPONSE}"),
        ),
        ("Content-Length +0", format!("HTTP/1.1 200 OK\r\nContent-Length: +0\r\n\r\n{SMUGGLED_RESPONSE}")),
        ("Content-Length abc", format!("HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n{SMUGGLED_RESPONSE}")),
        ("obs-fold", format!("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-A: a\r\n b\r\n\r\n{SMUGGLED_RESPONSE}")),
        ("NUL in a field", format!("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-A: a\0b\r\n\r\n{SMUGGLED_RESPONSE}")),
        (
            "chunked not last",
            format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n{SMUGGLED_RESPONSE}"),
        ),
    ];
    let proxy = Strata::start(&[]);
    let mut failures = Vec::new();
    for (name, response) in &cases {
        let origin = ScriptedOrigin::canned(response.clone().into_bytes());
        let reply = raw_exchange(proxy.port, &get_request(&origin.url("/r"), &origin.authority()), SOON);
        let text = reply.text();
        if !text.starts_with("HTTP/1.1 502 ") || text.contains("smuggled") || !reply.closed {
            failures.push(format!("{name}: client got {text:?} (closed: {})", reply.closed));
        }
    }
    proxy.check(
        failures.is_empty(),
        format!("{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n")),
    );
}

/// A status code below 100 is invalid (RFC 9110 section 15); written back as another status (`100`, an
/// interim response without a body) or with fewer digits, it makes the client read the body as the
/// next response.
#[test]
fn response_status_below_100_gets_502() {
    let proxy = Strata::start(&[]);
    let mut failures = Vec::new();
    for code in ["000", "042", "099"] {
        let response =
            format!("HTTP/1.1 {code} Weird\r\nContent-Length: {}\r\n\r\n{SMUGGLED_RESPONSE}", SMUGGLED_RESPONSE.len());
        let origin = ScriptedOrigin::canned(response.into_bytes());
        let reply =
            raw_exchange(proxy.port, &get_request(&origin.url("/r"), &origin.authority()), Duration::from_secs(3));
        let text = reply.text();
        if !text.starts_with("HTTP/1.1 502 ") {
            failures.push(format!("status {code}: client got {text:?}"));
        }
    }
    proxy.check(failures.is_empty(), failures.join("\n"));
}

/// A response whose framing field the server names in Connection; returns what the client got if it
/// is not framed (neither Content-Length nor chunked, nor closed after it): on a kept-alive connection
/// the client cannot tell where it ends.
fn response_framing_named_in_connection(response: &str) -> Option<String> {
    let proxy = Strata::start(&[]);
    let origin = ScriptedOrigin::canned(response.as_bytes().to_vec());
    let reply = raw_exchange(proxy.port, &get_request(&origin.url("/r"), &origin.authority()), Duration::from_secs(3));
    let head = head_of(&reply).to_ascii_lowercase();
    let framed = head.contains("\r\ncontent-length: 5")
        || head.contains("\r\ntransfer-encoding: chunked")
        || (head.contains("\r\nconnection: close") && reply.closed);
    (!head.starts_with("http/1.1 200 ") || !framed)
        .then(|| format!("client got {:?} (closed: {})", reply.text(), reply.closed))
}

#[test]
fn response_content_length_named_in_connection_still_frames_the_response() {
    let response = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: Content-Length\r\n\r\nhello";
    assert_eq!(response_framing_named_in_connection(response), None);
}

#[test]
fn response_transfer_encoding_named_in_connection_still_frames_the_response() {
    let response =
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: Transfer-Encoding\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    assert_eq!(response_framing_named_in_connection(response), None);
}

// ---- limits ----

#[test]
fn slowloris_client_is_cut_off_while_another_is_served() {
    let origin = Origin::start();
    let proxy = Strata::start(&["--read-timeout", "1"]);
    let head = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nX-Slow: {}\r\n\r\n",
        origin.url("/hello"),
        origin.authority(),
        "s".repeat(200)
    );
    let total = head.len();
    let mut slow = connect(proxy.port, SOON);
    let mut slow_reader = slow.try_clone().unwrap();

    // The trickler sends one byte every 200 ms, reporting each, until a write fails or it is stopped.
    let (sent_tx, sent_rx) = mpsc::channel::<usize>();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let trickler = thread::spawn(move || {
        for (i, byte) in head.bytes().enumerate() {
            if stopped.load(Ordering::SeqCst) || slow.write_all(&[byte]).is_err() {
                return i;
            }
            let _ = sent_tx.send(i + 1);
            thread::sleep(Duration::from_millis(200));
        }
        head.len()
    });
    // The reader notes when the proxy ends the connection.
    let watcher = thread::spawn(move || {
        let reply = read_until_close(&mut slow_reader);
        (reply, Instant::now())
    });

    assert_eq!(sent_rx.recv_timeout(SOON), Ok(1), "first byte");
    let first_byte = Instant::now();
    assert_eq!(sent_rx.recv_timeout(SOON), Ok(2), "second byte");

    // Meanwhile another client is served as usual.
    proxy.check(!watcher.is_finished(), "slow client cut off after two bytes");
    let request =
        format!("GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", origin.url("/hello"), origin.authority());
    let asked = Instant::now();
    let reply = raw_exchange(proxy.port, request.as_bytes(), SOON);
    let served_in = asked.elapsed();
    proxy.check(reply.text().ends_with("\r\n\r\nhello, world\n"), format!("normal client got {:?}", reply.text()));

    let (cut, cut_at) = watcher.join().unwrap();
    stop.store(true, Ordering::SeqCst);
    let sent = trickler.join().unwrap();
    let cut_after = cut_at.duration_since(first_byte);
    proxy.check(cut.closed, format!("slow client still connected after {SOON:?}"));
    proxy.check(
        cut_after >= Duration::from_millis(500) && cut_after < Duration::from_secs(5),
        format!("slow client cut off {cut_after:?} after its first byte, expected about 1 s"),
    );
    proxy.check(sent < total, format!("the whole slow head ({sent} bytes) went out before the cut"));
    proxy.check(!cut.text().contains("200 OK"), format!("slow client got {:?}", cut.text()));
    proxy.check(served_in < Duration::from_secs(2), format!("normal client took {served_in:?} next to a slow one"));
}

#[test]
fn max_connections_makes_the_sixth_client_wait_until_one_closes() {
    let origin = Origin::start();
    let proxy = Strata::start(&["--max-connections", "5"]);
    let request = format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", origin.url("/hello"), origin.authority());
    // Five keep-alive clients, each served once (so each surely holds a slot), and kept open.
    let mut five: Vec<Conn> = (0..5)
        .map(|i| {
            let mut conn = Conn::open(proxy.port, SOON);
            conn.send(request.as_bytes());
            let response = conn.read_response();
            proxy.check(response.ends_with("hello, world\n"), format!("client {i} got {response:?}"));
            conn
        })
        .collect();

    // The sixth connects (the kernel completes the handshake in the backlog) but is not served.
    let mut sixth = Conn::open(proxy.port, SOON);
    sixth.send(request.as_bytes());
    sixth.stream().set_read_timeout(Some(Duration::from_millis(1500))).unwrap();
    let mut byte = [0u8; 1];
    match sixth.stream().read(&mut byte) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => proxy.fail(&format!("sixth client answered while five are connected: {other:?}")),
    }

    // One of the five leaves: the sixth is served.
    drop(five.remove(0));
    sixth.stream().set_read_timeout(Some(SOON)).unwrap();
    let response = sixth.read_response();
    proxy.check(response.ends_with("hello, world\n"), format!("sixth client got {response:?}"));

    // Everyone leaves; the process is alive and serves new clients.
    drop(five);
    drop(sixth);
    let request =
        format!("GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", origin.url("/hello"), origin.authority());
    let reply = raw_exchange(proxy.port, request.as_bytes(), SOON);
    proxy.check(reply.text().ends_with("hello, world\n"), format!("later client got {:?}", reply.text()));
    let state = proxy.proc_status("State");
    proxy.check(!state.starts_with('Z') && !state.starts_with('X'), format!("process state {state}"));
}

#[test]
fn header_count_over_max_headers_gets_431() {
    let proxy = Strata::start(&["--max-headers", "8"]);
    let request = |fields: usize, origin: &RecordingOrigin| {
        let extra: String = (0..fields - 2).map(|i| format!("X-Field-{i}: {i}\r\n")).collect();
        format!("GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{extra}\r\n", origin.url("/h"), origin.authority())
    };
    // Exactly at the limit: forwarded.
    let origin = RecordingOrigin::start();
    let reply = raw_exchange(proxy.port, request(8, &origin).as_bytes(), SOON);
    proxy.check(reply.text().starts_with("HTTP/1.1 200 "), format!("8 fields: {:?}", reply.text()));
    // One over: 431, nothing forwarded.
    let origin = RecordingOrigin::start();
    let reply = raw_exchange(proxy.port, request(9, &origin).as_bytes(), SOON);
    proxy.check(reply.text().starts_with("HTTP/1.1 431 "), format!("9 fields: {:?}", reply.text()));
    proxy.check(reply.closed, "connection left open after 431");
    proxy.check(origin.accepted.get() == 0, "a request over --max-headers reached the origin");
}

// ---- faults ----

const MIB: usize = 1024 * 1024;

#[test]
fn origin_reset_mid_body_closes_the_client_connection_before_the_promised_length() {
    let origin = ScriptedOrigin::start(|mut stream, _| {
        if read_request_head(&mut stream).is_none() {
            return;
        }
        let _ = stream.write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {MIB}\r\n\r\n").as_bytes());
        let _ = stream.write_all(&vec![b'r'; 100 * 1024]);
        // SO_LINGER 0: close() sends RST instead of FIN.
        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    });
    let proxy = Strata::start(&[]);
    let asked = Instant::now();
    let reply = raw_exchange(proxy.port, &get_request(&origin.url("/reset"), &origin.authority()), SOON);
    let elapsed = asked.elapsed();
    let head = head_of(&reply);
    let body = body_of(&reply);
    proxy.check(reply.closed && elapsed < SOON, format!("client connection still open after {elapsed:?}"));
    if head.starts_with("HTTP/1.1 200 ") {
        proxy.check(
            head.to_ascii_lowercase().contains(&format!("content-length: {MIB}")),
            format!("the response lost its length, so truncation cannot be seen: {head:?}"),
        );
        proxy.check(body.len() < MIB, format!("client got {} of {MIB} bytes after a reset", body.len()));
    } else {
        // The reset may overtake the head: then a 502 is the right answer.
        proxy.check(head.starts_with("HTTP/1.1 502 "), format!("client got {head:?}"));
    }
}

/// An origin that answers each request with `ok` and closes a connection as soon as it has been idle for
/// 200 ms, the way servers time out keep-alive connections on their own schedule; `progress` counts
/// those closes.
fn origin_closing_idle_connections() -> ScriptedOrigin {
    ScriptedOrigin::start(|mut stream, closed_idle| {
        let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
        while let Some(head) = read_request_head(&mut stream) {
            let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
            let length =
                head.lines().find_map(|l| l.strip_prefix("content-length: ")?.trim().parse().ok()).unwrap_or(0);
            let mut body = vec![0u8; length];
            let _ = stream.set_read_timeout(Some(SOON));
            if stream.read_exact(&mut body).is_err()
                || stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").is_err()
            {
                return;
            }
            let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
        }
        // Closed first, counted after: a client that waits for the count finds the connection closed.
        drop(stream);
        closed_idle.bump();
    })
}

/// A server that closed an idle connection strata kept (for the same client, or pooled for the next) is
/// noticed before the next request is written into it: every request succeeds, a streamed POST body
/// included, which could not be sent twice.
#[test]
fn server_closing_idle_connections_never_costs_a_client_a_502() {
    let origin = origin_closing_idle_connections();
    let proxy = Strata::start(&[]);
    let host = origin.authority();
    let get = get_request(&origin.url("/again"), &host);
    let post = format!("POST {} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\n\r\nhello", origin.url("/upload"));
    let mut waited_for = 0;
    let mut wait_for_idle_close = || {
        waited_for += 1;
        assert!(origin.progress.wait_for(waited_for, SOON), "the origin did not close its idle connection");
    };

    // The same client connection: strata's kept-alive server connection goes stale between requests.
    let mut conn = Conn::open(proxy.port, SOON);
    for request in [&get, &get, post.as_bytes().to_vec().as_ref(), &get] {
        conn.send(request);
        let response = conn.read_response();
        proxy.check(response.starts_with("HTTP/1.1 200 ") && response.ends_with("ok"), format!("got {response:?}"));
        wait_for_idle_close();
    }
    drop(conn);

    // A new client connection each time: the stale connection comes from the pool shared by clients.
    for request in [&get, &post.as_bytes().to_vec(), &get] {
        let mut conn = Conn::open(proxy.port, SOON);
        conn.send(request);
        let response = conn.read_response();
        proxy.check(response.starts_with("HTTP/1.1 200 ") && response.ends_with("ok"), format!("got {response:?}"));
        drop(conn);
        wait_for_idle_close();
    }
}

/// Waits until the proxy's open file descriptors are back to `baseline`.
fn wait_for_fd_count(proxy: &Strata, baseline: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let now = fd_count(proxy.pid());
        if now == baseline {
            return;
        }
        if Instant::now() >= deadline {
            let fds: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", proxy.pid()))
                .map(|dir| {
                    dir.filter_map(Result::ok)
                        .map(|e| format!("{:?}", std::fs::read_link(e.path()).unwrap_or_default()))
                        .collect()
                })
                .unwrap_or_default();
            proxy.fail(&format!("{now} file descriptors open after {timeout:?}, {baseline} before: {fds:?}"));
        }
        // The kernel offers no notification for a process closing a descriptor; poll.
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn client_disconnecting_mid_upload_closes_the_upstream_and_leaks_no_fd() {
    let origin = ScriptedOrigin::start(|mut stream, progress| {
        let mut buf = [0u8; 64 * 1024];
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => progress.add(n),
            }
        }
    });
    let proxy = Strata::start(&[]);
    let baseline = fd_count(proxy.pid());

    let mut client = connect(proxy.port, SOON);
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\r\n",
        origin.url("/upload"),
        origin.authority(),
        100 * MIB
    );
    client.write_all(head.as_bytes()).unwrap();
    let block = vec![b'u'; 64 * 1024];
    for _ in 0..16 {
        client.write_all(&block).unwrap();
    }
    // The body is flowing: most of the megabyte has reached the origin.
    proxy.check(origin.progress.wait_for(MIB / 2, SOON), format!("origin got {} bytes", origin.progress.get()));
    let during = fd_count(proxy.pid());
    proxy.check(
        during >= baseline + 2,
        format!("{during} fds during the upload, {baseline} before: is the count right?"),
    );

    drop(client);
    proxy.check(origin.finished.wait_for(1, SOON), "upstream connection still open after the client left mid-upload");
    proxy.check(origin.progress.get() < 100 * MIB, "the whole body arrived");
    wait_for_fd_count(&proxy, baseline, SOON);
}

#[test]
fn client_disconnecting_mid_download_closes_the_upstream_and_leaks_no_fd() {
    let origin = ScriptedOrigin::start(|mut stream, progress| {
        if read_request_head(&mut stream).is_none() {
            return;
        }
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", 10 * 1024 * MIB);
        if stream.write_all(head.as_bytes()).is_err() {
            return;
        }
        let block = vec![b'd'; 64 * 1024];
        // Until strata closes the connection (the write then fails).
        while stream.write_all(&block).is_ok() {
            progress.add(block.len());
        }
    });
    let proxy = Strata::start(&[]);
    let baseline = fd_count(proxy.pid());

    let mut client = connect(proxy.port, SOON);
    client.write_all(&get_request(&origin.url("/download"), &origin.authority())).unwrap();
    let mut got = 0;
    let mut buf = vec![0u8; 64 * 1024];
    while got < MIB {
        match client.read(&mut buf) {
            Ok(0) | Err(_) => proxy.fail(&format!("download ended after {got} bytes")),
            Ok(n) => got += n,
        }
    }
    let during = fd_count(proxy.pid());
    proxy.check(
        during >= baseline + 2,
        format!("{during} fds during the download, {baseline} before: is the count right?"),
    );

    // Unread data in the receive buffer: the close is a reset.
    drop(client);
    proxy.check(origin.finished.wait_for(1, SOON), "upstream connection still open after the client left mid-download");
    wait_for_fd_count(&proxy, baseline, SOON);
}

#[test]
fn hanging_upstream_gets_504_after_the_read_timeout_and_is_closed() {
    let origin = ScriptedOrigin::start(|mut stream, _| drain(&mut stream));
    let proxy = Strata::start(&["--read-timeout", "1"]);
    let asked = Instant::now();
    let reply = raw_exchange(proxy.port, &get_request(&origin.url("/hang"), &origin.authority()), SOON);
    let elapsed = asked.elapsed();
    proxy.check(head_of(&reply).starts_with("HTTP/1.1 504 "), format!("client got {:?}", reply.text()));
    proxy.check(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(5),
        format!("504 after {elapsed:?}, expected about 1 s"),
    );
    proxy.check(reply.closed, "client connection left open after the 504");
    proxy.check(origin.accepted.get() == 1, format!("{} upstream connections for one request", origin.accepted.get()));
    proxy.check(origin.finished.wait_for(1, SOON), "the hanging upstream connection was not closed");
}

#[test]
fn dns_failure_gets_502_naming_the_host() {
    let proxy = Strata::start(&[]);
    let request = b"GET http://nonexistent.invalid/page HTTP/1.1\r\nHost: nonexistent.invalid\r\n\r\n";
    let reply = raw_exchange(proxy.port, request, Duration::from_secs(30));
    let text = reply.text();
    proxy.check(head_of(&reply).starts_with("HTTP/1.1 502 "), format!("client got {text:?}"));
    proxy.check(
        String::from_utf8_lossy(&body_of(&reply)).contains("nonexistent.invalid"),
        format!("502 does not name the host: {text:?}"),
    );
    proxy.check(reply.closed, "client connection left open after the 502");
}

/// A request whose body was streamed to a reused server connection is never sent again when the server
/// closes without answering: the body is gone, and a retry would send its head with nothing after it. The
/// client gets a 502 at once.
#[test]
fn streamed_body_is_not_retried_after_the_server_closed_without_answering() {
    // Answers the first request of each connection; reads the second whole, then closes without a word.
    let origin = ScriptedOrigin::start(|mut stream, _| {
        for answered in [true, false] {
            let Some(head) = read_request_head(&mut stream) else { return };
            let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
            let length =
                head.lines().find_map(|l| l.strip_prefix("content-length: ")?.trim().parse().ok()).unwrap_or(0);
            let mut body = vec![0u8; length];
            if stream.read_exact(&mut body).is_err() {
                return;
            }
            if answered && stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").is_err() {
                return;
            }
        }
    });
    let proxy = Strata::start(&[]);
    let mut conn = Conn::open(proxy.port, SOON);
    conn.send(&get_request(&origin.url("/first"), &origin.authority()));
    let first = conn.read_response();
    proxy.check(first.starts_with("HTTP/1.1 200 "), format!("first: {first:?}"));
    let post = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Length: 5\r\n\r\nhello",
        origin.url("/upload"),
        origin.authority()
    );
    conn.send(post.as_bytes());
    let reply = conn.read_response();
    proxy.check(reply.starts_with("HTTP/1.1 502 "), format!("expected a 502, got {reply:?}"));
}
