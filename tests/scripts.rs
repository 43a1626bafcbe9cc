//! Lua scripts (`-s FILE`) through the real binary, as a user meets them: first each example in
//! `examples/scripts/` with a real client (curl, a WebSocket client), asserting what the client and the
//! origin see; then the script machinery with small scripts written into a temp dir: a syntax error at
//! start, runtime errors, the time budget and memory cap, which bodies stay streaming, reload on change,
//! `--set` for script options, the same events for HTTP/2 flows, the WebSocket and `error` events.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use common::{
    curl, curl_unchecked, refusal, run_strata_to_exit, Finished, HttpsOrigin, Origin, Strata, TestCa, WsEcho,
    TEST_ORIGIN_HELLO,
};
use tungstenite::Message;

/// Bound on waits for something that should happen at once (a log line, a reply).
const SOON: Duration = Duration::from_secs(10);

/// Bound on a run that should end by itself (a refusal at start).
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

/// Size of the bodies that must stream: larger than any buffer strata may keep.
const LARGE_BODY: usize = 50 << 20;

/// Peak resident memory (kB) a proxy relaying `LARGE_BODY` may reach: well under the body's size, so a
/// buffered body fails it.
const STREAMING_PEAK_KB: u64 = 30 << 10;

/// What the JSON origin's `/user` answers.
const USER_JSON: &str = r#"{"name":"ann","premium":false,"visits":3,"tags":[],"plan":null}"#;

/// The path of `examples/scripts/NAME`.
fn example(name: &str) -> String {
    format!("{}/examples/scripts/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Writes `source` as `dir/name` and returns its path as text.
fn write_script(dir: &Path, name: &str, source: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, source).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path.display().to_string()
}

/// A response as `curl -i` printed it: head and body.
struct Got {
    head: String,
    body: String,
}

impl Got {
    /// Parses curl's output, skipping the heads before the final one (the CONNECT reply, 1xx).
    fn parse(out: &str) -> Got {
        let mut rest = out;
        loop {
            let (head, body) = rest.split_once("\r\n\r\n").unwrap_or((rest, ""));
            let got = Got { head: head.to_string(), body: body.to_string() };
            let interim = (100..200).contains(&got.status()) || head.contains(" Connection established");
            if !interim || body.is_empty() {
                return got;
            }
            rest = body;
        }
    }

    /// The status line's code.
    fn status(&self) -> u16 {
        self.head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
    }

    /// The value of the (first) header `name`, case-insensitive.
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

/// `curl -i ARGS` through `proxy`, which must succeed.
fn get(proxy: &Strata, args: &[&str]) -> Got {
    let mut all = vec!["-i"];
    all.extend_from_slice(args);
    Got::parse(&curl(proxy, &all).stdout)
}

/// Stderr lines of `proxy` containing `needle`.
fn stderr_lines_with(proxy: &Strata, needle: &str) -> Vec<String> {
    proxy.stderr_text().lines().filter(|l| l.contains(needle)).map(str::to_string).collect()
}

/// A plain HTTP/1.1 origin answering `/user` with `USER_JSON` as `application/json`, and `/user.txt` with
/// the same text as `text/plain`; one request per connection. Returns its port.
fn start_json_origin() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind JSON origin");
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            thread::spawn(move || serve_json(stream));
        }
    });
    port
}

fn serve_json(stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(SOON));
    let Ok(mut writer) = stream.try_clone() else { return };
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
        line.clear();
    }
    let content_type = match request_line.split(' ').nth(1) {
        Some("/user") => "application/json",
        _ => "text/plain",
    };
    let _ = write!(
        writer,
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{USER_JSON}",
        USER_JSON.len()
    );
    let _ = writer.shutdown(Shutdown::Both);
}

/// Sets the file's modification time `seconds` after now, so that a rewrite is seen as a change even on
/// file systems with coarse timestamps.
fn touch_ahead(path: &str, seconds: u64) {
    let file = std::fs::File::options().write(true).open(path).expect("open script");
    file.set_modified(SystemTime::now() + Duration::from_secs(seconds)).expect("set mtime");
}

// ---------------------------------------------------------------------------------------------------
// The examples
// ---------------------------------------------------------------------------------------------------

