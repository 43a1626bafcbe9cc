//! HTTPS interception with real TLS on loopback: curl (or a rustls client) through strata to an in-process
//! TLS origin whose certificate comes from a test CA; the CA files strata keeps in its confdir; the CA
//! download page; passthrough and TCP host rules; key logging.

mod common;

use std::collections::HashSet;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{
    client_config_trusting, connect, curl, curl_unchecked, read_pem_cert, run_with_timeout, unused_port, HttpsOrigin,
    Strata, TestCa, TEST_ORIGIN_HELLO,
};
use regex::Regex;
use rustls::pki_types::{CertificateDer, ServerName};

/// Bound on waits for something that should happen at once (a flow line, a reply).
const SOON: Duration = Duration::from_secs(10);

const CA_FILES: [&str; 4] = ["strata-ca.pem", "strata-ca-cert.pem", "strata-ca-cert.cer", "strata-ca-cert.p12"];

/// `^CLIENT METHOD URL -> STATUS SIZE DURATION$` for a flow line.
fn flow_line(method: &str, url: &str, status: u16) -> Regex {
    Regex::new(&format!(r"^127\.0\.0\.1:\d+ {} {} -> {status} \S+ \S+$", regex::escape(method), regex::escape(url)))
        .unwrap()
}

/// `^CLIENT TCP host:port -> SIZE up SIZE down DURATION$`.
fn tcp_line(server: &str) -> Regex {
    Regex::new(&format!(r"^127\.0\.0\.1:\d+ TCP {} -> \S+ up \S+ down \S+$", regex::escape(server))).unwrap()
}

/// curl through `proxy` trusting `cacert`; its stdout is the body followed by `\nSTATUS:<code>`.
fn curl_https(proxy: &Strata, cacert: &Path, url: &str) -> common::Finished {
    curl_unchecked(&[
        "-x",
        &proxy.proxy_url(),
        "--cacert",
        &cacert.display().to_string(),
        "--write-out",
        "\nSTATUS:%{http_code}",
        url,
    ])
}

/// Splits `curl_https` output into status and body.
fn status_and_body(out: &common::Finished) -> (u16, &str) {
    let (body, status) = out.stdout.rsplit_once("\nSTATUS:").unwrap_or_else(|| panic!("no status in {:?}", out.stdout));
    (status.parse().unwrap_or(0), body)
}

/// Asserts that curl succeeded with 200 and the test origin's greeting.
#[track_caller]
fn assert_hello(proxy: &Strata, out: &common::Finished) {
    let (status, body) = status_and_body(out);
    proxy.check(
        out.status.success() && status == 200 && body == TEST_ORIGIN_HELLO,
        format!(
            "expected 200 {TEST_ORIGIN_HELLO:?}, got exit {} status {status} body {body:?}\ncurl stderr: {}",
            out.status, out.stderr
        ),
    );
}

/// curl exit code 60: the peer certificate cannot be authenticated with the given CA.
#[track_caller]
fn assert_untrusted(proxy: &Strata, out: &common::Finished) {
    proxy.check(
        out.status.code() == Some(60),
        format!(
            "expected curl to reject the certificate (exit 60), got {} {:?} {:?}",
            out.status, out.stdout, out.stderr
        ),
    );
}

#[test]
fn https_through_connect_verifies_against_strata_ca_and_logs_https_url() {
    let ca = TestCa::new("strata test origin CA");
    let origin = HttpsOrigin::start(&ca);
    let proxy = Strata::start(&["--upstream-ca", ca.pem_path().to_str().unwrap()]);
    let url = origin.url("/hello");
    assert_hello(&proxy, &curl_https(&proxy, &proxy.ca_cert_path(), &url));
    proxy.wait_for_stdout_line(|l| flow_line("GET", &url, 200).is_match(l), SOON);
    // The client saw strata's certificate, not the origin's: the origin's CA does not verify it.
    assert_untrusted(&proxy, &curl_https(&proxy, &ca.pem_path(), &url));
}

