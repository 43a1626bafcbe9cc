//! Who may use the proxy, end to end: mitmproxy's `block_global` and `block_private` as
//! `--block-global` (on by default) / `--no-block-global` and `--block-private` / `--no-block-private`.
//! Each test builds its own network namespaces: one for strata and two client namespaces joined to it by
//! veth pairs, one with a publicly routable address (11.0.0.2) and one with a private one (10.231.7.2).
//! curl (or a raw socket from python3) in a client namespace then talks to strata, and the tests check
//! who is refused (403 naming the option that lifts the block, a SOCKS5 "not allowed by ruleset" reply,
//! a warning on stderr, no flow line on stdout) and who is served. A request for `http://strata/` is
//! answered by strata itself, so no origin server is needed. Needs root, iproute2, curl and python3; a
//! test is skipped (with a note) if `ip netns add` is not permitted.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// strata's address on the link to the global client.
const PROXY_GLOBAL_SIDE_IP: &str = "11.0.0.1";
/// A publicly routable client address (outside every IANA special-purpose range).
const GLOBAL_CLIENT_IP: &str = "11.0.0.2";
/// strata's address on the link to the private client.
const PROXY_PRIVATE_SIDE_IP: &str = "10.231.7.1";
/// A private (RFC 1918) client address.
const PRIVATE_CLIENT_IP: &str = "10.231.7.2";
const PORT: u16 = 8080;
/// How long strata may take to print its `listening on` line, and to log what a test waits for.
const WAIT: Duration = Duration::from_secs(20);

/// The namespaces of one test.
#[derive(Clone, Copy)]
enum Ns {
    /// Where strata runs.
    Proxy,
    /// The client with a global address.
    Global,
    /// The client with a private address.
    Private,
}

impl Ns {
    fn suffix(self) -> &'static str {
        match self {
            Ns::Proxy => "p",
            Ns::Global => "g",
            Ns::Private => "l",
        }
    }

    /// The address strata listens on as seen from this client namespace.
    fn proxy_ip(self) -> &'static str {
        match self {
            Ns::Proxy => "127.0.0.1",
            Ns::Global => PROXY_GLOBAL_SIDE_IP,
            Ns::Private => PROXY_PRIVATE_SIDE_IP,
        }
    }
}

/// Three namespaces (proxy, global client, private client) joined by two veth pairs; removed, with every
/// process started in them, on drop.
struct Testbed {
    prefix: String,
    children: Vec<Child>,
    confdir: tempfile::TempDir,
}

impl Testbed {
    /// Builds the namespaces, or returns `None` (after printing why) if this machine does not let the test
    /// create network namespaces.
    fn create() -> Option<Testbed> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let prefix = format!("sa{}x{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let probe = Command::new("ip")
            .args(["netns", "add", &format!("{prefix}{}", Ns::Proxy.suffix())])
            .output()
            .expect("iproute2's `ip` runs");
        if !probe.status.success() {
            eprintln!(
                "skipping: cannot create a network namespace (needs root): {}",
                String::from_utf8_lossy(&probe.stderr).trim()
            );
            return None;
        }
        let bed = Testbed { prefix, children: Vec::new(), confdir: tempfile::tempdir().unwrap() };
        for ns in [Ns::Global, Ns::Private] {
            run(&["ip", "netns", "add", &bed.ns(ns)]);
        }
        for ns in [Ns::Proxy, Ns::Global, Ns::Private] {
            run(&["ip", "-n", &bed.ns(ns), "link", "set", "lo", "up"]);
        }
        for (client, proxy_ip, client_ip) in [
            (Ns::Global, PROXY_GLOBAL_SIDE_IP, GLOBAL_CLIENT_IP),
            (Ns::Private, PROXY_PRIVATE_SIDE_IP, PRIVATE_CLIENT_IP),
        ] {
            // The pair is created straight inside the two namespaces: nothing appears in the root one.
            let proxy_dev = format!("to{}", client.suffix());
            let (proxy_ns, client_ns) = (bed.ns(Ns::Proxy), bed.ns(client));
            run(&[
                "ip", "link", "add", "name", &proxy_dev, "netns", &proxy_ns, "type", "veth", "peer", "name", "up0",
                "netns", &client_ns,
            ]);
            for (ns, dev, addr) in [(&proxy_ns, proxy_dev.as_str(), proxy_ip), (&client_ns, "up0", client_ip)] {
                run(&["ip", "-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
                run(&["ip", "-n", ns, "link", "set", dev, "up"]);
            }
        }
        Some(bed)
    }

    fn ns(&self, ns: Ns) -> String {
        format!("{}{}", self.prefix, ns.suffix())
    }

    /// Starts strata in the proxy namespace on 0.0.0.0:8080 with `args`, and waits for its `listening on`
    /// line.
    fn start_strata(&mut self, args: &[&str]) -> Strata {
        let port = PORT.to_string();
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns(Ns::Proxy), env!("CARGO_BIN_EXE_strata")])
            .args(["--listen-host", "0.0.0.0", "-p", &port, "--confdir"])
            .arg(self.confdir.path())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("strata starts");
        let strata = Strata {
            stdout: Lines::collect(child.stdout.take().unwrap()),
            stderr: Lines::collect(child.stderr.take().unwrap()),
        };
        self.children.push(child);
        strata.stderr.wait_for("strata's `listening on` line", |line| line.contains("listening on"));
        strata
    }

