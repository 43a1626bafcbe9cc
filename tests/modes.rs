//! The ways to run strata besides the plain explicit proxy, with real clients on loopback: reverse mode
//! (HTTP, TLS on the listener, WebSocket), WebSocket through the explicit proxy (plain and intercepted
//! TLS), upstream mode through a second strata, SOCKS5, raw TCP after CONNECT, and several listeners.

mod common;

use std::future::Future;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::Duration;

use common::{
    client_config_trusting, connect, curl, curl_unchecked, read_pem_cert, read_until_close, run_strata_to_exit,
    start_line_echo_server, HttpsOrigin, Strata, TestCa, WsEcho, TEST_ORIGIN_HELLO,
};
use futures_util::{SinkExt, StreamExt};
use regex::Regex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Bound on waits for something that should happen at once (a flow line, a reply).
const SOON: Duration = Duration::from_secs(10);

/// Bound on a whole async client exchange.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(60);

/// Messages of each kind sent in a WebSocket echo session.
const WS_MESSAGES: usize = 100;

/// `^CLIENT METHOD URL -> STATUS SIZE DURATION$` for a flow line.
fn flow_line(method: &str, url: &str, status: u16) -> Regex {
    Regex::new(&format!(r"^127\.0\.0\.1:\d+ {} {} -> {status} \S+ \S+$", regex::escape(method), regex::escape(url)))
        .unwrap()
}

/// curl (as `common::curl`, but without a proxy) that must succeed; returns its stdout.
fn curl_ok(proxy: &Strata, args: &[&str]) -> String {
    let out = curl_unchecked(args);
    if !out.status.success() {
        proxy.fail(&format!("curl {args:?} failed with {}\n--- curl stderr:\n{}", out.status, out.stderr));
    }
    out.stdout
}

/// Runs `work` to completion on a fresh runtime, within `EXCHANGE_TIMEOUT`.
fn run_async<T>(work: impl Future<Output = T>) -> T {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        tokio::time::timeout(EXCHANGE_TIMEOUT, work).await.expect("async client exchange timed out")
    })
}

/// Reads a response head byte by byte (nothing after it is consumed).
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = stream.read_u8().await.unwrap_or_else(|e| panic!("reading a response head: {e} after {head:?}"));
        head.push(byte);
        assert!(head.len() < 64 * 1024, "response head too long");
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Opens a CONNECT tunnel to `target` through the proxy on `proxy_port`.
async fn connect_tunnel(proxy_port: u16, target: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(("127.0.0.1", proxy_port)).await.unwrap();
    tcp.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes()).await.unwrap();
    let head = read_head(&mut tcp).await;
    assert!(head.starts_with("HTTP/1.1 200"), "CONNECT {target}: {head}");
    tcp
}

/// TLS over `tcp` for `name`, trusting only the CA certificate in `ca_pem`.
async fn tls_client(
    tcp: TcpStream,
    name: &str,
    ca_pem: &std::path::Path,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let config = client_config_trusting(&[read_pem_cert(ca_pem)]);
    let server_name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
    tokio_rustls::TlsConnector::from(config).connect(server_name, tcp).await.expect("TLS handshake through strata")
}

/// How a WebSocket session ended after the close handshake: `None` for a clean end of stream, else the
/// error the last read gave.
type SessionEnd = Option<tokio_tungstenite::tungstenite::Error>;

