//! WebSocket conformance through strata: the Autobahn testsuite's cases, run by `kosoku` (PyPI), against a
//! conforming echo server (the Python `websockets` library, permessage-deflate on), once directly and once
//! through strata; every case that passes directly must pass through strata too, with the same verdict.
//! Three ways through: reverse mode, a CONNECT tunnel (regular mode), and a CONNECT tunnel with TLS
//! interception. The driver is tests/peers/autobahn.py.
//!
//! CI runs a subset that takes a few minutes (`CASES`: all but the performance cases 9.*, and of the
//! compression cases 12.* and 13.* the first group each). `AUTOBAHN_CASES="*"` runs everything (about ten
//! minutes per way on two cores); the README says how to run the suite by hand.

mod common;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{run_with_timeout, Strata, TestCa};

/// The cases CI runs.
const CASES: &[&str] = &["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "10.*", "12.1.*", "13.1.*"];

/// Bound on one kosoku run (both addresses).
const RUN: Duration = Duration::from_secs(900);

fn driver() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/autobahn.py")
}

/// The echo server, killed when dropped.
struct Echo {
    child: Child,
    port: u16,
}

impl Echo {
    fn start(tls: Option<(&Path, &Path)>) -> Echo {
        let mut command = Command::new("python3");
        command.arg(driver()).arg("echo");
        if let Some((cert, key)) = tls {
            command.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 tests/peers/autobahn.py echo (needs the websockets package; .ci/run installs it)");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("the echo server's port");
        let port = line.trim().strip_prefix("listening ").and_then(|p| p.parse().ok());
        let port =
            port.unwrap_or_else(|| panic!("the echo server said {line:?} (is the websockets package installed?)"));
        Echo { child, port }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the cases against the echo server and against `through` (host:port); fails with the cases whose
/// verdict through strata differs where they pass directly.
fn same_verdicts(proxy: &Strata, echo: &Echo, through: &str) {
    let cases = std::env::var("AUTOBAHN_CASES").ok();
    let cases: Vec<&str> = match &cases {
        Some(list) => list.split_whitespace().collect(),
        None => CASES.to_vec(),
    };
    let mut command = Command::new("python3");
    command.arg(driver()).arg("run").arg(format!("127.0.0.1:{}", echo.port)).arg(through);
    for case in &cases {
        command.args(["-i", case]);
    }
    let done = run_with_timeout(command, RUN);
    println!("{}", done.stdout);
    let passed_through = done
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("SUMMARY {through} passed=")))
        .and_then(|rest| rest.split(' ').next()?.parse::<u32>().ok());
    // The verdict is the driver's last line (its exit status is the same, unless the Python runtime's
    // teardown crashed after it: seen once in CI).
    let same = done.stdout.lines().any(|l| l == "RESULT same");
    proxy.check(
        same && passed_through.is_some_and(|n| n > 100),
        format!("Autobahn through strata ({through}) differs from the server alone:\n{}\n{}", done.stdout, done.stderr),
    );
}

#[test]
fn autobahn_cases_pass_through_reverse_mode_as_they_pass_directly() {
    let echo = Echo::start(None);
    let proxy = Strata::start(&["-q", "--mode", &format!("reverse:http://127.0.0.1:{}", echo.port)]);
    same_verdicts(&proxy, &echo, &format!("127.0.0.1:{}", proxy.port));
}

#[test]
fn autobahn_cases_pass_through_a_connect_tunnel_as_they_pass_directly() {
    let echo = Echo::start(None);
    let proxy = Strata::start(&["-q"]);
    let port = tunnel_forwarder(proxy.port, format!("127.0.0.1:{}", echo.port), None);
    same_verdicts(&proxy, &echo, &format!("127.0.0.1:{port}"));
}

#[test]
fn autobahn_cases_pass_through_tls_interception_as_they_pass_directly() {
    let ca = TestCa::new("strata autobahn origin CA");
    let (chain, key) = ca.leaf_files(&["localhost", "127.0.0.1"]);
    let echo = Echo::start(Some((&chain, &key)));
    let proxy = Strata::start(&["-q", "--upstream-ca", ca.pem_path().to_str().unwrap()]);
    let strata_ca = common::read_pem_cert(&proxy.ca_cert_path());
    let tls = common::client_config_trusting(&[strata_ca]);
    let port = tunnel_forwarder(proxy.port, format!("localhost:{}", echo.port), Some(tls));
    // Directly, kosoku speaks plain WebSocket; the TLS server's verdicts are the plain server's.
    let plain = Echo::start(None);
    same_verdicts(&proxy, &plain, &format!("127.0.0.1:{port}"));
    drop(echo);
}

/// A port on 127.0.0.1 that carries each connection through a CONNECT tunnel to `target` on strata's
/// `proxy_port` (kosoku speaks to a host:port and knows no proxies), with `tls` over TLS to strata (which
/// intercepts it), trusting strata's CA.
fn tunnel_forwarder(proxy_port: u16, target: String, tls: Option<Arc<rustls::ClientConfig>>) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the forwarder");
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            while let Ok((mut inbound, _)) = listener.accept().await {
                let (target, tls) = (target.clone(), tls.clone());
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", proxy_port)).await else {
                        return;
                    };
                    let connect = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
                    if outbound.write_all(connect.as_bytes()).await.is_err() {
                        return;
                    }
                    // The 200's head, byte by byte, so nothing after it is taken.
                    let mut head = Vec::new();
                    while !head.ends_with(b"\r\n\r\n") {
                        match outbound.read_u8().await {
                            Ok(byte) => head.push(byte),
                            Err(_) => return,
                        }
                    }
                    assert!(head.starts_with(b"HTTP/1.1 200"), "CONNECT: {}", String::from_utf8_lossy(&head));
                    let _ = match tls {
                        None => tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await,
                        Some(config) => {
                            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                            let Ok(mut tls) = tokio_rustls::TlsConnector::from(config).connect(name, outbound).await
                            else {
                                return;
                            };
                            tokio::io::copy_bidirectional(&mut inbound, &mut tls).await
                        }
                    };
                });
            }
        });
    });
    port
}

