use std::net::SocketAddr;
use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::flow::{FlowId, Request, Response, Timings, WebSocketData};
use crate::http::message::Version;

/// 2023-11-14T22:13:20.123Z
const STARTED_MS: u64 = 1_700_000_000_123;

fn headers(pairs: &[(&str, &[u8])]) -> Headers {
    Headers(pairs.iter().map(|(n, v)| (n.to_string(), v.to_vec())).collect())
}

/// A POST with a text body answered by a binary body.
fn flow() -> HttpFlow {
    let request_body = b"name=strata&kind=proxy".to_vec();
    let response_body: Vec<u8> = vec![0x89, b'P', b'N', b'G', 0x00, 0xff, 0xfe, 0x80, 0x0d, 0x0a];
    HttpFlow {
        id: FlowId::next(),
        at_proxy: true,
        metadata: Vec::new(),
        client_tls: None,
        server_tls: None,
        client_addr: "127.0.0.1:50000".parse().unwrap(),
        server_addr: Some("127.0.0.1:8080".parse().unwrap()),
        request: Request {
            method: "POST".into(),
            scheme: Scheme::Http,
            host: "127.0.0.1".into(),
            port: 8080,
            path: "/submit?x=1&y=two".into(),
            version: Version::Http11,
            headers: headers(&[
                ("Host", b"127.0.0.1:8080"),
                ("Content-Type", b"application/x-www-form-urlencoded"),
                ("Content-Length", b"22"),
                ("Cookie", b"sid=42; theme=dark"),
            ]),
            body_len: request_body.len() as u64,
            body: Some(request_body),
            stream: true,
            trailers: None,
        },
        response: Some(Response {
            status: 201,
            reason: "Created".into(),
            version: Version::Http11,
            headers: headers(&[
                ("Content-Type", b"image/png"),
                ("Content-Length", b"10"),
                ("Location", b"/items/7"),
                ("Set-Cookie", b"sid=43; Path=/; HttpOnly"),
            ]),
            body_len: response_body.len() as u64,
            body: Some(response_body),
            stream: true,
            trailers: None,
        }),
        error: None,
        websocket: None,
        started_at: UNIX_EPOCH + Duration::from_millis(STARTED_MS),
        timings: Timings { connect_ms: 1.5, ssl_ms: 0.75, send_ms: 0.5, wait_ms: 10.0, receive_ms: 2.0 },
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/har").join(name)
}

fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| std::str::from_utf8(v).unwrap())
}

/// Writes `flows` through a recorder and reads the file back.
fn round_trip(flows: &[HttpFlow]) -> Vec<RecordedExchange> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flows.har");
    let recorder = HarRecorder::create(&path).unwrap();
    for flow in flows {
        recorder.record(flow);
    }
    read_har(&path).unwrap()
}

/// Writes `document` to a temporary file and reads it as HAR, returning the error's text.
fn read_error(document: &str) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.har");
    std::fs::write(&path, document).unwrap();
    let error = read_har(&path).expect_err("document must be refused").to_string();
    (path.display().to_string(), error)
}