/// `openssl req -x509` makes a certificate that is its own CA (CA:TRUE). Listed with `--upstream-ca` it is
/// accepted as the server's certificate, as curl accepts it, for the names it carries and no other.
#[test]
fn a_self_signed_dev_certificate_listed_with_upstream_ca_is_accepted_for_its_names() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("dev.pem"), dir.path().join("dev-key.pem"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "30"])
        .args(["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(made.status.success(), "openssl: {}", String::from_utf8_lossy(&made.stderr));
    let text =
        std::process::Command::new("openssl").args(["x509", "-noout", "-text", "-in"]).arg(&cert).output().unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("CA:TRUE"), "the dev certificate is not its own CA");
    let origin = HttpsOrigin::start_with_pem(&cert, &key);
    let proxy = Strata::start(&["--upstream-ca", cert.to_str().unwrap()]);
    let url = origin.url("/hello");
    assert_hello(&proxy, &curl_https(&proxy, &proxy.ca_cert_path(), &url));
    // The same certificate for a name it does not carry: refused.
    let other = format!("https://127.0.0.1:{}/hello", origin.port);
    let refused = curl_https(&proxy, &proxy.ca_cert_path(), &other);
    let (status, body) = status_and_body(&refused);
    proxy.check(status == 502 && body.contains("not valid for name"), format!("for 127.0.0.1: {status} {body:?}"));
    assert_eq!(origin.events.requests.get(), 1, "only the request for localhost reached the origin");
}

#[test]
fn ip_literal_target_verifies_by_ip_san_without_sni() {
    let ca = TestCa::new("strata test origin CA");
    let origin = HttpsOrigin::start(&ca);
    let proxy = Strata::start(&["--upstream-ca", ca.pem_path().to_str().unwrap()]);
    let url = format!("https://127.0.0.1:{}/hello", origin.port);
    assert_hello(&proxy, &curl_https(&proxy, &proxy.ca_cert_path(), &url));
    proxy.wait_for_stdout_line(|l| flow_line("GET", &url, 200).is_match(l), SOON);
}

#[test]
fn bad_upstream_certificate_gets_502_naming_host_and_no_request_reaches_origin() {
    let ca = TestCa::new("untrusted origin CA");
    let origin = HttpsOrigin::start(&ca);
    let proxy = Strata::start(&[]);
    let out = curl_https(&proxy, &proxy.ca_cert_path(), &origin.url("/hello"));
    let (status, body) = status_and_body(&out);
    proxy.check(status == 502, format!("expected 502, got {status}: {body:?} (curl: {})", out.stderr));
    let host = format!("localhost:{}", origin.port);
    proxy.check(body.contains(&host), format!("502 body does not name {host}: {body:?}"));
    proxy.check(
        body.contains("invalid peer certificate") && body.contains("UnknownIssuer"),
        format!("502 body does not give the verification error: {body:?}"),
    );
    // The origin saw strata abort the handshake, and never a request.
    let aborted = origin.events.handshake_failures.wait_for(1, SOON);
    proxy.check(aborted, format!("origin saw no aborted handshake ({} accepts)", origin.events.accepts.get()));
    proxy.check(origin.events.handshakes.get() == 0, "origin completed a handshake");
    proxy.check(origin.events.requests.get() == 0, "origin received a request despite its bad certificate");
    proxy.wait_for_stdout_line(|l| flow_line("GET", &origin.url("/hello"), 502).is_match(l), SOON);
}

#[test]
fn ssl_insecure_accepts_an_untrusted_upstream() {
    let ca = TestCa::new("untrusted origin CA");
    let origin = HttpsOrigin::start(&ca);
    for flag in ["-k", "--ssl-insecure"] {
        let proxy = Strata::start(&[flag]);
        assert_hello(&proxy, &curl_https(&proxy, &proxy.ca_cert_path(), &origin.url("/hello")));
    }
}

