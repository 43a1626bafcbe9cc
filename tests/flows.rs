//! Flows as data, through the real binary with curl: HAR recording (`--save-har`), server replay with no
//! outgoing connection (`--server-replay*`), client replay, modification rules, view filters and proxy
//! authentication. Origins are in-process threads on 127.0.0.1 (plain or TLS with a test CA), recording
//! every request they read; every wait is bounded.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{curl_unchecked, raw_exchange, run_strata_to_exit, unused_port, EventCount, Finished, Strata, TestCa};
use regex::Regex;
use serde_json::{json, Value};

/// Bound on waits for something that should happen at once.
const SOON: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------------
// A recording origin server (plain or TLS), and a listener that only counts connection attempts
// ---------------------------------------------------------------------------------------------------

/// A request as an origin read it.
#[derive(Clone, Debug)]
struct SeenRequest {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl SeenRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn has_header(&self, name: &str) -> bool {
        self.header(name).is_some()
    }
}

#[derive(Default)]
struct OriginState {
    /// Connections accepted (the waking connection of `stop` is not counted).
    accepts: EventCount,
    /// Requests read, in order; each is recorded before its response is written.
    requests: Mutex<Vec<SeenRequest>>,
    /// Numbers the default route's answers, so that a replayed body is told apart from a fresh one.
    seq: AtomicUsize,
    /// `/slow` has sent its head and the first part of its body.
    slow_started: EventCount,
    /// Set to let `/slow` end.
    released: Mutex<bool>,
    release: Condvar,
}

#[derive(Clone)]
enum Role {
    /// Serve the routes of `respond`, over TLS if a configuration is given.
    Serve(Option<Arc<rustls::ServerConfig>>),
    /// Accept, count and close.
    Count,
}

/// An origin on 127.0.0.1. Routes:
///
/// - `/text`: `hello world`, with `Server: test-origin` and `X-Origin: yes`.
/// - `/chunked`: `hello world` in two chunks.
/// - `/big`: `hello\n` 700 times (4200 bytes), with Content-Length.
/// - `/slow`: a 1 MB Content-Length, 1000 bytes of it, then nothing until released (or 30 s).
/// - anything else: `SCHEME METHOD TARGET body=BODY #N` (N counts the origin's answers).
struct TestOrigin {
    port: u16,
    scheme: &'static str,
    state: Arc<OriginState>,
    stop: Arc<AtomicBool>,
    addrs: Vec<SocketAddr>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl TestOrigin {
    fn plain() -> TestOrigin {
        TestOrigin::spawn(vec![bind(0)], Role::Serve(None), "http")
    }

    fn tls(ca: &TestCa) -> TestOrigin {
        let config = ca.server_config(&["localhost", "127.0.0.1"]);
        TestOrigin::spawn(vec![bind(0)], Role::Serve(Some(config)), "https")
    }

    /// Counts connection attempts to `port` (on 127.0.0.1, and on [::1] where IPv6 is available, since
    /// `localhost` may resolve there first), e.g. after the origin that had it has stopped.
    fn counting(port: u16) -> TestOrigin {
        let mut listeners = vec![bind(port)];
        if let Ok(v6) = TcpListener::bind(("::1", port)) {
            listeners.push(v6);
        }
        TestOrigin::spawn(listeners, Role::Count, "none")
    }

    fn spawn(listeners: Vec<TcpListener>, role: Role, scheme: &'static str) -> TestOrigin {
        let state = Arc::new(OriginState::default());
        let stop = Arc::new(AtomicBool::new(false));
        let port = listeners[0].local_addr().unwrap().port();
        let mut addrs = Vec::new();
        let mut threads = Vec::new();
        for listener in listeners {
            addrs.push(listener.local_addr().unwrap());
            let (state, stop, role) = (state.clone(), stop.clone(), role.clone());
            threads.push(thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    state.accepts.bump();
                    match &role {
                        Role::Count => drop(conn),
                        Role::Serve(tls) => {
                            let (tls, state) = (tls.clone(), state.clone());
                            thread::spawn(move || serve_connection(conn, tls, scheme, &state));
                        }
                    }
                }
                // The listener is dropped here: the port is free again.
            }));
        }
        TestOrigin { port, scheme, state, stop, addrs, threads }
    }

    fn url(&self, path: &str) -> String {
        let host = if self.scheme == "https" { "localhost" } else { "127.0.0.1" };
        format!("{}://{host}:{}{path}", self.scheme, self.port)
    }

    fn accepts(&self) -> usize {
        self.state.accepts.get()
    }

    fn requests(&self) -> Vec<SeenRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The last request whose target starts with `prefix`.
    fn last_request(&self, prefix: &str) -> Option<SeenRequest> {
        self.requests().into_iter().rev().find(|r| r.target.starts_with(prefix))
    }

    fn release_slow(&self) {
        *self.state.released.lock().unwrap() = true;
        self.state.release.notify_all();
    }

    /// Closes the listening sockets (and lets `/slow` end); returns once the port is free.
    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.release_slow();
        for addr in &self.addrs {
            // Wakes the blocked accept, which then sees the flag.
            let _ = TcpStream::connect_timeout(addr, SOON);
        }
        for thread in self.threads.drain(..) {
            thread.join().expect("accept thread");
        }
    }
}

impl Drop for TestOrigin {
    fn drop(&mut self) {
        self.stop();
    }
}

fn bind(port: u16) -> TcpListener {
    TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| panic!("bind 127.0.0.1:{port}: {e}"))
}

/// A served connection: TCP, or TLS over it.
enum OriginConn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
}

impl Read for OriginConn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            OriginConn::Plain(s) => s.read(buf),
            OriginConn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for OriginConn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            OriginConn::Plain(s) => s.write(buf),
            OriginConn::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            OriginConn::Plain(s) => s.flush(),
            OriginConn::Tls(s) => s.flush(),
        }
    }
}

fn serve_connection(tcp: TcpStream, tls: Option<Arc<rustls::ServerConfig>>, scheme: &str, state: &OriginState) {
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(60)));
    let _ = tcp.set_write_timeout(Some(Duration::from_secs(60)));
    let conn = match tls {
        None => OriginConn::Plain(tcp),
        Some(config) => {
            let Ok(server) = rustls::ServerConnection::new(config) else {
                return;
            };
            OriginConn::Tls(Box::new(rustls::StreamOwned::new(server, tcp)))
        }
    };
    let mut reader = BufReader::new(conn);
    while let Some(request) = read_request(&mut reader) {
        state.requests.lock().unwrap().push(request.clone());
        let close = request.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        match respond(&request, reader.get_mut(), scheme, state) {
            Ok(true) if !close => {}
            _ => break,
        }
    }
    let conn = reader.get_mut();
    if let OriginConn::Tls(stream) = conn {
        stream.conn.send_close_notify();
        let _ = stream.flush();
    }
    let tcp = match conn {
        OriginConn::Plain(s) => s,
        OriginConn::Tls(s) => &mut s.sock,
    };
    let _ = tcp.shutdown(Shutdown::Both);
}