/// A one-entry document whose entry is `entry` (JSON text).
fn doc_with(entry: &str) -> String {
    format!(r#"{{"log":{{"version":"1.2","creator":{{"name":"test","version":"1"}},"entries":[{entry}]}}}}"#)
}

const GOOD_ENTRY: &str = r#"{"request":{"method":"GET","url":"http://h/"},"response":{"status":200}}"#;

// ---- writing ------------------------------------------------------------------------------------

#[test]
fn entry_has_har_fields_from_the_flow() {
    let e = entry(&flow());
    assert_eq!(e["startedDateTime"], "2023-11-14T22:13:20.123Z");
    assert_eq!(e["time"], 14.0);
    assert_eq!(e["serverIPAddress"], "127.0.0.1");
    assert_eq!(e["cache"], json!({}));
    assert_eq!(
        e["timings"],
        json!({"blocked": -1, "dns": -1, "connect": 1.5, "ssl": 0.75, "send": 0.5, "wait": 10.0, "receive": 2.0})
    );
    let request = &e["request"];
    assert_eq!(request["method"], "POST");
    assert_eq!(request["url"], "http://127.0.0.1:8080/submit?x=1&y=two");
    assert_eq!(request["httpVersion"], "HTTP/1.1");
    assert_eq!(request["headers"][1], json!({"name": "Content-Type", "value": "application/x-www-form-urlencoded"}));
    assert_eq!(request["queryString"], json!([{"name": "x", "value": "1"}, {"name": "y", "value": "two"}]));
    assert_eq!(request["cookies"], json!([{"name": "sid", "value": "42"}, {"name": "theme", "value": "dark"}]));
    assert_eq!(request["headersSize"], -1);
    assert_eq!(request["bodySize"], 22);
    assert_eq!(
        request["postData"],
        json!({"mimeType": "application/x-www-form-urlencoded", "text": "name=strata&kind=proxy"})
    );
    let response = &e["response"];
    assert_eq!(response["status"], 201);
    assert_eq!(response["statusText"], "Created");
    assert_eq!(response["redirectURL"], "/items/7");
    assert_eq!(response["bodySize"], 10);
    assert_eq!(response["headersSize"], -1);
    assert_eq!(response["cookies"][0]["name"], "sid");
    assert_eq!(response["cookies"][0]["httpOnly"], true);
    assert!(response.get("_error").is_none());
    assert!(e.get("_resourceType").is_none());
}

#[test]
fn binary_bodies_are_written_as_base64_and_read_back_as_bytes() {
    let mut flow = flow();
    let binary_request = vec![0u8, 1, 2, 0xc3, 0x28, 0xff];
    flow.request.body = Some(binary_request.clone());
    flow.request.body_len = binary_request.len() as u64;
    flow.request.headers.set("Content-Length", "6");
    let e = entry(&flow);
    assert_eq!(e["request"]["postData"]["encoding"], "base64");
    assert_eq!(e["request"]["postData"]["text"], "AAECwyj/");
    let content = &e["response"]["content"];
    assert_eq!(content["encoding"], "base64");
    assert_eq!(content["size"], 10);
    assert_eq!(content["mimeType"], "image/png");
    assert_eq!(
        BASE64.decode(content["text"].as_str().unwrap()).unwrap(),
        flow.response.as_ref().unwrap().body.clone().unwrap()
    );

    let read = round_trip(std::slice::from_ref(&flow));
    assert_eq!(read[0].request_body, binary_request);
    assert_eq!(read[0].response_body, flow.response.unwrap().body.unwrap());
}

#[test]
fn text_bodies_are_written_as_text_without_encoding() {
    let mut flow = flow();
    let response = flow.response.as_mut().unwrap();
    response.body = Some("grüße\n".as_bytes().to_vec());
    let content = &entry(&flow)["response"]["content"];
    assert_eq!(content["text"], "grüße\n");
    assert!(content.get("encoding").is_none());
}

#[test]
fn flow_round_trips_through_recorder_file_and_reader() {
    let flow = flow();
    let read = round_trip(std::slice::from_ref(&flow));
    let response = flow.response.unwrap();
    assert_eq!(
        read,
        vec![RecordedExchange {
            method: "POST".into(),
            scheme: Scheme::Http,
            host: "127.0.0.1".into(),
            port: 8080,
            path: "/submit?x=1&y=two".into(),
            request_headers: flow.request.headers,
            request_body: flow.request.body.unwrap(),
            status: 201,
            reason: "Created".into(),
            // strata's own files keep Content-Encoding: their bodies are wire bytes.
            response_headers: response.headers,
            response_body: response.body.unwrap(),
        }]
    );
}

#[test]
fn round_trip_keeps_https_ipv6_and_content_encoding_of_strata_files() {
    let mut flow = flow();
    flow.request.scheme = Scheme::Https;
    flow.request.host = "::1".into();
    flow.request.port = 8443;
    flow.request.path = "/".into();
    flow.server_addr = Some("[::1]:8443".parse().unwrap());
    flow.response.as_mut().unwrap().headers.append("Content-Encoding", "gzip");
    let e = entry(&flow);
    assert_eq!(e["request"]["url"], "https://[::1]:8443/");
    assert_eq!(e["serverIPAddress"], "::1");
    let read = round_trip(&[flow]);
    assert_eq!((read[0].scheme, read[0].host.as_str(), read[0].port), (Scheme::Https, "::1", 8443));
    assert_eq!(header(&read[0].response_headers, "content-encoding"), Some("gzip"));
}

#[test]
fn server_ip_is_written_without_port_and_ipv4_mapped_as_ipv4() {
    let mut flow = flow();
    flow.server_addr = Some("[::ffff:10.0.0.1]:80".parse::<SocketAddr>().unwrap());
    assert_eq!(entry(&flow)["serverIPAddress"], "10.0.0.1");
    flow.server_addr = Some("[2001:db8::1]:443".parse().unwrap());
    assert_eq!(entry(&flow)["serverIPAddress"], "2001:db8::1");
    flow.server_addr = None;
    assert!(entry(&flow).get("serverIPAddress").is_none());
}

#[test]
fn query_string_keeps_raw_pairs_and_drops_empty_ones() {
    assert_eq!(
        query_string("/p?a=1&b=&c&d=x%20y&&e=1=2"),
        vec![("a", "1"), ("b", ""), ("c", ""), ("d", "x%20y"), ("e", "1=2")]
    );
    assert!(query_string("/no-query").is_empty());
    assert!(query_string("/empty?").is_empty());
}

#[test]
fn cookie_header_is_split_into_pairs() {
    let pairs = parse_cookie_header(" a=1;b=two ; ; c=x=y; lonely");
    let expected = [("a", "1"), ("b", "two"), ("c", "x=y"), ("", "lonely")];
    assert_eq!(pairs, expected.map(|(n, v)| (n.to_string(), v.to_string())));
}

#[test]
fn set_cookie_gives_har_cookie_with_attributes() {
    let at = UNIX_EPOCH + Duration::from_millis(STARTED_MS);
    let cookie = set_cookie_json(
        "id=a3fWa; Expires=Wed, 21 Oct 2015 07:28:00 GMT; Secure; HttpOnly; Path=/docs; Domain=example.test; SameSite=Lax",
        at,
    );
    assert_eq!(
        cookie.unwrap(),
        json!({
            "name": "id", "value": "a3fWa", "path": "/docs", "domain": "example.test",
            "expires": "2015-10-21T07:28:00.000Z", "httpOnly": true, "secure": true, "sameSite": "Lax",
        })
    );
    // Max-Age wins over Expires and counts from when the response arrived.
    let cookie = set_cookie_json("a=b; max-age=60; Expires=Wed, 21 Oct 2015 07:28:00 GMT", at).unwrap();
    assert_eq!(cookie["expires"], "2023-11-14T22:14:20.123Z");
    let cookie = set_cookie_json("gone=; Max-Age=-5", at).unwrap();
    assert_eq!(cookie["expires"], "2023-11-14T22:13:20.123Z");
    let cookie = set_cookie_json("bad; Expires=soon", at).unwrap();
    assert_eq!(cookie, json!({"name": "", "value": "bad", "httpOnly": false, "secure": false}));
    assert!(set_cookie_json("  ; Path=/", at).is_none());
}

#[test]
fn cookie_dates_parse_the_forms_servers_send() {
    let expected = Some(784_111_777);
    assert_eq!(parse_cookie_date("Sun, 06 Nov 1994 08:49:37 GMT"), expected);
    assert_eq!(parse_cookie_date("Sunday, 06-Nov-94 08:49:37 GMT"), expected);
    assert_eq!(parse_cookie_date("Sun Nov  6 08:49:37 1994"), expected);
    assert_eq!(parse_cookie_date("Wed, 30 Feb 2022 10:00:00 GMT"), None);
    assert_eq!(parse_cookie_date("Wed, 01 Jan 2022 24:00:00 GMT"), None);
    assert_eq!(parse_cookie_date("soon"), None);
    assert_eq!(parse_cookie_date("Jäñ Jäñ 1 1:1:1 ü"), None);
}

#[test]
fn started_date_time_is_rfc3339_utc_with_milliseconds() {
    assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_millis(951_782_400_007)), "2000-02-29T00:00:00.007Z");
    assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_millis(253_402_300_799_999)), "9999-12-31T23:59:59.999Z");
    assert_eq!(rfc3339(UNIX_EPOCH - Duration::from_millis(1)), "1969-12-31T23:59:59.999Z");
    // Sub-millisecond parts are cut, not rounded up into the next second.
    assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_nanos(1_999_999_999)), "1970-01-01T00:00:01.999Z");
    for days in [-800_000, -1, 0, 59, 10_956, 2_932_896] {
        let (y, m, d) = civil_from_days(days);
        assert_eq!(days_from_civil(y, m, d), days);
    }
}

