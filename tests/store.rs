//! Sessions on disk, through the real binary with curl and a WebSocket client: `-w FILE` records every
//! flow into a session (SQLite), `-r FILE` reads a session (or a HAR file) back through the flow log,
//! `-w` and `--save-har`, and `-n` exits once it is read. Each test records through a live proxy, stops it,
//! then asserts what `strata -n -r` prints, or what a file it writes holds. Origins are in-process threads
//! on 127.0.0.1; every wait is bounded.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{curl, refusal, run_strata_to_exit, unused_port, HttpsOrigin, Origin, Strata, TestCa, WsEcho};
use regex::Regex;
use serde_json::Value;
use tungstenite::Message;

/// Bound on waits for something that should happen at once (a line printed, a run that only reads a file).
const SOON: Duration = Duration::from_secs(10);

/// The body of the POST every recording sends.
const POST_BODY: &str = "name=strata&kind=session";

// ---------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------

fn path_str(path: &Path) -> String {
    path.display().to_string()
}

/// SIGTERM, then a clean exit.
fn terminate(proxy: &mut Strata) {
    proxy.signal(libc::SIGTERM);
    let status = proxy.wait_for_exit(SOON);
    proxy.check(status.success(), format!("strata exited with {status} after SIGTERM"));
}

/// `strata -n ARGS` (ARGS holding `-r FILE`): asserts exit 0 and empty stderr, returns the stdout lines.
fn read_back(args: &[&str]) -> Vec<String> {
    let mut argv = vec!["-n"];
    argv.extend_from_slice(args);
    let done = run_strata_to_exit(&argv, SOON);
    assert!(
        done.status.success() && done.stderr.is_empty(),
        "strata {argv:?} exited with {}\n--- stdout:\n{}\n--- stderr:\n{}",
        done.status,
        done.stdout,
        done.stderr
    );
    done.stdout.lines().map(str::to_string).collect()
}

/// A flow line without its last field, the duration (`CLIENT METHOD URL -> STATUS SIZE`); other lines
/// (headers at `--flow-detail 2`) as they are.
fn without_duration(line: &str) -> String {
    let duration = Regex::new(r"^\d+(\.\d+)?m?s$").unwrap();
    match line.rsplit_once(' ') {
        Some((rest, last)) if !line.starts_with(' ') && duration.is_match(last) => rest.to_string(),
        _ => line.to_string(),
    }
}

fn without_durations(lines: &[String]) -> Vec<String> {
    lines.iter().map(|l| without_duration(l)).collect()
}

/// The flow lines (not the header lines of `--flow-detail 2`).
fn flow_lines(lines: &[String]) -> Vec<String> {
    lines.iter().filter(|l| !l.starts_with(' ')).cloned().collect()
}

fn parse_har(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let har: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{} is not JSON ({e}):\n{}", path.display(), String::from_utf8_lossy(&bytes)));
    assert!(har.pointer("/log/entries").and_then(Value::as_array).is_some(), "no log.entries in\n{har:#}");
    har
}

fn entries(har: &Value) -> &Vec<Value> {
    har.pointer("/log/entries").and_then(Value::as_array).expect("log.entries")
}

/// A live recording: the proxy's stdout (the flow lines as they happened) and the files it wrote.
struct Recording {
    /// Holds the session file (and anything else a test writes next to it).
    dir: tempfile::TempDir,
    session: PathBuf,
    live: Vec<String>,
    origin: Origin,
}