fn read_request(reader: &mut impl BufRead) -> Option<SeenRequest> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let mut request = SeenRequest { method, target, headers, body: Vec::new() };
    if let Some(length) = request.header("content-length") {
        let mut body = vec![0; length.parse().ok()?];
        reader.read_exact(&mut body).ok()?;
        request.body = body;
    } else if request.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            if size == 0 {
                let mut trailer = String::new();
                while reader.read_line(&mut trailer).ok()? > 2 {
                    trailer.clear();
                }
                break;
            }
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).ok()?;
            request.body.extend_from_slice(&chunk[..size]);
        }
    }
    Some(request)
}

/// Writes the answer; Ok(true) if the connection may carry another request.
fn respond(request: &SeenRequest, w: &mut OriginConn, scheme: &str, state: &OriginState) -> std::io::Result<bool> {
    let path = request.target.split('?').next().unwrap_or("");
    match path {
        "/text" => {
            w.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nServer: test-origin\r\nX-Origin: yes\r\n\
                  Content-Length: 11\r\n\r\nhello world",
            )?;
        }
        "/chunked" => {
            w.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n\
                  3\r\nhel\r\n8\r\nlo world\r\n0\r\n\r\n",
            )?;
        }
        "/big" => {
            let body = "hello\n".repeat(700);
            write!(w, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}", body.len())?;
        }
        "/slow" => {
            w.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\n",
            )?;
            w.write_all(&[b's'; 1000])?;
            w.flush()?;
            state.slow_started.bump();
            let released = state.released.lock().unwrap();
            let _ = state.release.wait_timeout_while(released, Duration::from_secs(30), |released| !*released);
            return Ok(false);
        }
        _ => {
            let n = state.seq.fetch_add(1, Ordering::SeqCst) + 1;
            let body = format!(
                "{scheme} {} {} body={} #{n}",
                request.method,
                request.target,
                String::from_utf8_lossy(&request.body)
            );
            write!(w, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}", body.len())?;
        }
    }
    w.flush()?;
    Ok(true)
}

// ---------------------------------------------------------------------------------------------------
// curl, with the status, the final response head and the body (as bytes) kept apart
// ---------------------------------------------------------------------------------------------------

struct Got {
    /// The final response's status (0 if there was none).
    status: u16,
    /// The status of the proxy's answer to CONNECT (0 if none).
    connect_status: u16,
    /// Every response head curl received (CONNECT's, 1xx, final), as written by `-D`.
    heads: String,
    body: Vec<u8>,
    curl: Finished,
    args: Vec<String>,
}

impl Got {
    /// A header of the final response head.
    fn header(&self, name: &str) -> Option<String> {
        let last = self.heads.split("\r\n\r\n").filter(|h| !h.trim().is_empty()).last()?;
        last.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn describe(&self) -> String {
        format!(
            "curl {:?}: {} (status {}, CONNECT status {})\n--- response heads:\n{}\n--- body:\n{}\n--- curl stderr:\n{}",
            self.args,
            self.curl.status,
            self.status,
            self.connect_status,
            self.heads,
            self.text(),
            self.curl.stderr
        )
    }
}

/// Runs curl with `args` (bounded to 20 s).
fn fetch(args: &[&str]) -> Got {
    let dir = tempfile::tempdir().expect("temp dir");
    let (heads, body) = (dir.path().join("heads"), dir.path().join("body"));
    let mut all: Vec<String> =
        ["--max-time", "20", "-w", "%{http_code} %{http_connect}", "-D"].iter().map(|s| s.to_string()).collect();
    all.push(heads.display().to_string());
    all.push("-o".into());
    all.push(body.display().to_string());
    all.extend(args.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let curl = curl_unchecked(&refs);
    let mut codes = curl.stdout.split_whitespace().map(|c| c.parse::<u16>().unwrap_or(0));
    let (status, connect_status) = (codes.next().unwrap_or(0), codes.next().unwrap_or(0));
    Got {
        status,
        connect_status,
        heads: std::fs::read_to_string(&heads).unwrap_or_default(),
        body: std::fs::read(&body).unwrap_or_default(),
        curl,
        args: args.iter().map(|s| s.to_string()).collect(),
    }
}

/// curl through `proxy` (`-x`), trusting its CA.
fn via(proxy: &Strata, args: &[&str]) -> Got {
    let url = proxy.proxy_url();
    let cacert = proxy.ca_cert_path().display().to_string();
    let mut all = vec!["-x", &url, "--cacert", &cacert];
    all.extend_from_slice(args);
    fetch(&all)
}

/// A GET, or a POST of `body`, through `proxy`.
fn send(proxy: &Strata, method: &str, url: &str, body: Option<&str>) -> Got {
    match body {
        Some(body) => via(proxy, &["-X", method, "--data-binary", body, url]),
        None => via(proxy, &["-X", method, url]),
    }
}

/// Fails (with the proxy's output) unless `got` has `status` and `body`.
#[track_caller]
fn expect(proxy: &Strata, got: &Got, status: u16, body: &[u8]) {
    if got.status != status || got.body != body {
        proxy.fail(&format!("expected {status} with body {:?}\n{}", String::from_utf8_lossy(body), got.describe()));
    }
}

#[track_caller]
fn expect_status(proxy: &Strata, got: &Got, status: u16) {
    if got.status != status {
        proxy.fail(&format!("expected status {status}\n{}", got.describe()));
    }
}

// ---------------------------------------------------------------------------------------------------
// HAR files
// ---------------------------------------------------------------------------------------------------

fn parse_har(path: &Path) -> Result<Value, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let har: Value = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{} is not JSON ({e}):\n{}", path.display(), String::from_utf8_lossy(&bytes)))?;
    if har.pointer("/log/entries").and_then(Value::as_array).is_none() {
        return Err(format!("{} has no log.entries array:\n{har:#}", path.display()));
    }
    Ok(har)
}

fn entries(har: &Value) -> &Vec<Value> {
    har.pointer("/log/entries").and_then(Value::as_array).expect("log.entries")
}

fn entry_for<'a>(har: &'a Value, method: &str, url: &str) -> &'a Value {
    entries(har)
        .iter()
        .find(|e| e["request"]["method"] == method && e["request"]["url"] == url)
        .unwrap_or_else(|| panic!("no HAR entry for {method} {url} in\n{har:#}"))
}