#[test]
fn add_header_example_adds_x_strata_to_responses() {
    let origin = Origin::start();
    // A limit above `LARGE_BODY`: only the script's choice of event keeps the body streaming.
    let proxy = Strata::start(&["-s", &example("add_header.lua"), "--body-size-limit", "100m"]);
    let got = get(&proxy, &[&origin.url("/hello")]);
    proxy.check(
        got.status() == 200 && got.header("x-strata").as_deref() == Some("1") && got.body == "hello, world\n",
        format!("expected 200 with x-strata: 1 and the origin's body, got:\n{}\n\n{}", got.head, got.body),
    );

    // A large download gets the header too, and streams.
    let url = origin.url(&format!("/size/{LARGE_BODY}"));
    let done = curl(&proxy, &["-D", "-", "-o", "/dev/null", "-w", "size %{size_download}", &url]);
    let got = Got::parse(&done.stdout);
    proxy.check(
        got.header("x-strata").as_deref() == Some("1") && got.body == format!("size {LARGE_BODY}"),
        format!("the large download: expected x-strata: 1 and {LARGE_BODY} bytes, got:\n{}", done.stdout),
    );
    let peak = proxy.proc_status_kb("VmHWM");
    proxy.check(peak < STREAMING_PEAK_KB, format!("peak memory {peak} kB relaying {LARGE_BODY} bytes"));
}

#[test]
fn rewrite_json_example_changes_a_field_of_json_responses() {
    let port = start_json_origin();
    let proxy = Strata::start(&["-s", &example("rewrite_json.lua")]);

    let got = get(&proxy, &[&format!("http://127.0.0.1:{port}/user")]);
    let data: serde_json::Value = serde_json::from_str(&got.body)
        .unwrap_or_else(|e| proxy.fail(&format!("the rewritten body is not JSON ({e}):\n{}", got.body)));
    let expected = serde_json::json!({"name": "ann", "premium": true, "visits": 3, "tags": [], "plan": null});
    proxy.check(
        got.status() == 200 && data == expected,
        format!("expected {expected} (premium flipped, the rest as sent), got {}: {data}", got.status()),
    );
    let length = got.header("content-length").and_then(|v| v.parse::<usize>().ok());
    proxy.check(length == Some(got.body.len()), format!("Content-Length {length:?} for {} body bytes", got.body.len()));

    // The same text as text/plain is not touched.
    let got = get(&proxy, &[&format!("http://127.0.0.1:{port}/user.txt")]);
    proxy.check(got.body == USER_JSON, format!("a text/plain body was changed: {}", got.body));
}

#[test]
fn redirect_host_example_sends_one_hosts_requests_to_another() {
    let first = HttpsOrigin::start_plain();
    let second = HttpsOrigin::start_plain();
    let to_port = format!("redirect_to_port={}", second.port);
    let proxy = Strata::start(&[
        "-s",
        &example("redirect_host.lua"),
        "--set",
        "redirect_from=localhost",
        "--set",
        "redirect_to_host=127.0.0.1",
        "--set",
        &to_port,
    ]);

    // Asked of localhost:FIRST, answered by 127.0.0.1:SECOND, with the Host header following.
    let got = get(&proxy, &[&format!("http://localhost:{}/host", first.port)]);
    let expected = format!("127.0.0.1:{}\n", second.port);
    proxy.check(
        got.status() == 200 && got.body == expected,
        format!("expected the second origin's {expected:?}, got {got:?}", got = got.body),
    );
    proxy.check(first.events.accepts.get() == 0, "the first origin was connected to");

    // Another host passes unchanged (and reaches the first origin, which is alive).
    let got = get(&proxy, &[&format!("http://127.0.0.1:{}/host", first.port)]);
    let expected = format!("127.0.0.1:{}\n", first.port);
    proxy.check(got.body == expected, format!("an unmatched host: expected {expected:?}, got {:?}", got.body));
    proxy.check(
        first.events.requests.get() == 1 && second.events.requests.get() == 1,
        format!(
            "requests at the origins: first {}, second {}",
            first.events.requests.get(),
            second.events.requests.get()
        ),
    );
}