impl Recording {
    fn session(&self) -> String {
        path_str(&self.session)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Records a session with `-w` (plus `extra` flags) through curl: a GET, a 404, a POST with a body, an
/// HTTPS GET through CONNECT over HTTP/2 (curl trusting strata's CA; HTTP/1.1 to the origin) and a GET to
/// a dead port (502), one after the other; then SIGTERM.
fn record_session(extra: &[&str]) -> Recording {
    let origin = Origin::start();
    let ca = TestCa::new("strata store test CA");
    let secure = HttpsOrigin::start(&ca);
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("session.db");
    let mut args = vec!["-w".to_string(), path_str(&session), "--upstream-ca".into(), path_str(&ca.pem_path())];
    args.extend(extra.iter().map(|a| a.to_string()));
    let mut proxy = Strata::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let cacert = path_str(&proxy.ca_cert_path());

    let got = curl(&proxy, &["-H", "X-Session-Probe: first", &origin.url("/hello")]);
    proxy.check(got.stdout == "hello, world\n", format!("/hello answered {:?}", got.stdout));
    curl(&proxy, &["-o", "/dev/null", &origin.url("/missing")]);
    let got = curl(&proxy, &["--data-binary", POST_BODY, &origin.url("/echo")]);
    proxy.check(got.stdout == POST_BODY, format!("/echo answered {:?}", got.stdout));
    let got = curl(&proxy, &["--http2", "--cacert", &cacert, &secure.url("/hello")]);
    proxy.check(got.stdout == common::TEST_ORIGIN_HELLO, format!("the HTTPS /hello answered {:?}", got.stdout));
    let dead = format!("http://127.0.0.1:{}/gone", unused_port());
    let got = curl(&proxy, &["-o", "/dev/null", "-w", "%{http_code}", &dead]);
    proxy.check(got.stdout == "502", format!("the dead port answered {:?}", got.stdout));
    terminate(&mut proxy);

    let live = proxy.stdout_lines();
    let lines = flow_lines(&live);
    proxy.check(lines.len() == 5, format!("expected 5 live flow lines, got {lines:#?}"));
    Recording { dir, session, live, origin }
}

/// The sole line of `lines` that matches `pattern`, or a panic showing them all.
#[track_caller]
fn only_line(lines: &[String], pattern: &str) -> String {
    let re = Regex::new(pattern).unwrap();
    assert!(lines.len() == 1 && re.is_match(&lines[0]), "expected one line matching {pattern}, got {lines:#?}");
    lines[0].clone()
}

// ---------------------------------------------------------------------------------------------------
// Reading a session back
// ---------------------------------------------------------------------------------------------------

#[test]
fn read_back_prints_the_same_flow_lines_as_the_live_run() {
    let recording = record_session(&[]);
    let live = &recording.live;
    // What the user saw: a 200, a 404, the POST, the HTTPS GET and the 502.
    for (line, pattern) in live.iter().zip([
        r" GET http://\S+/hello -> 200 13b ",
        r" -> 404 ",
        r" POST \S+/echo -> 200 ",
        r"^127\.0\.0\.1:\d+ GET https://localhost:\d+/hello -> 200 ",
        r" GET http://127\.0\.0\.1:\d+/gone -> 502 ",
    ]) {
        assert!(Regex::new(pattern).unwrap().is_match(line), "live line {line:?} does not match {pattern}\n{live:#?}");
    }

    let read = read_back(&["-r", &recording.session()]);
    assert_eq!(without_durations(&read), without_durations(live), "flow lines of -r against the live run");
    let duration = Regex::new(r" \d+(\.\d+)?m?s$").unwrap();
    assert!(read.iter().all(|l| duration.is_match(l)), "a line without a duration: {read:#?}");
}

#[test]
fn read_back_at_flow_detail_2_shows_the_recorded_headers() {
    let recording = record_session(&["--flow-detail", "2"]);
    let read = read_back(&["-r", &recording.session(), "--flow-detail", "2"]);
    assert_eq!(without_durations(&read), without_durations(&recording.live), "-r --flow-detail 2 against the live run");
    for header in [
        "    >> GET /hello HTTP/1.1",
        "    >> GET /hello HTTP/2.0",
        "    >> X-Session-Probe: first",
        "    << HTTP/1.1 200 OK",
        "    << Content-Type: text/plain",
        "    << HTTP/1.1 404 Not Found",
    ] {
        assert!(read.iter().any(|l| l == header), "no line {header:?} in\n{read:#?}");
    }
    assert!(read.iter().any(|l| l.starts_with("    >> User-Agent: curl/")), "no User-Agent line in\n{read:#?}");
}

#[test]
fn read_back_prints_only_the_flows_the_positional_filter_matches() {
    let recording = record_session(&[]);
    let session = recording.session();
    let not_found =
        only_line(&read_back(&["-r", &session, "~c 404"]), r"^127\.0\.0\.1:\d+ GET http://\S+/missing -> 404 ");
    assert!(recording.live.contains(&not_found), "{not_found:?} is not the live line of {:#?}", recording.live);
    let post = only_line(&read_back(&["-r", &session, "~m POST"]), r"^127\.0\.0\.1:\d+ POST http://\S+/echo -> 200 ");
    assert!(recording.live.contains(&post), "{post:?} is not the live line of {:#?}", recording.live);
    only_line(&read_back(&["-r", &session, "~c 502"]), r" GET http://127\.0\.0\.1:\d+/gone -> 502 ");
}

#[test]
fn read_back_with_save_har_exports_the_filtered_flows() {
    let recording = record_session(&[]);
    let har = recording.file("post.har");
    let printed = read_back(&["-r", &recording.session(), "--save-har", &path_str(&har), "~m POST"]);
    only_line(&printed, r" POST http://\S+/echo -> 200 ");

    let exported = parse_har(&har);
    let all = entries(&exported);
    assert_eq!(all.len(), 1, "entries exported with '~m POST':\n{exported:#}");
    let entry = &all[0];
    assert_eq!(entry["request"]["method"], "POST", "{entry:#}");
    assert_eq!(entry["request"]["url"], recording.origin.url("/echo"), "{entry:#}");
    assert_eq!(entry["request"]["postData"]["text"], POST_BODY, "{entry:#}");
    assert_eq!(entry["response"]["status"], 200, "{entry:#}");
    assert_eq!(entry["response"]["content"]["text"], POST_BODY, "the echoed body: {entry:#}");
}

#[test]
fn read_back_of_a_missing_file_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = path_str(&dir.path().join("nowhere.db"));
    let line = refusal(&run_strata_to_exit(&["-n", "-r", &missing], SOON));
    assert!(line.contains(&missing), "the refusal does not name {missing}: {line}");
}

// ---------------------------------------------------------------------------------------------------
// Writing: an existing file, appending, filters
// ---------------------------------------------------------------------------------------------------

#[test]
fn w_refuses_an_existing_file_and_leaves_it_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let existing = dir.path().join("existing.db");
    let before = b"someone else's file\n".to_vec();
    std::fs::write(&existing, &before).unwrap();
    let line = refusal(&run_strata_to_exit(&["-p", "0", "-w", &path_str(&existing)], SOON));
    assert!(line.contains(&path_str(&existing)), "the refusal does not name the file: {line}");
    assert_eq!(std::fs::read(&existing).unwrap(), before, "the existing file was changed");
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 1, "files left next to it: {names:?}");
}