/// A HAR entry as a minimal writer would make it.
fn har_entry(method: &str, url: &str, request_body: Option<&str>, status: u16, response_body: &str) -> Value {
    let mut request = json!({
        "method": method, "url": url, "httpVersion": "HTTP/1.1", "headers": [], "queryString": [],
        "cookies": [], "headersSize": -1, "bodySize": request_body.map_or(0, str::len),
    });
    if let Some(body) = request_body {
        request["postData"] = json!({ "mimeType": "application/x-www-form-urlencoded", "text": body });
    }
    json!({
        "startedDateTime": "2026-01-01T00:00:00.000Z",
        "time": 1,
        "request": request,
        "response": {
            "status": status, "statusText": "", "httpVersion": "HTTP/1.1",
            "headers": [{ "name": "Content-Type", "value": "text/plain" }],
            "cookies": [],
            "content": { "size": response_body.len(), "mimeType": "text/plain", "text": response_body },
            "redirectURL": "", "headersSize": -1, "bodySize": response_body.len(),
        },
        "cache": {},
        "timings": { "send": 0, "wait": 1, "receive": 0 },
    })
}

fn write_har(dir: &Path, name: &str, entries: Vec<Value>) -> PathBuf {
    let har =
        json!({ "log": { "version": "1.2", "creator": { "name": "flows-test", "version": "1" }, "entries": entries } });
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(&har).unwrap()).expect("write HAR");
    path
}

fn path_str(path: &Path) -> String {
    path.display().to_string()
}

