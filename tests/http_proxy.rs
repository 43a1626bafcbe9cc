//! The regular HTTP proxy as a user sees it: the real binary between curl, ureq or raw sockets and an
//! in-process origin server, all on loopback.

mod common;

use std::io::Read;
use std::net::Shutdown;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    curl, raw_exchange, run_strata_to_exit, start_line_echo_server, unused_port, ureq_agent, Conn, Origin, Strata,
    PATTERN,
};
use regex::Regex;

/// Bound on waits for something that should happen at once (a flow line, a reply).
const SOON: Duration = Duration::from_secs(10);

fn flow_line_regex(method: &str, url: &str, status: u16, size: &str) -> Regex {
    Regex::new(&format!(
        r"^127\.0\.0\.1:\d+ {} {} -> {status} {} \d+(ms|\.\d\ds|s)$",
        regex::escape(method),
        regex::escape(url),
        regex::escape(size)
    ))
    .unwrap()
}

fn header_value<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    let head = response.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn body_of(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

#[test]
fn get_through_curl_prints_body_and_one_flow_line() {
    let origin = Origin::start();
    let proxy = Strata::start(&[]);
    let out = curl(&proxy, &[&origin.url("/hello")]);
    assert_eq!(out.stdout, "hello, world\n");

    let url = origin.url("/hello");
    let hello = flow_line_regex("GET", &url, 200, "13b");
    let line = proxy.wait_for_stdout_line(|l| hello.is_match(l), SOON);
    // A second, different flow marks a point after which a duplicate of the first would have shown.
    curl(&proxy, &[&origin.url("/status/204")]);
    let marker = flow_line_regex("GET", &origin.url("/status/204"), 204, "0b");
    proxy.wait_for_stdout_line(|l| marker.is_match(l), SOON);
    let lines = proxy.stdout_lines();
    let hellos = lines.iter().filter(|l| l.contains("/hello")).count();
    proxy.check(hellos == 1, format!("expected one flow line for /hello, got {hellos}: {lines:?}"));
    proxy.check(lines.iter().all(|l| !l.is_empty()), "blank lines on stdout");
    assert!(line.starts_with("127.0.0.1:"), "{line}");
}

#[test]
fn get_through_ureq_returns_status_headers_and_body() {
    let origin = Origin::start();
    let proxy = Strata::start(&[]);
    let agent = ureq_agent(&proxy);
    let response = agent.get(&origin.url("/hello")).call().unwrap_or_else(|e| proxy.fail(&format!("ureq: {e}")));
    assert_eq!(response.status(), 200);
    assert_eq!(response.header("content-type"), Some("text/plain"));
    assert_eq!(response.into_string().unwrap(), "hello, world\n");
    let not_found = agent.get(&origin.url("/nothing-here")).call();
    assert!(matches!(not_found, Err(ureq::Error::Status(404, _))), "{not_found:?}");
}

#[test]
fn quiet_and_flow_detail_0_print_no_flow_lines() {
    let origin = Origin::start();
    for flags in [&["-q"][..], &["--quiet"], &["--flow-detail", "0"]] {
        let mut proxy = Strata::start(flags);
        assert_eq!(curl(&proxy, &[&origin.url("/hello")]).stdout, "hello, world\n");
        // Exiting flushes anything the proxy would print; all of stdout has been read once it has exited.
        proxy.signal(libc::SIGTERM);
        proxy.wait_for_exit(SOON);
        proxy.check(proxy.stdout_lines().is_empty(), format!("flow lines printed with {flags:?}"));
    }
}

#[test]
fn flow_detail_2_prints_request_and_response_headers() {
    let origin = Origin::start();
    let proxy = Strata::start(&["--flow-detail", "2"]);
    curl(&proxy, &[&origin.url("/hello"), "-H", "X-Test-Header: yes"]);
    proxy.wait_for_stdout_line(|l| l == "    << Content-Type: text/plain", SOON);
    proxy.wait_for_stdout_line(|l| l == "    >> X-Test-Header: yes", SOON);
}

#[test]
fn http10_request_is_answered_and_the_connection_closed() {
    let origin = Origin::start();
    let proxy = Strata::start(&[]);
    let out = curl(&proxy, &["--http1.0", &origin.url("/hello")]);
    assert_eq!(out.stdout, "hello, world\n");

    let request = format!("GET {} HTTP/1.0\r\n\r\n", origin.url("/hello"));
    let reply = raw_exchange(proxy.port, request.as_bytes(), SOON);
    proxy.check(reply.closed, format!("connection left open after an HTTP/1.0 exchange: {:?}", reply.text()));
    let text = reply.text();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert_eq!(header_value(&text, "connection"), Some("close"), "{text}");
    assert_eq!(body_of(&text), "hello, world\n");
}

#[test]
fn http10_keep_alive_request_keeps_the_connection() {
    let origin = Origin::start();
    let proxy = Strata::start(&[]);
    let mut conn = Conn::open(proxy.port, SOON);
    conn.send(format!("GET {} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", origin.url("/hello")).as_bytes());
    let first = conn.read_response();
    assert_eq!(header_value(&first, "connection"), Some("keep-alive"), "{first}");
    assert_eq!(body_of(&first), "hello, world\n");
    conn.send(format!("GET {} HTTP/1.0\r\n\r\n", origin.url("/size/3")).as_bytes());
    let second = conn.read_response();
    assert_eq!(body_of(&second), "abc");
    assert!(conn.read_until_close().closed);
}

#[test]
fn post_with_content_length_is_echoed() {
    let origin = Origin::start();
    let proxy = Strata::start(&[]);
    let out = curl(&proxy, &["--data-binary", "name=strata&kind=proxy", &origin.url("/echo")]);
    assert_eq!(out.stdout, "name=strata&kind=proxy");

    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 256) as u8).collect();
    let response = ureq_agent(&proxy)
        .post(&origin.url("/echo"))
        .send_bytes(&body)
        .unwrap_or_else(|e| proxy.fail(&format!("ureq: {e}")));
    assert_eq!(response.header("x-request-line"), Some("POST /echo HTTP/1.1"));
    let mut echoed = Vec::new();
    response.into_reader().read_to_end(&mut echoed).unwrap();
    assert!(echoed == body, "echoed body differs ({} bytes instead of {})", echoed.len(), body.len());
}