#[test]
fn failed_flow_gets_status_0_and_error_and_is_skipped_when_read() {
    let mut failed = flow();
    failed.response = None;
    failed.error = Some("cannot reach 127.0.0.1:9: connection refused".into());
    failed.timings = Timings { connect_ms: -1.0, ..Timings::default() };
    let e = entry(&failed);
    assert_eq!(e["response"]["status"], 0);
    assert_eq!(e["response"]["_error"], "cannot reach 127.0.0.1:9: connection refused");
    assert_eq!(e["response"]["bodySize"], -1);
    assert_eq!(e["timings"]["connect"], -1.0);
    assert_eq!(e["time"], 0.0);
    let read = round_trip(&[failed, flow()]);
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].status, 201);
}

#[test]
fn error_after_the_response_head_is_recorded_too() {
    let mut cut = flow();
    cut.error = Some("server closed the connection mid-body".into());
    let e = entry(&cut);
    assert_eq!(e["response"]["status"], 201);
    assert_eq!(e["response"]["_error"], "server closed the connection mid-body");
}

#[test]
fn bodies_not_kept_give_sizes_without_text() {
    let mut flow = flow();
    flow.request.body = None;
    flow.request.body_len = 1234;
    let response = flow.response.as_mut().unwrap();
    response.body = None;
    response.body_len = 2048;
    response.headers.append("Content-Encoding", "gzip");
    let e = entry(&flow);
    assert!(e["request"].get("postData").is_none());
    assert_eq!(e["request"]["bodySize"], 1234);
    assert_eq!(e["response"]["content"], json!({"size": 2048, "mimeType": "image/png"}));
    assert_eq!(e["response"]["bodySize"], 2048);
    // Read back, the body is empty and the framing and coding headers agree with it.
    let read = round_trip(&[flow]);
    assert!(read[0].response_body.is_empty());
    assert_eq!(header(&read[0].response_headers, "content-length"), Some("0"));
    assert_eq!(header(&read[0].response_headers, "content-encoding"), None);
}