/// Sends `WS_MESSAGES` text and binary messages, expects each echoed, then closes with code 1000 and
/// expects a close with the same code to come back. Returns how the stream ended after that.
async fn echo_session<S: AsyncRead + AsyncWrite + Unpin>(mut ws: WebSocketStream<S>) -> SessionEnd {
    for i in 0..WS_MESSAGES {
        let text = format!("text message {i} \u{2713}");
        ws.send(Message::text(text.clone())).await.expect("send text");
        match ws.next().await {
            Some(Ok(Message::Text(echo))) => assert_eq!(echo.as_str(), text),
            other => panic!("expected the text echo {i}, got {other:?}"),
        }
        let binary: Vec<u8> = (0..(i * 37) % 700 + 1).map(|b| (b * 31 + i) as u8).collect();
        ws.send(Message::binary(binary.clone())).await.expect("send binary");
        match ws.next().await {
            Some(Ok(Message::Binary(echo))) => assert_eq!(echo.as_ref(), binary.as_slice(), "binary echo {i}"),
            other => panic!("expected the binary echo {i}, got {other:?}"),
        }
    }
    ws.close(Some(CloseFrame { code: CloseCode::Normal, reason: "done".into() })).await.expect("send close");
    match ws.next().await {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Normal, "{frame:?}"),
        other => panic!("expected the close reply, got {other:?}"),
    }
    match ws.next().await {
        None | Some(Err(tokio_tungstenite::tungstenite::Error::ConnectionClosed)) => None,
        Some(Err(e)) => Some(e),
        Some(Ok(other)) => panic!("a message after the close handshake: {other:?}"),
    }
}

/// Asserts a clean end of a session (for plain TCP, where there is no close_notify to miss).
#[track_caller]
fn assert_clean_end(end: SessionEnd) {
    assert!(end.is_none(), "the session did not end cleanly after the close handshake: {end:?}");
}

/// Checks the lines a WebSocket session leaves: the 101 flow, and the closing WS line counting the
/// client's messages plus its close frame.
fn assert_ws_logged(proxy: &Strata, http_url: &str, ws_url: &str) -> String {
    proxy.wait_for_stdout_line(|l| flow_line("GET", http_url, 101).is_match(l), SOON);
    let closed = ws_closed_line(ws_url, &(2 * WS_MESSAGES + 1).to_string(), r"\d+");
    proxy.wait_for_stdout_line(|l| closed.is_match(l), SOON)
}

/// The closing line of a WebSocket session with `up` and `down` (regexes) message counts.
fn ws_closed_line(ws_url: &str, up: &str, down: &str) -> Regex {
    Regex::new(&format!(
        r"^127\.0\.0\.1:\d+ WS {} closed: {up} messages \(\S+\) up, {down} messages \(\S+\) down \S+$",
        regex::escape(ws_url)
    ))
    .unwrap()
}

// ---- reverse mode ----

#[test]
fn reverse_mode_forwards_to_the_origin_and_rewrites_host() {
    let origin = HttpsOrigin::start_plain();
    let proxy = Strata::start(&["-m", &format!("reverse:http://127.0.0.1:{}", origin.port)]);
    let base = format!("http://127.0.0.1:{}", proxy.port);
    assert_eq!(curl_ok(&proxy, &[&format!("{base}/hello")]), TEST_ORIGIN_HELLO);
    let host = curl_ok(&proxy, &[&format!("{base}/host")]);
    assert_eq!(host, format!("127.0.0.1:{}\n", origin.port), "Host header the origin saw");
    proxy.wait_for_stdout_line(
        |l| flow_line("GET", &format!("http://127.0.0.1:{}/host", origin.port), 200).is_match(l),
        SOON,
    );
}

#[test]
fn reverse_mode_keep_host_header_forwards_the_clients_host() {
    let origin = HttpsOrigin::start_plain();
    let proxy = Strata::start(&["-m", &format!("reverse:http://127.0.0.1:{}", origin.port), "--keep-host-header"]);
    let host = curl_ok(&proxy, &[&format!("http://127.0.0.1:{}/host", proxy.port)]);
    assert_eq!(host, format!("127.0.0.1:{}\n", proxy.port), "Host header the origin saw");
    let custom = curl_ok(&proxy, &["-H", "Host: dev.example", &format!("http://127.0.0.1:{}/host", proxy.port)]);
    assert_eq!(custom, "dev.example\n");
}

