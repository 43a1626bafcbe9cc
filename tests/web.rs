//! The web UI's server side (`strata --web`) through the real binary: its token and Host checks, the flow
//! list with filters and paging from the session, one flow and its body, and live updates over its
//! WebSocket, with traffic sent through the proxy by curl. The page itself is tested in a browser by
//! tests/web_ui (Playwright).

mod common;

use std::path::Path;
use std::time::Duration;

use common::{curl, Origin, Strata};
use regex::Regex;
use serde_json::Value;

const SOON: Duration = Duration::from_secs(10);

/// A running `strata --web` and where its UI is.
struct WebUi {
    proxy: Strata,
    base: String,
    token: String,
}

fn start(extra: &[&str]) -> WebUi {
    let mut args = vec!["--web", "--web-port", "0"];
    args.extend_from_slice(extra);
    let proxy = Strata::start(&args);
    let line = proxy.wait_for_stderr_line(|l| l.starts_with("web UI at "), SOON);
    let caps = Regex::new(r"^web UI at (http://127\.0\.0\.1:\d+)/\?token=([0-9a-zA-Z_.~-]{16,})$")
        .unwrap()
        .captures(line.trim())
        .unwrap_or_else(|| panic!("unexpected line: {line:?}"));
    WebUi { base: caps[1].to_string(), token: caps[2].to_string(), proxy }
}

impl WebUi {
    /// GET `path` with the token as a bearer; the status and the body.
    fn get(&self, path: &str) -> (u16, String) {
        let request =
            ureq::get(&format!("{}{path}", self.base)).set("Authorization", &format!("Bearer {}", self.token));
        answer(request.call())
    }

    fn json(&self, path: &str) -> Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
    }

    /// Waits until the list holds `n` flows (they are written by the store's writer thread).
    fn wait_for_flows(&self, n: u64) -> Value {
        let list = eventually(|| self.json("/api/flows"), |list| list["total"] == n);
        assert_eq!(list["total"], n, "flows in the list: {list:#}");
        list
    }

    /// The list once the flow at `index` has a response body of `size` bytes: the store writes a flow at
    /// its request head, its response head and its end.
    fn wait_for_size(&self, flows: u64, index: usize, size: u64) -> Value {
        eventually(|| self.wait_for_flows(flows), |list| list["flows"][index]["size"] == size)
    }
}