#[test]
fn ignored_host_is_passed_through_and_the_client_sees_the_origin_certificate() {
    let ca = TestCa::new("strata test origin CA");
    let origin = HttpsOrigin::start(&ca);
    // No --upstream-ca: strata never verifies (or even sees) the origin's certificate.
    let proxy = Strata::start(&["--ignore-hosts", "localhost"]);
    let url = origin.url("/hello");
    assert_hello(&proxy, &curl_https(&proxy, &ca.pem_path(), &url));
    assert_untrusted(&proxy, &curl_https(&proxy, &proxy.ca_cert_path(), &url));
    proxy.wait_for_stdout_line(|l| tcp_line(&format!("localhost:{}", origin.port)).is_match(l), SOON);
    let lines = proxy.stdout_lines();
    proxy.check(!lines.iter().any(|l| l.contains(" GET ")), format!("an HTTP flow for an ignored host: {lines:?}"));
}

#[test]
fn ignored_host_is_recognised_by_its_sni_when_the_client_names_only_an_ip() {
    let ca = TestCa::new("strata test origin CA");
    let origin = HttpsOrigin::start(&ca);
    // `--socks5` (not `--socks5-hostname`): curl resolves localhost itself and asks SOCKS for 127.0.0.1,
    // so only the ClientHello's SNI says `localhost`.
    let proxy = Strata::start(&["-m", "socks5", "--ignore-hosts", "^localhost:"]);
    let socks = format!("127.0.0.1:{}", proxy.port);
    let fetch = |cacert: &Path| {
        curl_unchecked(&[
            "--socks5",
            &socks,
            "--cacert",
            &cacert.display().to_string(),
            "--write-out",
            "\nSTATUS:%{http_code}",
            &origin.url("/hello"),
        ])
    };
    assert_hello(&proxy, &fetch(&ca.pem_path()));
    assert_untrusted(&proxy, &fetch(&proxy.ca_cert_path()));
    proxy.wait_for_stdout_line(|l| tcp_line(&format!("127.0.0.1:{}", origin.port)).is_match(l), SOON);
}

#[test]
fn allow_hosts_intercepts_only_matching_hosts() {
    let ca = TestCa::new("strata test origin CA");
    let origin = HttpsOrigin::start(&ca);
    let proxy = Strata::start(&["--allow-hosts", r"^127\.0\.0\.1:", "--upstream-ca", ca.pem_path().to_str().unwrap()]);
    // Allowed: intercepted, the client verifies strata's certificate.
    let allowed = format!("https://127.0.0.1:{}/hello", origin.port);
    assert_hello(&proxy, &curl_https(&proxy, &proxy.ca_cert_path(), &allowed));
    assert_untrusted(&proxy, &curl_https(&proxy, &ca.pem_path(), &allowed));
    proxy.wait_for_stdout_line(|l| flow_line("GET", &allowed, 200).is_match(l), SOON);
    // Not allowed: passed through, the client verifies the origin's own certificate.
    let other = origin.url("/hello");
    assert_hello(&proxy, &curl_https(&proxy, &ca.pem_path(), &other));
    assert_untrusted(&proxy, &curl_https(&proxy, &proxy.ca_cert_path(), &other));
    proxy.wait_for_stdout_line(|l| tcp_line(&format!("localhost:{}", origin.port)).is_match(l), SOON);
}

#[test]
fn tcp_hosts_relays_decrypted_bytes_and_logs_a_tcp_flow() {
    let ca = TestCa::new("strata test origin CA");
    let origin = HttpsOrigin::start(&ca);
    let proxy = Strata::start(&["--tcp-hosts", "^localhost:", "--upstream-ca", ca.pem_path().to_str().unwrap()]);
    // TLS is still intercepted (the client trusts strata's CA); what is inside is relayed as bytes.
    assert_hello(&proxy, &curl_https(&proxy, &proxy.ca_cert_path(), &origin.url("/hello")));
    let line = proxy.wait_for_stdout_line(|l| tcp_line(&format!("localhost:{}", origin.port)).is_match(l), SOON);
    proxy.check(!line.contains("-> 0b up"), format!("no bytes relayed upstream: {line}"));
    let lines = proxy.stdout_lines();
    proxy.check(!lines.iter().any(|l| l.contains(" GET ")), format!("an HTTP flow for a --tcp-hosts host: {lines:?}"));
    proxy.check(origin.events.requests.get() == 1, "the origin did not get exactly the one request");
}