#[test]
fn reverse_mode_serves_tls_on_the_listener_in_front_of_a_plain_origin() {
    let origin = HttpsOrigin::start_plain();
    let proxy = Strata::start(&["-m", &format!("reverse:http://127.0.0.1:{}", origin.port)]);
    let cacert = proxy.ca_cert_path().display().to_string();
    // An IP literal (no SNI): the certificate names the listen address.
    let by_ip = curl_ok(&proxy, &["--cacert", &cacert, &format!("https://127.0.0.1:{}/hello", proxy.port)]);
    assert_eq!(by_ip, TEST_ORIGIN_HELLO);
    // A name: the certificate follows the SNI.
    let by_name = curl_ok(&proxy, &["--cacert", &cacert, &format!("https://localhost:{}/host", proxy.port)]);
    assert_eq!(by_name, format!("127.0.0.1:{}\n", origin.port));
    proxy.check(origin.events.handshakes.get() == 0, "the origin is plain HTTP, yet saw TLS");
}

#[test]
fn reverse_mode_to_an_https_origin() {
    let ca = TestCa::new("strata test origin CA");
    let origin = HttpsOrigin::start(&ca);
    let proxy = Strata::start(&[
        "-m",
        &format!("reverse:https://localhost:{}", origin.port),
        "--upstream-ca",
        ca.pem_path().to_str().unwrap(),
    ]);
    let host = curl_ok(&proxy, &[&format!("http://127.0.0.1:{}/host", proxy.port)]);
    assert_eq!(host, format!("localhost:{}\n", origin.port));
    proxy.check(origin.events.handshakes.get() >= 1, "no TLS handshake at the origin");
}

#[test]
fn reverse_mode_relays_a_websocket_echo() {
    let echo = WsEcho::start(None);
    let proxy = Strata::start(&["-m", &format!("reverse:http://127.0.0.1:{}", echo.port)]);
    let listen = proxy.port;
    run_async(async move {
        let tcp = TcpStream::connect(("127.0.0.1", listen)).await.unwrap();
        let (ws, response) = tokio_tungstenite::client_async(format!("ws://127.0.0.1:{listen}/hmr"), tcp)
            .await
            .expect("WebSocket handshake through reverse mode");
        assert_eq!(response.status(), 101);
        assert_clean_end(echo_session(ws).await);
    });
    let origin = format!("127.0.0.1:{}", echo.port);
    assert_ws_logged(&proxy, &format!("http://{origin}/hmr"), &format!("ws://{origin}/hmr"));
    proxy.check(echo.events.clean_closes.wait_for(1, SOON), "the echo server saw no close handshake");
    let hosts = echo.events.hosts.lock().unwrap().clone();
    assert_eq!(hosts, vec![origin], "Host header of the WebSocket handshake at the origin");
}

// ---- WebSocket through the explicit proxy ----