    /// Runs `argv` in namespace `ns` to completion.
    fn exec_in(&self, ns: Ns, argv: &[&str]) -> Output {
        Command::new("ip").args(["netns", "exec", &self.ns(ns)]).args(argv).output().expect("ip netns exec runs")
    }

    /// `curl -sS -i` in namespace `ns` through strata as an HTTP proxy, whatever its exit status.
    fn curl_via_proxy(&self, ns: Ns, extra: &[&str], url: &str) -> Output {
        let proxy = format!("http://{}:{PORT}", ns.proxy_ip());
        let mut argv = vec!["curl", "-sS", "-i", "--max-time", "10", "-x", &proxy];
        argv.extend_from_slice(extra);
        argv.push(url);
        self.exec_in(ns, &argv)
    }

    /// `curl -sS -i http://strata/` in namespace `ns` through strata as an HTTP proxy; the response.
    fn fetch_onboarding_page(&self, ns: Ns, extra: &[&str]) -> Response {
        let out = self.curl_via_proxy(ns, extra, "http://strata/");
        assert!(out.status.success(), "curl failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
        Response::parse(&String::from_utf8_lossy(&out.stdout))
    }

    /// Sends `request` from namespace `ns` to strata over a raw socket and reads until strata closes the
    /// connection or five seconds pass without a byte. Returns what came back and whether it was closed.
    fn raw_exchange(&self, ns: Ns, request: &str) -> (String, bool) {
        const SCRIPT: &str = r#"
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.sendall(sys.argv[3].encode())
data, end = b"", "closed"
try:
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
except socket.timeout:
    end = "open"
except ConnectionResetError:
    pass
sys.stdout.write(end + "\n" + data.decode("latin-1"))
"#;
        let out = self.exec_in(ns, &["python3", "-c", SCRIPT, ns.proxy_ip(), &PORT.to_string(), request]);
        assert!(out.status.success(), "raw client failed: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (end, reply) = text.split_once('\n').expect("the raw client reports how the connection ended");
        (reply.to_string(), end == "closed")
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in [Ns::Global, Ns::Private, Ns::Proxy] {
            let _ = Command::new("ip").args(["netns", "del", &self.ns(ns)]).output();
        }
    }
}

fn run(argv: &[&str]) {
    let out = Command::new(argv[0]).args(&argv[1..]).output().unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}"));
    assert!(out.status.success(), "{argv:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// What a running strata has printed. The process itself belongs to the testbed.
struct Strata {
    stdout: Arc<Lines>,
    stderr: Arc<Lines>,
}

impl Strata {
    /// Fails unless stdout has no flow line from `client_ip`.
    fn assert_no_flow_from(&self, client_ip: &str) {
        let stdout = self.stdout.text();
        let prefix = format!("{client_ip}:");
        assert!(
            !stdout.lines().any(|line| line.starts_with(&prefix)),
            "a refused client must not get a flow line, but stdout has:\n{stdout}"
        );
    }
}

/// Lines a child prints, collected by a background thread; waiters wake on each new line and at the end.
#[derive(Default)]
struct Lines {
    /// What was printed so far, and whether the stream has ended.
    lines: Mutex<(Vec<String>, bool)>,
    grew: Condvar,
}

impl Lines {
    fn collect(from: impl Read + Send + 'static) -> Arc<Lines> {
        let lines = Arc::new(Lines::default());
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(from).lines() {
                let Ok(line) = line else { break };
                sink.lines.lock().unwrap().0.push(line);
                sink.grew.notify_all();
            }
            sink.lines.lock().unwrap().1 = true;
            sink.grew.notify_all();
        });
        lines
    }

    /// The first line matching `pred`, waiting up to [`WAIT`] for it; panics with everything printed so far
    /// if none comes (or the stream ends without it, e.g. because strata exited).
    fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        let mut state = self.lines.lock().unwrap();
        loop {
            let (lines, ended) = &*state;
            if let Some(line) = lines.iter().find(|line| pred(line)) {
                return line.clone();
            }
            let now = Instant::now();
            if *ended || now >= deadline {
                let why = if *ended { "before the output ended".to_string() } else { format!("within {WAIT:?}") };
                panic!("no {what} {why}; got:\n{}", lines.join("\n"));
            }
            state = self.grew.wait_timeout(state, deadline - now).unwrap().0;
        }
    }