#[test]
fn tcp_hosts_relay_logs_a_flow_when_the_server_closes_without_close_notify() {
    let ca = TestCa::new("strata test origin CA");
    let origin = HttpsOrigin::start(&ca);
    let proxy = Strata::start(&["--tcp-hosts", "^localhost:", "--upstream-ca", ca.pem_path().to_str().unwrap()]);
    let out = curl_https(&proxy, &proxy.ca_cert_path(), &origin.url("/abrupt"));
    let (status, body) = status_and_body(&out);
    proxy.check(status == 200 && body == "bye\n", format!("curl: {} {status} {body:?} {}", out.status, out.stderr));
    proxy.wait_for_stdout_line(|l| tcp_line(&format!("localhost:{}", origin.port)).is_match(l), SOON);
}

#[test]
fn ca_files_are_created_private_and_reused_byte_for_byte() {
    let parent = tempfile::tempdir().unwrap();
    let confdir = parent.path().join("conf"); // does not exist yet
    let first = Strata::start_in(&confdir, &[], &[]);
    let mode = std::fs::metadata(confdir.join("strata-ca.pem")).unwrap().permissions().mode();
    first.check(mode & 0o777 == 0o600, format!("strata-ca.pem has mode {:o}, expected 600", mode & 0o777));
    let before: Vec<Vec<u8>> = CA_FILES.iter().map(|f| std::fs::read(confdir.join(f)).unwrap()).collect();
    first.check(before.iter().all(|b| !b.is_empty()), "an empty CA file");
    assert_eq!(before[1], before[2], "strata-ca-cert.cer differs from strata-ca-cert.pem");
    let key_and_cert = String::from_utf8(before[0].clone()).unwrap();
    assert!(key_and_cert.contains("PRIVATE KEY-----") && key_and_cert.contains("BEGIN CERTIFICATE"), "{key_and_cert}");
    drop(first);

    let second = Strata::start_in(&confdir, &[], &[]);
    for (name, old) in CA_FILES.iter().zip(&before) {
        let now = std::fs::read(confdir.join(name)).unwrap();
        second.check(&now == old, format!("{name} changed on the second start"));
    }
    // The second start serves the same CA it found.
    let served = curl(&second, &["http://strata/cert/pem"]).stdout;
    assert_eq!(served.as_bytes(), before[1].as_slice());
}

#[test]
fn corrupt_ca_file_is_refused_with_exit_2_and_left_untouched() {
    let real = tempfile::tempdir().unwrap();
    drop(Strata::start_in(real.path(), &[], &[]));
    let real_pem = std::fs::read_to_string(real.path().join("strata-ca.pem")).unwrap();
    let cert_only = real_pem[real_pem.find("-----BEGIN CERTIFICATE-----").unwrap()..].to_string();
    for corrupt in ["this is not a CA\n".to_string(), "-----BEGIN PRIVATE KEY-----\nAAAA\n".to_string(), cert_only] {
        let confdir = tempfile::tempdir().unwrap();
        let path = confdir.path().join("strata-ca.pem");
        std::fs::write(&path, &corrupt).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
        cmd.args(["-p", "0", "--confdir"]).arg(confdir.path());
        let done = run_with_timeout(cmd, Duration::from_secs(20));
        assert_eq!(done.status.code(), Some(2), "exit status with {corrupt:?}; stderr: {}", done.stderr);
        assert!(
            done.stderr.contains(&path.display().to_string()),
            "stderr does not name {}: {}",
            path.display(),
            done.stderr
        );
        assert!(!done.stderr.contains("listening on"), "{}", done.stderr);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), corrupt, "strata-ca.pem was modified");
    }
}