#[test]
fn capped_body_says_it_was_truncated() {
    let mut flow = flow();
    flow.request.body_len = 100;
    let post_data = &entry(&flow)["request"]["postData"];
    assert_eq!(post_data["comment"], "body truncated to 22 of 100 bytes");
}

#[test]
fn websocket_flow_has_chrome_style_messages() {
    let mut flow = flow();
    let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
    let message =
        |from_client, kind, payload: &[u8]| WebSocketMessage { from_client, kind, payload: payload.to_vec(), at };
    flow.websocket = Some(WebSocketData::with_messages(vec![
        message(true, "text", b"hello"),
        message(false, "binary", &[0, 1, 2, 0xfe, 0xff]),
        message(true, "ping", b"p"),
        message(false, "pong", b"p"),
        message(true, "close", b"1000 bye"),
    ]));
    let e = entry(&flow);
    assert_eq!(e["_resourceType"], "websocket");
    let messages = e["_webSocketMessages"].as_array().unwrap();
    let summary: Vec<(&str, i64, &str)> = messages
        .iter()
        .map(|m| (m["type"].as_str().unwrap(), m["opcode"].as_i64().unwrap(), m["data"].as_str().unwrap()))
        .collect();
    assert_eq!(
        summary,
        [
            ("send", 1, "hello"),
            ("receive", 2, "AAEC/v8="),
            ("send", 9, "cA=="),
            ("receive", 10, "cA=="),
            ("send", 8, "1000 bye")
        ]
    );
    // Epoch seconds of when the message was read.
    let time = messages[0]["time"].as_f64().unwrap();
    assert!((time - 1_700_000_000.250).abs() < 1e-3, "{time}");
}