/// Records `paths` (GETs to `origin`) into `session` with `-w +FILE`; returns the live flow lines.
fn record_appending(origin: &Origin, session: &Path, paths: &[&str]) -> Vec<String> {
    let mut proxy = Strata::start(&["-w", &format!("+{}", path_str(session))]);
    for path in paths {
        curl(&proxy, &["-o", "/dev/null", &origin.url(path)]);
    }
    terminate(&mut proxy);
    let live = proxy.stdout_lines();
    proxy.check(live.len() == paths.len(), format!("expected {} flow lines, got {live:#?}", paths.len()));
    live
}

#[test]
fn w_plus_creates_a_session_then_appends_the_next_one_after_it() {
    let origin = Origin::start();
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("appended.db");
    let first = record_appending(&origin, &session, &["/hello", "/first-missing"]);
    assert_eq!(without_durations(&read_back(&["-r", &path_str(&session)])), without_durations(&first));

    // An existing session without `+` is refused and left as it was.
    let before = std::fs::read(&session).unwrap();
    let line = refusal(&run_strata_to_exit(&["-p", "0", "-w", &path_str(&session)], SOON));
    assert!(line.contains(&path_str(&session)), "the refusal does not name the file: {line}");
    assert_eq!(std::fs::read(&session).unwrap(), before, "the refused session was changed");

    let second = record_appending(&origin, &session, &["/size/100", "/second-missing", "/hello"]);
    let read = read_back(&["-r", &path_str(&session)]);
    let expected: Vec<String> = first.iter().chain(&second).cloned().collect();
    assert_eq!(without_durations(&read), without_durations(&expected), "both sessions, the first one first");
}

#[test]
fn save_stream_filter_keeps_only_the_matching_flows() {
    let origin = Origin::start();
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("posts.db");
    let mut proxy = Strata::start(&["-w", &path_str(&session), "--save-stream-filter", "~m POST"]);
    curl(&proxy, &["-o", "/dev/null", &origin.url("/hello")]);
    curl(&proxy, &["-o", "/dev/null", "--data-binary", POST_BODY, &origin.url("/echo")]);
    curl(&proxy, &["-o", "/dev/null", &origin.url("/missing")]);
    terminate(&mut proxy);
    let live = proxy.stdout_lines();
    proxy.check(live.len() == 3, format!("the flow log shows every flow, whatever -w keeps: {live:#?}"));

    let post = only_line(&read_back(&["-r", &path_str(&session)]), r"^127\.0\.0\.1:\d+ POST http://\S+/echo -> 200 ");
    assert_eq!(without_duration(&post), without_duration(&live[1]));
}

#[test]
fn w_keeps_what_the_positional_filter_shows_without_a_save_stream_filter() {
    let origin = Origin::start();
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("shown.db");
    let mut proxy = Strata::start(&["-w", &path_str(&session), "~c 404"]);
    curl(&proxy, &["-o", "/dev/null", &origin.url("/hello")]);
    curl(&proxy, &["-o", "/dev/null", &origin.url("/missing")]);
    terminate(&mut proxy);
    let live = proxy.stdout_lines();
    only_line(&live, r" GET http://\S+/missing -> 404 ");
    let read = read_back(&["-r", &path_str(&session)]);
    assert_eq!(without_durations(&read), without_durations(&live));
}

// ---------------------------------------------------------------------------------------------------
// WebSocket
// ---------------------------------------------------------------------------------------------------

/// A WebSocket session read back at `--flow-detail 2` shows its handshake (with headers) and the closing
/// line with the live counts and sizes. `-r` does not print the per-message lines the live run printed,
/// so the messages themselves are checked in an export to HAR.
#[test]
fn websocket_session_reads_back_with_its_handshake_and_message_counts() {
    let echo = WsEcho::start(None);
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("ws.db");
    let mut proxy = Strata::start(&["-w", &path_str(&session), "--flow-detail", "2"]);
    let target = format!("127.0.0.1:{}", echo.port);
    let (mut ws, _) =
        tungstenite::client::client(format!("ws://{target}/chat"), common::connect_tunnel(proxy.port, &target))
            .unwrap_or_else(|e| proxy.fail(&format!("WebSocket handshake through the tunnel: {e}")));
    for text in ["first message", "second message"] {
        ws.send(Message::text(text)).expect("send text");
        let echoed = ws.read().expect("the echo");
        proxy.check(echoed == Message::text(text), format!("the echo arrived as {echoed:?}"));
    }
    ws.send(Message::binary(vec![1u8, 2, 3, 4, 5])).expect("send binary");
    let echoed = ws.read().expect("the binary echo");
    proxy.check(echoed == Message::binary(vec![1u8, 2, 3, 4, 5]), format!("the echo arrived as {echoed:?}"));
    ws.close(None).expect("send close");
    while ws.read().is_ok() {}
    // Three messages and a close frame each way.
    let ws_url = format!("ws://{target}/chat");
    let closed = format!(
        r"^127\.0\.0\.1:\d+ WS {} closed: 4 messages \(\S+\) up, 4 messages \(\S+\) down \S+$",
        regex::escape(&ws_url)
    );
    let closed = Regex::new(&closed).unwrap();
    proxy.wait_for_stdout_line(|l| closed.is_match(l), SOON);
    terminate(&mut proxy);
    let live = proxy.stdout_lines();

    let read = read_back(&["-r", &path_str(&session), "--flow-detail", "2"]);
    let handshake =
        Regex::new(&format!(r"^127\.0\.0\.1:\d+ GET http://{}/chat -> 101 ", regex::escape(&target))).unwrap();
    let live_handshake =
        live.iter().find(|l| handshake.is_match(l)).unwrap_or_else(|| panic!("no 101 line in {live:#?}"));
    let read_handshake =
        read.iter().find(|l| handshake.is_match(l)).unwrap_or_else(|| panic!("no 101 line in {read:#?}"));
    assert_eq!(without_duration(read_handshake), without_duration(live_handshake));
    assert!(
        read.iter().any(|l| l.eq_ignore_ascii_case("    >> upgrade: websocket")),
        "no handshake request headers in\n{read:#?}"
    );
    let live_closed = live.iter().find(|l| closed.is_match(l)).unwrap();
    let read_closed =
        read.iter().find(|l| closed.is_match(l)).unwrap_or_else(|| panic!("no closing WS line in\n{read:#?}"));
    assert_eq!(
        without_duration(read_closed),
        without_duration(live_closed),
        "the closing line with its counts and sizes"
    );
    assert!(read.iter().position(|l| l == read_handshake) < read.iter().position(|l| l == read_closed), "{read:#?}");

    // The messages themselves are in the session: an export to HAR lists them.
    let har = dir.path().join("ws.har");
    read_back(&["-q", "-r", &path_str(&session), "--save-har", &path_str(&har)]);
    let exported = parse_har(&har);
    let messages = entries(&exported)
        .iter()
        .find_map(|e| e["_webSocketMessages"].as_array())
        .unwrap_or_else(|| panic!("no _webSocketMessages in\n{exported:#}"));
    let texts: Vec<(&str, &str)> = messages
        .iter()
        .filter(|m| m["opcode"] == 1)
        .map(|m| (m["type"].as_str().unwrap_or("?"), m["data"].as_str().unwrap_or("?")))
        .collect();
    assert_eq!(
        texts,
        [
            ("send", "first message"),
            ("receive", "first message"),
            ("send", "second message"),
            ("receive", "second message")
        ],
        "text messages in\n{messages:#?}"
    );
}