#[test]
fn a_ca_put_into_the_confdir_before_the_first_start_is_used() {
    let ca = TestCa::new("strata test origin CA");
    let origin = HttpsOrigin::start(&ca);
    let own = TestCa::new("my own interception CA");
    let confdir = tempfile::tempdir().unwrap();
    std::fs::write(confdir.path().join("strata-ca.pem"), format!("{}{}", own.key_pem, own.cert_pem)).unwrap();
    let proxy = Strata::start_in(confdir.path(), &[], &["--upstream-ca", ca.pem_path().to_str().unwrap()]);
    proxy.check(read_pem_cert(&proxy.ca_cert_path()) == own.cert_der, "strata-ca-cert.pem is not the CA given");
    assert_hello(&proxy, &curl_https(&proxy, &own.pem_path(), &origin.url("/hello")));
}

#[test]
fn p12_file_holds_the_ca_certificate_for_openssl() {
    let proxy = Strata::start(&[]);
    let p12 = proxy.confdir().join("strata-ca-cert.p12");
    let mut cmd = Command::new("openssl");
    cmd.args(["pkcs12", "-in"]).arg(&p12).args(["-passin", "pass:", "-nokeys"]);
    let done = run_with_timeout(cmd, Duration::from_secs(20));
    assert!(done.status.success(), "openssl pkcs12 failed: {}\n{}", done.status, done.stderr);
    let certs: Vec<CertificateDer> =
        rustls_pemfile::certs(&mut done.stdout.as_bytes()).collect::<Result<_, _>>().expect("PEM from openssl");
    assert_eq!(certs.len(), 1, "{}", done.stdout);
    assert_eq!(certs[0], read_pem_cert(&proxy.ca_cert_path()), "the p12 holds another certificate");
    assert!(!done.stdout.contains("PRIVATE KEY"), "the p12 holds a private key");
}

/// One TLS handshake through a CONNECT tunnel by `openssl s_client` (TLS 1.3, or 1.2 with `tls12`), saving
/// the session it got to `session` and offering the one saved there before, if any: what it printed.
fn s_client_through(proxy: &Strata, session: &Path, tls12: bool) -> String {
    let offer = if session.exists() { format!("-sess_in {}", session.display()) } else { String::new() };
    let version = if tls12 { "-tls1_2" } else { "-tls1_3" };
    // stdin stays open a moment, so that s_client reads the session tickets that follow the handshake.
    let script = format!(
        "sleep 1 | openssl s_client -proxy 127.0.0.1:{} -connect example.test:443 -servername example.test {version} \
         -sess_out {out} {offer}",
        proxy.port,
        out = session.display()
    );
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &script]);
    let done = run_with_timeout(cmd, SOON);
    format!("{}{}", done.stdout, done.stderr)
}

#[test]
fn a_client_that_offers_its_tls_session_again_resumes_it() {
    let proxy = Strata::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    for tls12 in [false, true] {
        let session = dir.path().join(if tls12 { "s12.pem" } else { "s13.pem" });
        let first = s_client_through(&proxy, &session, tls12);
        proxy.check(first.contains("New, TLSv1."), format!("first handshake: {first}"));
        proxy.check(session.exists(), format!("no session saved: {first}"));
        let again = s_client_through(&proxy, &session, tls12);
        proxy.check(again.contains("Reused, TLSv1."), format!("the session was not resumed: {again}"));
    }
}

/// A listener that only counts connections: each attempt to reach it completes in the kernel's backlog,
/// so `attempts()` right after an exchange sees every connection made during it.
struct Trap {
    listener: TcpListener,
    seen: usize,
}

impl Trap {
    fn new() -> Trap {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        Trap { listener, seen: 0 }
    }

    fn port(&self) -> u16 {
        self.listener.local_addr().unwrap().port()
    }

    fn attempts(&mut self) -> usize {
        loop {
            match self.listener.accept() {
                Ok(_) => self.seen += 1,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return self.seen,
                Err(e) => panic!("accept: {e}"),
            }
        }
    }
}