#[test]
fn post_with_chunked_body_is_echoed() {
    let origin = Origin::start();
    let proxy = Strata::start(&[]);
    let out = curl(
        &proxy,
        &["-H", "Transfer-Encoding: chunked", "--data-binary", "sent in chunks", "-D", "-", &origin.url("/echo")],
    );
    assert!(out.stdout.ends_with("\r\n\r\nsent in chunks"), "{}", out.stdout);
    let seen = header_value(&out.stdout, "x-seen-headers").unwrap_or_default();
    assert!(seen.split(',').any(|h| h == "transfer-encoding"), "origin saw {seen}");
    assert!(!seen.split(',').any(|h| h == "content-length"), "origin saw {seen}");

    // Several chunks, extensions and a trailer, over a raw socket.
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-Trailer: t\r\n\r\n",
        origin.url("/echo"),
        origin.authority()
    );
    let reply = raw_exchange(proxy.port, request.as_bytes(), SOON);
    assert_eq!(body_of(&reply.text()), "abc0123456789abcdef", "{}", reply.text());
}

#[test]
fn expect_100_continue_gets_100_and_the_body_reaches_the_origin() {
    let origin = Origin::start();
    let proxy = Strata::start(&[]);
    let started = Instant::now();
    // curl waits up to --expect100-timeout for the 100 before sending the body anyway; make that long so
    // that only the proxy's 100 Continue can make this quick.
    let out = curl(
        &proxy,
        &[
            "-H",
            "Expect: 100-continue",
            "--expect100-timeout",
            "30",
            "--data-binary",
            "expected body",
            "-i",
            &origin.url("/echo"),
        ],
    );
    let elapsed = started.elapsed();
    proxy.check(elapsed < Duration::from_secs(15), format!("curl took {elapsed:?}: no 100 Continue?"));
    assert!(out.stdout.starts_with("HTTP/1.1 100 Continue\r\n"), "{}", out.stdout);
    assert!(out.stdout.ends_with("\r\n\r\nexpected body"), "{}", out.stdout);
    let final_response = out.stdout.split_once("\r\n\r\n").unwrap().1;
    let seen = header_value(final_response, "x-seen-headers").unwrap_or_default();
    assert!(!seen.split(',').any(|h| h == "expect"), "origin saw {seen}");
}