/// With `--save-stream-filter`, a WebSocket session the filter keeps is kept with its messages: the
/// closing line read back counts them as the live one did.
#[test]
fn save_stream_filter_keeps_the_messages_of_a_kept_websocket_session() {
    let echo = WsEcho::start(None);
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("chat.db");
    let mut proxy = Strata::start(&["-w", &path_str(&session), "--save-stream-filter", "~u /chat"]);
    let target = format!("127.0.0.1:{}", echo.port);
    let (mut ws, _) =
        tungstenite::client::client(format!("ws://{target}/chat"), common::connect_tunnel(proxy.port, &target))
            .unwrap_or_else(|e| proxy.fail(&format!("WebSocket handshake through the tunnel: {e}")));
    ws.send(Message::text("kept message")).expect("send text");
    let echoed = ws.read().expect("the echo");
    proxy.check(echoed == Message::text("kept message"), format!("the echo arrived as {echoed:?}"));
    ws.close(None).expect("send close");
    while ws.read().is_ok() {}
    let closed = Regex::new(&format!(
        r"^127\.0\.0\.1:\d+ WS {} closed: 2 messages \(12b\) up, 2 messages \(12b\) down \S+$",
        regex::escape(&format!("ws://{target}/chat"))
    ))
    .unwrap();
    let live = proxy.wait_for_stdout_line(|l| closed.is_match(l), SOON);
    terminate(&mut proxy);

    let read = read_back(&["-r", &path_str(&session)]);
    let read_closed =
        read.iter().find(|l| l.contains(" closed: ")).unwrap_or_else(|| panic!("no closing line in {read:#?}"));
    assert_eq!(without_duration(read_closed), without_duration(&live), "the closing line read back");
}

// ---------------------------------------------------------------------------------------------------
// TCP relays
// ---------------------------------------------------------------------------------------------------

#[test]
fn tcp_relay_reads_back_with_its_byte_counts() {
    let (echo_port, _) = common::start_line_echo_server();
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("tcp.db");
    let mut proxy = Strata::start(&["-w", &path_str(&session)]);
    // Not HTTP inside the tunnel: strata relays it as TCP.
    let mut tunnel = common::connect_tunnel(proxy.port, &format!("127.0.0.1:{echo_port}"));
    tunnel.write_all(b"hello over tcp\n").expect("send a line");
    let reply = common::read_until_close(&mut tunnel);
    proxy.check(reply.closed && reply.text() == "echo: hello over tcp\n", format!("the echo: {reply:?}"));
    tunnel.shutdown(std::net::Shutdown::Write).unwrap();
    let tcp = Regex::new(&format!(r"^127\.0\.0\.1:\d+ TCP 127\.0\.0\.1:{echo_port} -> 15b up 21b down \S+$")).unwrap();
    proxy.wait_for_stdout_line(|l| tcp.is_match(l), SOON);
    terminate(&mut proxy);
    let live = proxy.stdout_lines();

    let read = read_back(&["-r", &path_str(&session)]);
    assert_eq!(without_durations(&read), without_durations(&live), "-r of a TCP relay against the live run");
}

// ---------------------------------------------------------------------------------------------------
// Robustness: kill -9, memory
// ---------------------------------------------------------------------------------------------------

