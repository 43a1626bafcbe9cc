//! Transparent mode behind iptables, end to end: three network namespaces (client, router, origin) joined
//! by veth pairs, an iptables REDIRECT of ports 80 and 443 on the router to strata in transparent mode,
//! and curl in the client namespace fetching plain HTTP and HTTPS from the origin. Needs root, iproute2,
//! iptables, curl, python3 and openssl (`.ci/run` installs them).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

const CLIENT_IP: &str = "10.213.1.2";
const ROUTER_CLIENT_SIDE_IP: &str = "10.213.1.1";
const ROUTER_ORIGIN_SIDE_IP: &str = "10.213.2.1";
const ORIGIN_IP: &str = "10.213.2.2";

/// The three namespaces; removed (with every process inside) on drop.
struct Testbed {
    prefix: String,
    children: Vec<Child>,
}

impl Testbed {
    fn ns(&self, role: &str) -> String {
        format!("{}{role}", self.prefix)
    }

    fn create() -> Testbed {
        let bed = Testbed { prefix: format!("st{}", std::process::id()), children: Vec::new() };
        let (c, r, o) = (bed.ns("c"), bed.ns("r"), bed.ns("o"));
        for ns in [&c, &r, &o] {
            run(&["ip", "netns", "add", ns]);
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        run(&["ip", "link", "add", &format!("{c}0"), "type", "veth", "peer", "name", &format!("{r}0")]);
        run(&["ip", "link", "add", &format!("{r}1"), "type", "veth", "peer", "name", &format!("{o}0")]);
        for (dev, ns, addr) in [
            (format!("{c}0"), &c, format!("{CLIENT_IP}/24")),
            (format!("{r}0"), &r, format!("{ROUTER_CLIENT_SIDE_IP}/24")),
            (format!("{r}1"), &r, format!("{ROUTER_ORIGIN_SIDE_IP}/24")),
            (format!("{o}0"), &o, format!("{ORIGIN_IP}/24")),
        ] {
            run(&["ip", "link", "set", &dev, "netns", ns]);
            run(&["ip", "-n", ns, "addr", "add", &addr, "dev", &dev]);
            run(&["ip", "-n", ns, "link", "set", &dev, "up"]);
        }
        run(&["ip", "-n", &c, "route", "add", "default", "via", ROUTER_CLIENT_SIDE_IP]);
        run(&["ip", "-n", &o, "route", "add", "default", "via", ROUTER_ORIGIN_SIDE_IP]);
        run(&["ip", "netns", "exec", &r, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        for port in ["80", "443"] {
            run(&[
                "ip",
                "netns",
                "exec",
                &r,
                "iptables",
                "-t",
                "nat",
                "-A",
                "PREROUTING",
                "-i",
                &format!("{r}0"),
                "-p",
                "tcp",
                "--dport",
                port,
                "-j",
                "REDIRECT",
                "--to-port",
                "8080",
            ]);
        }
        bed
    }

    fn spawn_in(&mut self, role: &str, argv: &[&str], dir: &Path) -> usize {
        let ns = self.ns(role);
        let child = Command::new("ip")
            .args(["netns", "exec", &ns])
            .args(argv)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {argv:?} in {ns}: {e}"));
        self.children.push(child);
        self.children.len() - 1
    }

    fn exec_in(&self, role: &str, argv: &[&str]) -> Output {
        Command::new("ip").args(["netns", "exec", &self.ns(role)]).args(argv).output().expect("ip netns exec runs")
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for role in ["c", "r", "o"] {
            let _ = Command::new("ip").args(["netns", "del", &self.ns(role)]).status();
        }
    }
}

fn run(argv: &[&str]) {
    let out = Command::new(argv[0]).args(&argv[1..]).output().unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}"));
    assert!(out.status.success(), "{argv:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// A test CA and an origin certificate for `origin.test` and the origin's IP, as PEM files in `dir`.
fn write_origin_certs(dir: &Path) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "transparent test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["origin.test".to_string(), ORIGIN_IP.to_string()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("origin.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("origin.key"), key.serialize_pem()).unwrap();
    std::fs::write(dir.join("index.html"), "hello from the origin\n").unwrap();
}

/// Waits until something in namespace `role` accepts TCP connections on `ip:port`.
fn wait_for_port(bed: &Testbed, role: &str, ip: &str, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let probe = format!("import socket; socket.create_connection(('{ip}', {port}), timeout=1)");
    while Instant::now() < deadline {
        if bed.exec_in(role, &["python3", "-c", &probe]).status.success() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on {ip}:{port} in namespace {role}");
}

fn curl(bed: &Testbed, args: &[&str]) -> String {
    let mut argv = vec!["curl", "-sS", "--max-time", "10"];
    argv.extend_from_slice(args);
    let out = bed.exec_in("c", &argv);
    assert!(out.status.success(), "curl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn curl_behind_iptables_redirect_reaches_origin_over_http_and_https() {
    if unsafe { libc::geteuid() } != 0 {
        panic!("this test needs root for network namespaces and iptables (CI runs as root)");
    }
    let dir = tempfile::tempdir().unwrap();
    let confdir = dir.path().join("confdir");
    write_origin_certs(dir.path());
    let mut bed = Testbed::create();
    bed.spawn_in("o", &["python3", "-m", "http.server", "80", "--bind", ORIGIN_IP], dir.path());
    bed.spawn_in(
        "o",
        &["openssl", "s_server", "-quiet", "-accept", "443", "-cert", "origin.pem", "-key", "origin.key", "-WWW"],
        dir.path(),
    );
    let strata = bed.spawn_in(
        "r",
        &[
            env!("CARGO_BIN_EXE_strata"),
            "-m",
            "transparent",
            "--listen-host",
            "0.0.0.0",
            "-p",
            "8080",
            "--confdir",
            confdir.to_str().unwrap(),
            "--upstream-ca",
            dir.path().join("ca.pem").to_str().unwrap(),
        ],
        dir.path(),
    );
    let stderr = bed.children[strata].stderr.take().unwrap();
    let mut stderr = BufReader::new(stderr);
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("listening on 0.0.0.0:8080 (transparent)"), "unexpected first line: {line}");
    wait_for_port(&bed, "o", ORIGIN_IP, 80);
    wait_for_port(&bed, "o", ORIGIN_IP, 443);

    let strata_ca = confdir.join("strata-ca-cert.pem");
    let strata_ca = strata_ca.to_str().unwrap();
    assert_eq!(curl(&bed, &[&format!("http://{ORIGIN_IP}/index.html")]), "hello from the origin\n");
    // No SNI: the leaf names the original destination's IP.
    assert_eq!(
        curl(&bed, &["--cacert", strata_ca, &format!("https://{ORIGIN_IP}/index.html")]),
        "hello from the origin\n"
    );
    // SNI: the leaf names the host, and strata verifies the origin as origin.test.
    let resolve = format!("origin.test:443:{ORIGIN_IP}");
    assert_eq!(
        curl(&bed, &["--cacert", strata_ca, "--resolve", &resolve, "https://origin.test/index.html"]),
        "hello from the origin\n"
    );

    // An absolute-form target naming another host does not re-route the request: it goes to the original
    // destination (the router's own address would otherwise be reachable through the proxy).
    let elsewhere = format!("http://{ROUTER_ORIGIN_SIDE_IP}:8080/index.html");
    assert_eq!(
        curl(&bed, &["--request-target", &elsewhere, "-H", "Host:", &format!("http://{ORIGIN_IP}/")]),
        "hello from the origin\n"
    );

    // A connection straight to strata's port (not redirected) is refused rather than looped.
    let direct =
        bed.exec_in("c", &["curl", "-sS", "--max-time", "5", &format!("http://{ROUTER_CLIENT_SIDE_IP}:8080/")]);
    assert!(!direct.status.success(), "a connection that was not redirected must not be served");

    let child = &mut bed.children[strata];
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    assert!(status.success(), "strata exited with {status}");
    for expected in [
        format!("{CLIENT_IP}:"),
        format!("GET http://{ORIGIN_IP}/index.html -> 200"),
        format!("GET https://{ORIGIN_IP}/index.html -> 200"),
        "GET https://origin.test/index.html -> 200".to_string(),
    ] {
        assert!(stdout.contains(&expected), "flow log lacks {expected:?}:\n{stdout}");
    }
}