/// `probe` again and again (bounded by SOON) until `done` says yes; the last value either way.
fn eventually<T>(mut probe: impl FnMut() -> T, done: impl Fn(&T) -> bool) -> T {
    let deadline = std::time::Instant::now() + SOON;
    loop {
        let value = probe();
        if done(&value) || std::time::Instant::now() > deadline {
            return value;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn answer(result: Result<ureq::Response, ureq::Error>) -> (u16, String) {
    match result {
        Ok(response) => (response.status(), response.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(status, response)) => (status, response.into_string().unwrap_or_default()),
        Err(e) => panic!("request failed: {e}"),
    }
}

fn fetch(ui: &WebUi, origin: &Origin, path: &str) {
    let got = curl(&ui.proxy, &["-s", "-o", "/dev/null", "-w", "%{http_code}", &origin.url(path)]);
    assert!(got.status.success(), "curl: {}", got.stderr);
}

#[test]
fn without_the_token_or_with_a_foreign_host_nothing_is_answered() {
    let origin = Origin::start();
    let ui = start(&[]);
    fetch(&ui, &origin, "/size/10");
    for path in ["/", "/api/flows", "/app.js"] {
        let (status, body) = answer(ureq::get(&format!("{}{path}", ui.base)).call());
        assert_eq!(status, 401, "GET {path} without the token: {body}");
        assert!(!body.contains("/size/10"), "{body}");
        let (status, _) = answer(ureq::get(&format!("{}{path}?token=not-the-token-at-all", ui.base)).call());
        assert_eq!(status, 401, "GET {path} with a wrong token");
    }
    // A name that resolves to the UI (DNS rebinding) is refused even with the token.
    let request = ureq::get(&format!("{}/api/flows", ui.base))
        .set("Host", "attacker.example:80")
        .set("Authorization", &format!("Bearer {}", ui.token));
    assert_eq!(answer(request.call()).0, 403);
    // The token in the URL sets a cookie that is HttpOnly and SameSite=Strict, which then suffices.
    let response = ureq::get(&format!("{}/?token={}", ui.base, ui.token)).call().unwrap();
    let cookie = response.header("set-cookie").unwrap_or_default().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let pair = cookie.split(';').next().unwrap();
    let (status, body) = answer(ureq::get(&format!("{}/api/flows", ui.base)).set("Cookie", pair).call());
    assert_eq!(status, 200, "{body}");
}

#[test]
fn the_list_pages_and_filters_flows_from_the_session() {
    let origin = Origin::start();
    let ui = start(&[]);
    for n in 0..30 {
        fetch(&ui, &origin, &format!("/size/{}", 100 + n));
    }
    fetch(&ui, &origin, "/status/404");
    let list = ui.wait_for_flows(31);
    let urls: Vec<&str> = list["flows"].as_array().unwrap().iter().map(|f| f["url"].as_str().unwrap()).collect();
    assert_eq!(urls[0], origin.url("/size/100"), "in the order they started");
    let page = ui.json("/api/flows?skip=10&limit=5");
    let paged: Vec<&str> = page["flows"].as_array().unwrap().iter().map(|f| f["url"].as_str().unwrap()).collect();
    assert_eq!(paged, urls[10..15].to_vec());
    let filtered = ui.json("/api/flows?filter=~c%20404");
    assert_eq!(filtered["total"], 1, "{filtered:#}");
    assert_eq!(filtered["flows"][0]["url"], origin.url("/status/404"));
    // A bad filter says what is wrong and where.
    let (status, body) = ui.get("/api/flows?filter=~c%20abc");
    assert_eq!(status, 400, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["position"], 3, "{error:#}");
    assert!(error["error"].as_str().unwrap().contains("number"), "{error:#}");
}

#[test]
fn one_flow_shows_its_headers_and_its_body_as_stored() {
    let origin = Origin::start();
    let ui = start(&[]);
    fetch(&ui, &origin, "/size/3000");
    let list = ui.wait_for_flows(1);
    let id = list["flows"][0]["id"].as_str().unwrap().to_string();
    // The store writes a flow at its request head, its response head and its end: wait for the end.
    let flow = eventually(|| ui.json(&format!("/api/flows/{id}")), |flow| flow["response"]["body_len"] == 3000);
    assert_eq!(flow["response"]["status"], 200, "{flow:#}");
    assert_eq!(flow["response"]["body_len"], 3000);
    let headers = flow["request"]["headers"].as_array().unwrap();
    assert!(headers.iter().any(|h| h[0].as_str().unwrap().eq_ignore_ascii_case("user-agent")), "{flow:#}");
    let (status, body) = ui.get(&format!("/api/flows/{id}/response/content"));
    assert_eq!(status, 200);
    assert_eq!(body.len(), 3000, "the stored body");
    let direct = ureq::get(&origin.url("/size/3000")).call().unwrap().into_string().unwrap();
    assert_eq!(body, direct, "the stored body is what the origin sent");
    assert_eq!(ui.get("/api/flows/no-such-flow").0, 404);
}

#[test]
fn live_updates_announce_flows_that_match_the_pages_filter() {
    let origin = Origin::start();
    let ui = start(&[]);
    let url = format!("{}/api/updates?filter=~u%20chosen&token={}", ui.base.replace("http://", "ws://"), ui.token);
    let (mut socket, _) = tungstenite::connect(url).expect("the updates WebSocket");
    if let tungstenite::stream::MaybeTlsStream::Plain(stream) = socket.get_ref() {
        stream.set_read_timeout(Some(SOON)).unwrap();
    }
    fetch(&ui, &origin, "/size/1?other");
    fetch(&ui, &origin, "/size/2?chosen");
    // Every row the page gets is the chosen flow's (one message may carry several of its events, or
    // they may come one by one), and its last row has its response.
    let mut last = Value::Null;
    while last["status"] != 200 {
        let message = socket.read().expect("a live event");
        let event: Value = serde_json::from_str(message.to_text().unwrap()).unwrap();
        for row in event["flows"].as_array().unwrap_or_else(|| panic!("not a list of rows: {event:#}")) {
            assert_eq!(row["url"], origin.url("/size/2?chosen"), "{event:#}");
            last = row.clone();
        }
    }
}

#[test]
fn without_w_the_session_lives_in_the_confdir_and_is_removed_at_exit() {
    let origin = Origin::start();
    let mut ui = start(&[]);
    fetch(&ui, &origin, "/size/5");
    ui.wait_for_flows(1);
    let confdir = ui.proxy.confdir();
    let sessions = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("web-session-"))
            .collect()
    };
    assert!(!sessions(&confdir).is_empty(), "no session in the confdir");
    ui.proxy.signal(libc::SIGTERM);
    assert!(ui.proxy.wait_for_exit(SOON).success());
    assert!(sessions(&confdir).is_empty(), "left behind: {:?}", sessions(&confdir));
}

#[test]
fn a_short_web_token_exits_2_naming_the_flag() {
    let done = common::run_strata_to_exit(&["-p", "0", "--web", "--web-token", "short"], SOON);
    assert_eq!(done.status.code(), Some(2), "{}", done.stderr);
    assert!(done.stderr.contains("--web-token"), "{}", done.stderr);
}

#[test]
fn replay_sends_the_request_again_as_a_new_flow_that_reaches_the_origin() {
    let origin = Origin::start();
    let ui = start(&[]);
    fetch(&ui, &origin, "/size/7");
    let list = ui.wait_for_flows(1);
    let id = list["flows"][0]["id"].as_str().unwrap().to_string();
    let request =
        ureq::post(&format!("{}/api/flows/{id}/replay", ui.base)).set("Authorization", &format!("Bearer {}", ui.token));
    let (status, body) = answer(request.call());
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("200"), "the replay's answer: {body}");
    // The new flow's answer is the origin's (7 bytes; strata answers nothing itself here).
    let list = ui.wait_for_size(2, 1, 7);
    let replayed = &list["flows"][1];
    assert_eq!(replayed["url"], origin.url("/size/7"), "{list:#}");
    assert_eq!((replayed["status"].as_u64(), replayed["size"].as_u64()), (Some(200), Some(7)), "{list:#}");
    assert_ne!(list["flows"][1]["id"], list["flows"][0]["id"]);
}