/// `kill -9` in the middle of a recording leaves a session that reads back, holding every flow answered
/// before it.
#[test]
fn session_reads_back_after_kill_9_during_a_recording() {
    let origin = Origin::start();
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("killed.db");
    let mut proxy = Strata::start(&["-q", "-w", &path_str(&session)]);
    let url = origin.url("/size/20000");
    let finished_before = common::load_then_kill_9(&mut proxy, &url, 40);

    let read = read_back(&["-r", &path_str(&session)]);
    let ok = Regex::new(&format!(r"^127\.0\.0\.1:\d+ GET {} -> 200 19\.5k ", regex::escape(&url))).unwrap();
    let answered_flows = read.iter().filter(|l| ok.is_match(l)).count();
    assert!(
        answered_flows >= finished_before && finished_before > 0,
        "{answered_flows} answered flows read back for {finished_before} answered requests:\n{}",
        read.join("\n")
    );
}

/// The session costs disk, not memory: 200 responses of 512 KiB each (100 MiB recorded) leave the proxy's
/// peak RSS far below what keeping them would take, and every one of them is in the session.
#[test]
fn w_keeps_memory_flat_over_a_long_recording() {
    let origin = Origin::start();
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("long.db");
    let mut proxy = Strata::start(&["-q", "-w", &path_str(&session)]);
    let url = origin.url(&format!("/size/{}", 512 * 1024));
    for _ in 0..200 {
        let got = curl(&proxy, &["-o", "/dev/null", "-w", "%{http_code}", &url]);
        proxy.check(got.stdout == "200", format!("curl: {} {}", got.stdout, got.stderr));
    }
    let peak_kb = proxy.proc_status_kb("VmHWM");
    terminate(&mut proxy);
    let read = read_back(&["-r", &path_str(&session)]);
    let ok = Regex::new(&format!(r"^127\.0\.0\.1:\d+ GET {} -> 200 512k ", regex::escape(&url))).unwrap();
    assert_eq!(read.iter().filter(|l| ok.is_match(l)).count(), 200, "flows read back:\n{}", read.join("\n"));
    assert_eq!(read.len(), 200, "lines read back");
    assert!(peak_kb < 64 * 1024, "peak RSS {peak_kb} KiB while recording 100 MiB of bodies");
}

/// `--store-max-size` bounds a long recording: the oldest flows go, the newest stay, and the log says so.
#[test]
fn store_max_size_drops_the_oldest_flows_and_says_so() {
    let origin = Origin::start();
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("bounded.db");
    let mut proxy = Strata::start(&["-q", "-w", &path_str(&session), "--store-max-size", "256k"]);
    // The first flow is told apart by its size (1m), the newest by its place.
    for n in 0..150 {
        let size = if n == 0 { 1 << 20 } else { 24 * 1024 };
        let got = curl(&proxy, &["-o", "/dev/null", "-w", "%{http_code}", &origin.url(&format!("/size/{size}"))]);
        proxy.check(got.stdout == "200", format!("curl: {} {}", got.stdout, got.stderr));
    }
    terminate(&mut proxy);
    proxy.check(proxy.stderr_text().contains("dropping the oldest flows"), "no word of dropping flows");
    let read = read_back(&["-r", &path_str(&session)]);
    assert!(!read.is_empty() && read.len() < 60, "{} flows kept of 150 at 256k", read.len());
    assert!(read.iter().all(|l| !l.contains("-> 200 1m ")), "the oldest flow is still there");
    assert!(read.iter().all(|l| l.contains("-> 200 24k ")), "{read:#?}");
}

// ---------------------------------------------------------------------------------------------------
// HAR files as input
// ---------------------------------------------------------------------------------------------------

#[test]
fn read_back_of_a_har_file_prints_its_flows() {
    let origin = Origin::start();
    let dir = tempfile::tempdir().unwrap();
    let har = dir.path().join("recorded.har");
    let mut proxy = Strata::start(&["--save-har", &path_str(&har)]);
    curl(&proxy, &["-o", "/dev/null", &origin.url("/hello")]);
    curl(&proxy, &["-o", "/dev/null", &origin.url("/missing")]);
    curl(&proxy, &["-o", "/dev/null", "--data-binary", POST_BODY, &origin.url("/echo")]);
    terminate(&mut proxy);
    let live = proxy.stdout_lines();
    proxy.check(live.len() == 3, format!("expected 3 live flow lines, got {live:#?}"));

    // A HAR entry does not say which client sent it: compare METHOD URL -> STATUS SIZE.
    let method_to_size = |line: &String| without_duration(line).split_once(' ').map(|(_, rest)| rest.to_string());
    let read = read_back(&["-r", &path_str(&har)]);
    assert_eq!(
        read.iter().map(method_to_size).collect::<Vec<_>>(),
        live.iter().map(method_to_size).collect::<Vec<_>>(),
        "-r of the HAR file against the live run\n--- read:\n{}\n--- live:\n{}",
        read.join("\n"),
        live.join("\n")
    );
    let post = only_line(&read_back(&["-r", &path_str(&har), "~m POST"]), r" POST http://\S+/echo -> 200 ");
    assert_eq!(method_to_size(&post), method_to_size(&live[2]));
}

// ---------------------------------------------------------------------------------------------------
// Bodies stored as they stream: large bodies, uploads, --store-body-limit, file modes
// ---------------------------------------------------------------------------------------------------

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// `len` bytes of a seeded xorshift64* sequence: no stretch of it repeats, so a body stored with a piece
/// at a wrong offset, missing or doubled differs from it.
fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Panics unless `got` is `want`, saying where they first differ (not printing megabytes).
#[track_caller]
fn assert_same_bytes(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let first = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
        panic!("{what}: {} bytes, expected {}; they first differ at offset {first}", got.len(), want.len());
    }
}