fn fixture(name: &str) -> String {
    format!("{}/tests/data/har/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Stops `proxy` with SIGTERM and waits for it to exit successfully.
fn terminate(proxy: &mut Strata) {
    proxy.signal(libc::SIGTERM);
    let status = proxy.wait_for_exit(SOON);
    proxy.check(status.success(), format!("strata exited with {status} after SIGTERM"));
}

// ---------------------------------------------------------------------------------------------------
// Record, then replay with the origins down
// ---------------------------------------------------------------------------------------------------

#[test]
fn recorded_session_replays_with_the_origins_down() {
    let ca = TestCa::new("strata flows test CA");
    let mut plain = TestOrigin::plain();
    let mut secure = TestOrigin::tls(&ca);
    let dir = tempfile::tempdir().unwrap();
    let har_path = dir.path().join("session.har");
    let mut recorder = Strata::start(&["--save-har", &path_str(&har_path), "--upstream-ca", &path_str(&ca.pem_path())]);

    let requests: Vec<(&str, String, Option<&str>)> = vec![
        ("GET", plain.url("/search?q=rust&page=2"), None),
        ("POST", plain.url("/submit"), Some("name=strata&kind=proxy")),
        ("GET", secure.url("/secure?x=1"), None),
        ("POST", secure.url("/secure/form"), Some("{\"tls\":true}")),
    ];
    let mut recorded = Vec::new();
    for (method, url, body) in &requests {
        let got = send(&recorder, method, url, *body);
        let target = url.splitn(4, '/').nth(3).unwrap_or("");
        let scheme = url.split(':').next().unwrap();
        let expected = format!("{scheme} {method} /{target} body={}", body.unwrap_or(""));
        if got.status != 200 || !got.text().starts_with(&expected) {
            recorder.fail(&format!("recording: expected 200 with {expected:?}\n{}", got.describe()));
        }
        recorded.push(got);
    }
    assert_eq!(plain.requests().len() + secure.requests().len(), 4);
    terminate(&mut recorder);

    let har = parse_har(&har_path).unwrap_or_else(|e| recorder.fail(&e));
    assert_eq!(har["log"]["version"], "1.2", "{har:#}");
    assert_eq!(har["log"]["creator"]["name"], "strata", "{har:#}");
    assert_eq!(entries(&har).len(), 4, "{har:#}");
    for ((method, url, body), got) in requests.iter().zip(&recorded) {
        let entry = entry_for(&har, method, url);
        assert_eq!(entry["response"]["status"], 200, "{entry:#}");
        assert_eq!(entry["response"]["content"]["text"], got.text().as_str(), "{entry:#}");
        assert_eq!(entry["serverIPAddress"], "127.0.0.1", "{entry:#}");
        assert!(entry["startedDateTime"].is_string(), "{entry:#}");
        for phase in ["send", "wait", "receive"] {
            assert!(entry["timings"][phase].as_f64().is_some_and(|t| t >= 0.0), "timings.{phase}: {entry:#}");
        }
        let has_content_type = entry["response"]["headers"].as_array().unwrap().iter().any(|h| {
            h["name"].as_str().is_some_and(|n| n.eq_ignore_ascii_case("content-type")) && h["value"] == "text/plain"
        });
        assert!(has_content_type, "{entry:#}");
        match body {
            Some(body) => assert_eq!(entry["request"]["postData"]["text"], *body, "{entry:#}"),
            None => assert!(entry["request"].get("postData").is_none(), "{entry:#}"),
        }
    }
    let search = entry_for(&har, "GET", &requests[0].1);
    assert_eq!(
        search["request"]["queryString"],
        json!([{ "name": "q", "value": "rust" }, { "name": "page", "value": "2" }]),
        "{search:#}"
    );

    // Cut the network to the origins: their ports now only count connection attempts.
    let (plain_port, secure_port) = (plain.port, secure.port);
    plain.stop();
    secure.stop();
    let plain_counter = TestOrigin::counting(plain_port);
    let secure_counter = TestOrigin::counting(secure_port);

    let replayer = Strata::start(&["--server-replay", &path_str(&har_path)]);
    for ((method, url, body), got) in requests.iter().zip(&recorded) {
        let replayed = send(&replayer, method, url, *body);
        expect(&replayer, &replayed, got.status, &got.body);
        replayer.check(
            replayed.header("content-type").as_deref() == Some("text/plain"),
            format!("replayed response lost its Content-Type\n{}", replayed.describe()),
        );
    }
    replayer.check(
        plain_counter.accepts() == 0 && secure_counter.accepts() == 0,
        format!(
            "replay connected to the origin ports: {} (plain), {} (TLS) connection attempts",
            plain_counter.accepts(),
            secure_counter.accepts()
        ),
    );
    // The counters do count: one direct connection shows up.
    drop(TcpStream::connect(("127.0.0.1", plain_port)).expect("connect to the counting listener"));
    assert!(plain_counter.state.accepts.wait_for(1, SOON), "the counting listener did not count a connection");
}

#[test]
fn server_replay_extra_decides_for_unrecorded_requests() {
    let origin = TestOrigin::plain();
    let dir = tempfile::tempdir().unwrap();
    let har = write_har(
        dir.path(),
        "one.har",
        vec![har_entry("GET", "http://replay.invalid/recorded", None, 200, "recorded\n")],
    );
    let har = path_str(&har);
    let unrecorded = origin.url("/unrecorded");

    let proxy = Strata::start(&["--server-replay", &har, "--server-replay-extra", "404"]);
    expect_status(&proxy, &via(&proxy, &[&unrecorded]), 404);
    expect(&proxy, &via(&proxy, &["http://replay.invalid/recorded"]), 200, b"recorded\n");
    proxy.check(
        origin.accepts() == 0,
        format!("--server-replay-extra 404 connected to the origin {} times", origin.accepts()),
    );

    let proxy = Strata::start(&["--server-replay", &har, "--server-replay-extra", "kill"]);
    let request = format!("GET {unrecorded} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n", origin.port);
    let reply = raw_exchange(proxy.port, request.as_bytes(), SOON);
    proxy.check(
        reply.closed && reply.bytes.is_empty(),
        format!("--server-replay-extra kill: expected the connection closed without a response, got {reply:?}"),
    );
    proxy.check(
        origin.accepts() == 0,
        format!("--server-replay-extra kill connected to the origin {} times", origin.accepts()),
    );

    // The default, forward, does reach the origin.
    let proxy = Strata::start(&["--server-replay", &har]);
    let got = via(&proxy, &[&unrecorded]);
    proxy.check(
        got.status == 200 && got.text().starts_with("http GET /unrecorded"),
        format!("forward: expected the origin's answer\n{}", got.describe()),
    );
    assert_eq!(origin.accepts(), 1);
}

#[test]
fn server_replay_uses_each_response_once_in_order_unless_reuse() {
    let dir = tempfile::tempdir().unwrap();
    let har = write_har(
        dir.path(),
        "seq.har",
        vec![
            har_entry("GET", "http://replay.invalid/seq", None, 200, "first"),
            har_entry("GET", "http://replay.invalid/seq", None, 201, "second"),
            har_entry("GET", "http://replay.invalid/once", None, 200, "once"),
        ],
    );
    let har = path_str(&har);

    let proxy = Strata::start(&["--server-replay", &har, "--server-replay-extra", "404"]);
    expect(&proxy, &via(&proxy, &["http://replay.invalid/seq"]), 200, b"first");
    expect(&proxy, &via(&proxy, &["http://replay.invalid/seq"]), 201, b"second");
    expect_status(&proxy, &via(&proxy, &["http://replay.invalid/seq"]), 404);
    expect(&proxy, &via(&proxy, &["http://replay.invalid/once"]), 200, b"once");
    expect_status(&proxy, &via(&proxy, &["http://replay.invalid/once"]), 404);

    let proxy = Strata::start(&["--server-replay", &har, "--server-replay-extra", "404", "--server-replay-reuse"]);
    for _ in 0..3 {
        expect(&proxy, &via(&proxy, &["http://replay.invalid/once"]), 200, b"once");
    }
}

#[test]
fn server_replay_ignore_options_each_relax_one_part_of_the_match() {
    let dir = tempfile::tempdir().unwrap();
    let har = write_har(
        dir.path(),
        "match.har",
        vec![
            har_entry("GET", "http://replay.invalid/search?q=rust&ts=1", None, 200, "search result"),
            har_entry("GET", "http://recorded-host.invalid/page", None, 200, "page"),
            har_entry("POST", "http://replay.invalid/submit", Some("a=1"), 200, "submitted"),
        ],
    );
    let har = path_str(&har);
    let other_param = "http://replay.invalid/search?q=rust&ts=999";
    let other_host = "http://other-host.invalid/page";
    let post_other = |proxy: &Strata| via(proxy, &["--data-binary", "a=2", "http://replay.invalid/submit"]);

    // Without the options, each variant misses (and the exact request matches).
    let proxy = Strata::start(&["--server-replay", &har, "--server-replay-extra", "404"]);
    expect_status(&proxy, &via(&proxy, &[other_param]), 404);
    expect_status(&proxy, &via(&proxy, &[other_host]), 404);
    expect_status(&proxy, &post_other(&proxy), 404);
    expect(&proxy, &via(&proxy, &["--data-binary", "a=1", "http://replay.invalid/submit"]), 200, b"submitted");

    let proxy = Strata::start(&[
        "--server-replay",
        &har,
        "--server-replay-extra",
        "404",
        "--server-replay-ignore-params",
        "ts",
    ]);
    expect(&proxy, &via(&proxy, &[other_param]), 200, b"search result");
    // Only the named parameter is ignored.
    expect_status(&proxy, &via(&proxy, &["http://replay.invalid/search?q=go&ts=1"]), 404);

    let proxy =
        Strata::start(&["--server-replay", &har, "--server-replay-extra", "404", "--server-replay-ignore-host"]);
    expect(&proxy, &via(&proxy, &[other_host]), 200, b"page");

    let proxy =
        Strata::start(&["--server-replay", &har, "--server-replay-extra", "404", "--server-replay-ignore-content"]);
    expect(&proxy, &post_other(&proxy), 200, b"submitted");
}

#[test]
fn server_replay_reads_a_mitmproxy_export() {
    let proxy = Strata::start(&["--server-replay", &fixture("mitmproxy-export.har"), "--server-replay-extra", "404"]);
    let got = via(&proxy, &["http://127.0.0.1:37677/hello.txt?lang=en&empty=&flag"]);
    expect(&proxy, &got, 200, b"hello from the origin\n");
    proxy.check(got.header("content-type").as_deref() == Some("text/plain"), got.describe());

    let pixel = base64::engine::general_purpose::STANDARD.decode("iVBORw0KGgoAAAANSUhEUv/+AAE=").unwrap();
    expect(&proxy, &via(&proxy, &["http://127.0.0.1:37677/pixel.bin"]), 200, &pixel);

    let got = via(&proxy, &["--data-binary", r#"{"name":"strata","n":3}"#, "http://127.0.0.1:37677/echo?x=1"]);
    expect(&proxy, &got, 201, br#"{"got": "{\"name\":\"strata\",\"n\":3}", "path": "/echo?x=1"}"#);

    // mitmproxy stores bodies decoded: the recorded gzip Content-Encoding must not be sent with them.
    let got = via(&proxy, &["http://127.0.0.1:37677/gz"]);
    expect(&proxy, &got, 200, "compressed text body\n".repeat(4).as_bytes());
    proxy.check(got.header("content-encoding").is_none(), got.describe());
}

#[test]
fn server_replay_reads_a_chrome_export_over_https() {
    let proxy = Strata::start(&["--server-replay", &fixture("chrome-export.har"), "--server-replay-extra", "404"]);
    let got = via(&proxy, &["https://app.example.test/"]);
    expect(&proxy, &got, 200, br#"<!doctype html><title>App</title><img src="/static/logo.png">"#);
    // Chrome stores the body decoded; the recorded `content-encoding: br` would make it unreadable.
    proxy.check(got.header("content-encoding").is_none(), got.describe());

    let png = base64::engine::general_purpose::STANDARD
        .decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAFAAH/iZk9HQAAAABJRU5ErkJggg==")
        .unwrap();
    expect(&proxy, &via(&proxy, &["https://app.example.test/static/logo.png"]), 200, &png);

    let got = via(
        &proxy,
        &["--data-binary", r#"{"name":"widget","qty":2}"#, "https://app.example.test/api/items?debug=1&v=2"],
    );
    expect(&proxy, &got, 201, br#"{"id":7,"name":"widget"}"#);

    expect(&proxy, &via(&proxy, &["-g", "http://[::1]:8080/v6/status"]), 200, b"ok\n");
}

// ---------------------------------------------------------------------------------------------------
// --save-har is a complete HAR at any moment
// ---------------------------------------------------------------------------------------------------

#[test]
fn save_har_parses_after_sigterm_during_a_slow_download() {
    let origin = TestOrigin::plain();
    let dir = tempfile::tempdir().unwrap();
    let har_path = dir.path().join("cut.har");
    let mut proxy = Strata::start(&["--save-har", &path_str(&har_path)]);
    expect(&proxy, &via(&proxy, &[&origin.url("/text")]), 200, b"hello world");

    let mut slow = Command::new("/usr/bin/curl")
        .args(["--silent", "--max-time", "60", "-o", "/dev/null", "-x", &proxy.proxy_url(), &origin.url("/slow")])
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start curl");
    let started = origin.state.slow_started.wait_for(1, SOON);
    if !started {
        let _ = slow.kill();
        proxy.fail("the slow download did not start");
    }
    // A flow that finishes just before the signal, within the periodic writer's interval: only the
    // write at shutdown can put it in the file.
    expect(&proxy, &via(&proxy, &[&origin.url("/text?last=1")]), 200, b"hello world");

    proxy.signal(libc::SIGTERM);
    let status = proxy.wait_for_exit(SOON);
    let _ = slow.kill();
    let _ = slow.wait();
    origin.release_slow();
    proxy.check(status.success(), format!("strata exited with {status} after SIGTERM"));

    let har = parse_har(&har_path).unwrap_or_else(|e| proxy.fail(&e));
    for url in [origin.url("/text"), origin.url("/text?last=1")] {
        let entry = entry_for(&har, "GET", &url);
        assert_eq!(entry["response"]["content"]["text"], "hello world", "{entry:#}");
    }
    for entry in entries(&har) {
        assert!(entry["request"]["url"].is_string() && entry["response"]["status"].is_number(), "{entry:#}");
    }
}

#[test]
fn save_har_on_disk_is_complete_while_strata_runs() {
    let origin = TestOrigin::plain();
    let dir = tempfile::tempdir().unwrap();
    let har_path = dir.path().join("live.har");
    let proxy = Strata::start(&["--save-har", &path_str(&har_path)]);

    // Meanwhile, every read of the file must be a complete HAR document.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, path) = (stop.clone(), har_path.clone());
        thread::spawn(move || {
            let mut complete_reads = 0;
            while !stop.load(Ordering::SeqCst) {
                if path.exists() {
                    parse_har(&path)?;
                    complete_reads += 1;
                }
                // Sampling the file; there is no event for "strata has written it".
                thread::sleep(Duration::from_millis(10));
            }
            Ok::<usize, String>(complete_reads)
        })
    };

    let activity = Instant::now();
    let mut urls = Vec::new();
    while activity.elapsed() < Duration::from_millis(1500) {
        let url = origin.url(&format!("/live?i={}", urls.len()));
        expect_status(&proxy, &via(&proxy, &[&url]), 200);
        urls.push(url);
    }

    // The file catches up within a write interval (1 s, plus slack for a busy machine), strata still
    // running.
    let deadline = Instant::now() + Duration::from_secs(4);
    let har = loop {
        if let Ok(har) = parse_har(&har_path) {
            if entries(&har).len() >= urls.len() {
                break har;
            }
        }
        if Instant::now() >= deadline {
            let on_disk = std::fs::read_to_string(&har_path).unwrap_or_else(|e| format!("({e})"));
            proxy.fail(&format!(
                "4 s after the last flow the HAR on disk does not hold the {} finished flows:\n{on_disk}",
                urls.len()
            ));
        }
        thread::sleep(Duration::from_millis(20));
    };
    stop.store(true, Ordering::SeqCst);
    let complete_reads = reader.join().unwrap().unwrap_or_else(|e| proxy.fail(&format!("a read of the live HAR: {e}")));
    assert!(complete_reads > 0);
    for url in &urls {
        entry_for(&har, "GET", url);
    }
}

#[test]
fn save_har_refuses_an_existing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("precious.har");
    std::fs::write(&path, "an earlier recording").unwrap();
    let done = run_strata_to_exit(&["-p", "0", "--save-har", &path_str(&path)], SOON);
    assert_eq!(done.status.code(), Some(2), "stdout:\n{}\nstderr:\n{}", done.stdout, done.stderr);
    assert!(done.stderr.contains("precious.har"), "stderr does not name the file:\n{}", done.stderr);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "an earlier recording");
}

// ---------------------------------------------------------------------------------------------------
// Client replay
// ---------------------------------------------------------------------------------------------------

#[test]
fn client_replay_resends_recorded_requests_and_exits_0() {
    let ca = TestCa::new("strata flows test CA");
    let plain = TestOrigin::plain();
    let secure = TestOrigin::tls(&ca);
    let dir = tempfile::tempdir().unwrap();
    let har_path = dir.path().join("to-replay.har");
    let upstream_ca = path_str(&ca.pem_path());
    let mut recorder = Strata::start(&["--save-har", &path_str(&har_path), "--upstream-ca", &upstream_ca]);
    let sent = [
        ("GET", plain.url("/again?n=1"), None),
        ("POST", plain.url("/again/post"), Some("payload=1")),
        ("GET", secure.url("/again/tls"), None),
    ];
    for (method, url, body) in &sent {
        expect_status(&recorder, &send(&recorder, method, url, *body), 200);
    }
    terminate(&mut recorder);
    let (plain_before, secure_before) = (plain.requests().len(), secure.requests().len());

    let done = run_strata_to_exit(&["--client-replay", &path_str(&har_path), "--upstream-ca", &upstream_ca], SOON);
    let context = format!("--- stdout:\n{}\n--- stderr:\n{}", done.stdout, done.stderr);
    assert!(done.status.success(), "client replay exited with {}\n{context}", done.status);
    let lines: Vec<&str> = done.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "one flow line per request expected\n{context}");
    for ((method, url, _), line) in sent.iter().zip(&lines) {
        assert!(line.contains(&format!(" {method} {url} -> 200 ")), "{line:?}\n{context}");
    }

    let again: Vec<SeenRequest> =
        plain.requests()[plain_before..].iter().chain(&secure.requests()[secure_before..]).cloned().collect();
    assert_eq!(again.len(), 3, "the origins saw {again:#?}\n{context}");
    assert_eq!((again[0].method.as_str(), again[0].target.as_str()), ("GET", "/again?n=1"));
    assert_eq!((again[1].method.as_str(), again[1].target.as_str()), ("POST", "/again/post"));
    assert_eq!(again[1].body, b"payload=1");
    assert_eq!((again[2].method.as_str(), again[2].target.as_str()), ("GET", "/again/tls"));
    assert_eq!(again[2].header("host"), Some(format!("localhost:{}", secure.port).as_str()));
}

#[test]
fn client_replay_with_the_origin_down_exits_nonzero_with_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let port = unused_port();
    let har = write_har(
        dir.path(),
        "down.har",
        vec![
            har_entry("GET", &format!("http://127.0.0.1:{port}/a"), None, 200, "a"),
            har_entry("POST", &format!("http://127.0.0.1:{port}/b"), Some("x=1"), 200, "b"),
        ],
    );
    let done = run_strata_to_exit(&["--client-replay", &path_str(&har)], Duration::from_secs(30));
    let context = format!("--- stdout:\n{}\n--- stderr:\n{}", done.stdout, done.stderr);
    assert!(!done.status.success(), "client replay against a closed port exited with {}\n{context}", done.status);
    assert!(done.stderr.contains("0 of 2"), "no summary on stderr\n{context}");
    assert!(done.stderr.contains(&format!("127.0.0.1:{port}/a")), "the failed request is not named\n{context}");
}

// ---------------------------------------------------------------------------------------------------
// Modification rules
// ---------------------------------------------------------------------------------------------------

#[test]
fn modify_headers_adds_a_request_header_that_reaches_the_origin() {
    let origin = TestOrigin::plain();
    let proxy = Strata::start(&["--modify-headers", "/~q/X-Added/yes"]);
    let got = via(&proxy, &[&origin.url("/text")]);
    expect(&proxy, &got, 200, b"hello world");
    let seen = origin.last_request("/text").unwrap();
    proxy.check(seen.header("x-added") == Some("yes"), format!("the origin saw {seen:#?}"));
    // `~q` limits the rule to requests.
    proxy.check(got.header("x-added").is_none(), got.describe());
}

#[test]
fn modify_headers_with_an_empty_value_removes_a_response_header() {
    let origin = TestOrigin::plain();
    let proxy = Strata::start(&["--modify-headers", "/~s/Server/"]);
    let got = via(&proxy, &[&origin.url("/text")]);
    expect(&proxy, &got, 200, b"hello world");
    proxy.check(got.header("server").is_none(), format!("Server not removed\n{}", got.describe()));
    proxy.check(got.header("x-origin").as_deref() == Some("yes"), format!("other headers lost\n{}", got.describe()));
}

#[test]
fn modify_headers_reads_a_value_from_a_file() {
    let origin = TestOrigin::plain();
    let dir = tempfile::tempdir().unwrap();
    let value = dir.path().join("value.txt");
    std::fs::write(&value, "from a file").unwrap();
    let proxy = Strata::start(&["--modify-headers", &format!("/~q/X-From-File/@{}", value.display())]);
    expect(&proxy, &via(&proxy, &[&origin.url("/text")]), 200, b"hello world");
    let seen = origin.last_request("/text").unwrap();
    proxy.check(seen.header("x-from-file") == Some("from a file"), format!("the origin saw {seen:#?}"));
}

#[test]
fn modify_body_replaces_in_response_bodies_with_length_and_chunked_framing() {
    let origin = TestOrigin::plain();
    let proxy = Strata::start(&["--modify-body", "/~s/hello/bye"]);
    expect(&proxy, &via(&proxy, &[&origin.url("/text")]), 200, b"bye world");
    expect(&proxy, &via(&proxy, &[&origin.url("/chunked")]), 200, b"bye world");
}

#[test]
fn modify_body_leaves_bodies_over_the_size_limit_streaming_unmodified() {
    let origin = TestOrigin::plain();
    let proxy = Strata::start(&["-v", "--body-size-limit", "1k", "--modify-body", "/~s/hello/bye"]);
    expect(&proxy, &via(&proxy, &[&origin.url("/big")]), 200, "hello\n".repeat(700).as_bytes());
    // Small bodies are still modified.
    expect(&proxy, &via(&proxy, &[&origin.url("/text")]), 200, b"bye world");
    proxy.wait_for_stderr_line(|l| l.contains("over --body-size-limit") && l.contains("/big"), SOON);
}

#[test]
fn map_remote_sends_requests_for_another_host_to_the_local_origin() {
    let origin = TestOrigin::plain();
    // mitmproxy's form, |FILTER|URL-REGEX|REPLACEMENT (a trailing `|` would belong to the replacement).
    let rule = format!("|~d example.invalid|http://example.invalid|http://127.0.0.1:{}", origin.port);
    let proxy = Strata::start(&["--map-remote", &rule]);
    let got = via(&proxy, &["http://example.invalid/x?y=1"]);
    proxy.check(
        got.status == 200 && got.text().starts_with("http GET /x?y=1 body="),
        format!("not mapped to the origin\n{}", got.describe()),
    );
    let seen = origin.last_request("/x").unwrap();
    proxy.check(seen.header("host") == Some(origin.url("").trim_start_matches("http://")), format!("{seen:#?}"));
}

#[test]
fn map_local_serves_a_file_and_a_directory_without_escaping_it() {
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir_all(www.join("sub")).unwrap();
    std::fs::write(www.join("sub/nested.txt"), "nested file\n").unwrap();
    std::fs::write(www.join("index.html"), "<p>index</p>").unwrap();
    std::fs::write(dir.path().join("secret.txt"), "TOP SECRET").unwrap();
    let page = dir.path().join("page.html");
    std::fs::write(&page, "<p>single file</p>").unwrap();

    let proxy = Strata::start(&[
        "--map-local",
        &format!("|~u /page|example\\.invalid/page|{}", page.display()),
        "--map-local",
        &format!("|~u /static/|example\\.invalid/static/|{}", www.display()),
    ]);
    let got = via(&proxy, &["http://example.invalid/page?v=1"]);
    expect(&proxy, &got, 200, b"<p>single file</p>");
    proxy.check(got.header("content-type").is_some_and(|t| t.starts_with("text/html")), got.describe());
    expect(&proxy, &via(&proxy, &["http://example.invalid/static/sub/nested.txt"]), 200, b"nested file\n");
    expect(&proxy, &via(&proxy, &["http://example.invalid/static/"]), 200, b"<p>index</p>");
    expect_status(&proxy, &via(&proxy, &["http://example.invalid/static/missing.txt"]), 404);

    for escape in ESCAPES {
        let got = via(&proxy, &["--path-as-is", escape]);
        proxy.check(
            !got.text().contains("TOP SECRET"),
            format!("{escape} served a file outside the directory\n{}", got.describe()),
        );
    }
}

/// Paths that try to leave a `--map-local` directory (`/static/` mapped to `www`, `secret.txt` beside it).
const ESCAPES: [&str; 4] = [
    "http://example.invalid/static/../secret.txt",
    "http://example.invalid/static/sub/../../secret.txt",
    "http://example.invalid/static/%2e%2e/secret.txt",
    "http://example.invalid/static/..%2fsecret.txt",
];

#[test]
fn map_local_answers_404_for_paths_that_leave_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(dir.path().join("secret.txt"), "TOP SECRET").unwrap();
    let proxy = Strata::start(&["--map-local", &format!("|~u /static/|example\\.invalid/static/|{}", www.display())]);
    for escape in ESCAPES {
        let got = via(&proxy, &["--path-as-is", escape]);
        proxy.check(got.status == 404, format!("{escape}: expected 404 from the map-local rule\n{}", got.describe()));
    }
}

#[test]
fn block_list_answers_with_the_status_or_closes_on_444_without_an_origin_connection() {
    let origin = TestOrigin::plain();
    let proxy = Strata::start(&["--block-list", ":~u /blocked:403", "--block-list", ":~u /gone:444"]);
    let got = via(&proxy, &[&origin.url("/blocked")]);
    expect(&proxy, &got, 403, b"");

    let request = format!("GET {} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n", origin.url("/gone"), origin.port);
    let reply = raw_exchange(proxy.port, request.as_bytes(), SOON);
    proxy.check(
        reply.closed && reply.bytes.is_empty(),
        format!("444: expected the connection closed without a response, got {reply:?}"),
    );
    proxy.check(
        origin.accepts() == 0,
        format!("blocked requests reached the origin ({} connections)", origin.accepts()),
    );
    expect(&proxy, &via(&proxy, &[&origin.url("/text")]), 200, b"hello world");
    assert_eq!(origin.accepts(), 1);
}

#[test]
fn anticache_removes_conditional_headers_before_the_origin() {
    let origin = TestOrigin::plain();
    let proxy = Strata::start(&["--anticache"]);
    let got = via(
        &proxy,
        &[
            "-H",
            "If-None-Match: \"v1\"",
            "-H",
            "If-Modified-Since: Wed, 21 Oct 2015 07:28:00 GMT",
            &origin.url("/text"),
        ],
    );
    expect(&proxy, &got, 200, b"hello world");
    let seen = origin.last_request("/text").unwrap();
    proxy.check(!seen.has_header("if-none-match") && !seen.has_header("if-modified-since"), format!("{seen:#?}"));
}

#[test]
fn anticomp_asks_the_origin_for_identity() {
    let origin = TestOrigin::plain();
    let proxy = Strata::start(&["--anticomp"]);
    expect(&proxy, &via(&proxy, &["-H", "Accept-Encoding: gzip, br", &origin.url("/text")]), 200, b"hello world");
    let seen = origin.last_request("/text").unwrap();
    proxy.check(seen.header("accept-encoding") == Some("identity"), format!("{seen:#?}"));
}

// ---------------------------------------------------------------------------------------------------
// View filter
// ---------------------------------------------------------------------------------------------------

#[test]
fn positional_filter_prints_only_matching_flows() {
    let origin = TestOrigin::plain();
    let mut proxy = Strata::start(&["~u /shown"]);
    // One curl, one connection: the hidden flow finishes before the shown one starts.
    let out = via(&proxy, &[&origin.url("/hidden"), &origin.url("/shown"), &origin.url("/hidden-too")]);
    proxy.check(out.curl.status.success(), out.describe());
    assert_eq!(origin.requests().len(), 3);
    terminate(&mut proxy);
    let lines = proxy.stdout_lines();
    let shown =
        Regex::new(&format!(r"^127\.0\.0\.1:\d+ GET {} -> 200 ", regex::escape(&origin.url("/shown")))).unwrap();
    proxy.check(
        lines.len() == 1 && shown.is_match(&lines[0]),
        format!("expected only the /shown flow line, got {lines:#?}"),
    );
}

#[test]
fn bad_filter_exits_2_naming_the_position() {
    let done = run_strata_to_exit(&["-p", "0", "~c abc"], SOON);
    assert_eq!(done.status.code(), Some(2), "stdout:\n{}\nstderr:\n{}", done.stdout, done.stderr);
    assert!(
        done.stderr.contains("position 3") && done.stderr.contains("~c abc") && done.stderr.contains("number"),
        "stderr:\n{}",
        done.stderr
    );
}

// ---------------------------------------------------------------------------------------------------
// Proxy authentication
// ---------------------------------------------------------------------------------------------------

#[track_caller]
fn expect_407(proxy: &Strata, got: &Got) {
    let status = if got.connect_status != 0 { got.connect_status } else { got.status };
    let challenge = got.heads.to_ascii_lowercase().contains("\r\nproxy-authenticate: basic");
    proxy.check(status == 407 && challenge, format!("expected 407 with Proxy-Authenticate: Basic\n{}", got.describe()));
}

#[test]
fn proxyauth_guards_plain_http_and_never_forwards_the_credentials() {
    let origin = TestOrigin::plain();
    let proxy = Strata::start(&["--proxyauth", "alice:secret"]);
    expect_407(&proxy, &via(&proxy, &[&origin.url("/text")]));
    expect_407(&proxy, &via(&proxy, &["-U", "alice:wrong", &origin.url("/text")]));
    expect_407(&proxy, &via(&proxy, &["-U", "bob:secret", &origin.url("/text")]));
    proxy.check(origin.accepts() == 0, "requests without valid credentials reached the origin");

    expect(&proxy, &via(&proxy, &["-U", "alice:secret", &origin.url("/text")]), 200, b"hello world");
    let seen = origin.last_request("/text").unwrap();
    proxy.check(!seen.has_header("proxy-authorization"), format!("credentials forwarded: {seen:#?}"));
}

#[test]
fn proxyauth_guards_connect() {
    let ca = TestCa::new("strata flows test CA");
    let origin = TestOrigin::tls(&ca);
    let proxy = Strata::start(&["--proxyauth", "alice:secret", "--upstream-ca", &path_str(&ca.pem_path())]);
    expect_407(&proxy, &via(&proxy, &[&origin.url("/text")]));
    expect_407(&proxy, &via(&proxy, &["--proxy-user", "alice:nope", &origin.url("/text")]));
    proxy.check(origin.accepts() == 0, "CONNECT without valid credentials reached the origin");

    expect(&proxy, &via(&proxy, &["--proxy-user", "alice:secret", &origin.url("/text")]), 200, b"hello world");
    let seen = origin.last_request("/text").unwrap();
    proxy.check(!seen.has_header("proxy-authorization"), format!("credentials forwarded: {seen:#?}"));
}

#[test]
fn proxyauth_guards_socks5() {
    let origin = TestOrigin::plain();
    let proxy = Strata::start(&["-m", "socks5", "--proxyauth", "alice:secret"]);
    let socks = format!("127.0.0.1:{}", proxy.port);
    let url = origin.url("/text");

    let got = fetch(&["--socks5-hostname", &socks, "--proxy-user", "alice:secret", &url]);
    expect(&proxy, &got, 200, b"hello world");
    for credentials in [None, Some("alice:wrong"), Some("mallory:secret")] {
        let got = match credentials {
            Some(c) => fetch(&["--socks5-hostname", &socks, "--proxy-user", c, &url]),
            None => fetch(&["--socks5-hostname", &socks, &url]),
        };
        proxy.check(
            !got.curl.status.success() && got.status == 0,
            format!("SOCKS5 with credentials {credentials:?} was let through\n{}", got.describe()),
        );
    }
    proxy.check(origin.accepts() == 1, format!("the origin saw {} connections, expected 1", origin.accepts()));
    let seen = origin.last_request("/text").unwrap();
    proxy.check(!seen.has_header("proxy-authorization"), format!("{seen:#?}"));
}

#[test]
fn proxyauth_reads_bcrypt_and_sha_entries_from_htpasswd() {
    let origin = TestOrigin::plain();
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let bcrypt_hash = bcrypt::hash("pw", 4).unwrap();
    let sha = base64::engine::general_purpose::STANDARD
        .encode(ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, b"sha-pw"));
    std::fs::write(&htpasswd, format!("# test users\nalice:{bcrypt_hash}\ncarol:{{SHA}}{sha}\n")).unwrap();
    let proxy = Strata::start(&["--proxyauth", &format!("@{}", htpasswd.display())]);

    expect(&proxy, &via(&proxy, &["-U", "alice:pw", &origin.url("/text")]), 200, b"hello world");
    expect(&proxy, &via(&proxy, &["-U", "carol:sha-pw", &origin.url("/text")]), 200, b"hello world");
    expect_407(&proxy, &via(&proxy, &["-U", "alice:sha-pw", &origin.url("/text")]));
    expect_407(&proxy, &via(&proxy, &[&origin.url("/text")]));
    assert_eq!(origin.requests().len(), 2);
}

/// The HAR file costs disk, not memory: 200 responses of 512 KiB each (100 MiB recorded) leave the proxy's
/// peak RSS far below what keeping them would take, and every one of them is in the file.
#[test]
fn save_har_keeps_memory_flat_over_a_long_recording() {
    let origin = common::Origin::start();
    let dir = tempfile::tempdir().unwrap();
    let har = dir.path().join("long.har");
    let mut proxy = Strata::start(&["-q", "--save-har", &path_str(&har)]);
    let url = origin.url(&format!("/size/{}", 512 * 1024));
    for _ in 0..200 {
        let got = common::curl(&proxy, &["-s", "-o", "/dev/null", "-w", "%{http_code}", &url]);
        proxy.check(got.stdout == "200", format!("curl: {} {}", got.stdout, got.stderr));
    }
    let peak_kb = proxy.proc_status_kb("VmHWM");
    terminate(&mut proxy);
    let recorded = parse_har(&har).unwrap();
    assert_eq!(entries(&recorded).len(), 200, "entries in the HAR file");
    assert!(peak_kb < 64 * 1024, "peak RSS {peak_kb} KiB while recording 100 MiB of bodies");
}

/// `kill -9` in the middle of a recording leaves a valid HAR holding every flow finished before it.
#[test]
fn save_har_is_valid_after_kill_9_during_a_recording() {
    let origin = common::Origin::start();
    let dir = tempfile::tempdir().unwrap();
    let har = dir.path().join("killed.har");
    let mut proxy = Strata::start(&["-q", "--save-har", &path_str(&har)]);
    let url = origin.url("/size/20000");
    let finished_before = common::load_then_kill_9(&mut proxy, &url, 40);
    // strata's HAR writer process finishes the entry it was given, then exits: wait until the file has
    // stopped changing, then it must parse as it is.
    let mut last = Vec::new();
    let deadline = Instant::now() + SOON;
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = std::fs::read(&har).unwrap();
        if now == last || Instant::now() > deadline {
            break;
        }
        last = now;
    }
    let recorded = parse_har(&har).unwrap();
    // A flow is recorded before its last bytes reach the client, so every answered one is in the file.
    assert!(
        entries(&recorded).len() >= finished_before && finished_before > 0,
        "{} entries for {finished_before} answered requests",
        entries(&recorded).len()
    );
}

