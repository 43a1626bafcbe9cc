//! A real browser through strata: headless Chromium (Debian's `chromium`) loads an HTTPS page through
//! strata in regular mode, trusting strata's CA and nothing else (a fresh NSS database in a fresh HOME,
//! no `--ignore-certificate-errors`). Chromium offers h2 over the intercepted TLS, so the flow reaches
//! strata as HTTP/2 and is translated for the HTTP/1.1 test origin. The negative control: the same
//! browser trusting only the origin's CA does not get the page, because strata's certificate is not the
//! origin's (Chromium reports `net::ERR_CERT_AUTHORITY_INVALID` and the origin sees no request).
//!
//! Needs Debian's `chromium` and `libnss3-tools` (certutil); .ci/run installs them. A missing one fails
//! the test with a message that names the package.

mod common;

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{HttpsOrigin, Strata, TestCa, TEST_ORIGIN_HELLO};
use regex::Regex;

/// Bound on one Chromium run (start, load one page, dump the DOM, exit).
const BROWSER_TIMEOUT: Duration = Duration::from_secs(25);

/// Bound on one certutil run.
const CERTUTIL_TIMEOUT: Duration = Duration::from_secs(10);

/// Bound on waits for something that should happen at once (a flow line).
const SOON: Duration = Duration::from_secs(10);

/// Proxy settings in the environment that Chromium would otherwise obey.
const PROXY_ENV: [&str; 8] =
    ["http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"];

fn install_hint() -> &'static str {
    "the browser test needs Debian's `chromium` and `libnss3-tools` (certutil): \
     apt-get install --no-install-recommends chromium libnss3-tools (.ci/run installs them)"
}

/// A program from PATH or the usual bin directories; fails naming the package if it is missing.
fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let system = ["/usr/local/bin", "/usr/bin", "/bin"].map(PathBuf::from);
    std::env::split_paths(&path)
        .chain(system)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not found; {}", install_hint()))
}

/// What a finished process printed.
struct Ran {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn describe(&self) -> String {
        format!("exit {}\n--- its stdout:\n{}\n--- its stderr:\n{}", self.status, self.stdout, self.stderr)
    }
}

/// Runs `cmd` in its own process group within `timeout`. Whatever is left of the group when the leader
/// exits (Chromium's helper processes) is killed with it, so the pipes close and nothing outlives the
/// test; panics with the output if the leader did not exit in time.
fn run_group(mut cmd: Command, timeout: Duration) -> Ran {
    let description = format!("{cmd:?}");
    let mut child = cmd
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {description}: {e}; {}", install_hint()));
    let pgid = child.id() as libc::pid_t;
    let read_all = |mut from: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut out = Vec::new();
            let _ = from.read_to_end(&mut out);
            String::from_utf8_lossy(&out).into_owned()
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().unwrap()));
    let stderr = read_all(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        // No portable way to block on a child with a timeout; poll often enough not to matter.
        thread::sleep(Duration::from_millis(20));
    };
    // SAFETY: kill(2) on the process group this test created; ESRCH if it is already empty.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let _ = child.wait();
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    match status {
        Some(status) => Ran { status, stdout, stderr },
        None => panic!("{description} did not finish within {timeout:?}\n--- stdout:\n{stdout}\n--- stderr:\n{stderr}"),
    }
}

/// A throwaway browser: a fresh HOME whose NSS database trusts exactly one CA (`ca_pem`) for TLS
/// servers, and a fresh user data dir.
struct Browser {
    home: tempfile::TempDir,
}