#[test]
fn ca_page_is_answered_locally_with_links_and_the_ca_certificate() {
    // In upstream mode every server connection goes to the next proxy: here a trap that counts them.
    let mut trap = Trap::new();
    let upstream = format!("upstream:http://127.0.0.1:{}", trap.port());
    let regular = Strata::start(&[]);
    let chained = Strata::start(&["-m", &upstream]);
    for proxy in [&regular, &chained] {
        let page = curl(proxy, &["--include", "http://strata/"]).stdout;
        let (head, body) = page.split_once("\r\n\r\n").unwrap();
        proxy.check(head.starts_with("HTTP/1.1 200"), format!("CA page status: {head}"));
        proxy.check(head.to_ascii_lowercase().contains("content-type: text/html"), format!("CA page type: {head}"));
        for link in ["href=\"/cert/pem\"", "href=\"/cert/cer\"", "href=\"/cert/p12\""] {
            proxy.check(body.contains(link), format!("CA page lacks {link}: {body}"));
        }
        let pem = curl(proxy, &["http://strata/cert/pem"]).stdout;
        let on_disk = std::fs::read_to_string(proxy.ca_cert_path()).unwrap();
        proxy.check(pem == on_disk, format!("/cert/pem differs from strata-ca-cert.pem:\n{pem}\n---\n{on_disk}"));
        let cer = curl(proxy, &["http://strata/cert/cer"]).stdout;
        proxy.check(cer == on_disk, "/cert/cer differs from strata-ca-cert.pem");
        let p12_path = tempfile::NamedTempFile::new().unwrap();
        curl(proxy, &["--output", p12_path.path().to_str().unwrap(), "http://strata/cert/p12"]);
        let p12 = std::fs::read(p12_path.path()).unwrap();
        let on_disk = std::fs::read(proxy.confdir().join("strata-ca-cert.p12")).unwrap();
        proxy.check(p12 == on_disk, "/cert/p12 differs from strata-ca-cert.p12");
        proxy.wait_for_stdout_line(|l| flow_line("GET", "http://strata/cert/p12", 200).is_match(l), SOON);
    }
    assert_eq!(trap.attempts(), 0, "strata connected upstream for its own CA page");
}

#[test]
fn sslkeylogfile_records_secrets_of_both_sides() {
    let ca = TestCa::new("strata test origin CA");
    let origin = HttpsOrigin::start(&ca);
    let confdir = tempfile::tempdir().unwrap();
    let keylog = confdir.path().join("keys.log");
    let proxy = Strata::start_in(
        confdir.path(),
        &[("SSLKEYLOGFILE", keylog.to_str().unwrap())],
        &["--upstream-ca", ca.pem_path().to_str().unwrap()],
    );
    assert_hello(&proxy, &curl_https(&proxy, &proxy.ca_cert_path(), &origin.url("/hello")));
    let log = std::fs::read_to_string(&keylog).unwrap_or_default();
    proxy.check(!log.is_empty(), format!("{} is empty or missing", keylog.display()));
    // One client random for curl's handshake with strata, another for strata's with the origin.
    let randoms: HashSet<&str> = log
        .lines()
        .filter_map(|l| {
            let mut fields = l.split(' ');
            let label = fields.next()?;
            (label == "CLIENT_TRAFFIC_SECRET_0" || label == "CLIENT_RANDOM").then(|| fields.next()).flatten()
        })
        .collect();
    proxy.check(randoms.len() >= 2, format!("expected secrets of two handshakes, got:\n{log}"));
}