#[test]
fn answer_locally_example_answers_without_a_server_connection() {
    let origin = Origin::start();
    let proxy = Strata::start(&["-s", &example("answer_locally.lua")]);

    let got = get(&proxy, &[&origin.url("/strata-health")]);
    proxy.check(
        got.status() == 200 && got.body == "ok\n" && got.header("content-type").as_deref() == Some("text/plain"),
        format!("expected 200 text/plain ok, got:\n{}\n\n{}", got.head, got.body),
    );
    let url = origin.url("/strata-health");
    proxy.wait_for_stdout_line(|l| l.contains(&format!(" GET {url} -> 200 ")), SOON);
    proxy.check(origin.accepts() == 0, format!("the origin saw {} connections", origin.accepts()));

    // Other paths still reach the origin.
    let got = get(&proxy, &[&origin.url("/hello")]);
    proxy.check(got.body == "hello, world\n", format!("/hello: {:?}", got.body));
    proxy.check(origin.accepts() == 1, format!("the origin saw {} connections", origin.accepts()));
}

#[test]
fn block_example_refuses_matching_urls_before_the_server_sees_them() {
    let origin = Origin::start();
    let proxy = Strata::start(&["-s", &example("block.lua"), "--set", "block_pattern=/secret/"]);

    let got = get(&proxy, &[&origin.url("/secret/plans")]);
    proxy.check(
        got.status() == 403 && got.body == "blocked by strata\n",
        format!("expected 403, got:\n{}\n\n{}", got.head, got.body),
    );
    proxy.check(origin.accepts() == 0, "the origin saw the blocked request");
    let got = get(&proxy, &[&origin.url("/hello")]);
    proxy.check(got.body == "hello, world\n", format!("an unmatched URL: {:?}", got.body));

    // With block_kill the client gets no answer at all.
    let killer =
        Strata::start(&["-s", &example("block.lua"), "--set", "block_pattern=/secret/", "--set", "block_kill=true"]);
    let url = origin.url("/secret/plans");
    let done = curl_unchecked(&["-i", "-x", &killer.proxy_url(), &url]);
    // curl's exit code 52: "Empty reply from server".
    killer.check(
        done.status.code() == Some(52) && done.stdout.is_empty(),
        format!(
            "expected an empty reply, got {:?}\n--- curl stdout:\n{}\n--- curl stderr:\n{}",
            done.status, done.stdout, done.stderr
        ),
    );
    proxy.check(
        origin.accepts() == 1,
        format!("the origin saw {} connections, expected only /hello's", origin.accepts()),
    );
}

#[test]
fn websocket_rewrite_example_upper_cases_server_text_messages() {
    let echo = WsEcho::start(None);
    let proxy = Strata::start(&["-s", &example("websocket_rewrite.lua")]);
    let target = format!("127.0.0.1:{}", echo.port);
    let tunnel = common::connect_tunnel(proxy.port, &target);
    let (mut ws, response) = tungstenite::client::client(format!("ws://{target}/chat"), tunnel)
        .unwrap_or_else(|e| proxy.fail(&format!("WebSocket handshake through the tunnel: {e}")));
    proxy.check(response.status() == 101, format!("handshake status {}", response.status()));

    ws.send(Message::text("hello from the client")).expect("send text");
    match ws.read() {
        Ok(Message::Text(text)) => {
            proxy.check(text.as_str() == "HELLO FROM THE CLIENT", format!("the echo arrived as {:?}", text.as_str()))
        }
        other => proxy.fail(&format!("expected the text echo, got {other:?}")),
    }
    // Binary messages pass unchanged.
    ws.send(Message::binary(b"Mixed Case bytes".to_vec())).expect("send binary");
    match ws.read() {
        Ok(Message::Binary(data)) => proxy.check(&data[..] == b"Mixed Case bytes", format!("binary echo {data:?}")),
        other => proxy.fail(&format!("expected the binary echo, got {other:?}")),
    }
    ws.close(None).expect("send close");
    while ws.read().is_ok() {}
}

#[test]
fn count_hosts_example_prints_a_sorted_summary_at_exit() {
    let origin = Origin::start();
    let mut proxy = Strata::start(&["-s", &example("count_hosts.lua")]);
    for url in [
        format!("http://localhost:{}/hello", origin.port),
        origin.url("/hello"),
        origin.url("/status/204"),
        format!("http://localhost:{}/hello", origin.port),
        format!("http://localhost:{}/hello", origin.port),
    ] {
        curl(&proxy, &[&url]);
    }
    proxy.wait_until_catching(libc::SIGTERM, SOON);
    proxy.signal(libc::SIGTERM);
    let status = proxy.wait_for_exit(SOON);
    let lines = proxy.stdout_lines();
    let start = lines.iter().position(|l| l == "flows per host:");
    let summary = start.map(|i| lines[i..].to_vec()).unwrap_or_default();
    let expected = ["flows per host:", "     3  localhost", "     2  127.0.0.1"];
    proxy.check(
        summary == expected,
        format!("expected the summary {expected:#?} at the end of stdout (exit status {status}), got {summary:#?}"),
    );
}