#[test]
fn websocket_echo_through_the_proxy_with_an_absolute_form_upgrade() {
    let echo = WsEcho::start(None);
    let proxy = Strata::start(&[]);
    let (proxy_port, origin) = (proxy.port, format!("127.0.0.1:{}", echo.port));
    let target = origin.clone();
    run_async(async move {
        let mut tcp = TcpStream::connect(("127.0.0.1", proxy_port)).await.unwrap();
        let request = format!(
            "GET http://{target}/chat HTTP/1.1\r\nHost: {target}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let head = read_head(&mut tcp).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        // RFC 6455 section 1.3's example key and its accept value.
        assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
        assert!(!head.to_ascii_lowercase().contains("sec-websocket-extensions"), "extensions negotiated: {head}");
        assert_clean_end(echo_session(WebSocketStream::from_raw_socket(tcp, Role::Client, None).await).await);
    });
    assert_ws_logged(&proxy, &format!("http://{origin}/chat"), &format!("ws://{origin}/chat"));
    proxy.check(echo.events.clean_closes.wait_for(1, SOON), "the echo server saw no close handshake");
}

#[test]
fn websocket_echo_through_a_connect_tunnel() {
    let echo = WsEcho::start(None);
    let proxy = Strata::start(&[]);
    let (proxy_port, origin) = (proxy.port, format!("127.0.0.1:{}", echo.port));
    let target = origin.clone();
    run_async(async move {
        let tcp = connect_tunnel(proxy_port, &target).await;
        let (ws, _) = tokio_tungstenite::client_async(format!("ws://{target}/chat"), tcp).await.expect("handshake");
        assert_clean_end(echo_session(ws).await);
    });
    assert_ws_logged(&proxy, &format!("http://{origin}/chat"), &format!("ws://{origin}/chat"));
}

#[test]
fn websocket_echo_over_connect_and_intercepted_tls_logs_messages_at_detail_2() {
    let ca = TestCa::new("strata test origin CA");
    let echo = WsEcho::start(Some(&ca));
    let proxy = Strata::start(&["--flow-detail", "2", "--upstream-ca", ca.pem_path().to_str().unwrap()]);
    let (proxy_port, origin, cacert) = (proxy.port, format!("localhost:{}", echo.port), proxy.ca_cert_path());
    let target = origin.clone();
    run_async(async move {
        let tcp = connect_tunnel(proxy_port, &target).await;
        let tls = tls_client(tcp, "localhost", &cacert).await;
        let (ws, _) = tokio_tungstenite::client_async(format!("wss://{target}/chat"), tls).await.expect("handshake");
        // How the TLS stream ends is checked in `websocket_over_tls_ends_with_close_notify`.
        let _ = echo_session(ws).await;
    });
    let ws_url = format!("wss://{origin}/chat");
    assert_ws_logged(&proxy, &format!("https://{origin}/chat"), &ws_url);
    proxy.check(echo.events.handshakes.get() == 1, "the echo server saw no TLS handshake");
    let prefix = format!(r"^127\.0\.0\.1:\d+ WS {}", regex::escape(&ws_url));
    for message in [
        format!(r"{prefix} -> text \S+: text message 7 \S+$"),
        format!(r"{prefix} <- text \S+: text message 7 \S+$"),
        format!(r"{prefix} -> binary \S+$"),
        format!(r"{prefix} <- binary \S+$"),
        format!(r"{prefix} -> close \S+: 1000 done$"),
    ] {
        let re = Regex::new(&message).unwrap();
        proxy.wait_for_stdout_line(|l| re.is_match(l), SOON);
    }
    let lines = proxy.stdout_lines();
    let texts = lines.iter().filter(|l| l.contains(" WS ") && l.contains(" -> text ")).count();
    proxy.check(texts == WS_MESSAGES, format!("{texts} text message lines client to server, expected {WS_MESSAGES}"));
}

#[test]
fn websocket_close_reply_of_the_server_is_relayed_and_recorded() {
    let echo = WsEcho::start(None);
    let proxy = Strata::start(&["--flow-detail", "2"]);
    let (proxy_port, origin) = (proxy.port, format!("127.0.0.1:{}", echo.port));
    let target = origin.clone();
    run_async(async move {
        let tcp = connect_tunnel(proxy_port, &target).await;
        let (ws, _) = tokio_tungstenite::client_async(format!("ws://{target}/chat"), tcp).await.expect("handshake");
        assert_clean_end(echo_session(ws).await);
    });
    proxy.check(echo.events.clean_closes.wait_for(1, SOON), "the echo server saw no close handshake");
    let ws_url = format!("ws://{origin}/chat");
    let n = (2 * WS_MESSAGES + 1).to_string();
    let closed = ws_closed_line(&ws_url, &n, &n);
    let server_close =
        Regex::new(&format!(r"^127\.0\.0\.1:\d+ WS {} <- close \S+: 1000 done$", regex::escape(&ws_url))).unwrap();
    proxy.wait_for_stdout_line(|l| closed.is_match(l), SOON);
    proxy.wait_for_stdout_line(|l| server_close.is_match(l), SOON);
}

#[test]
fn websocket_over_tls_ends_with_close_notify() {
    let ca = TestCa::new("strata test origin CA");
    let echo = WsEcho::start(Some(&ca));
    let proxy = Strata::start(&["--upstream-ca", ca.pem_path().to_str().unwrap()]);
    let (proxy_port, cacert) = (proxy.port, proxy.ca_cert_path());
    let target = format!("localhost:{}", echo.port);
    let end = run_async(async move {
        let tcp = connect_tunnel(proxy_port, &target).await;
        let tls = tls_client(tcp, "localhost", &cacert).await;
        let (ws, _) = tokio_tungstenite::client_async(format!("wss://{target}/chat"), tls).await.expect("handshake");
        echo_session(ws).await
    });
    proxy.check(end.is_none(), format!("the TLS session ended with {end:?}"));
}

// ---- upstream mode ----

#[test]
fn upstream_mode_forwards_plain_http_to_the_next_proxy() {
    let origin = HttpsOrigin::start_plain();
    let second = Strata::start(&[]);
    let first = Strata::start(&["-m", &format!("upstream:http://127.0.0.1:{}", second.port)]);
    let url = format!("http://127.0.0.1:{}/host", origin.port);
    let out = curl(&first, &[&url]);
    assert_eq!(out.stdout, format!("127.0.0.1:{}\n", origin.port));
    first.wait_for_stdout_line(|l| flow_line("GET", &url, 200).is_match(l), SOON);
    second.wait_for_stdout_line(|l| flow_line("GET", &url, 200).is_match(l), SOON);
}

#[test]
fn upstream_mode_tunnels_https_through_the_next_proxy() {
    let ca = TestCa::new("strata test origin CA");
    let origin = HttpsOrigin::start(&ca);
    let second = Strata::start(&["--upstream-ca", ca.pem_path().to_str().unwrap()]);
    // The second proxy intercepts too, so the first must trust the second's CA.
    let first = Strata::start(&[
        "-m",
        &format!("upstream:http://127.0.0.1:{}", second.port),
        "--upstream-ca",
        second.ca_cert_path().to_str().unwrap(),
    ]);
    let url = origin.url("/hello");
    let out = curl(&first, &["--cacert", first.ca_cert_path().to_str().unwrap(), &url]);
    assert_eq!(out.stdout, TEST_ORIGIN_HELLO);
    first.wait_for_stdout_line(|l| flow_line("GET", &url, 200).is_match(l), SOON);
    second.wait_for_stdout_line(|l| flow_line("GET", &url, 200).is_match(l), SOON);
}

// ---- SOCKS5 ----

#[test]
fn socks5_mode_serves_http_and_intercepts_https() {
    let ca = TestCa::new("strata test origin CA");
    let plain = HttpsOrigin::start_plain();
    let secure = HttpsOrigin::start(&ca);
    let proxy = Strata::start(&["-m", "socks5", "--upstream-ca", ca.pem_path().to_str().unwrap()]);
    let socks = format!("127.0.0.1:{}", proxy.port);
    let http_url = format!("http://127.0.0.1:{}/hello", plain.port);
    assert_eq!(curl_ok(&proxy, &["--socks5-hostname", &socks, &http_url]), TEST_ORIGIN_HELLO);
    proxy.wait_for_stdout_line(|l| flow_line("GET", &http_url, 200).is_match(l), SOON);

    let https_url = secure.url("/hello");
    let cacert = proxy.ca_cert_path().display().to_string();
    assert_eq!(curl_ok(&proxy, &["--socks5-hostname", &socks, "--cacert", &cacert, &https_url]), TEST_ORIGIN_HELLO);
    proxy.wait_for_stdout_line(|l| flow_line("GET", &https_url, 200).is_match(l), SOON);
    // Intercepted: the origin's own CA does not verify what the client saw.
    let direct_ca =
        curl_unchecked(&["--socks5-hostname", &socks, "--cacert", ca.pem_path().to_str().unwrap(), &https_url]);
    proxy.check(
        direct_ca.status.code() == Some(60),
        format!("expected exit 60, got {} {}", direct_ca.status, direct_ca.stderr),
    );
}

// ---- raw TCP ----

#[test]
fn non_http_bytes_after_connect_are_relayed_as_tcp() {
    let (echo_port, accepts) = start_line_echo_server();
    let proxy = Strata::start(&[]);
    let target = format!("127.0.0.1:{echo_port}");
    let mut stream = connect(proxy.port, SOON);
    write!(stream, "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").unwrap();
    let established = b"HTTP/1.1 200 Connection established\r\n\r\n";
    let mut head = vec![0u8; established.len()];
    stream.read_exact(&mut head).unwrap();
    assert_eq!(String::from_utf8_lossy(&head), String::from_utf8_lossy(established));
    stream.write_all(b"ping \x00\x01 not http\n").unwrap();
    let reply = read_until_close(&mut stream);
    proxy.check(reply.closed, format!("the relay did not pass the server's close on: {:?}", reply.text()));
    assert_eq!(reply.bytes, b"echo: ping \x00\x01 not http\n");
    stream.shutdown(Shutdown::Write).unwrap();
    let line =
        Regex::new(&format!(r"^127\.0\.0\.1:\d+ TCP {} -> 17b up 23b down \S+$", regex::escape(&target))).unwrap();
    proxy.wait_for_stdout_line(|l| line.is_match(l), SOON);
    assert_eq!(accepts.load(std::sync::atomic::Ordering::SeqCst), 1);
}

// ---- listeners ----

#[test]
fn several_modes_run_several_listeners() {
    let origin = HttpsOrigin::start_plain();
    let reverse = format!("reverse:http://127.0.0.1:{}", origin.port);
    let proxy = Strata::start(&["-m", "regular", "-m", "socks5", "-m", &reverse]);
    assert_eq!(proxy.ports.len(), 3);
    let stderr = proxy.stderr_text();
    for (port, mode) in proxy.ports.iter().zip(["regular", "socks5", reverse.as_str()]) {
        let line = format!("listening on 127.0.0.1:{port} ({mode})");
        proxy.check(stderr.lines().any(|l| l == line), format!("no line {line:?}"));
    }
    let base = format!("http://127.0.0.1:{}", origin.port);
    assert_eq!(curl(&proxy, &[&format!("{base}/hello")]).stdout, TEST_ORIGIN_HELLO);
    let socks = format!("127.0.0.1:{}", proxy.ports[1]);
    assert_eq!(
        curl_ok(&proxy, &["--socks5-hostname", &socks, &format!("{base}/host")]),
        format!("127.0.0.1:{}\n", origin.port)
    );
    let reverse_listener = format!("http://127.0.0.1:{}/nothing", proxy.ports[2]);
    assert_eq!(curl_ok(&proxy, &[&reverse_listener]), "not found\n");
    for (path, status) in [("/hello", 200), ("/host", 200), ("/nothing", 404)] {
        let flow = flow_line("GET", &format!("{base}{path}"), status);
        proxy.wait_for_stdout_line(|l| flow.is_match(l), SOON);
    }
}

#[test]
fn unsupported_reverse_scheme_exits_2_naming_mode() {
    let done = run_strata_to_exit(&["-p", "0", "-m", "reverse:ftp://x"], Duration::from_secs(20));
    assert_eq!(done.status.code(), Some(2), "stderr: {}", done.stderr);
    assert!(done.stderr.contains("--mode"), "stderr does not name --mode: {}", done.stderr);
    assert!(!done.stderr.contains("listening on"), "{}", done.stderr);
}