/// Opens a CONNECT tunnel to `target` through `proxy` and completes a TLS handshake for `name` trusting
/// only strata's CA. Returns the certificate chain strata presented.
fn handshake_through_connect(proxy: &Strata, target: &str, name: &str) -> Vec<CertificateDer<'static>> {
    let mut tcp = connect(proxy.port, SOON);
    write!(tcp, "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert!(tcp.read(&mut byte).unwrap() == 1, "proxy closed during CONNECT: {head:?}");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    proxy.check(head.starts_with("HTTP/1.1 200"), format!("CONNECT answered {head}"));
    let config = client_config_trusting(&[read_pem_cert(&proxy.ca_cert_path())]);
    let server_name = ServerName::try_from(name.to_string()).unwrap();
    let mut tls = rustls::ClientConnection::new(config, server_name).unwrap();
    while tls.is_handshaking() {
        if let Err(e) = tls.complete_io(&mut tcp) {
            proxy.fail(&format!("TLS handshake for {name} through CONNECT {target}: {e}"));
        }
    }
    let chain = tls.peer_certificates().expect("server certificates").iter().map(|c| c.clone().into_owned()).collect();
    tls.send_close_notify();
    let _ = tls.complete_io(&mut tcp);
    chain
}

#[test]
fn leaf_certificates_are_short_lived_server_auth_certificates_for_the_name() {
    use x509_parser::prelude::*;
    let proxy = Strata::start(&[]);
    let port = unused_port(); // nothing is dialled: the handshake with the client needs no server
    let ca_der = read_pem_cert(&proxy.ca_cert_path());
    let (_, ca) = X509Certificate::from_der(ca_der.as_ref()).unwrap();
    for (host, expect_dns) in [("localhost", true), ("127.0.0.1", false)] {
        let chain = handshake_through_connect(&proxy, &format!("{host}:{port}"), host);
        let (_, leaf) = X509Certificate::from_der(chain[0].as_ref()).unwrap();
        let validity = leaf.validity();
        let days = (validity.not_after.timestamp() - validity.not_before.timestamp()) / 86_400;
        assert!(days < 398, "{host}: leaf valid for {days} days");
        assert!(validity.is_valid(), "{host}: leaf not valid now: {validity:?}");
        let eku = leaf.extended_key_usage().unwrap().expect("extended key usage").value;
        assert!(eku.server_auth, "{host}: no serverAuth EKU: {eku:?}");
        assert!(!leaf.is_ca(), "{host}: the leaf is a CA");
        assert_eq!(leaf.issuer(), ca.subject(), "{host}: not issued by strata's CA");
        let san = leaf.subject_alternative_name().unwrap().expect("subjectAltName").value;
        let matches = san.general_names.iter().any(|n| match n {
            GeneralName::DNSName(d) => expect_dns && *d == host,
            GeneralName::IPAddress(ip) => !expect_dns && *ip == [127, 0, 0, 1],
            _ => false,
        });
        assert!(matches, "{host}: SAN {san:?}");
    }
}

#[test]
fn verbose_logs_the_layer_stack_of_an_intercepted_connection() {
    let ca = TestCa::new("strata test origin CA");
    let origin = HttpsOrigin::start(&ca);
    let proxy = Strata::start(&["-v", "--upstream-ca", ca.pem_path().to_str().unwrap()]);
    assert_hello(&proxy, &curl_https(&proxy, &proxy.ca_cert_path(), &origin.url("/hello")));
    proxy.wait_for_stderr_line(|l| l.contains("RegularProxy > Http1Layer > HttpLayer > TlsLayer"), SOON);
    // curl offers h2 first, and strata speaks it.
    proxy.wait_for_stderr_line(
        |l| l.contains("RegularProxy > Http1Layer > HttpLayer > TlsLayer > Http2Layer > HttpLayer"),
        SOON,
    );
}

#[test]
fn no_http2_keeps_intercepted_connections_on_http1() {
    let ca = TestCa::new("strata test origin CA");
    let origin = HttpsOrigin::start(&ca);
    let proxy = Strata::start(&["-v", "--no-http2", "--upstream-ca", ca.pem_path().to_str().unwrap()]);
    assert_hello(&proxy, &curl_https(&proxy, &proxy.ca_cert_path(), &origin.url("/hello")));
    proxy.wait_for_stderr_line(
        |l| l.contains("RegularProxy > Http1Layer > HttpLayer > TlsLayer > Http1Layer > HttpLayer"),
        SOON,
    );
}