/// permessage-deflate passes through (the websockets client and server negotiate it by default), and
/// strata records each compressed message as its text: the flow lines show it, with its inflated size.
#[test]
fn compressed_messages_pass_and_are_recorded_as_their_text() {
    let echo = Echo::start(None);
    let proxy = Strata::start(&["--flow-detail", "2", "--mode", &format!("reverse:http://127.0.0.1:{}", echo.port)]);
    let client = format!(
        r#"
from websockets.sync.client import connect
with connect("ws://127.0.0.1:{port}/chat") as ws:
    extensions = ws.response.headers.get("Sec-WebSocket-Extensions") or ""
    assert extensions.startswith("permessage-deflate"), extensions
    for text in ["hello compressed world " * 20, "a second compressed message " * 10]:
        ws.send(text)
        assert ws.recv() == text
print("ok")
"#,
        port = proxy.port
    );
    let mut command = Command::new("python3");
    command.args(["-c", &client]);
    let done = run_with_timeout(command, Duration::from_secs(30));
    proxy.check(done.stdout.trim() == "ok", format!("the client through strata: {}{}", done.stdout, done.stderr));
    // 460 bytes of text, sent compressed both ways, recorded inflated.
    for arrow in ["->", "<-"] {
        let wanted = format!(" {arrow} text 460b: hello compressed world hello");
        proxy.wait_for_stdout_line(|l| l.contains(&wanted), Duration::from_secs(10));
    }
    proxy.wait_for_stdout_line(
        |l| l.contains(" text 280b: a second compressed message a second"),
        Duration::from_secs(10),
    );
}