// ---------------------------------------------------------------------------------------------------
// The machinery
// ---------------------------------------------------------------------------------------------------

#[test]
fn syntax_error_at_start_exits_2_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_script(dir.path(), "broken.lua", "function request(flow)\n    if then\nend\n");
    let done = run_strata_to_exit(&["-p", "0", "-s", &path], EXIT_TIMEOUT);
    let line = refusal(&done);
    assert!(line.contains("broken.lua") && line.contains(":2:"), "the refusal names no file and line 2: {line}");
}

#[test]
fn runtime_error_is_logged_once_and_the_flow_goes_on_unchanged() {
    let origin = Origin::start();
    let dir = tempfile::tempdir().unwrap();
    // The header set before the error must not reach the origin: a failed call leaves the flow as it was.
    let source = r#"
function request(flow)
    if flow.request.path == "/hello" then
        strata.log.info("marker " .. flow.request.path)
        return
    end
    flow.request.headers["x-touched"] = "yes"
    local missing = nil
    return missing.field
end
"#;
    let path = write_script(dir.path(), "faulty.lua", source);
    let proxy = Strata::start(&["-s", &path]);
    for _ in 0..2 {
        let got = get(&proxy, &[&origin.url("/echo")]);
        let seen = got.header("x-seen-headers").unwrap_or_default();
        proxy.check(
            got.status() == 200 && !seen.split(',').any(|h| h == "x-touched"),
            format!("expected 200 without x-touched at the origin, got {} with headers {seen}", got.status()),
        );
    }
    // The marker is written after both failed calls, on the same stream, so any second error line
    // would be read before it.
    get(&proxy, &[&origin.url("/hello")]);
    proxy.wait_for_stderr_line(|l| l.contains("marker /hello"), SOON);
    let errors = stderr_lines_with(&proxy, "attempt to index");
    proxy.check(errors.len() == 1, format!("expected one error line, got {errors:#?}"));
    proxy.check(
        errors[0].contains("faulty.lua:9:") && errors[0].contains("request"),
        format!("the error line names no file, line and event: {}", errors[0]),
    );
}

#[test]
fn endless_loop_in_request_is_stopped_and_the_proxy_keeps_serving() {
    let origin = Origin::start();
    let dir = tempfile::tempdir().unwrap();
    let path = write_script(dir.path(), "spin.lua", "function request(flow)\n    while true do end\nend\n");
    let proxy = Strata::start(&["-s", &path]);
    for attempt in 1..=2 {
        let started = Instant::now();
        let got = get(&proxy, &[&origin.url("/hello")]);
        let took = started.elapsed();
        proxy.check(
            got.status() == 200 && got.body == "hello, world\n" && took < Duration::from_secs(5),
            format!("request {attempt}: expected the origin's answer within 5 s, got {} after {took:?}", got.status()),
        );
    }
    proxy.wait_for_stderr_line(|l| l.contains("spin.lua") && l.contains("budget"), SOON);
}