/// An HTTP/1.1 origin serving one body of bytes, plain or over TLS (a certificate from a `TestCa` for
/// `localhost` and `127.0.0.1`, no ALPN). Keep-alive honoured. Routes:
///
/// - `GET /length`: the body, with Content-Length.
/// - `GET /chunked`: the body with chunked framing, in chunks of uneven sizes (1 byte to 64 KiB).
/// - any request with a body (Content-Length or chunked): reads it and answers `received N bytes`.
struct BodyOrigin {
    port: u16,
    scheme: &'static str,
}

impl BodyOrigin {
    fn start(body: Vec<u8>, tls: Option<&TestCa>) -> BodyOrigin {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the body origin");
        let port = listener.local_addr().unwrap().port();
        let config = tls.map(|ca| ca.server_config(&["localhost", "127.0.0.1"]));
        let body = std::sync::Arc::new(body);
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                let Ok(tcp) = tcp else { continue };
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(60)));
                let _ = tcp.set_write_timeout(Some(Duration::from_secs(60)));
                let (config, body) = (config.clone(), body.clone());
                std::thread::spawn(move || match config {
                    None => serve_body_origin(tcp, &body),
                    Some(config) => {
                        let Ok(server) = rustls::ServerConnection::new(config) else { return };
                        let mut tls = rustls::StreamOwned::new(server, tcp);
                        serve_body_origin(&mut tls, &body);
                        tls.conn.send_close_notify();
                        let _ = tls.flush();
                    }
                });
            }
        });
        BodyOrigin { port, scheme: if tls.is_some() { "https" } else { "http" } }
    }

    fn url(&self, path: &str) -> String {
        let host = if self.scheme == "https" { "localhost" } else { "127.0.0.1" };
        format!("{}://{host}:{}{path}", self.scheme, self.port)
    }
}

fn serve_body_origin<S: std::io::Read + Write>(stream: S, body: &[u8]) {
    use std::io::{BufRead, Read};
    let mut reader = std::io::BufReader::new(stream);
    loop {
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(n) if n > 0 => {}
                _ => return,
            }
            if line.trim_end().is_empty() {
                break;
            }
            head.push(line.trim_end().to_string());
        }
        let Some(request_line) = head.first() else { return };
        let path = request_line.split(' ').nth(1).unwrap_or("").to_string();
        let header = |name: &str| {
            head.iter().skip(1).find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_ascii_lowercase())
            })
        };
        // The request body, counted.
        let mut received = 0usize;
        if let Some(length) = header("content-length") {
            let Ok(length) = length.parse::<u64>() else { return };
            match std::io::copy(&mut (&mut reader).take(length), &mut std::io::sink()) {
                Ok(n) if n == length => received = n as usize,
                _ => return,
            }
        } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                let mut size = String::new();
                if reader.read_line(&mut size).unwrap_or(0) == 0 {
                    return;
                }
                let Ok(size) = usize::from_str_radix(size.trim().split(';').next().unwrap_or("").trim(), 16) else {
                    return;
                };
                if size == 0 {
                    let mut trailer = String::new();
                    while reader.read_line(&mut trailer).unwrap_or(0) > 2 {
                        trailer.clear();
                    }
                    break;
                }
                let mut chunk = vec![0; size + 2];
                if reader.read_exact(&mut chunk).is_err() {
                    return;
                }
                received += size;
            }
        }
        let w = reader.get_mut();
        let written = if received > 0 {
            let text = format!("received {received} bytes");
            write!(w, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{text}", text.len())
        } else if path == "/length" {
            write!(
                w,
                "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .and_then(|_| w.write_all(body))
        } else if path == "/chunked" {
            write!(w, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
                .and_then(|_| {
                    let (mut at, mut i) = (0usize, 0usize);
                    while at < body.len() {
                        // Uneven sizes, none of them a power of two but the largest.
                        let size = (1 + i * i * 7919 % 65536).min(body.len() - at);
                        write!(w, "{size:x}\r\n")?;
                        w.write_all(&body[at..at + size])?;
                        w.write_all(b"\r\n")?;
                        at += size;
                        i += 1;
                    }
                    w.write_all(b"0\r\n\r\n")
                })
        } else {
            write!(w, "HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\n\r\nnot found\n")
        };
        if written.and_then(|_| w.flush()).is_err() {
            return;
        }
    }
}

/// The entry for `url` in an exported HAR (exactly one).
#[track_caller]
fn entry_for<'a>(har: &'a Value, url: &str) -> &'a Value {
    let matching: Vec<&Value> = entries(har).iter().filter(|e| e["request"]["url"] == url).collect();
    let urls: Vec<&Value> = entries(har).iter().map(|e| &e["request"]["url"]).collect();
    assert!(matching.len() == 1, "expected one entry for {url}, the entries are for {urls:?}");
    matching[0]
}

/// The body a HAR `content` or `postData` object holds: `text`, base64-decoded when `encoding` says so.
#[track_caller]
fn har_body(obj: &Value) -> Vec<u8> {
    use base64::Engine as _;
    let text = obj["text"].as_str().unwrap_or_else(|| panic!("no text in {}", short_json(obj)));
    match obj.get("encoding").and_then(Value::as_str) {
        None => text.as_bytes().to_vec(),
        Some("base64") => base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap_or_else(|e| panic!("text is not base64 ({e}) in {}", short_json(obj))),
        Some(other) => panic!("unexpected encoding {other:?} in {}", short_json(obj)),
    }
}