#[test]
fn the_filtered_list_exports_as_a_har_that_strata_reads_back() {
    let origin = Origin::start();
    let ui = start(&[]);
    fetch(&ui, &origin, "/size/11");
    fetch(&ui, &origin, "/status/404");
    ui.wait_for_flows(2);
    let (status, har) = ui.get("/api/export.har?filter=~c%20404");
    assert_eq!(status, 200, "{har}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("export.har");
    std::fs::write(&path, &har).unwrap();
    let done = common::run_strata_to_exit(&["-n", "-r", &path.display().to_string()], SOON);
    assert!(done.status.success(), "{}", done.stderr);
    let lines: Vec<&str> = done.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{}", done.stdout);
    assert!(lines[0].contains(&format!("GET {} -> 404", origin.url("/status/404"))), "{}", lines[0]);
}

impl WebUi {
    /// POST `path` with a JSON body; the status and the answer.
    fn post(&self, path: &str, body: &str) -> (u16, String) {
        let request = ureq::post(&format!("{}{path}", self.base))
            .set("Authorization", &format!("Bearer {}", self.token))
            .set("Content-Type", "application/json");
        answer(if body.is_empty() { request.call() } else { request.send_string(body) })
    }

    /// Waits until a flow is paused in `phase`; its id.
    fn wait_for_paused(&self, phase: &str) -> String {
        let paused_in =
            |state: &Value| state["paused"].as_array().unwrap().iter().find(|p| p["intercepted"] == phase).cloned();
        let state = eventually(|| self.json("/api/intercept"), |state| paused_in(state).is_some());
        let paused = paused_in(&state).unwrap_or_else(|| panic!("no flow paused at its {phase}: {state:#}"));
        paused["id"].as_str().unwrap().to_string()
    }
}

/// curl through the proxy in a thread of its own (it waits while its flow is paused): its stdout.
fn fetch_in_background(ui: &WebUi, url: &str) -> std::thread::JoinHandle<common::Finished> {
    let (proxy, url) = (ui.proxy.proxy_url(), url.to_string());
    std::thread::spawn(move || {
        common::curl_unchecked(&["-s", "-S", "--max-time", "20", "-x", &proxy, "-w", " %{http_code}", &url])
    })
}

#[test]
fn intercepted_flows_wait_and_go_on_with_the_users_edits() {
    let origin = Origin::start();
    let ui = start(&[]);
    let (status, body) = ui.put_intercept("~u hello");
    assert_eq!(status, 200, "{body}");
    let curl = fetch_in_background(&ui, &origin.url("/hello"));
    // Stopped at the request, the flow has not reached the origin.
    let id = ui.wait_for_paused("request");
    assert!(!curl.is_finished(), "curl got an answer while its request was paused");
    assert_eq!(ui.post(&format!("/api/flows/{id}/resume"), "").0, 200);
    // Stopped again at the response: resumed with another body and status.
    let id = ui.wait_for_paused("response");
    let edits = r#"{"status": 201, "body": {"text": "edited in the UI"}}"#;
    assert_eq!(ui.post(&format!("/api/flows/{id}/resume"), edits).0, 200);
    let got = curl.join().unwrap();
    assert_eq!(got.stdout, "edited in the UI 201", "curl: {}", got.stderr);
    assert_eq!(ui.post(&format!("/api/flows/{id}/resume"), "").0, 404, "resumed twice");
    // The session keeps the flow as the client got it.
    let list = ui.wait_for_size(1, 0, 16);
    assert_eq!(list["flows"][0]["status"], 201, "{list:#}");
}

#[test]
fn a_killed_intercepted_flow_closes_the_clients_connection() {
    let origin = Origin::start();
    let ui = start(&[]);
    assert_eq!(ui.put_intercept("~u hello").0, 200);
    assert_eq!(ui.put_intercept("~c abc").0, 400, "a bad intercept filter is refused");
    let curl = fetch_in_background(&ui, &origin.url("/hello"));
    let id = ui.wait_for_paused("request");
    assert_eq!(ui.post(&format!("/api/flows/{id}/kill"), "").0, 200);
    let got = curl.join().unwrap();
    assert!(!got.status.success() && got.stdout.ends_with(" 000"), "curl: {} {}", got.stdout, got.stderr);
    assert_eq!(origin.accepts(), 0, "a killed request reached the origin");
}

impl WebUi {
    fn put_intercept(&self, filter: &str) -> (u16, String) {
        let request = ureq::put(&format!("{}/api/intercept?filter={}", self.base, filter.replace(' ', "%20")))
            .set("Authorization", &format!("Bearer {}", self.token));
        answer(request.call())
    }
}

#[test]
fn a_protobuf_body_is_shown_decoded_without_a_schema() {
    let origin = Origin::start();
    let ui = start(&[]);
    // {1: 150, 2: "testing", 3: {1: 1}}
    let message: &[u8] =
        &[0x08, 0x96, 0x01, 0x12, 0x07, b't', b'e', b's', b't', b'i', b'n', b'g', 0x1a, 0x02, 0x08, 0x01];
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("message.bin");
    std::fs::write(&file, message).unwrap();
    let data = format!("@{}", file.display());
    let got = curl(
        &ui.proxy,
        &[
            "-s",
            "-o",
            "/dev/null",
            "-H",
            "content-type: application/x-protobuf",
            "--data-binary",
            &data,
            &origin.url("/size/1"),
        ],
    );
    assert!(got.status.success(), "{}", got.stderr);
    let list = ui.wait_for_flows(1);
    let id = list["flows"][0]["id"].as_str().unwrap().to_string();
    let shown = eventually(|| ui.json(&format!("/api/flows/{id}/request/view")), |shown| shown["view"] == "protobuf");
    assert_eq!(shown["view"], "protobuf", "{shown:#}");
    assert_eq!(shown["fields"][1], serde_json::json!({ "field": 2, "type": "string", "value": "testing" }));
    assert_eq!(shown["fields"][2]["value"][0]["value"], 1, "{shown:#}");
}

impl WebUi {
    fn delete(&self, path: &str) -> (u16, String) {
        let request =
            ureq::delete(&format!("{}{path}", self.base)).set("Authorization", &format!("Bearer {}", self.token));
        answer(request.call())
    }
}

#[test]
fn an_edited_request_is_sent_as_a_new_flow_and_flows_can_be_deleted() {
    let origin = Origin::start();
    let ui = start(&[]);
    fetch(&ui, &origin, "/size/3");
    let list = ui.wait_for_flows(1);
    let id = list["flows"][0]["id"].as_str().unwrap().to_string();
    let edits = format!(r#"{{"url": "{}", "headers": [["x-edited", "yes"]]}}"#, origin.url("/size/9"));
    let (status, body) = ui.post(&format!("/api/flows/{id}/send"), &edits);
    assert_eq!(status, 200, "{body}");
    let list = ui.wait_for_size(2, 1, 9);
    assert_eq!(list["flows"][1]["url"], origin.url("/size/9"), "{list:#}");
    assert_eq!(list["flows"][1]["size"], 9, "the origin answered the edited request: {list:#}");
    let sent = list["flows"][1]["id"].as_str().unwrap().to_string();
    let flow = ui.json(&format!("/api/flows/{sent}"));
    let headers = flow["request"]["headers"].as_array().unwrap();
    assert!(headers.iter().any(|h| h[0] == "x-edited"), "{flow:#}");

    assert_eq!(ui.delete(&format!("/api/flows/{id}")).0, 200);
    assert_eq!(ui.json("/api/flows")["total"], 1);
    assert_eq!(ui.get(&format!("/api/flows/{id}")).0, 404);
    assert_eq!(ui.delete("/api/flows").0, 200);
    assert_eq!(ui.json("/api/flows")["total"], 0);
}

#[test]
fn the_list_sorts_by_a_column_also_under_a_body_search() {
    let origin = Origin::start();
    let ui = start(&[]);
    for size in [30, 10, 20] {
        fetch(&ui, &origin, &format!("/size/{size}"));
    }
    ui.wait_for_size(3, 2, 20);
    let sizes = |path: &str| -> Vec<u64> {
        ui.json(path)["flows"].as_array().unwrap().iter().map(|f| f["size"].as_u64().unwrap()).collect()
    };
    assert_eq!(sizes("/api/flows"), [30, 10, 20], "in the order they started");
    assert_eq!(sizes("/api/flows?sort=size"), [10, 20, 30]);
    assert_eq!(sizes("/api/flows?sort=-size"), [30, 20, 10]);
    assert_eq!(sizes("/api/flows?sort=-size&skip=1&limit=1"), [20]);
    // A body search is decided flow by flow; the order holds all the same.
    assert_eq!(sizes("/api/flows?filter=~bs%20.&sort=-size"), [30, 20, 10]);
    assert_eq!(ui.get("/api/flows?sort=colour").0, 400);
}

#[test]
fn an_intercepted_https_flow_shows_the_servers_certificate_and_its_tls_time() {
    let ca = common::TestCa::new("strata web test origin CA");
    let origin = common::HttpsOrigin::start(&ca);
    let ui = start(&["--upstream-ca", ca.pem_path().to_str().unwrap()]);
    let cacert = ui.proxy.ca_cert_path();
    let got = curl(&ui.proxy, &["-s", "--cacert", cacert.to_str().unwrap(), &origin.url("/hello")]);
    assert_eq!(got.stdout, common::TEST_ORIGIN_HELLO, "curl: {}", got.stderr);
    let id = ui.wait_for_flows(1)["flows"][0]["id"].as_str().unwrap().to_string();
    let flow = eventually(|| ui.json(&format!("/api/flows/{id}")), |flow| flow["response"]["status"] == 200);
    let tls = &flow["server_conn"]["tls"];
    assert_eq!(tls["sni"], "localhost", "{flow:#}");
    assert!(tls["version"].as_str().is_some_and(|v| v.starts_with("TLS")), "{tls:#}");
    // The origin's own certificate, not strata's: its issuer is the test CA.
    let cert = &tls["certificate"];
    assert!(cert["issuer"].as_str().unwrap().contains("strata web test origin CA"), "{cert:#}");
    assert_eq!(cert["alt_names"], serde_json::json!(["DNS:localhost", "IP:127.0.0.1"]), "{cert:#}");
    let pem = cert["pem"].as_str().unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{cert:#}");
    // The PEM is the certificate the origin presented: openssl reads it and agrees on the fingerprint.
    let dir = tempfile::tempdir().unwrap();
    let pem_file = dir.path().join("server.pem");
    std::fs::write(&pem_file, pem).unwrap();
    let openssl = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&pem_file)
        .output()
        .expect("run openssl");
    let fingerprint = String::from_utf8_lossy(&openssl.stdout).replace(':', "");
    assert!(fingerprint.trim().ends_with(cert["sha256"].as_str().unwrap()), "openssl: {fingerprint} {cert:#}");
    // Connecting took a TLS handshake, and it is part of the connect time (as in HAR).
    let timings = &flow["timings"];
    let (connect, ssl) = (timings["connect_ms"].as_f64().unwrap(), timings["ssl_ms"].as_f64().unwrap());
    assert!(ssl > 0.0 && ssl <= connect, "{timings:#}");
}

#[test]
fn a_tcp_relay_shows_its_chunks_with_direction_and_time() {
    let (echo_port, _) = common::start_line_echo_server();
    let ui = start(&[]);
    let mut tunnel = common::connect_tunnel(ui.proxy.port, &format!("127.0.0.1:{echo_port}"));
    std::io::Write::write_all(&mut tunnel, b"hello over tcp\n").unwrap();
    let reply = common::read_until_close(&mut tunnel);
    assert_eq!(reply.text(), "echo: hello over tcp\n");
    drop(tunnel);
    let id = ui.wait_for_flows(1)["flows"][0]["id"].as_str().unwrap().to_string();
    let flow = eventually(|| ui.json(&format!("/api/flows/{id}")), |flow| flow["bytes_to_client"] == 21);
    assert_eq!(flow["type"], "tcp", "{flow:#}");
    let chunks = flow["messages"].as_array().unwrap();
    let joined = |from_client: bool| -> String {
        chunks.iter().filter(|c| c["from_client"] == from_client).map(|c| c["text"].as_str().unwrap()).collect()
    };
    assert_eq!(joined(true), "hello over tcp\n", "{flow:#}");
    assert_eq!(joined(false), "echo: hello over tcp\n", "{flow:#}");
    // The request went before the answer, and each chunk has its time.
    assert_eq!(chunks[0]["from_client"], true, "{flow:#}");
    let times: Vec<f64> = chunks.iter().map(|c| c["at"].as_f64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]) && times[0] > 1.6e12, "{times:?}");
}