#[test]
fn non_utf8_header_values_are_written_lossily_not_dropped() {
    let mut flow = flow();
    flow.request.headers.append("X-Raw", vec![b'a', 0xff, b'b']);
    let e = entry(&flow);
    assert_eq!(e["request"]["headers"][4], json!({"name": "X-Raw", "value": "a\u{fffd}b"}));
}

// ---- recording ----------------------------------------------------------------------------------

#[test]
fn a_new_recorder_file_is_an_empty_valid_document() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.har");
    let recorder = HarRecorder::create(&path).unwrap();
    assert_eq!(recorder.path(), path);
    let document: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(document["log"]["version"], "1.2");
    assert_eq!(document["log"]["creator"], json!({"name": "strata", "version": env!("CARGO_PKG_VERSION")}));
    assert_eq!(document["log"]["entries"], json!([]));
    assert!(read_har(&path).unwrap().is_empty());
}

#[test]
fn records_from_many_threads_all_reach_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("threads.har");
    let recorder = HarRecorder::create(&path).unwrap();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..25 {
                    recorder.record(&flow());
                }
            });
        }
    });
    recorder.flush().unwrap();
    assert_eq!(read_har(&path).unwrap().len(), 100);
}

#[test]
fn create_error_names_the_file_and_an_existing_file_is_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir").join("x.har");
    let error = HarRecorder::create(&missing).err().expect("no directory");
    assert!(error.contains(&missing.display().to_string()), "{error}");
    let existing = dir.path().join("precious.har");
    std::fs::write(&existing, "an earlier recording").unwrap();
    assert!(HarRecorder::create(&existing).is_err());
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "an earlier recording");
}

#[test]
fn each_entry_is_in_the_file_as_soon_as_it_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("now.har");
    let recorder = HarRecorder::create(&path).unwrap();
    for n in 1..=3 {
        recorder.record(&flow());
        assert_eq!(read_har(&path).unwrap().len(), n);
    }
}

// ---- reading ------------------------------------------------------------------------------------