impl Browser {
    fn trusting_only(ca_pem: &Path) -> Browser {
        let home = tempfile::tempdir().expect("temp HOME for the browser");
        let nssdb = home.path().join(".pki").join("nssdb");
        std::fs::create_dir_all(&nssdb).expect("create the NSS db dir");
        let db = format!("sql:{}", nssdb.display());
        let certutil = tool("certutil");
        let mut create = Command::new(&certutil);
        create.args(["-N", "--empty-password", "-d", &db]);
        let mut add = Command::new(&certutil);
        add.args(["-A", "-t", "C,,", "-n", "strata-test-trust", "-i"]).arg(ca_pem).args(["-d", &db]);
        for (what, cmd) in [("create the NSS db", create), ("add the CA to the NSS db", add)] {
            let ran = run_group(cmd, CERTUTIL_TIMEOUT);
            assert!(ran.status.success(), "certutil could not {what}: {}", ran.describe());
        }
        Browser { home }
    }

    /// `chromium --headless --dump-dom URL` through the proxy on 127.0.0.1:`proxy_port`.
    fn dump_dom(&self, proxy_port: u16, url: &str) -> Ran {
        let home = self.home.path();
        let mut cmd = Command::new(tool("chromium"));
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", home.join("profile").display()))
        .arg(format!("--proxy-server=http://127.0.0.1:{proxy_port}"))
        // Only `localhost` goes through strata: `<-loopback>` removes Chromium's implicit bypass of
        // loopback, and `*.*` sends every dotted name (Chromium's own background fetches to Google's
        // servers) direct, where the resolver rule below makes it fail; without it those fetches would
        // go through the proxy, which resolves names itself and would reach the internet.
        .arg("--proxy-bypass-list=<-loopback>;*.*")
        .arg("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1")
        // Errors on stderr, where a failed load is reported as `Page load failed: net::ERR_...`.
        .arg("--enable-logging=stderr")
        .arg("--log-level=0")
        .arg("--dump-dom")
        .arg(url)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_CACHE_HOME", home.join(".cache"));
        for var in PROXY_ENV {
            cmd.env_remove(var);
        }
        run_group(cmd, BROWSER_TIMEOUT)
    }
}

fn path_str(path: &Path) -> String {
    path.to_str().expect("UTF-8 path").to_string()
}

#[test]
fn chromium_loads_a_page_over_http2_through_strata() {
    let origin_ca = TestCa::new("strata browser test origin CA");
    let origin = HttpsOrigin::start(&origin_ca);
    let proxy = Strata::start(&["--flow-detail", "2", "--upstream-ca", &path_str(&origin_ca.pem_path())]);
    let url = origin.url("/hello");
    let hello = TEST_ORIGIN_HELLO.trim_end();

    // Trusting only strata's CA, the browser gets the page, over HTTP/2 to strata.
    let browser = Browser::trusting_only(&proxy.ca_cert_path());
    let ran = browser.dump_dom(proxy.port, &url);
    proxy.check(
        ran.status.success() && ran.stdout.contains(hello),
        format!("Chromium trusting strata's CA: expected {hello:?} in the dumped DOM of {url}\n{}", ran.describe()),
    );
    let flow = Regex::new(&format!(r"^127\.0\.0\.1:\d+ GET {} -> 200 \S+ \S+$", regex::escape(&url))).unwrap();
    proxy.wait_for_stdout_line(|l| flow.is_match(l), SOON);
    proxy.wait_for_stdout_line(|l| l.trim() == ">> GET /hello HTTP/2.0", SOON);
    let served = origin.events.requests.get();
    proxy.check(served >= 1, format!("the origin saw {served} requests for the loaded page"));

    // Trusting only the origin's CA, the same browser must refuse strata's certificate: no page.
    let browser = Browser::trusting_only(&origin_ca.pem_path());
    let ran = browser.dump_dom(proxy.port, &url);
    proxy.check(
        !ran.stdout.contains(hello) && ran.stderr.contains("ERR_CERT_AUTHORITY_INVALID"),
        format!(
            "Chromium trusting only the origin's CA: expected no page and ERR_CERT_AUTHORITY_INVALID for {url}\n{}",
            ran.describe()
        ),
    );
    let served_after = origin.events.requests.get();
    proxy.check(
        served_after == served,
        format!("the origin saw {} more requests from a browser that must not trust strata", served_after - served),
    );
}