/// A flow file written by `mitmdump -w` (mitmproxy 11, tests/data/mitmproxy/README.md says how) reads
/// with `-n -r`: one flow line per flow, errors included, in order.
#[test]
fn a_mitmdump_flow_file_is_read_with_n_r() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/mitmproxy/mitmdump-11.0.2.mitm");
    let done = run_strata_to_exit(&["-n", "-r", &path_str(&fixture)], SOON);
    let context = format!("--- stdout:\n{}\n--- stderr:\n{}", done.stdout, done.stderr);
    assert!(done.status.success(), "exit {}\n{context}", done.status);
    let lines: Vec<&str> = done.stdout.lines().collect();
    let expected = [
        "127.0.0.1:41484 GET http://127.0.0.1:18081/index.txt -> 200 6b ",
        "127.0.0.1:41490 POST http://127.0.0.1:18081/post -> 501 357b ",
        "127.0.0.1:41492 GET http://127.0.0.1:1/dead -> <error> ([Errno 111] Connect call failed",
    ];
    assert_eq!(lines.len(), expected.len(), "{context}");
    for (line, start) in lines.iter().zip(expected) {
        assert!(line.starts_with(start), "{line:?} does not start with {start:?}\n{context}");
    }
    // The request body and headers came through too: export the POST to HAR and look.
    let dir = tempfile::tempdir().unwrap();
    let har = dir.path().join("from-mitmproxy.har");
    let done = run_strata_to_exit(&["-n", "-r", &path_str(&fixture), "--save-har", &path_str(&har), "~m POST"], SOON);
    assert!(done.status.success(), "{}", done.stderr);
    let recorded = parse_har(&har).unwrap();
    let entries = entries(&recorded);
    assert_eq!(entries.len(), 1, "{recorded:#}");
    assert_eq!(entries[0]["request"]["postData"]["text"], "a=1&b=2");
}

/// `--server-replay` answers from a mitmdump flow file as from a HAR file.
#[test]
fn server_replay_answers_from_a_mitmdump_flow_file() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/mitmproxy/mitmdump-11.0.2.mitm");
    let proxy = Strata::start(&["--server-replay", &path_str(&fixture), "--server-replay-extra", "404"]);
    let got = via(&proxy, &["http://127.0.0.1:18081/index.txt"]);
    expect(&proxy, &got, 200, b"hello\n");
    let unrecorded = via(&proxy, &["http://127.0.0.1:18081/other"]);
    proxy.check(unrecorded.status == 404, unrecorded.describe());
}