#[test]
fn mitmproxy_export_is_read() {
    let exchanges = read_har(&fixture("mitmproxy-export.har")).unwrap();
    // Five flows; the one to a closed port has status 0 and is skipped.
    assert_eq!(exchanges.len(), 4);
    let hello = &exchanges[0];
    assert_eq!((hello.method.as_str(), hello.scheme, hello.host.as_str()), ("GET", Scheme::Http, "127.0.0.1"));
    assert_eq!(hello.port, 37677);
    assert_eq!(hello.path, "/hello.txt?lang=en&empty=&flag");
    assert_eq!(header(&hello.request_headers, "cookie"), Some("theme=dark; sid=42"));
    assert_eq!((hello.status, hello.reason.as_str()), (200, "OK"));
    assert_eq!(hello.response_body, b"hello from the origin\n");

    let pixel = &exchanges[1];
    assert_eq!(pixel.response_body, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\x00\x01");

    let post = &exchanges[2];
    assert_eq!((post.method.as_str(), post.path.as_str()), ("POST", "/echo?x=1"));
    assert_eq!(post.request_body, br#"{"name":"strata","n":3}"#);
    assert_eq!((post.status, post.reason.as_str()), (201, "Created"));
    assert_eq!(header(&post.response_headers, "set-cookie"), Some("session=abc123; Path=/; HttpOnly; SameSite=Lax"));
    assert!(String::from_utf8_lossy(&post.response_body).contains("strata"));

    // mitmproxy stores the decoded body but keeps `Content-Encoding: gzip` and the wire length.
    let gz = &exchanges[3];
    assert_eq!(gz.response_body, "compressed text body\n".repeat(4).as_bytes());
    assert_eq!(header(&gz.response_headers, "content-encoding"), None);
    assert_eq!(header(&gz.response_headers, "content-length"), Some("84"));
}

#[test]
fn chrome_export_is_read() {
    let exchanges = read_har(&fixture("chrome-export.har")).unwrap();
    // Eight entries: a blocked request (status 0) and a chrome-extension:// URL are skipped.
    assert_eq!(exchanges.len(), 6);
    let page = &exchanges[0];
    assert_eq!(
        (page.scheme, page.host.as_str(), page.port, page.path.as_str()),
        (Scheme::Https, "app.example.test", 443, "/")
    );
    assert!(page.request_headers.0.iter().all(|(name, _)| !name.starts_with(':')), "pseudo-headers kept");
    assert_eq!(header(&page.request_headers, "cookie"), Some("theme=dark; consent=yes"));
    assert_eq!((page.status, page.reason.as_str()), (200, ""));
    assert_eq!(header(&page.response_headers, "content-encoding"), None);
    assert_eq!(header(&page.response_headers, "content-length"), Some(page.response_body.len().to_string().as_str()));
    assert!(page.response_body.starts_with(b"<!doctype html>"));

    let logo = &exchanges[1];
    assert_eq!(logo.response_body.len(), 70);
    assert!(logo.response_body.starts_with(b"\x89PNG\r\n\x1a\n"));

    let api = &exchanges[2];
    assert_eq!((api.method.as_str(), api.path.as_str()), ("POST", "/api/items?debug=1&v=2"));
    assert_eq!(api.request_body, br#"{"name":"widget","qty":2}"#);
    assert_eq!(api.status, 201);

    let form = &exchanges[3];
    assert_eq!(form.request_body, b"q=rust&page=2");
    assert_eq!((form.status, header(&form.response_headers, "location")), (303, Some("/results?q=rust")));

    let socket = &exchanges[4];
    assert_eq!((socket.scheme, socket.port, socket.path.as_str()), (Scheme::Https, 443, "/socket?room=7"));
    assert_eq!((socket.status, socket.reason.as_str()), (101, "Switching Protocols"));

    let v6 = &exchanges[5];
    assert_eq!((v6.scheme, v6.host.as_str(), v6.port, v6.path.as_str()), (Scheme::Http, "::1", 8080, "/v6/status"));
    assert_eq!(v6.response_body, b"ok\n");
}

#[test]
fn urls_are_split_into_scheme_host_port_and_target() {
    let ok = |url: &str| parse_url(url).unwrap().unwrap();
    let s = |x: &str| x.to_string();
    assert_eq!(ok("http://example.test"), (Scheme::Http, s("example.test"), 80, s("/")));
    assert_eq!(ok("HTTPS://Example.TEST:8443/a/b?c=d#frag"), (Scheme::Https, s("example.test"), 8443, s("/a/b?c=d")));
    assert_eq!(ok("http://h?q=1"), (Scheme::Http, s("h"), 80, s("/?q=1")));
    assert_eq!(ok("http://user:pw@h:81/"), (Scheme::Http, s("h"), 81, s("/")));
    assert_eq!(ok("http://h:/x"), (Scheme::Http, s("h"), 80, s("/x")));
    assert_eq!(ok("https://[2001:DB8::1]/"), (Scheme::Https, s("2001:db8::1"), 443, s("/")));
    assert_eq!(ok("http://[::1]:8080"), (Scheme::Http, s("::1"), 8080, s("/")));
    assert_eq!(ok("ws://h/s"), (Scheme::Http, s("h"), 80, s("/s")));
    assert_eq!(ok("wss://h/s"), (Scheme::Https, s("h"), 443, s("/s")));
    for skipped in ["data:text/plain,hi", "about:blank", "blob:https://h/1", "chrome-extension://id/x.js", "ftp://h/"] {
        assert_eq!(parse_url(skipped), Ok(None), "{skipped}");
    }
    for bad in [
        "no-scheme",
        "http://",
        "http:///path",
        "http://:80/",
        "http://h:99999/",
        "http://h:0/",
        "http://h:x/",
        "http://[::1/",
        "http://[zz]/",
        "http://[::1]x/",
        "http://h h/",
        "http://h/a b",
        "http://h/a\r\nX: y",
    ] {
        assert!(parse_url(bad).is_err(), "{bad} accepted");
    }
}

#[test]
fn missing_file_error_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.har");
    let error = read_har(&path).unwrap_err();
    assert!(matches!(error, HarError::Read { .. }));
    assert!(error.to_string().starts_with(&format!("{}: cannot read: ", path.display())), "{error}");
}

#[test]
fn malformed_files_give_errors_naming_file_entry_and_field() {
    let (path, error) = read_error("{\"log\": ");
    assert!(error.starts_with(&format!("{path}: not valid JSON: ")), "{error}");

    let cases = [
        ("[]".to_string(), "log is missing (not a HAR file)"),
        (r#"{"log":{}}"#.to_string(), "log.entries is missing"),
        (r#"{"log":{"entries":{}}}"#.to_string(), "log.entries is not an array"),
        (doc_with("7"), "entry 0: not an object"),
        (
            format!(
                r#"{{"log":{{"entries":[{GOOD_ENTRY},{{"request":{{"method":"GET"}},"response":{{"status":200}}}}]}}}}"#
            ),
            "entry 1: request.url is missing",
        ),
        (doc_with(r#"{"response":{"status":200}}"#), "entry 0: request is missing"),
        (
            doc_with(r#"{"request":{"url":"http://h/"},"response":{"status":200}}"#),
            "entry 0: request.method is missing",
        ),
        (
            doc_with(r#"{"request":{"method":5,"url":"http://h/"},"response":{"status":200}}"#),
            "entry 0: request.method is not a string",
        ),
        (
            doc_with(r#"{"request":{"method":"G T","url":"http://h/"},"response":{"status":200}}"#),
            "entry 0: request.method 'G T' is not a valid method",
        ),
        (
            doc_with(r#"{"request":{"method":"GET","url":"http://h:99999/"},"response":{"status":200}}"#),
            "entry 0: request.url 'http://h:99999/' has an invalid host or port 'h:99999'",
        ),
        (
            doc_with(r#"{"request":{"method":"GET","url":"http://h/"},"response":{}}"#),
            "entry 0: response.status is missing",
        ),
        (
            doc_with(r#"{"request":{"method":"GET","url":"http://h/"},"response":{"status":"200"}}"#),
            "entry 0: response.status is not a status code (100 to 999, or 0)",
        ),
        (
            doc_with(r#"{"request":{"method":"GET","url":"http://h/"},"response":{"status":70000}}"#),
            "entry 0: response.status is not a status code (100 to 999, or 0)",
        ),
        (
            doc_with(r#"{"request":{"method":"GET","url":"http://h/"},"response":{"status":42}}"#),
            "entry 0: response.status is not a status code (100 to 999, or 0)",
        ),
        (
            doc_with(r#"{"request":{"method":"GET","url":"http://h/"},"response":[]}"#),
            "entry 0: response is not an object",
        ),
        (
            doc_with(r#"{"request":{"method":"GET","url":"http://h/","headers":{}},"response":{"status":200}}"#),
            "entry 0: request.headers is not an array",
        ),
        (
            doc_with(
                r#"{"request":{"method":"GET","url":"http://h/","headers":[{"name":"A"}]},"response":{"status":200}}"#,
            ),
            "entry 0: request.headers[0].value is missing",
        ),
        (
            doc_with(
                r#"{"request":{"method":"GET","url":"http://h/"},"response":{"status":200,"headers":[{"name":"A","value":"1\r\nB: 2"}]}}"#,
            ),
            "entry 0: response.headers[0].value contains CR, LF or NUL",
        ),
        (
            doc_with(
                r#"{"request":{"method":"GET","url":"http://h/"},"response":{"status":200,"headers":[{"name":"A B","value":"1"}]}}"#,
            ),
            "entry 0: response.headers[0].name 'A B' is not a valid header name",
        ),
        (
            doc_with(
                r#"{"request":{"method":"GET","url":"http://h/"},"response":{"status":200,"statusText":"OK\r\n"}}"#,
            ),
            "entry 0: response.statusText contains control characters",
        ),
        (
            doc_with(
                r#"{"request":{"method":"GET","url":"http://h/"},"response":{"status":200,"content":{"text":"x","encoding":"gzip"}}}"#,
            ),
            "entry 0: response.content.encoding 'gzip' is not supported (expected base64)",
        ),
        (
            doc_with(
                r#"{"request":{"method":"POST","url":"http://h/","postData":{"params":[{"value":"1"}]}},"response":{"status":200}}"#,
            ),
            "entry 0: request.postData.params[0].name is missing",
        ),
    ];
    for (document, expected) in cases {
        let (path, error) = read_error(&document);
        assert_eq!(error, format!("{path}: {expected}"), "document: {document}");
    }

    let (path, error) = read_error(&doc_with(
        r#"{"request":{"method":"GET","url":"http://h/"},"response":{"status":200,"content":{"text":"!!notbase64","encoding":"base64"}}}"#,
    ));
    assert!(error.starts_with(&format!("{path}: entry 0: response.content.text is not valid base64: ")), "{error}");
}

#[test]
fn optional_fields_may_be_missing_or_null() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("minimal.har");
    let entries = [
        GOOD_ENTRY,
        // mitmproxy writes `"text": null` for a POST without body and `"_error": null`.
        r#"{"request":{"method":"POST","url":"http://h/p","postData":{"mimeType":"","text":null,"params":[]}},
            "response":{"status":204,"statusText":null,"headers":null,"content":{"size":0},"_error":null}}"#,
        // No response at all: skipped.
        r#"{"request":{"method":"GET","url":"http://h/"}}"#,
        // base64 without padding and with line breaks, as some writers wrap it.
        r#"{"request":{"method":"GET","url":"http://h/b"},"response":{"status":200,"content":{"text":"AAEC\n/v8","encoding":"base64"}}}"#,
    ];
    let document = format!("\u{feff}{{\"log\":{{\"entries\":[{}]}}}}", entries.join(","));
    std::fs::write(&path, document).unwrap();
    let exchanges = read_har(&path).unwrap();
    assert_eq!(exchanges.len(), 3);
    assert_eq!((exchanges[0].status, exchanges[0].path.as_str()), (200, "/"));
    assert!(exchanges[1].request_body.is_empty() && exchanges[1].response_headers.0.is_empty());
    assert_eq!(exchanges[1].reason, "");
    assert_eq!(exchanges[2].response_body, [0, 1, 2, 0xfe, 0xff]);
}

#[test]
fn arbitrary_json_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.har");
    let mut junk: Vec<String> = [
        "",
        "null",
        "0",
        "\"log\"",
        r#"{"log":null}"#,
        r#"{"log":[]}"#,
        r#"{"log":{"entries":null}}"#,
        r#"{"log":{"entries":[null,1,"x",[],{}]}}"#,
    ]
    .map(String::from)
    .to_vec();
    junk.extend([
        doc_with(r#"{"request":[],"response":{"status":1.5}}"#),
        doc_with(r#"{"request":{"method":"GET","url":"http://[::1]:"},"response":{"status":-1}}"#),
        doc_with(r#"{"request":{"method":"GET","url":"http://é.test/ü"},"response":{"status":200,"content":"x"}}"#),
        doc_with(r#"{"request":{"method":"GET","url":"http://h/","postData":{"text":7}},"response":{"status":200}}"#),
        doc_with(r#"{"request":{"method":"GET","url":"http://h/","headers":[1,null]},"response":{"status":200}}"#),
        doc_with(r#"{"request":{"method":"GET","url":"http://h/"},"response":{"status":1e308}}"#),
    ]);
    for document in junk {
        std::fs::write(&path, document).unwrap();
        let _ = read_har(&path);
    }
}