/// A JSON value for a failure message, long strings cut short.
fn short_json(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 400 {
        format!(
            "{}... ({} characters)",
            &text[..text.char_indices().nth(400).map_or(text.len(), |(i, _)| i)],
            text.len()
        )
    } else {
        text
    }
}

/// Fetches `url` through `proxy` with curl into `out` and checks it arrived as `body`.
fn fetch_to_file(proxy: &Strata, url: &str, out: &Path, body: &[u8]) {
    let got = curl(proxy, &["-o", &path_str(out), "-w", "%{http_code}", url]);
    proxy.check(got.stdout == "200", format!("{url} answered {:?}", got.stdout));
    let received = std::fs::read(out).unwrap();
    proxy.check(
        received == body,
        format!("{url}: curl received {} bytes, not the {} served", received.len(), body.len()),
    );
}

/// Large response bodies, framed by Content-Length and by chunking, are stored whole and byte for byte
/// as they streamed through (no piece lost, doubled or misplaced), and export to HAR as such.
#[test]
fn w_stores_5_mib_response_bodies_with_content_length_and_chunked_exactly() {
    let body = pseudo_random_bytes(0x5eed_0005, 5 * MIB);
    let origin = BodyOrigin::start(body.clone(), None);
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("big.db");
    let mut proxy = Strata::start(&["-w", &path_str(&session)]);
    for path in ["/length", "/chunked"] {
        fetch_to_file(&proxy, &origin.url(path), &dir.path().join("fetched"), &body);
    }
    terminate(&mut proxy);

    let har = dir.path().join("out.har");
    let printed = read_back(&["-r", &path_str(&session), "--save-har", &path_str(&har)]);
    let exported = parse_har(&har);
    for path in ["/length", "/chunked"] {
        let url = origin.url(path);
        let line = Regex::new(&format!(r"^127\.0\.0\.1:\d+ GET {} -> 200 5m ", regex::escape(&url))).unwrap();
        assert!(printed.iter().any(|l| line.is_match(l)), "no `GET {url} -> 200 5m` line read back in {printed:#?}");
        let response = &entry_for(&exported, &url)["response"];
        let chunked = response["headers"].as_array().is_some_and(|headers| {
            headers.iter().any(|h| {
                h["name"].as_str().is_some_and(|n| n.eq_ignore_ascii_case("transfer-encoding"))
                    && h["value"] == "chunked"
            })
        });
        assert_eq!(chunked, path == "/chunked", "{url}: the framing recorded in {}", response["headers"]);
        let content = &response["content"];
        assert_eq!(content["size"], body.len(), "content.size of {url}");
        assert_same_bytes(&har_body(content), &body, &format!("the HAR's response body of {url}"));
        assert!(content.get("comment").is_none(), "{url}: a whole body marked truncated: {}", short_json(content));
    }
}

/// Checks the HAR entry for `url` holds `sent` as its request body, whole.
#[track_caller]
fn assert_stored_request_body(exported: &Value, url: &str, sent: &[u8]) {
    let request = &entry_for(exported, url)["request"];
    assert_eq!(request["method"], "POST", "{url}");
    assert_eq!(request["bodySize"], sent.len(), "request.bodySize of {url}");
    let post_data = &request["postData"];
    assert_same_bytes(&har_body(post_data), sent, &format!("the HAR's request body of {url}"));
    assert!(post_data.get("comment").is_none(), "{url}: a whole body marked truncated: {}", short_json(post_data));
}

/// A 3 MiB upload with curl over HTTP/1.1 is stored exactly as sent.
#[test]
fn w_stores_a_3_mib_request_body_uploaded_over_http11_exactly() {
    let sent = pseudo_random_bytes(0x5eed_0003, 3 * MIB);
    let origin = BodyOrigin::start(Vec::new(), None);
    let dir = tempfile::tempdir().unwrap();
    let upload = dir.path().join("upload.bin");
    std::fs::write(&upload, &sent).unwrap();
    let session = dir.path().join("upload.db");
    let mut proxy = Strata::start(&["-w", &path_str(&session)]);
    let url = origin.url("/upload");
    let data = format!("@{}", path_str(&upload));
    let got = curl(&proxy, &["--http1.1", "--data-binary", &data, "-w", " %{http_version}", &url]);
    let expected = format!("received {} bytes 1.1", sent.len());
    proxy.check(got.stdout == expected, format!("the upload answered {:?}, expected {expected:?}", got.stdout));
    terminate(&mut proxy);

    let har = dir.path().join("upload.har");
    let printed = read_back(&["-r", &path_str(&session), "--save-har", &path_str(&har)]);
    only_line(&printed, &format!(r"^127\.0\.0\.1:\d+ POST {} -> 200 ", regex::escape(&url)));
    assert_stored_request_body(&parse_har(&har), &url, &sent);
}