    fn text(&self) -> String {
        self.lines.lock().unwrap().0.join("\n")
    }
}

/// An HTTP response as `curl -i` printed it.
struct Response {
    status_line: String,
    body: String,
}

impl Response {
    fn parse(text: &str) -> Response {
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
        let status_line = head.lines().next().unwrap_or_default().to_string();
        Response { status_line, body: body.to_string() }
    }

    fn status(&self) -> u16 {
        self.status_line.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0)
    }
}

/// Checks a refusal's body: one line naming the client's address and the option that lets it in.
fn assert_names_client_and_option(body: &str, client_ip: &str, option: &str) {
    assert!(body.contains(client_ip), "the refusal should name the client {client_ip}: {body:?}");
    assert!(body.contains(option), "the refusal should name {option}: {body:?}");
    assert_eq!(body.trim_end().lines().count(), 1, "the refusal should be one line: {body:?}");
}

/// Waits for strata's warning about refusing `client_ip` under `option` (which `lifted_by` turns off).
fn wait_for_warning(strata: &Strata, client_ip: &str, option: &str, lifted_by: &str) -> String {
    strata.stderr.wait_for(&format!("WARN line about refusing {client_ip}"), |line| {
        line.contains("WARN") && line.contains(client_ip) && line.contains(option) && line.contains(lifted_by)
    })
}

#[test]
fn global_client_is_refused_with_403_naming_the_option_by_default() {
    let Some(mut bed) = Testbed::create() else { return };
    let strata = bed.start_strata(&[]);

    let refused = bed.fetch_onboarding_page(Ns::Global, &[]);
    assert_eq!(refused.status_line.trim_end(), "HTTP/1.1 403 Forbidden", "body: {:?}", refused.body);
    assert_names_client_and_option(&refused.body, GLOBAL_CLIENT_IP, "--no-block-global");
    wait_for_warning(&strata, GLOBAL_CLIENT_IP, "--block-global", "--no-block-global");

    // The same strata goes on serving the next client, which is not global.
    let served = bed.fetch_onboarding_page(Ns::Private, &[]);
    assert_eq!(served.status(), 200, "a private client is served by default: {}", served.status_line);
    strata.stdout.wait_for("flow line for the private client", |line| {
        line.starts_with(&format!("{PRIVATE_CLIENT_IP}:")) && line.contains("GET http://strata/ -> 200")
    });
    strata.assert_no_flow_from(GLOBAL_CLIENT_IP);
}

#[test]
fn no_block_global_lets_a_global_client_through() {
    let Some(mut bed) = Testbed::create() else { return };
    let strata = bed.start_strata(&["--no-block-global"]);

    let served = bed.fetch_onboarding_page(Ns::Global, &[]);
    assert_eq!(served.status(), 200, "{}: {:?}", served.status_line, served.body);
    strata.stdout.wait_for("flow line for the global client", |line| {
        line.starts_with(&format!("{GLOBAL_CLIENT_IP}:")) && line.contains("GET http://strata/ -> 200")
    });
}