#[test]
fn head_response_has_headers_but_no_body() {
    let origin = Origin::start();
    let proxy = Strata::start(&[]);
    let out = curl(&proxy, &["-I", &origin.url("/head")]);
    assert!(out.stdout.starts_with("HTTP/1.1 200 OK\r\n"), "{}", out.stdout);
    assert_eq!(header_value(&out.stdout, "content-length"), Some("1234"));

    // On one connection: if the proxy waited for 1234 body bytes, the next response would never come.
    let mut conn = Conn::open(proxy.port, SOON);
    conn.send(format!("HEAD {} HTTP/1.1\r\nHost: {}\r\n\r\n", origin.url("/head"), origin.authority()).as_bytes());
    let head = conn.read_head_response();
    assert_eq!(header_value(&head, "content-length"), Some("1234"), "{head}");
    conn.send(format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", origin.url("/hello"), origin.authority()).as_bytes());
    let next = conn.read_response();
    assert!(next.starts_with("HTTP/1.1 200 OK\r\n"), "HEAD left bytes behind: {next:?}");
    assert_eq!(body_of(&next), "hello, world\n");
}

#[test]
fn status_204_and_304_have_no_body() {
    let origin = Origin::start();
    let proxy = Strata::start(&[]);
    let out = curl(&proxy, &["-i", &origin.url("/status/204")]);
    assert!(out.stdout.starts_with("HTTP/1.1 204 No Content\r\n"), "{}", out.stdout);
    assert_eq!(body_of(&out.stdout), "");

    let mut conn = Conn::open(proxy.port, SOON);
    for path in ["/status/204", "/status/304", "/hello"] {
        conn.send(format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", origin.url(path), origin.authority()).as_bytes());
    }
    let no_content = conn.read_response();
    assert!(no_content.starts_with("HTTP/1.1 204 No Content\r\n"), "{no_content}");
    let not_modified = conn.read_response();
    assert!(not_modified.starts_with("HTTP/1.1 304 Not Modified\r\n"), "{not_modified}");
    assert_eq!(header_value(&not_modified, "etag"), Some("\"v1\""));
    let hello = conn.read_response();
    assert!(hello.starts_with("HTTP/1.1 200 OK\r\n"), "bytes after 204/304: {hello:?}");
    assert_eq!(body_of(&hello), "hello, world\n");
    proxy.wait_for_stdout_line(|l| l.contains("/status/304 -> 304 0b "), SOON);
}

#[test]
fn chunked_response_arrives_with_its_trailer() {
    let origin = Origin::start();
    let proxy = Strata::start(&[]);
    assert_eq!(curl(&proxy, &[&origin.url("/chunked")]).stdout, "hello, world");

    let mut conn = Conn::open(proxy.port, SOON);
    conn.send(format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", origin.url("/chunked"), origin.authority()).as_bytes());
    let response = conn.read_response();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert_eq!(header_value(&response, "transfer-encoding"), Some("chunked"), "{response}");
    assert_eq!(body_of(&response), "5\r\nhello\r\n7\r\n, world\r\n0\r\nx-checksum: 42\r\n\r\n");
    let url = origin.url("/chunked");
    proxy.wait_for_stdout_line(|l| l.contains(&format!(" GET {url} -> 200 12b ")), SOON);
}

#[test]
fn close_delimited_response_is_relayed_until_the_origin_closes() {
    let origin = Origin::start();
    let proxy = Strata::start(&[]);
    let out = curl(&proxy, &[&origin.url("/close")]);
    assert_eq!(out.stdout, "this body ends when the connection closes\n");

    let request = format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", origin.url("/close"), origin.authority());
    let reply = raw_exchange(proxy.port, request.as_bytes(), SOON);
    proxy.check(reply.closed, "client connection not closed after a close-delimited response");
    let text = reply.text();
    assert_eq!(header_value(&text, "connection"), Some("close"), "{text}");
    assert_eq!(body_of(&text), "this body ends when the connection closes\n");
}

#[test]
fn hop_by_hop_request_headers_do_not_reach_the_origin() {
    let origin = Origin::start();
    let proxy = Strata::start(&[]);
    let request = format!(
        "GET {url} HTTP/1.1\r\n\
         Host: {host}\r\n\
         Connection: close, X-Conn-Private\r\n\
         X-Conn-Private: secret\r\n\
         Proxy-Connection: keep-alive\r\n\
         Keep-Alive: timeout=5\r\n\
         TE: trailers\r\n\
         Trailer: x-checksum\r\n\
         Proxy-Authorization: Basic dXNlcjpwYXNz\r\n\
         X-End-To-End: kept\r\n\r\n",
        url = origin.url("/echo"),
        host = origin.authority()
    );
    let reply = raw_exchange(proxy.port, request.as_bytes(), SOON);
    let text = reply.text();
    let seen = header_value(&text, "x-seen-headers").unwrap_or_else(|| proxy.fail(&format!("no echo: {text}")));
    let seen: Vec<&str> = seen.split(',').collect();
    for hop in
        ["connection", "x-conn-private", "proxy-connection", "keep-alive", "te", "trailer", "proxy-authorization"]
    {
        proxy.check(!seen.contains(&hop), format!("origin saw {hop}: {seen:?}"));
    }
    assert!(seen.contains(&"x-end-to-end"), "{seen:?}");
    assert!(seen.contains(&"host"), "{seen:?}");
}

#[test]
fn keep_alive_reuses_one_origin_connection() {
    let origin = Origin::start();
    let proxy = Strata::start(&[]);
    // One curl run fetching two URLs reuses its connection to the proxy.
    let out = curl(&proxy, &["-w", "[%{num_connects}]", &origin.url("/hello"), &origin.url("/size/5")]);
    assert_eq!(out.stdout, "hello, world\n[1]abcde[0]", "curl did not reuse its proxy connection");
    proxy.check(origin.accepts() == 1, format!("origin accepted {} connections", origin.accepts()));

    // The same over a raw connection, with a pause between the requests.
    let origin = Origin::start();
    let mut conn = Conn::open(proxy.port, SOON);
    for path in ["/hello", "/size/3", "/hello"] {
        conn.send(format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", origin.url(path), origin.authority()).as_bytes());
        let response = conn.read_response();
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert_eq!(header_value(&response, "connection"), None, "{response}");
    }
    proxy.check(origin.accepts() == 1, format!("origin accepted {} connections", origin.accepts()));
    // (ureq 2 never reuses a connection through a proxy: its pool files them under a key without the
    // proxy, so it cannot show this.)
}

#[test]
fn a_paused_clients_origin_connection_serves_another_client() {
    let origin = Origin::start();
    let proxy = Strata::start(&[]);
    let request = format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", origin.url("/hello"), origin.authority());
    let mut first = Conn::open(proxy.port, SOON);
    first.send(request.as_bytes());
    assert_eq!(body_of(&first.read_response()), "hello, world\n");
    // The first client stays connected but pauses: strata gives its idle origin connection to the shared
    // pool (after half a second), so a second client's request needs no new one...
    thread::sleep(Duration::from_millis(900));
    let mut second = Conn::open(proxy.port, SOON);
    second.send(request.as_bytes());
    assert_eq!(body_of(&second.read_response()), "hello, world\n");
    proxy.check(origin.accepts() == 1, format!("origin accepted {} connections", origin.accepts()));
    // ...and the first client, still open, is served on.
    first.send(request.as_bytes());
    assert_eq!(body_of(&first.read_response()), "hello, world\n");
    proxy.check(origin.accepts() <= 2, format!("origin accepted {} connections", origin.accepts()));
}

#[test]
fn changing_origin_on_a_keep_alive_connection_connects_to_the_new_one() {
    let first = Origin::start();
    let second = Origin::start();
    let proxy = Strata::start(&[]);
    let mut conn = Conn::open(proxy.port, SOON);
    for origin in [&first, &second, &first] {
        conn.send(format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", origin.url("/hello"), origin.authority()).as_bytes());
        assert_eq!(body_of(&conn.read_response()), "hello, world\n");
    }
    // The idle connection to the first origin waits in the shared pool while the second is asked, and is
    // reused for the third request.
    assert_eq!((first.accepts(), second.accepts()), (1, 1));
}

#[test]
fn origin_closing_an_idle_keep_alive_connection_is_redialled_transparently() {
    let origin = Origin::start();
    let proxy = Strata::start(&[]);
    let mut conn = Conn::open(proxy.port, SOON);
    // The origin answers without `Connection: close` and then closes: the proxy's idle server connection
    // is dead when the next request comes.
    conn.send(format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", origin.url("/then-close"), origin.authority()).as_bytes());
    assert_eq!(body_of(&conn.read_response()), "bye");
    conn.send(format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", origin.url("/hello"), origin.authority()).as_bytes());
    let response = conn.read_response();
    proxy.check(response.starts_with("HTTP/1.1 200 OK\r\n"), format!("second request got {response:?}"));
    assert_eq!(body_of(&response), "hello, world\n");
    assert_eq!(origin.accepts(), 2);
}

#[test]
fn http10_origin_response_keeps_the_client_connection_open() {
    let origin = Origin::start();
    let proxy = Strata::start(&[]);
    let mut conn = Conn::open(proxy.port, SOON);
    conn.send(format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", origin.url("/http10"), origin.authority()).as_bytes());
    let old = conn.read_response();
    // The proxy speaks its own version to the client and keeps the client connection.
    assert!(old.starts_with("HTTP/1.1 200 OK\r\n"), "{old}");
    assert_eq!(header_value(&old, "connection"), None, "{old}");
    assert_eq!(body_of(&old), "old ok");
    conn.send(format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", origin.url("/hello"), origin.authority()).as_bytes());
    assert_eq!(body_of(&conn.read_response()), "hello, world\n");
    assert_eq!(origin.accepts(), 2);
}

/// Only WebSocket upgrades are relayed: any other `Upgrade` (h2c, a custom protocol) is removed before the
/// request is forwarded, and a server that switches protocols anyway gets a 502 instead of a tunnel that
/// nothing would inspect.
#[test]
fn upgrade_to_a_protocol_strata_does_not_speak_is_not_relayed() {
    let origin = Origin::start();
    let proxy = Strata::start(&[]);
    let mut conn = Conn::open(proxy.port, SOON);
    conn.send(
        format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: line-echo\r\n\r\n",
            origin.url("/upgrade"),
            origin.authority()
        )
        .as_bytes(),
    );
    let reply = conn.read_response();
    assert!(reply.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{reply}");
    assert!(reply.contains("did not ask for"), "{reply}");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let origin = Origin::start();
    let proxy = Strata::start(&[]);
    let host = origin.authority();
    let pipelined = format!(
        "POST {echo} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\n\r\nfirst\
         GET {size} HTTP/1.1\r\nHost: {host}\r\n\r\n\
         GET {chunked} HTTP/1.1\r\nHost: {host}\r\n\r\n\
         GET {hello} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n",
        echo = origin.url("/echo"),
        size = origin.url("/size/7"),
        chunked = origin.url("/chunked"),
        hello = origin.url("/hello"),
    );
    let mut conn = Conn::open(proxy.port, SOON);
    conn.send(pipelined.as_bytes());
    assert_eq!(body_of(&conn.read_response()), "first");
    assert_eq!(body_of(&conn.read_response()), "abcdefg");
    assert_eq!(body_of(&conn.read_response()), "5\r\nhello\r\n7\r\n, world\r\n0\r\nx-checksum: 42\r\n\r\n");
    let last = conn.read_response();
    assert_eq!(body_of(&last), "hello, world\n");
    assert_eq!(header_value(&last, "connection"), Some("close"));
    let rest = conn.read_until_close();
    assert!(rest.closed && rest.bytes.is_empty(), "after the last response: {rest:?}");
    assert_eq!(origin.accepts(), 1);
}

#[test]
fn malformed_request_gets_400_and_the_proxy_serves_the_next_client() {
    let origin = Origin::start();
    let proxy = Strata::start(&[]);
    for bad in [
        format!("GET {} HTTP/1.1\r\nHost : x\r\n\r\n", origin.url("/hello")),
        format!("GET {} HTTP/1.1\nHost: x\n\n", origin.url("/hello")),
        format!("POST {} HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", origin.url("/echo")),
        "GET /relative HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
        "this is not http\r\n\r\n".to_string(),
    ] {
        let reply = raw_exchange(proxy.port, bad.as_bytes(), SOON);
        let text = reply.text();
        proxy.check(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), format!("{bad:?} got {text:?}"));
        assert_eq!(header_value(&text, "content-type"), Some("text/plain; charset=utf-8"), "{text}");
        assert!(body_of(&text).starts_with("strata: bad request: "), "{text}");
        assert_eq!(header_value(&text, "content-length"), Some(body_of(&text).len().to_string().as_str()));
        assert!(reply.closed, "connection left open after a 400");
    }
    assert_eq!(curl(&proxy, &[&origin.url("/hello")]).stdout, "hello, world\n");
    assert_eq!(origin.accepts(), 1, "only the good request reaches the origin");
}

#[test]
fn request_head_over_64_kib_gets_431() {
    let origin = Origin::start();
    let proxy = Strata::start(&[]);
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nX-Big: {}\r\n\r\n",
        origin.url("/hello"),
        origin.authority(),
        "b".repeat(70 * 1024)
    );
    let reply = raw_exchange(proxy.port, request.as_bytes(), SOON);
    let text = reply.text();
    proxy.check(text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"), format!("got {text:?}"));
    assert!(body_of(&text).contains("65536"), "{text}");
    assert_eq!(origin.accepts(), 0);

    // Just under the limit passes.
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
        origin.url("/hello"),
        origin.authority(),
        "b".repeat(60 * 1024)
    );
    let reply = raw_exchange(proxy.port, request.as_bytes(), SOON);
    assert_eq!(body_of(&reply.text()), "hello, world\n");
}

#[test]
fn too_many_header_fields_get_431() {
    let origin = Origin::start();
    let proxy = Strata::start(&["--max-headers", "10"]);
    let fields: String = (0..11).map(|i| format!("X-H{i}: {i}\r\n")).collect();
    let request = format!("GET {} HTTP/1.1\r\n{fields}\r\n", origin.url("/hello"));
    let text = raw_exchange(proxy.port, request.as_bytes(), SOON).text();
    proxy.check(text.starts_with("HTTP/1.1 431 "), format!("got {text:?}"));
    assert_eq!(origin.accepts(), 0);
}

#[test]
fn very_long_request_target_gets_414() {
    let origin = Origin::start();
    let proxy = Strata::start(&[]);
    let request = format!("GET {}/{} HTTP/1.1\r\n\r\n", origin.url(""), "p".repeat(17 * 1024));
    let text = raw_exchange(proxy.port, request.as_bytes(), SOON).text();
    proxy.check(text.starts_with("HTTP/1.1 414 URI Too Long\r\n"), format!("got {text:?}"));
    assert_eq!(origin.accepts(), 0);
}

#[test]
fn unreachable_upstream_gets_502_naming_host_and_port() {
    let proxy = Strata::start(&[]);
    let port = unused_port();
    let out = curl(&proxy, &["-i", &format!("http://127.0.0.1:{port}/anything")]);
    assert!(out.stdout.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{}", out.stdout);
    let body = body_of(&out.stdout);
    assert!(body.contains(&format!("127.0.0.1:{port}")), "502 body does not name the server: {body:?}");
    // The flow line gives the size of the body the client got, not 0b.
    let size = format!("-> 502 {}b ", body.len());
    proxy.wait_for_stdout_line(|l| l.contains(&format!("GET http://127.0.0.1:{port}/anything {size}")), SOON);
}

#[test]
fn request_to_the_proxy_itself_gets_502_instead_of_a_loop() {
    let proxy = Strata::start(&[]);
    let out = curl(&proxy, &["-i", &format!("http://127.0.0.1:{}/loop", proxy.port)]);
    assert!(out.stdout.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{}", out.stdout);
    assert!(body_of(&out.stdout).contains("own listen address"), "{}", out.stdout);
}

#[test]
fn upstream_that_never_answers_gets_504_after_the_read_timeout() {
    let origin = Origin::start();
    let proxy = Strata::start(&["--read-timeout", "1"]);
    let started = Instant::now();
    let out = curl(&proxy, &["-i", &origin.url("/slow")]);
    let elapsed = started.elapsed();
    assert!(out.stdout.starts_with("HTTP/1.1 504 Gateway Timeout\r\n"), "{}", out.stdout);
    assert!(body_of(&out.stdout).contains("timed out"), "{}", out.stdout);
    proxy.check(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(8),
        format!("504 after {elapsed:?}, expected about 1 s"),
    );
}

#[test]
fn locally_answered_requests_open_no_origin_connection() {
    let origin = Origin::start();
    let proxy = Strata::start(&[]);

    // A tunnel the client closes without sending a byte.
    let mut conn = Conn::open(proxy.port, SOON);
    conn.send(format!("CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n\r\n", origin.authority()).as_bytes());
    let established = conn.read_head_response();
    assert!(established.starts_with("HTTP/1.1 200 "), "{established}");
    conn.stream().shutdown(Shutdown::Write).unwrap();
    // The proxy closing its side shows it is done with the tunnel.
    let rest = conn.read_until_close();
    proxy.check(rest.closed && rest.bytes.is_empty(), format!("tunnel not closed cleanly: {rest:?}"));

    // A malformed request and an ambiguous one.
    for bad in [
        format!("GET {} HTTP/1.1\r\nBad Header\r\n\r\n", origin.url("/hello")),
        format!("POST {} HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", origin.url("/echo")),
    ] {
        let reply = raw_exchange(proxy.port, bad.as_bytes(), SOON);
        assert!(reply.text().starts_with("HTTP/1.1 400 "), "{}", reply.text());
        assert!(reply.closed);
    }
    proxy.check(origin.accepts() == 0, format!("origin accepted {} connections", origin.accepts()));
}

#[test]
fn connect_tunnel_carries_plain_http_to_the_origin() {
    let origin = Origin::start();
    let proxy = Strata::start(&[]);
    // curl -p tunnels even plain http:// through CONNECT.
    let out = curl(&proxy, &["-p", &origin.url("/hello")]);
    assert_eq!(out.stdout, "hello, world\n");

    let mut conn = Conn::open(proxy.port, SOON);
    conn.send(format!("CONNECT {0} HTTP/1.1\r\nHost: {0}\r\n\r\n", origin.authority()).as_bytes());
    let established = conn.read_head_response();
    assert!(established.starts_with("HTTP/1.1 200 "), "{established}");
    conn.send(
        format!("POST /echo HTTP/1.1\r\nHost: {}\r\nContent-Length: 6\r\n\r\ntunnel", origin.authority()).as_bytes(),
    );
    let echoed = conn.read_response();
    assert_eq!(body_of(&echoed), "tunnel");
    assert_eq!(header_value(&echoed, "x-request-line"), Some("POST /echo HTTP/1.1"));
    conn.send(format!("GET /size/4 HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", origin.authority()).as_bytes());
    assert_eq!(body_of(&conn.read_response()), "abcd");
    assert!(conn.read_until_close().closed);

    let url = origin.url("/echo");
    proxy.wait_for_stdout_line(|l| l.contains(&format!(" POST {url} -> 200 6b ")), SOON);
}

#[test]
fn connect_tunnel_relays_a_non_http_protocol_as_tcp() {
    let (echo_port, accepts) = start_line_echo_server();
    let proxy = Strata::start(&[]);
    let mut conn = Conn::open(proxy.port, SOON);
    conn.send(format!("CONNECT 127.0.0.1:{echo_port} HTTP/1.1\r\nHost: 127.0.0.1:{echo_port}\r\n\r\n").as_bytes());
    let established = conn.read_head_response();
    assert!(established.starts_with("HTTP/1.1 200 "), "{established}");
    conn.send(b"hello over tcp\n");
    let reply = conn.read_until_close();
    proxy.check(reply.closed, format!("tunnel not closed after the echo server closed: {reply:?}"));
    assert_eq!(reply.text(), "echo: hello over tcp\n");
    // The relay ends, and logs its flow, once both directions are closed.
    conn.stream().shutdown(Shutdown::Write).unwrap();
    assert_eq!(accepts.load(std::sync::atomic::Ordering::SeqCst), 1);
    let tcp = Regex::new(&format!(r"^127\.0\.0\.1:\d+ TCP 127\.0\.0\.1:{echo_port} -> 15b up 21b down \d+")).unwrap();
    proxy.wait_for_stdout_line(|l| tcp.is_match(l), SOON);

    // The first tunnelled bytes in the same write as the CONNECT are not lost.
    let mut conn = Conn::open(proxy.port, SOON);
    conn.send(format!("CONNECT 127.0.0.1:{echo_port} HTTP/1.1\r\n\r\nsame packet\n").as_bytes());
    assert!(conn.read_head_response().starts_with("HTTP/1.1 200 "));
    conn.stream().shutdown(Shutdown::Write).unwrap();
    assert_eq!(conn.read_until_close().text(), "echo: same packet\n");
}

#[test]
fn connect_to_an_invalid_target_gets_400() {
    let proxy = Strata::start(&[]);
    let reply = raw_exchange(proxy.port, b"CONNECT no-port-here HTTP/1.1\r\n\r\n", SOON);
    proxy.check(reply.text().starts_with("HTTP/1.1 400 Bad Request\r\n"), format!("got {:?}", reply.text()));
}

#[test]
fn large_bodies_back_to_back_on_one_connection_arrive_byte_for_byte() {
    // Large enough to go by splice(2) between the two sockets; odd sizes, so that a byte too many or too few
    // would shift the second body.
    const SIZES: [usize; 2] = [1_000_003, 700_001];
    let origin = Origin::start();
    let proxy = Strata::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let files = SIZES.map(|n| dir.path().join(format!("{n}.bin")));
    let mut args = vec!["-w".to_string(), "[%{num_connects}]".to_string()];
    for (n, file) in SIZES.iter().zip(&files) {
        args.extend(["-o".to_string(), file.display().to_string(), origin.url(&format!("/size/{n}"))]);
    }
    let out = curl(&proxy, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.stdout, "[1][0]", "curl did not reuse its connection");
    for (n, file) in SIZES.iter().zip(&files) {
        let got = std::fs::read(file).unwrap();
        let expected: Vec<u8> = PATTERN.iter().copied().cycle().take(*n).collect();
        proxy.check(got.len() == *n, format!("{n}-byte body arrived as {} bytes", got.len()));
        proxy.check(got == expected, format!("the {n}-byte body arrived changed"));
    }
    proxy.check(origin.accepts() == 1, format!("origin accepted {} connections", origin.accepts()));
}

#[test]
fn big_download_streams_with_bounded_memory() {
    const SIZE: u64 = 1 << 30;
    let origin = Origin::start();
    let proxy = Strata::start(&[]);
    let started = Instant::now();
    let out = curl(&proxy, &["-o", "/dev/null", "-w", "%{size_download}", &origin.url(&format!("/size/{SIZE}"))]);
    let elapsed = started.elapsed();
    assert_eq!(out.stdout, SIZE.to_string());
    proxy.wait_for_stdout_line(|l| l.contains(&format!("/size/{SIZE} -> 200 1g ")), SOON);
    let peak_kb = proxy.proc_status_kb("VmHWM");
    proxy.check(peak_kb < 64 * 1024, format!("peak RSS {peak_kb} kB after a 1 GiB download"));
    eprintln!("1 GiB through the proxy in {elapsed:?}, peak RSS {peak_kb} kB");
}

#[test]
fn big_chunked_upload_streams_with_bounded_memory() {
    const SIZE: u64 = 256 << 20;
    let origin = Origin::start();
    let proxy = Strata::start(&[]);
    let body = std::io::repeat(b'u').take(SIZE);
    // Without a Content-Length, ureq sends the body chunked.
    let response = ureq_agent(&proxy)
        .post(&origin.url("/count"))
        .timeout(Duration::from_secs(120))
        .send(body)
        .unwrap_or_else(|e| proxy.fail(&format!("ureq: {e}")));
    assert_eq!(response.into_string().unwrap(), SIZE.to_string());
    let peak_kb = proxy.proc_status_kb("VmHWM");
    proxy.check(peak_kb < 64 * 1024, format!("peak RSS {peak_kb} kB after a 256 MiB upload"));
}

#[test]
fn two_listeners_each_serve_requests() {
    let origin = Origin::start();
    let proxy = Strata::start(&["-m", "regular", "--mode", "regular@0"]);
    assert_eq!(proxy.ports.len(), 2);
    assert_ne!(proxy.ports[0], proxy.ports[1]);
    for port in &proxy.ports {
        let request = format!("GET {} HTTP/1.1\r\nConnection: close\r\n\r\n", origin.url("/hello"));
        let reply = raw_exchange(*port, request.as_bytes(), SOON);
        assert_eq!(body_of(&reply.text()), "hello, world\n", "listener {port}");
    }
}

#[test]
fn bad_flags_exit_with_code_2_naming_the_flag() {
    for (args, flag) in [
        (&["--flow-detail", "9"][..], "--flow-detail"),
        (&["--mode", "bogus"], "--mode"),
        (&["-m", "reverse"], "--mode"),
        (&["--listen-port", "x"], "--listen-port"),
        (&["--read-timeout", "0"], "--read-timeout"),
        (&["--max-head-size", "10"], "--max-head-size"),
        (&["--no-such-flag"], "--no-such-flag"),
    ] {
        // A listen port of its own, in case a bad flag were accepted and the proxy started.
        let mut argv = args.to_vec();
        if !args.contains(&"--listen-port") {
            argv.extend(["-p", "0"]);
        }
        let done = run_strata_to_exit(&argv, SOON);
        assert_eq!(done.status.code(), Some(2), "{args:?}: {}\nstderr: {}", done.status, done.stderr);
        assert!(done.stderr.contains(flag), "{args:?}: stderr does not name {flag}: {}", done.stderr);
        assert!(!done.stderr.contains("listening on"), "{args:?}: {}", done.stderr);
        assert!(done.stdout.is_empty(), "{args:?}: stdout: {}", done.stdout);
    }
}

#[test]
fn occupied_listen_port_exits_with_code_2() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let done = run_strata_to_exit(&["-p", &port], SOON);
    assert_eq!(done.status.code(), Some(2), "stderr: {}", done.stderr);
    assert!(done.stderr.contains(&format!("127.0.0.1:{port}")), "{}", done.stderr);
}

#[test]
fn sigint_exits_cleanly() {
    let mut proxy = Strata::start(&[]);
    proxy.signal(libc::SIGINT);
    let status = proxy.wait_for_exit(Duration::from_secs(5));
    proxy.check(status.code() == Some(0), format!("exit status {status} after SIGINT"));
}

#[test]
fn sigterm_with_a_request_in_flight_exits_cleanly_after_the_grace_period() {
    let origin = Origin::start();
    let mut proxy = Strata::start(&[]);
    let mut conn = Conn::open(proxy.port, SOON);
    conn.send(format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", origin.url("/slow"), origin.authority()).as_bytes());
    origin.wait_for_accepts(1, SOON);
    let started = Instant::now();
    proxy.signal(libc::SIGTERM);
    let status = proxy.wait_for_exit(Duration::from_secs(8));
    let elapsed = started.elapsed();
    proxy.check(status.code() == Some(0), format!("exit status {status} after SIGTERM"));
    proxy.check(
        elapsed >= Duration::from_millis(2500),
        format!("busy connection cut after {elapsed:?}, before the grace period"),
    );
    assert!(conn.read_until_close().closed, "client connection left open after exit");
}

#[test]
fn sigterm_right_after_startup_exits_cleanly() {
    // Regression: `listening on` used to be printed before the handlers were installed, and a SIGTERM sent
    // on seeing it killed the process with the signal.
    let mut proxy = Strata::start(&[]);
    proxy.signal(libc::SIGTERM);
    let status = proxy.wait_for_exit(Duration::from_secs(5));
    proxy.check(status.code() == Some(0), format!("exit status {status} after SIGTERM"));
}

#[test]
fn sigterm_closes_idle_keep_alive_connections_and_exits_cleanly() {
    let origin = Origin::start();
    let mut proxy = Strata::start(&[]);
    let mut conn = Conn::open(proxy.port, SOON);
    conn.send(format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", origin.url("/hello"), origin.authority()).as_bytes());
    assert_eq!(body_of(&conn.read_response()), "hello, world\n");
    let started = Instant::now();
    proxy.signal(libc::SIGTERM);
    let rest = conn.read_until_close();
    proxy.check(rest.closed && rest.bytes.is_empty(), format!("idle connection after SIGTERM: {rest:?}"));
    let status = proxy.wait_for_exit(Duration::from_secs(5));
    let elapsed = started.elapsed();
    proxy.check(status.code() == Some(0), format!("exit status {status} after SIGTERM"));
    // The grace period (3 s) is for busy connections; an idle one must not hold shutdown up.
    proxy.check(elapsed < Duration::from_millis(2500), format!("exit took {elapsed:?}"));
}