/// A 3 MiB upload with curl over HTTP/2 (to strata, through CONNECT with interception; HTTP/1.1 to the
/// HTTPS origin) is stored exactly as sent.
#[test]
fn w_stores_a_3_mib_request_body_uploaded_over_http2_exactly() {
    let sent = pseudo_random_bytes(0x5eed_0032, 3 * MIB);
    let ca = TestCa::new("strata store test CA");
    let origin = BodyOrigin::start(Vec::new(), Some(&ca));
    let dir = tempfile::tempdir().unwrap();
    let upload = dir.path().join("upload.bin");
    std::fs::write(&upload, &sent).unwrap();
    let session = dir.path().join("upload-h2.db");
    let mut proxy = Strata::start(&["-w", &path_str(&session), "--upstream-ca", &path_str(&ca.pem_path())]);
    let cacert = path_str(&proxy.ca_cert_path());
    let url = origin.url("/upload");
    let data = format!("@{}", path_str(&upload));
    let got = curl(&proxy, &["--http2", "--cacert", &cacert, "--data-binary", &data, "-w", " %{http_version}", &url]);
    let expected = format!("received {} bytes 2", sent.len());
    proxy.check(got.stdout == expected, format!("the upload answered {:?}, expected {expected:?}", got.stdout));
    terminate(&mut proxy);

    let har = dir.path().join("upload-h2.har");
    let printed = read_back(&["-r", &path_str(&session), "--save-har", &path_str(&har)]);
    only_line(&printed, &format!(r"^127\.0\.0\.1:\d+ POST {} -> 200 ", regex::escape(&url)));
    let exported = parse_har(&har);
    assert_eq!(entry_for(&exported, &url)["request"]["httpVersion"], "HTTP/2.0", "the upload's request version");
    assert_stored_request_body(&exported, &url, &sent);

    // The session keeps what each TLS handshake settled: h2 with curl; the origin agrees on no ALPN.
    let db = rusqlite::Connection::open(&session).unwrap();
    let (client_alpn, client_version, server_alpn, server_version): (String, String, Option<String>, String) = db
        .query_row(
            "SELECT client_alpn, client_tls_version, server_alpn, server_tls_version FROM flows WHERE method = 'POST'",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )
        .unwrap();
    assert_eq!((client_alpn.as_str(), server_alpn), ("h2", None));
    assert!(
        client_version.starts_with("TLSv1.") && server_version.starts_with("TLSv1."),
        "{client_version} {server_version}"
    );
}

/// `--store-body-limit 1k` stores the first 1024 bytes of a 100 KiB body and drops the rest, while the
/// flow keeps the real size: in the flow line read back and in the HAR's content.size.
#[test]
fn store_body_limit_keeps_the_first_bytes_and_the_real_size() {
    let body = pseudo_random_bytes(0x5eed_0100, 100 * KIB);
    let origin = BodyOrigin::start(body.clone(), None);
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("limited.db");
    let mut proxy = Strata::start(&["-w", &path_str(&session), "--store-body-limit", "1k"]);
    let url = origin.url("/length");
    // The limit is on what is stored, not on what passes.
    fetch_to_file(&proxy, &url, &dir.path().join("fetched"), &body);
    terminate(&mut proxy);

    let har = dir.path().join("limited.har");
    let printed = read_back(&["-r", &path_str(&session), "--save-har", &path_str(&har)]);
    only_line(&printed, &format!(r"^127\.0\.0\.1:\d+ GET {} -> 200 100k \S+$", regex::escape(&url)));
    let exported = parse_har(&har);
    let content = &entry_for(&exported, &url)["response"]["content"];
    assert_eq!(content["size"], body.len(), "content.size: {}", short_json(content));
    assert_same_bytes(&har_body(content), &body[..1024], "the HAR's response body at --store-body-limit 1k");
}

#[test]
fn store_body_limit_that_is_not_a_size_exits_2_naming_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("never.db");
    let done = run_strata_to_exit(&["-p", "0", "-w", &path_str(&session), "--store-body-limit", "banana"], SOON);
    let line = refusal(&done);
    assert!(line.contains("--store-body-limit"), "the refusal does not name --store-body-limit: {line}");
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(names.is_empty(), "a refused start left files behind: {names:?}");
}

/// The session holds whatever passed through the proxy (cookies, tokens, bodies): the file and SQLite's
/// -wal and -shm files next to it are readable by their owner only, whatever the umask, while strata
/// records.
#[test]
fn session_file_and_its_wal_and_shm_are_private_while_recording() {
    use std::os::unix::fs::PermissionsExt;
    // A usual umask, which would leave new files world-readable (0644): the files must be private anyway.
    // SAFETY: umask(2) only sets the process's file mode creation mask; strata inherits it.
    unsafe { libc::umask(0o022) };
    let origin = Origin::start();
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("private.db");
    let mut proxy = Strata::start(&["-w", &path_str(&session)]);
    let got = curl(&proxy, &["--data-binary", POST_BODY, &origin.url("/echo")]);
    proxy.check(got.stdout == POST_BODY, format!("/echo answered {:?}", got.stdout));
    proxy.wait_for_stdout_line(|l| l.contains(" POST ") && l.contains("/echo -> 200 "), SOON);

    let files = [session.clone(), dir.path().join("private.db-wal"), dir.path().join("private.db-shm")];
    // SQLite creates the -wal and -shm files with its first write, on strata's writer thread; nothing
    // notifies of that, so poll for them, briefly.
    let deadline = std::time::Instant::now() + SOON;
    while !files.iter().all(|f| f.exists()) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    for file in &files {
        let meta = std::fs::metadata(file).unwrap_or_else(|e| {
            let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
            proxy.fail(&format!("{}: {e}; the directory holds {names:?}", file.display()))
        });
        let mode = meta.permissions().mode() & 0o777;
        proxy.check(mode == 0o600, format!("{} has mode {mode:o} while recording, expected 600", file.display()));
    }
    terminate(&mut proxy);
    only_line(&read_back(&["-r", &path_str(&session)]), r" POST http://\S+/echo -> 200 ");
}