#[test]
fn block_private_refuses_a_private_client_but_never_loopback() {
    let Some(mut bed) = Testbed::create() else { return };
    let strata = bed.start_strata(&["--block-private"]);

    let refused = bed.fetch_onboarding_page(Ns::Private, &[]);
    assert_eq!(refused.status_line.trim_end(), "HTTP/1.1 403 Forbidden", "body: {:?}", refused.body);
    assert_names_client_and_option(&refused.body, PRIVATE_CLIENT_IP, "--no-block-private");
    wait_for_warning(&strata, PRIVATE_CLIENT_IP, "--block-private", "--no-block-private");

    // Loopback, from inside strata's own namespace, is neither global nor private.
    let served = bed.fetch_onboarding_page(Ns::Proxy, &[]);
    assert_eq!(served.status(), 200, "loopback is never blocked: {}: {:?}", served.status_line, served.body);
    strata.stdout.wait_for("flow line for the loopback client", |line| {
        line.starts_with("127.0.0.1:") && line.contains("GET http://strata/ -> 200")
    });
    strata.assert_no_flow_from(PRIVATE_CLIENT_IP);
}

#[test]
fn blocked_connect_gets_403_not_a_tunnel() {
    let Some(mut bed) = Testbed::create() else { return };
    let strata = bed.start_strata(&[]);

    let (reply, closed) =
        bed.raw_exchange(Ns::Global, "CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.1 403 Forbidden\r\n"), "CONNECT from a global client: {reply:?}");
    let body = reply.split_once("\r\n\r\n").map(|(_, body)| body).unwrap_or_default();
    assert_names_client_and_option(body, GLOBAL_CLIENT_IP, "--no-block-global");
    assert!(closed, "strata should close the connection after refusing it; got {reply:?} and it stayed open");
    wait_for_warning(&strata, GLOBAL_CLIENT_IP, "--block-global", "--no-block-global");
    strata.assert_no_flow_from(GLOBAL_CLIENT_IP);
}

#[test]
fn proxyauth_does_not_lift_block_global() {
    let Some(mut bed) = Testbed::create() else { return };
    let strata = bed.start_strata(&["--proxyauth", "user:secret"]);

    let refused = bed.fetch_onboarding_page(Ns::Global, &["-U", "user:secret"]);
    assert_eq!(refused.status_line.trim_end(), "HTTP/1.1 403 Forbidden", "body: {:?}", refused.body);
    assert_names_client_and_option(&refused.body, GLOBAL_CLIENT_IP, "--no-block-global");

    // The credentials are right: a client that is not blocked gets in with them.
    let served = bed.fetch_onboarding_page(Ns::Private, &["-U", "user:secret"]);
    assert_eq!(served.status(), 200, "{}: {:?}", served.status_line, served.body);
    strata.assert_no_flow_from(GLOBAL_CLIENT_IP);
}

#[test]
fn blocked_socks5_client_gets_not_allowed_by_ruleset() {
    let Some(mut bed) = Testbed::create() else { return };
    let strata = bed.start_strata(&["-m", "socks5"]);
    let socks = |ns: Ns| {
        let proxy = format!("{}:{PORT}", ns.proxy_ip());
        bed.exec_in(ns, &["curl", "-sS", "--max-time", "10", "--socks5-hostname", &proxy, "http://strata/"])
    };

    let refused = socks(Ns::Global);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    // Exit code 97 is CURLE_PROXY; curl prints the SOCKS5 reply code in parentheses:
    // `curl: (97) Can't complete SOCKS5 connection to strata. (2)`, 2 being "not allowed by ruleset".
    assert_eq!(refused.status.code(), Some(97), "curl through SOCKS5 from a global client: {stderr}");
    assert!(stderr.contains("SOCKS5") && stderr.contains(". (2)"), "curl should report SOCKS5 reply 2: {stderr}");
    wait_for_warning(&strata, GLOBAL_CLIENT_IP, "--block-global", "--no-block-global");
    strata.assert_no_flow_from(GLOBAL_CLIENT_IP);

    // The private client gets through the same SOCKS5 listener.
    let served = socks(Ns::Private);
    assert!(served.status.success(), "curl through SOCKS5 from a private client: {}", {
        String::from_utf8_lossy(&served.stderr)
    });
}