#[test]
fn memory_hog_in_request_is_stopped_at_the_cap() {
    let origin = Origin::start();
    let dir = tempfile::tempdir().unwrap();
    let source = r#"
function request(flow)
    local hoard = {}
    while true do
        hoard[#hoard + 1] = string.rep("x", 1 << 20) .. #hoard
    end
end
"#;
    let path = write_script(dir.path(), "hog.lua", source);
    let proxy = Strata::start(&["-s", &path]);
    for attempt in 1..=2 {
        let got = get(&proxy, &[&origin.url("/hello")]);
        proxy.check(got.body == "hello, world\n", format!("request {attempt}: {} {:?}", got.status(), got.body));
    }
    proxy.wait_for_stderr_line(|l| l.contains("hog.lua") && l.contains("memory"), SOON);
    let peak = proxy.proc_status_kb("VmHWM");
    proxy.check(peak < 200 << 10, format!("peak memory {peak} kB with a 64 MiB cap"));
}

#[test]
fn requestheaders_only_script_leaves_large_bodies_streaming() {
    let origin = Origin::start();
    let dir = tempfile::tempdir().unwrap();
    let path = write_script(
        dir.path(),
        "heads.lua",
        "function requestheaders(flow)\n    flow.request.headers[\"x-script\"] = \"seen\"\nend\n",
    );
    // A limit above the body's size: only the script's choice of events keeps the bodies streaming.
    let proxy = Strata::start(&["-s", &path, "--body-size-limit", "100m"]);

    // The hook ran: the origin got its header.
    let got = get(&proxy, &[&origin.url("/echo")]);
    let seen = got.header("x-seen-headers").unwrap_or_default();
    proxy.check(seen.split(',').any(|h| h == "x-script"), format!("the origin saw headers {seen}"));

    let download =
        curl(&proxy, &["-o", "/dev/null", "-w", "%{size_download}", &origin.url(&format!("/size/{LARGE_BODY}"))]);
    proxy.check(download.stdout == LARGE_BODY.to_string(), format!("downloaded {} bytes", download.stdout));
    let upload = dir.path().join("upload.bin");
    std::fs::write(&upload, vec![b'u'; LARGE_BODY]).unwrap();
    let data = format!("@{}", upload.display());
    let uploaded = curl(&proxy, &["--data-binary", &data, &origin.url("/count")]);
    proxy.check(uploaded.stdout == LARGE_BODY.to_string(), format!("the origin counted {} bytes", uploaded.stdout));

    let peak = proxy.proc_status_kb("VmHWM");
    proxy.check(peak < STREAMING_PEAK_KB, format!("peak memory {peak} kB relaying {LARGE_BODY} bytes each way"));
}

#[test]
fn request_script_sees_and_changes_the_request_body() {
    let origin = Origin::start();
    let dir = tempfile::tempdir().unwrap();
    let source = r#"
function request(flow)
    local body = flow.request.content
    flow.request.content = body:upper() .. " (" .. #body .. " bytes seen)"
end
"#;
    let path = write_script(dir.path(), "body.lua", source);
    let proxy = Strata::start(&["-s", &path]);
    let expected = "A SMALL BODY (12 bytes seen)";
    let got = get(&proxy, &["--data-binary", "a small body", &origin.url("/echo")]);
    proxy.check(got.body == expected, format!("Content-Length upload: the origin echoed {:?}", got.body));
    let got = get(&proxy, &["-H", "Transfer-Encoding: chunked", "--data-binary", "a small body", &origin.url("/echo")]);
    proxy.check(got.body == expected, format!("chunked upload: the origin echoed {:?}", got.body));
}

#[test]
fn edited_script_is_reloaded_for_later_requests() {
    let origin = Origin::start();
    let dir = tempfile::tempdir().unwrap();
    let version =
        |n: &str| format!("function responseheaders(flow)\n    flow.response.headers[\"x-version\"] = \"{n}\"\nend\n");
    let path = write_script(dir.path(), "live.lua", &version("1"));
    let proxy = Strata::start(&["-s", &path]);
    let url = origin.url("/hello");
    let x_version = || get(&proxy, &[&url]).header("x-version");
    proxy.check(x_version().as_deref() == Some("1"), "the first version did not run");

    // The file is checked at most once a second while requests arrive: ask until the change shows.
    write_script(dir.path(), "live.lua", &version("2"));
    touch_ahead(&path, 5);
    let deadline = Instant::now() + SOON;
    while x_version().as_deref() != Some("2") {
        proxy.check(Instant::now() < deadline, "the edited script was not reloaded");
        thread::sleep(Duration::from_millis(200));
    }
    proxy.wait_for_stderr_line(|l| l.contains("live.lua: reloaded"), SOON);

    // A broken edit is reported and the previous version stays.
    write_script(dir.path(), "live.lua", "function responseheaders(flow)\n    if then\nend\n");
    touch_ahead(&path, 10);
    let deadline = Instant::now() + SOON;
    while stderr_lines_with(&proxy, "not reloaded").is_empty() {
        proxy.check(Instant::now() < deadline, "the broken edit was not reported");
        proxy.check(x_version().as_deref() == Some("2"), "the working version was dropped for a broken one");
        thread::sleep(Duration::from_millis(200));
    }
    proxy.check(x_version().as_deref() == Some("2"), "the working version was dropped for a broken one");
}

#[test]
fn set_gives_a_script_option_its_value_and_unknown_names_exit_2() {
    let origin = Origin::start();
    let dir = tempfile::tempdir().unwrap();
    let source = r#"
local greeting = strata.option("greeting", "hello", "the x-greeting value")
local times = strata.option("times", 1, "how often it is repeated")
function responseheaders(flow)
    flow.response.headers["x-greeting"] = string.rep(greeting, times, "-")
end
"#;
    let path = write_script(dir.path(), "options.lua", source);
    let url = origin.url("/hello");

    let proxy = Strata::start(&["-s", &path]);
    let got = get(&proxy, &[&url]);
    proxy.check(
        got.header("x-greeting").as_deref() == Some("hello"),
        format!("defaults: {:?}", got.header("x-greeting")),
    );

    let proxy = Strata::start(&["-s", &path, "--set", "greeting=bonjour", "--set", "times=2"]);
    let got = get(&proxy, &[&url]);
    proxy.check(
        got.header("x-greeting").as_deref() == Some("bonjour-bonjour"),
        format!("--set greeting=bonjour times=2: {:?}", got.header("x-greeting")),
    );

    let line = refusal(&run_strata_to_exit(&["-p", "0", "-s", &path, "--set", "unknown=1"], EXIT_TIMEOUT));
    assert!(line.contains("unknown"), "the refusal does not name the option: {line}");
    let line = refusal(&run_strata_to_exit(&["-p", "0", "-s", &path, "--set", "times=many"], EXIT_TIMEOUT));
    assert!(line.contains("times") && line.contains("many"), "the refusal does not name option and value: {line}");
}

#[test]
fn http2_flows_fire_the_same_events_as_http1() {
    let ca = TestCa::new("strata scripts test CA");
    let origin = HttpsOrigin::start(&ca);
    let dir = tempfile::tempdir().unwrap();
    // Each event appends its name to the flow's metadata; `response` reports the list to the client.
    let source = r#"
local function note(flow, event)
    flow.metadata.events = (flow.metadata.events and flow.metadata.events .. "," or "") .. event
end
function requestheaders(flow) note(flow, "requestheaders") end
function request(flow) note(flow, "request") end
function responseheaders(flow) note(flow, "responseheaders") end
function response(flow)
    note(flow, "response")
    flow.response.headers["x-events"] = flow.metadata.events
    flow.response.headers["x-client-version"] = flow.request.http_version
end
"#;
    let path = write_script(dir.path(), "events.lua", source);
    let proxy = Strata::start(&["--upstream-ca", &ca.pem_path().display().to_string(), "-s", &path]);
    let cacert = proxy.ca_cert_path().display().to_string();
    let url = origin.url("/hello");
    for (flag, status_line, version) in
        [("--http2", "HTTP/2 200", "HTTP/2.0"), ("--http1.1", "HTTP/1.1 200", "HTTP/1.1")]
    {
        let got = get(&proxy, &["--cacert", &cacert, flag, &url]);
        proxy.check(
            got.head.starts_with(status_line)
                && got.body == TEST_ORIGIN_HELLO
                && got.header("x-events").as_deref() == Some("requestheaders,request,responseheaders,response")
                && got.header("x-client-version").as_deref() == Some(version),
            format!(
                "{flag}: expected {status_line} with every event and {version}, got:\n{}\n\n{}",
                got.head, got.body
            ),
        );
    }
}

#[test]
fn websocket_start_messages_and_end_fire_in_order() {
    let echo = WsEcho::start(None);
    let dir = tempfile::tempdir().unwrap();
    let source = r#"
function websocket_start(flow) strata.log.info("start " .. flow.request.path) end
function websocket_message(flow, message)
    if message.type == "text" then
        strata.log.info("message from " .. (message.from_client and "client: " or "server: ") .. message.content)
    end
end
function websocket_end(flow) strata.log.info("end " .. flow.request.path) end
"#;
    let path = write_script(dir.path(), "lifecycle.lua", source);
    let proxy = Strata::start(&["-s", &path]);
    let target = format!("127.0.0.1:{}", echo.port);
    let (mut ws, _) =
        tungstenite::client::client(format!("ws://{target}/chat"), common::connect_tunnel(proxy.port, &target))
            .unwrap_or_else(|e| proxy.fail(&format!("WebSocket handshake through the tunnel: {e}")));
    ws.send(Message::text("ping me")).expect("send text");
    let echoed = ws.read().expect("the echo");
    proxy.check(echoed == Message::text("ping me"), format!("the echo arrived as {echoed:?}"));
    ws.close(None).expect("send close");
    while ws.read().is_ok() {}

    proxy.wait_for_stderr_line(|l| l.starts_with("lifecycle.lua: end "), SOON);
    let events: Vec<String> =
        proxy.stderr_text().lines().filter_map(|l| l.strip_prefix("lifecycle.lua: ")).map(str::to_string).collect();
    let expected = ["start /chat", "message from client: ping me", "message from server: ping me", "end /chat"];
    proxy.check(events == expected, format!("expected the events {expected:#?}, got {events:#?}"));
}

#[test]
fn error_event_reports_a_failed_flow() {
    let dir = tempfile::tempdir().unwrap();
    let source = "function error(flow)\n    strata.log.info(\"failed: \" .. flow.error)\nend\n";
    let path = write_script(dir.path(), "failed.lua", source);
    let proxy = Strata::start(&["-s", &path]);
    let port = common::unused_port();
    let got = get(&proxy, &[&format!("http://127.0.0.1:{port}/gone")]);
    proxy.check(got.status() == 502, format!("expected 502 from a dead server, got {}", got.status()));
    let line = proxy.wait_for_stderr_line(|l| l.starts_with("failed.lua: failed: "), SOON);
    proxy.check(line.contains(&format!("127.0.0.1:{port}")), format!("flow.error names no server: {line}"));
}

/// Lua's own `error` is a global function, so a script that defines no `error` event still looked as if
/// it did: every failed flow called `error(flow)`, which raised the flow object, logged as
/// "error in error on URL: FlowObject: 0x..." (a new message each time, so never deduplicated).
#[test]
fn failed_flow_without_an_error_hook_logs_no_script_error() {
    let origin = Origin::start();
    let dir = tempfile::tempdir().unwrap();
    let source = "function responseheaders(flow)\n    strata.log.info(\"marker \" .. flow.request.path)\nend\n";
    let path = write_script(dir.path(), "quiet.lua", source);
    let proxy = Strata::start(&["-s", &path]);
    let port = common::unused_port();
    for _ in 0..2 {
        let got = get(&proxy, &[&format!("http://127.0.0.1:{port}/gone")]);
        proxy.check(got.status() == 502, format!("expected 502 from a dead server, got {}", got.status()));
    }
    // The marker is written after both failed flows, on the same stream, so any line they caused is read
    // before it.
    get(&proxy, &[&origin.url("/hello")]);
    proxy.wait_for_stderr_line(|l| l.contains("marker /hello"), SOON);
    let errors = stderr_lines_with(&proxy, "quiet.lua: error");
    proxy.check(errors.is_empty(), format!("a script without an `error` event logged {errors:#?}"));
}

/// `curl -i --max-time 5` through `proxy` to `url`, whatever the outcome, with how long it took.
fn get_within_5s(proxy: &Strata, url: &str) -> (Finished, Duration) {
    let started = Instant::now();
    let done = curl_unchecked(&["-i", "--max-time", "5", "-x", &proxy.proxy_url(), url]);
    (done, started.elapsed())
}

/// The budget's hook is set on the main Lua thread only (`Lua::set_hook`); a coroutine runs without
/// it, so an endless loop inside one holds the script's lock forever and every later flow hangs.
#[test]
fn endless_loop_in_a_coroutine_is_stopped_by_the_budget() {
    let origin = Origin::start();
    let dir = tempfile::tempdir().unwrap();
    let source = "function request(flow)\n    coroutine.wrap(function() while true do end end)()\nend\n";
    let path = write_script(dir.path(), "spin_co.lua", source);
    let proxy = Strata::start(&["-s", &path]);
    let (done, took) = get_within_5s(&proxy, &origin.url("/hello"));
    proxy.check(
        Got::parse(&done.stdout).body == "hello, world\n",
        format!(
            "expected the origin's answer within 5 s, got exit code {:?} after {took:?}: {}",
            done.status.code(),
            done.stderr
        ),
    );
}
