//! Test harness: the real `strata` binary as a child process, a small HTTP/1.1 origin server, and raw
//! socket helpers. Everything listens on 127.0.0.1 port 0; every wait is bounded.

#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod strict;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long the proxy may take to print its `listening on` lines.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// Output a child has printed so far, with a condvar that wakes waiters on each new line.
#[derive(Default)]
struct Output {
    lines: Mutex<Vec<String>>,
    changed: Condvar,
}

impl Output {
    fn push(&self, line: String) {
        self.lines.lock().unwrap().push(line);
        self.changed.notify_all();
    }

    fn snapshot(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn text(&self) -> String {
        self.snapshot().join("\n")
    }
}

/// Reads `from` line by line into `into` until end of stream; `on_line` sees each line first.
fn collect_lines<R: Read + Send + 'static>(
    from: R,
    into: Arc<Output>,
    on_line: impl Fn(&str) + Send + 'static,
) -> thread::JoinHandle<()> {
    read_lines_in_background(
        from,
        move |text| {
            // Stored first, so whoever `on_line` wakes finds the line in the output already.
            into.push(text.clone());
            on_line(&text);
        },
        || {},
    )
}

/// Reads `from` line by line on a thread of its own, handing each line (without its line end) to `on_line`,
/// then calls `on_end` at end of stream.
pub fn read_lines_in_background<R: Read + Send + 'static>(
    from: R,
    mut on_line: impl FnMut(String) + Send + 'static,
    on_end: impl FnOnce() + Send + 'static,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut reader = BufReader::new(from);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => on_line(String::from_utf8_lossy(&line).trim_end_matches(['\r', '\n']).to_string()),
            }
        }
        on_end();
    })
}

/// A running `strata` process. Killed on drop.
pub struct Strata {
    child: Child,
    argv: Vec<String>,
    /// The port of the first listener.
    pub port: u16,
    /// The ports of all listeners, in the order they were announced.
    pub ports: Vec<u16>,
    stdout: Arc<Output>,
    stderr: Arc<Output>,
    readers: Vec<thread::JoinHandle<()>>,
    _confdir: tempfile::TempDir,
}

impl Strata {
    /// Starts the binary with `-p 0 --confdir <tempdir>` and `args`, and waits for one `listening on`
    /// line per `-m`/`--mode` argument (one if there are none).
    pub fn start(args: &[&str]) -> Strata {
        let confdir = tempfile::tempdir().expect("create temp confdir");
        let path = confdir.path().to_path_buf();
        Strata::launch(Path::new(env!("CARGO_BIN_EXE_strata")), &path, &[], args, confdir)
    }

    /// As `start`, for another program that takes strata's flags (an example that embeds strata).
    pub fn start_program(program: &Path, args: &[&str]) -> Strata {
        let confdir = tempfile::tempdir().expect("create temp confdir");
        let path = confdir.path().to_path_buf();
        Strata::launch(program, &path, &[], args, confdir)
    }

    /// Runs the binary with `-p 0 --confdir confdir`, `env` and `args`, and waits for its `listening on`
    /// lines; `owned` is a temp dir the process struct keeps alive (and removes) with it.
    fn launch(program: &Path, confdir: &Path, env: &[(&str, &str)], args: &[&str], owned: tempfile::TempDir) -> Strata {
        let mut argv: Vec<String> = vec!["-p".into(), "0".into(), "--confdir".into(), confdir.display().to_string()];
        argv.extend(args.iter().map(|a| a.to_string()));
        let listeners = count_modes(args);

        let mut command = Command::new(program);
        command.args(&argv).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().unwrap_or_else(|e| panic!("cannot start strata {argv:?}: {e}"));
        let stdout = Arc::new(Output::default());
        let stderr = Arc::new(Output::default());
        let (ports_tx, ports_rx) = mpsc::channel::<u16>();
        let readers = vec![
            collect_lines(child.stdout.take().unwrap(), stdout.clone(), |_| {}),
            collect_lines(child.stderr.take().unwrap(), stderr.clone(), move |line| {
                if let Some(port) = parse_listening_line(line) {
                    let _ = ports_tx.send(port);
                }
            }),
        ];

        let mut strata = Strata { child, argv, port: 0, ports: Vec::new(), stdout, stderr, readers, _confdir: owned };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while strata.ports.len() < listeners {
            let left = deadline.saturating_duration_since(Instant::now());
            match ports_rx.recv_timeout(left) {
                Ok(port) => strata.ports.push(port),
                Err(_) => {
                    let status = strata.child.try_wait().ok().flatten();
                    strata.fail(&format!(
                        "expected {listeners} `listening on` lines within {STARTUP_TIMEOUT:?}, got {:?} (exit status: {status:?})",
                        strata.ports
                    ));
                }
            }
        }
        strata.port = strata.ports[0];
        strata
    }

    /// `http://127.0.0.1:PORT`, for `curl -x` and ureq.
    pub fn proxy_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.snapshot()
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.text()
    }

    /// Waits until a stdout line (already printed or new) satisfies `pred` and returns it.
    pub fn wait_for_stdout_line(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> String {
        self.wait_for_line(&self.stdout, "stdout", pred, timeout)
    }

    fn wait_for_line(&self, output: &Output, name: &str, pred: impl Fn(&str) -> bool, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut lines = output.lines.lock().unwrap();
        loop {
            if let Some(line) = lines.iter().find(|l| pred(l)) {
                return line.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                drop(lines);
                self.fail(&format!("no matching {name} line within {timeout:?}"));
            }
            lines = output.changed.wait_timeout(lines, left).unwrap().0;
        }
    }

    /// Waits up to `timeout` for the process to exit on its own; then all its output has been collected.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> ExitStatus {
        match wait_with_timeout(&mut self.child, timeout) {
            Some(status) => {
                // The pipes reach end of stream once the process is gone.
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
                status
            }
            None => self.fail(&format!("still running after {timeout:?}")),
        }
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`) to the process.
    pub fn signal(&self, signal: i32) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on our own child's pid; it has not been reaped while we hold `child`.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal}) failed: {}", std::io::Error::last_os_error());
    }

    /// A field of /proc/PID/status, as the kernel prints it (without the name).
    pub fn proc_status(&self, field: &str) -> String {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("read /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {field} in /proc/PID/status:\n{status}"))
    }

    /// A memory field of /proc/PID/status (VmRSS, VmHWM, ...) in kB.
    pub fn proc_status_kb(&self, field: &str) -> u64 {
        let value = self.proc_status(field);
        value.trim_end_matches("kB").trim().parse().unwrap_or_else(|_| panic!("{field}: {value:?} is not in kB"))
    }

    /// Waits until the process catches `signal` (its bit in SigCgt of /proc/PID/status is set), so that a
    /// test about handling a signal is not about when the handler is installed.
    pub fn wait_until_catching(&self, signal: i32, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let caught = u64::from_str_radix(&self.proc_status("SigCgt"), 16).expect("SigCgt mask");
            if caught & (1 << (signal - 1)) != 0 {
                return;
            }
            if Instant::now() >= deadline {
                self.fail(&format!("signal {signal} not caught after {timeout:?} (SigCgt {caught:x})"));
            }
            // The kernel offers no notification for this; poll briefly.
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Panics with `what`, the command line, and everything printed so far.
    pub fn fail(&self, what: &str) -> ! {
        panic!(
            "{what}\n--- argv: {} {:?}\n--- stdout:\n{}\n--- stderr:\n{}\n---",
            env!("CARGO_BIN_EXE_strata"),
            self.argv,
            self.stdout.text(),
            self.stderr.text()
        )
    }

    /// Like `assert!`, with the proxy's argv and output in the message.
    #[track_caller]
    pub fn check(&self, ok: bool, what: impl AsRef<str>) {
        if !ok {
            self.fail(what.as_ref());
        }
    }
}

impl Drop for Strata {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Number of listeners a command line asks for: one per `-m`/`--mode`, at least one.
fn count_modes(args: &[&str]) -> usize {
    let n = args
        .iter()
        .filter(|a| matches!(**a, "-m" | "--mode") || a.starts_with("--mode=") || (a.starts_with("-m") && a.len() > 2))
        .count();
    n.max(1)
}

/// The port of a `listening on HOST:PORT (MODE)` line.
fn parse_listening_line(line: &str) -> Option<u16> {
    let rest = line.strip_prefix("listening on ")?;
    let (addr, mode) = rest.split_once(' ')?;
    if !(mode.starts_with('(') && mode.ends_with(')')) {
        return None;
    }
    addr.rsplit_once(':')?.1.parse().ok()
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        // No portable way to block on a child with a timeout; poll often enough not to matter.
        thread::sleep(Duration::from_millis(10));
    }
}

/// What a finished process printed.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs a command to completion within `timeout`, capturing its output; panics (with the output) if it
/// does not finish in time.
pub fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Finished {
    let description = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {description}: {e}"));
    let stdout = read_all_in_background(child.stdout.take().unwrap());
    let stderr = read_all_in_background(child.stderr.take().unwrap());
    let status = wait_with_timeout(&mut child, timeout);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let stdout = String::from_utf8_lossy(&stdout.join().unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&stderr.join().unwrap()).into_owned();
    match status {
        Some(status) => Finished { status, stdout, stderr },
        None => panic!("{description} did not finish within {timeout:?}\n--- stdout:\n{stdout}\n--- stderr:\n{stderr}"),
    }
}

fn read_all_in_background<R: Read + Send + 'static>(mut from: R) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut out = Vec::new();
        let _ = from.read_to_end(&mut out);
        out
    })
}

/// Runs the strata binary with `args` (and a temp confdir) expecting it to exit by itself.
/// Asserts a start-up refusal: exit code 2 and exactly one stderr line, which is returned.
pub fn refusal(done: &Finished) -> String {
    let lines: Vec<&str> = done.stderr.lines().collect();
    assert!(
        done.status.code() == Some(2) && lines.len() == 1,
        "expected exit code 2 and one stderr line, got {:?}\n--- stderr:\n{}\n--- stdout:\n{}",
        done.status,
        done.stderr,
        done.stdout
    );
    lines[0].to_string()
}

pub fn run_strata_to_exit(args: &[&str], timeout: Duration) -> Finished {
    let confdir = tempfile::tempdir().expect("create temp confdir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.arg("--confdir").arg(confdir.path()).args(args);
    run_with_timeout(cmd, timeout)
}

/// `curl` through `proxy` with `args`; bounded by `--max-time` and a process timeout.
pub fn curl(proxy: &Strata, args: &[&str]) -> Finished {
    let mut cmd = Command::new("/usr/bin/curl");
    cmd.args(["--silent", "--show-error", "--max-time", "60", "--noproxy", "", "-x"])
        .arg(proxy.proxy_url())
        .args(args)
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy");
    let done = run_with_timeout(cmd, Duration::from_secs(90));
    if !done.status.success() {
        proxy.fail(&format!(
            "curl {args:?} failed with {}\n--- curl stdout:\n{}\n--- curl stderr:\n{}",
            done.status, done.stdout, done.stderr
        ));
    }
    done
}

/// A ureq agent that sends everything through `proxy`.
pub fn ureq_agent(proxy: &Strata) -> ureq::Agent {
    ureq::AgentBuilder::new()
        .proxy(ureq::Proxy::new(proxy.proxy_url()).expect("proxy URL"))
        .timeout(Duration::from_secs(30))
        .build()
}

// ---- raw sockets ----

/// Connects to 127.0.0.1:`port` with read and write timeouts of `timeout`.
pub fn connect(port: u16, timeout: Duration) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("connect to port {port}: {e}"));
    stream.set_read_timeout(Some(timeout)).unwrap();
    stream.set_write_timeout(Some(timeout)).unwrap();
    stream
}

/// What came back on a raw connection.
#[derive(Debug)]
pub struct Reply {
    pub bytes: Vec<u8>,
    /// True if the peer closed (or reset) the connection; false if the timeout ended the read.
    pub closed: bool,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// Sends `request` to 127.0.0.1:`port` and reads the reply until the peer closes or `timeout` passes
/// without a byte. A write error (the peer may close early, e.g. after refusing a huge head) is not
/// fatal: the reply is still read.
pub fn raw_exchange(port: u16, request: &[u8], timeout: Duration) -> Reply {
    let mut stream = connect(port, timeout);
    let _ = stream.write_all(request);
    read_until_close(&mut stream)
}

/// Reads until the peer closes or a read times out.
pub fn read_until_close(stream: &mut TcpStream) -> Reply {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Reply { bytes, closed: true },
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Reply { bytes, closed: false }
            }
            Err(_) => return Reply { bytes, closed: true },
        }
    }
}

/// A client connection for keep-alive and pipelining tests: send bytes, read whole responses one by one.
pub struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    pub fn open(port: u16, timeout: Duration) -> Conn {
        Conn { reader: BufReader::new(connect(port, timeout)) }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).expect("write to proxy");
    }

    /// Reads one response to a request that is not HEAD: head, then a body framed by Content-Length, by
    /// chunking (returned with its framing and trailers as received), or by the close; none for 1xx, 204
    /// and 304. Returns the response exactly as received.
    pub fn read_response(&mut self) -> String {
        self.read_response_inner(false)
    }

    /// Reads one response to a HEAD request: the head only.
    pub fn read_head_response(&mut self) -> String {
        self.read_response_inner(true)
    }

    fn read_response_inner(&mut self, head_request: bool) -> String {
        let head = read_head(&mut self.reader).expect("a response head before end of stream or timeout");
        let mut out = head.clone();
        let lower = head.to_ascii_lowercase();
        let status: u16 = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status code");
        let length = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse::<usize>().expect("content-length"));
        if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
            // no body
        } else if lower.contains("\r\ntransfer-encoding: chunked\r\n") {
            out.push_str(&String::from_utf8_lossy(&read_chunked_raw(&mut self.reader)));
        } else if let Some(n) = length {
            let mut body = vec![0; n];
            self.reader.read_exact(&mut body).expect("response body");
            out.push_str(&String::from_utf8_lossy(&body));
        } else {
            let mut body = Vec::new();
            self.reader.read_to_end(&mut body).expect("close-delimited body");
            out.push_str(&String::from_utf8_lossy(&body));
        }
        out
    }

    /// Reads until the peer closes or a read times out.
    pub fn read_until_close(&mut self) -> Reply {
        let mut bytes = self.reader.buffer().to_vec();
        self.reader.consume(bytes.len());
        let mut rest = read_until_close(self.reader.get_mut());
        bytes.append(&mut rest.bytes);
        rest.bytes = bytes;
        rest
    }

    pub fn stream(&mut self) -> &mut TcpStream {
        self.reader.get_mut()
    }
}

// ---- the origin server ----

/// Block of bytes `/size/N` repeats.
pub const PATTERN: &[u8; 64 * 1024] = &{
    let mut block = [0u8; 64 * 1024];
    let mut i = 0;
    while i < block.len() {
        block[i] = b'a' + (i % 26) as u8;
        i += 1;
    }
    block
};

/// A small HTTP/1.1 server on 127.0.0.1:0, one thread per connection, keep-alive honoured. Routes:
///
/// - `/hello`: `hello, world\n` with Content-Length.
/// - `/size/N`: N bytes (`abc...z` repeated) with Content-Length, streamed from one fixed block.
/// - `/chunked`: `hello, world` in two chunks, then the trailer `x-checksum: 42`.
/// - `/echo`: the request body (Content-Length or chunked) as the response body; the request line in
///   `x-request-line`, the request's header names (lower case, in order, comma-separated) in
///   `x-seen-headers`.
/// - `/count`: reads the request body (Content-Length or chunked) without keeping it, answers its length.
/// - `/close`: a body without length or chunking, ended by closing the connection.
/// - `/then-close`: `bye` with Content-Length and no `Connection: close`, then closes anyway.
/// - `/http10`: an HTTP/1.0 response with Content-Length, then closes.
/// - `/upgrade`: `101 Switching Protocols` to `line-echo`, then echoes lines until the client closes.
/// - `/head`: `Content-Length: 1234`, with the body only for GET.
/// - `/status/N`: status N with no body (304 also carries a would-be `Content-Length: 100`).
/// - `/slow`: never answers (the connection stays open until the client closes it).
/// - anything else: 404.
pub struct Origin {
    pub port: u16,
    accepts: Arc<AtomicUsize>,
    /// Notified after each accept, for `wait_for_accepts`.
    accepted: Arc<(Mutex<()>, Condvar)>,
}

impl Origin {
    pub fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind origin");
        let port = listener.local_addr().unwrap().port();
        let accepts = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new((Mutex::new(()), Condvar::new()));
        let (counter, notify) = (accepts.clone(), accepted.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                {
                    let _guard = notify.0.lock().unwrap();
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                notify.1.notify_all();
                thread::spawn(move || serve_origin_connection(stream));
            }
        });
        Origin { port, accepts, accepted }
    }

    /// Waits until at least `n` connections have been accepted; panics after `timeout`.
    pub fn wait_for_accepts(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut guard = self.accepted.0.lock().unwrap();
        while self.accepts() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "origin accepted {} connections, expected {n}, within {timeout:?}",
                self.accepts()
            );
            guard = self.accepted.1.wait_timeout(guard, left).unwrap().0;
        }
    }

    /// Connections accepted so far.
    pub fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn authority(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// A request as the origin read it.
struct OriginRequest {
    method: String,
    path: String,
    version: String,
    line: String,
    headers: Vec<(String, String)>,
}

impl OriginRequest {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    fn wants_close(&self) -> bool {
        if self.version == "HTTP/1.0" {
            !self.has_token("connection", "keep-alive")
        } else {
            self.has_token("connection", "close")
        }
    }
}

fn serve_origin_connection(stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(120)));
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    while let Some(request) = read_origin_request(&mut reader) {
        match respond(&request, &mut reader, &mut writer) {
            Ok(true) if !request.wants_close() => continue,
            _ => break,
        }
    }
    let _ = writer.shutdown(Shutdown::Both);
}

/// Reads a head up to and including the empty line; `None` at a clean end of stream.
fn read_head(reader: &mut impl BufRead) -> Option<String> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        head.push_str(&line);
        if line == "\r\n" || line == "\n" {
            return Some(head);
        }
    }
}

fn read_origin_request(reader: &mut impl BufRead) -> Option<OriginRequest> {
    let head = read_head(reader)?;
    let mut lines = head.lines();
    let line = lines.next()?.to_string();
    let mut parts = line.split(' ');
    let (method, path, version) = (parts.next()?.to_string(), parts.next()?.to_string(), parts.next()?.to_string());
    let headers = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_string(), v.trim().to_string()))
        .collect();
    Some(OriginRequest { method, path, version, line, headers })
}

/// Reads a request body (Content-Length or chunked) in pieces, passing each to `sink`. None if the body
/// is malformed or truncated.
fn read_request_body(request: &OriginRequest, reader: &mut impl BufRead, mut sink: impl FnMut(&[u8])) -> Option<()> {
    if let Some(n) = request.header("content-length") {
        let n: u64 = n.parse().ok()?;
        return copy_exact(reader, n, &mut sink);
    }
    if !request.has_token("transfer-encoding", "chunked") {
        return Some(());
    }
    loop {
        let mut size_line = String::new();
        reader.read_line(&mut size_line).ok()?;
        let size = u64::from_str_radix(size_line.trim().split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            // Trailer fields up to the empty line.
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).ok()? == 0 {
                    return None;
                }
                if line == "\r\n" {
                    return Some(());
                }
            }
        }
        copy_exact(reader, size, &mut sink)?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf).ok()?;
        if &crlf != b"\r\n" {
            return None;
        }
    }
}

fn copy_exact(reader: &mut impl BufRead, mut n: u64, sink: &mut impl FnMut(&[u8])) -> Option<()> {
    while n > 0 {
        let buf = reader.fill_buf().ok()?;
        if buf.is_empty() {
            return None;
        }
        let take = (buf.len() as u64).min(n) as usize;
        sink(&buf[..take]);
        reader.consume(take);
        n -= take as u64;
    }
    Some(())
}

/// Reads a chunked body and returns it exactly as framed on the wire.
fn read_chunked_raw(reader: &mut impl BufRead) -> Vec<u8> {
    let mut raw = Vec::new();
    loop {
        let mut size_line = String::new();
        reader.read_line(&mut size_line).expect("chunk size line");
        raw.extend_from_slice(size_line.as_bytes());
        let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap().trim(), 16).expect("chunk size");
        if size == 0 {
            loop {
                let mut line = String::new();
                assert!(reader.read_line(&mut line).expect("trailer line") > 0, "end of stream in trailers");
                raw.extend_from_slice(line.as_bytes());
                if line == "\r\n" {
                    return raw;
                }
            }
        }
        let mut data = vec![0; size + 2];
        reader.read_exact(&mut data).expect("chunk data");
        raw.extend_from_slice(&data);
    }
}

/// Writes the response to `request`. Ok(true) if the connection can carry another request.
fn respond(request: &OriginRequest, reader: &mut impl BufRead, w: &mut TcpStream) -> std::io::Result<bool> {
    let close = if request.wants_close() { "Connection: close\r\n" } else { "" };
    let path = request.path.as_str();
    if path == "/hello" {
        write!(w, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n{close}\r\nhello, world\n")?;
    } else if let Some(n) = path.strip_prefix("/size/") {
        let mut left: u64 = n.parse().unwrap_or(0);
        write!(
            w,
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {left}\r\n{close}\r\n"
        )?;
        while left > 0 {
            let take = left.min(PATTERN.len() as u64) as usize;
            w.write_all(&PATTERN[..take])?;
            left -= take as u64;
        }
    } else if path == "/chunked" {
        write!(
            w,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n{close}\r\n\
             5\r\nhello\r\n7\r\n, world\r\n0\r\nx-checksum: 42\r\n\r\n"
        )?;
    } else if path == "/echo" {
        let mut body = Vec::new();
        if read_request_body(request, reader, |piece| body.extend_from_slice(piece)).is_none() {
            return Ok(false);
        }
        let names: Vec<String> = request.headers.iter().map(|(n, _)| n.to_ascii_lowercase()).collect();
        write!(
            w,
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nx-request-line: {}\r\nx-seen-headers: {}\r\n{close}\r\n",
            body.len(),
            request.line,
            names.join(",")
        )?;
        w.write_all(&body)?;
    } else if path == "/count" {
        let mut count = 0u64;
        if read_request_body(request, reader, |piece| count += piece.len() as u64).is_none() {
            return Ok(false);
        }
        let body = count.to_string();
        write!(w, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{close}\r\n{body}", body.len())?;
    } else if path == "/then-close" {
        write!(w, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nbye")?;
        w.flush()?;
        return Ok(false);
    } else if path == "/http10" {
        write!(w, "HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\nold ok")?;
        w.flush()?;
        return Ok(false);
    } else if path == "/upgrade" {
        write!(w, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: line-echo\r\n\r\n")?;
        w.flush()?;
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            write!(w, "echo: {line}")?;
            w.flush()?;
            line.clear();
        }
        return Ok(false);
    } else if path == "/close" {
        write!(w, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nthis body ends when the connection closes\n")?;
        w.flush()?;
        return Ok(false);
    } else if path == "/head" {
        write!(w, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1234\r\n{close}\r\n")?;
        if request.method != "HEAD" {
            w.write_all(&[b'x'; 1234])?;
        }
    } else if path == "/status/204" {
        write!(w, "HTTP/1.1 204 No Content\r\nX-Status: 204\r\n{close}\r\n")?;
    } else if path == "/status/304" {
        write!(w, "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 100\r\n{close}\r\n")?;
    } else if path == "/slow" {
        // Never answer; hold the connection until the other side gives up.
        let mut sink = Vec::new();
        let _ = reader.read_to_end(&mut sink);
        return Ok(false);
    } else {
        write!(w, "HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\n{close}\r\nnot found\n")?;
    }
    w.flush()?;
    Ok(true)
}

/// A TCP server that reads one line per connection and writes it back, then closes. Returns its port.
pub fn start_line_echo_server() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind echo server");
    let port = listener.local_addr().unwrap().port();
    let accepts = Arc::new(AtomicUsize::new(0));
    let counter = accepts.clone();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                let mut writer = stream.try_clone().unwrap();
                let mut line = Vec::new();
                if BufReader::new(stream).read_until(b'\n', &mut line).is_ok() {
                    let _ = writer.write_all(b"echo: ");
                    let _ = writer.write_all(&line);
                }
                let _ = writer.shutdown(Shutdown::Both);
            });
        }
    });
    (port, accepts)
}

/// The open descriptors of process `pid`; a /proc that cannot be read fails the test rather than counting 0.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap_or_else(|e| panic!("cannot read /proc/{pid}/fd: {e}")).count()
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
pub fn unused_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().unwrap().port()
}

// ---- more process helpers: a chosen confdir, environment, stderr waits, curl without checks ----

impl Strata {
    /// Like `start`, but with `--confdir confdir` (kept after the process ends, so a second start can reuse
    /// it) and extra environment variables.
    pub fn start_in(confdir: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> Strata {
        // The struct owns a temp dir; this one stays empty, the caller owns the real confdir.
        let unused = tempfile::tempdir().expect("create temp dir");
        Strata::launch(Path::new(env!("CARGO_BIN_EXE_strata")), confdir, env, args, unused)
    }

    /// The `--confdir` this process runs with.
    pub fn confdir(&self) -> std::path::PathBuf {
        let i = self.argv.iter().position(|a| a == "--confdir").expect("--confdir in argv");
        std::path::PathBuf::from(&self.argv[i + 1])
    }

    /// `<confdir>/strata-ca-cert.pem`, for `curl --cacert` and `--upstream-ca`.
    pub fn ca_cert_path(&self) -> std::path::PathBuf {
        self.confdir().join("strata-ca-cert.pem")
    }

    /// Waits until a stderr line (already printed or new) satisfies `pred` and returns it.
    pub fn wait_for_stderr_line(&self, pred: impl Fn(&str) -> bool, timeout: Duration) -> String {
        self.wait_for_line(&self.stderr, "stderr", pred, timeout)
    }
}

/// `curl --silent --show-error --max-time 60 ARGS` with no proxy from the environment, whatever its exit
/// status (the caller adds `-x`, `--socks5-hostname` or nothing, and checks the result).
pub fn curl_unchecked(args: &[&str]) -> Finished {
    let mut cmd = Command::new("/usr/bin/curl");
    cmd.args(["--silent", "--show-error", "--max-time", "60"]).args(args);
    for name in
        ["http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"]
    {
        cmd.env_remove(name);
    }
    cmd.env_remove("SSLKEYLOGFILE");
    run_with_timeout(cmd, Duration::from_secs(90))
}

// ---- counting events across threads ----

/// A counter that can be waited on: how many times something happened (an accept, a handshake).
#[derive(Default)]
pub struct EventCount {
    n: Mutex<usize>,
    changed: Condvar,
}

impl EventCount {
    pub fn bump(&self) {
        self.add(1);
    }

    /// Counts `k` at once (bytes received, for instance).
    pub fn add(&self, k: usize) {
        *self.n.lock().unwrap() += k;
        self.changed.notify_all();
    }

    pub fn get(&self) -> usize {
        *self.n.lock().unwrap()
    }

    /// Waits until the count reaches `n`; false if `timeout` passes first.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut count = self.n.lock().unwrap();
        while *count < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            count = self.changed.wait_timeout(count, left).unwrap().0;
        }
        true
    }
}

// ---- a test certificate authority ----

/// A throwaway CA (rcgen, ECDSA P-256) for TLS test servers, its certificate written to a temp PEM file
/// for `--upstream-ca` and `curl --cacert`.
pub struct TestCa {
    pub cert_pem: String,
    /// The CA's private key, PKCS#8 PEM.
    pub key_pem: String,
    pub cert_der: rustls::pki_types::CertificateDer<'static>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new(common_name: &str) -> TestCa {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(rcgen::DnType::CommonName, common_name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("self-signed CA");
        let dir = tempfile::tempdir().expect("temp dir for the test CA");
        std::fs::write(dir.path().join("testca.pem"), cert.pem()).expect("write testca.pem");
        TestCa {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
            issuer: rcgen::Issuer::new(params, key),
            dir,
        }
    }

    /// The CA certificate as a PEM file.
    pub fn pem_path(&self) -> std::path::PathBuf {
        self.dir.path().join("testca.pem")
    }

    /// A fresh leaf for `names` (DNS names or IP literals), signed by this CA, and its key.
    fn leaf(&self, names: &[&str]) -> (rcgen::Certificate, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let mut params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("leaf params");
        params.distinguished_name.push(rcgen::DnType::CommonName, names[0]);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        (params.signed_by(&key, &self.issuer).expect("sign leaf"), key)
    }

    /// A fresh leaf for `names` as PEM files in this CA's directory, for servers that take files: the
    /// chain (leaf + CA) and the PKCS#8 key.
    pub fn leaf_files(&self, names: &[&str]) -> (std::path::PathBuf, std::path::PathBuf) {
        let (leaf, key) = self.leaf(names);
        let (chain, key_file) = (self.dir.path().join("leaf-chain.pem"), self.dir.path().join("leaf-key.pem"));
        std::fs::write(&chain, format!("{}{}", leaf.pem(), self.cert_pem)).expect("write the chain");
        std::fs::write(&key_file, key.serialize_pem()).expect("write the key");
        (chain, key_file)
    }

    /// A rustls server configuration with a fresh leaf for `names` (DNS names or IP literals), signed by
    /// this CA, serving the chain leaf + CA. No ALPN.
    pub fn server_config(&self, names: &[&str]) -> Arc<rustls::ServerConfig> {
        let (leaf, key) = self.leaf(names);
        let chain = vec![leaf.der().clone(), self.cert_der.clone()];
        let key_der =
            rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()));
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(chain, key_der)
            .expect("server certificate");
        Arc::new(config)
    }
}

/// A rustls client configuration trusting exactly `roots` (DER certificates).
pub fn client_config_trusting(roots: &[rustls::pki_types::CertificateDer<'static>]) -> Arc<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).expect("usable root certificate");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(store)
        .with_no_client_auth();
    Arc::new(config)
}

/// The first certificate in a PEM file, DER-encoded.
pub fn read_pem_cert(path: &std::path::Path) -> rustls::pki_types::CertificateDer<'static> {
    let pem = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let first = rustls_pemfile::certs(&mut pem.as_slice()).next();
    first.unwrap_or_else(|| panic!("no certificate in {}", path.display())).expect("valid PEM certificate")
}

// ---- async test servers (HTTP over TLS or not, WebSocket echo), each on its own runtime thread ----

/// Binds 127.0.0.1:0 and runs `serve(listener)` on a single-threaded tokio runtime in a background thread
/// (alive for the rest of the test process). Returns the port.
fn spawn_async_server<F, Fut>(serve: F) -> u16
where
    F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind test server");
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).expect("nonblocking listener");
    thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            serve(listener).await;
        });
    });
    port
}

/// A boxed async byte stream: a TCP stream, or TLS over one.
pub trait AsyncStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> AsyncStream for T {}

/// What a test server saw, for assertions.
#[derive(Default)]
pub struct ServerEvents {
    /// TCP connections accepted.
    pub accepts: EventCount,
    /// TLS handshakes completed (TLS servers only).
    pub handshakes: EventCount,
    /// TLS handshakes that failed, e.g. because the client rejected the certificate.
    pub handshake_failures: EventCount,
    /// HTTP request heads read, or WebSocket handshakes accepted.
    pub requests: EventCount,
    /// WebSocket sessions that ended with the close handshake (WebSocket servers only).
    pub clean_closes: EventCount,
    /// Host header of each request, in order.
    pub hosts: Mutex<Vec<String>>,
}

/// Accepts connections forever, completing TLS first when `tls` is set, and hands each stream to `handle`.
async fn accept_loop<H, Fut>(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    events: Arc<ServerEvents>,
    handle: H,
) where
    H: Fn(Box<dyn AsyncStream>, Arc<ServerEvents>) -> Fut + Clone + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        events.accepts.bump();
        let (acceptor, events, handle) = (acceptor.clone(), events.clone(), handle.clone());
        tokio::task::spawn_local(async move {
            let stream: Box<dyn AsyncStream> = match acceptor {
                None => Box::new(tcp),
                Some(acceptor) => match tokio::time::timeout(Duration::from_secs(30), acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        events.handshakes.bump();
                        Box::new(tls)
                    }
                    _ => {
                        events.handshake_failures.bump();
                        return;
                    }
                },
            };
            handle(stream, events).await;
        });
    }
}

/// Runs `accept_loop` inside a `LocalSet` on a fresh server thread.
fn spawn_server<H, Fut>(tls: Option<Arc<rustls::ServerConfig>>, handle: H) -> (u16, Arc<ServerEvents>)
where
    H: Fn(Box<dyn AsyncStream>, Arc<ServerEvents>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let events = Arc::new(ServerEvents::default());
    let for_server = events.clone();
    let port = spawn_async_server(move |listener| async move {
        tokio::task::LocalSet::new().run_until(accept_loop(listener, tls, for_server, handle)).await;
    });
    (port, events)
}

/// An HTTP/1.1 origin, over TLS with a certificate from a `TestCa` for `localhost` and `127.0.0.1`, or
/// plain. Keep-alive honoured. Routes:
///
/// - `/hello`: `hello from the test origin\n`.
/// - `/host`: the request's Host header, then `\n`.
/// - `/abrupt`: `bye\n` with `Connection: close`, then the connection is dropped (over TLS: without
///   close_notify, as many servers do).
/// - anything else: 404.
pub struct HttpsOrigin {
    pub port: u16,
    pub events: Arc<ServerEvents>,
}

/// The body of the test origins' `/hello`.
pub const TEST_ORIGIN_HELLO: &str = "hello from the test origin\n";

impl HttpsOrigin {
    pub fn start(ca: &TestCa) -> HttpsOrigin {
        let (port, events) = spawn_server(Some(ca.server_config(&["localhost", "127.0.0.1"])), serve_http);
        HttpsOrigin { port, events }
    }

    /// Serving the certificate (the chain in the file) and PKCS#8 or SEC1 key in these PEM files, as
    /// `openssl req -x509` writes them.
    pub fn start_with_pem(cert: &std::path::Path, key: &std::path::Path) -> HttpsOrigin {
        let chain: Vec<_> = rustls_pemfile::certs(&mut std::fs::read(cert).expect("read the certificate").as_slice())
            .collect::<Result<_, _>>()
            .expect("PEM certificates");
        let key = rustls_pemfile::private_key(&mut std::fs::read(key).expect("read the key").as_slice())
            .expect("a PEM key")
            .expect("a key in the file");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server certificate");
        let (port, events) = spawn_server(Some(Arc::new(config)), serve_http);
        HttpsOrigin { port, events }
    }

    pub fn start_plain() -> HttpsOrigin {
        let (port, events) = spawn_server(None, serve_http);
        HttpsOrigin { port, events }
    }

    /// `https://localhost:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }
}

async fn serve_http(stream: Box<dyn AsyncStream>, events: Arc<ServerEvents>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let mut stream = tokio::io::BufReader::new(stream);
    loop {
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            match tokio::time::timeout(Duration::from_secs(60), stream.read_line(&mut line)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => {
                    // The client is done: close our side too (over TLS, with close_notify).
                    let _ = stream.shutdown().await;
                    return;
                }
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
            head.push(line.trim_end().to_string());
        }
        events.requests.bump();
        let Some(request_line) = head.first() else { return };
        let path = request_line.split(' ').nth(1).unwrap_or("").to_string();
        let header = |name: &str| {
            head.iter().skip(1).find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
        };
        let host = header("host").unwrap_or_default();
        events.hosts.lock().unwrap().push(host.clone());
        let close = header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        if path == "/abrupt" {
            // Answer, then drop the connection: over TLS, without close_notify.
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbye\n").await;
            let _ = stream.flush().await;
            return;
        }
        let (status, body) = match path.as_str() {
            "/hello" => ("200 OK", TEST_ORIGIN_HELLO.to_string()),
            "/host" => ("200 OK", format!("{host}\n")),
            _ => ("404 Not Found", "not found\n".to_string()),
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n{body}",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        if stream.write_all(response.as_bytes()).await.is_err() || stream.flush().await.is_err() || close {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

/// A WebSocket echo server (tokio-tungstenite), over TLS with a certificate from a `TestCa` for
/// `localhost` and `127.0.0.1`, or plain. Echoes text and binary messages; answers the close handshake.
pub struct WsEcho {
    pub port: u16,
    pub events: Arc<ServerEvents>,
}

impl WsEcho {
    pub fn start(ca: Option<&TestCa>) -> WsEcho {
        let tls = ca.map(|ca| ca.server_config(&["localhost", "127.0.0.1"]));
        let (port, events) = spawn_server(tls, serve_ws_echo);
        WsEcho { port, events }
    }
}

async fn serve_ws_echo(stream: Box<dyn AsyncStream>, events: Arc<ServerEvents>) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

    let seen = events.clone();
    // The error type is tungstenite's `Callback` signature, not ours to shrink.
    #[allow(clippy::result_large_err)]
    let record_host = move |request: &Request, response: Response| {
        let host = request.headers().get("host").and_then(|h| h.to_str().ok()).unwrap_or("").to_string();
        seen.hosts.lock().unwrap().push(host);
        Ok(response)
    };
    let accepted =
        tokio::time::timeout(Duration::from_secs(30), tokio_tungstenite::accept_hdr_async(stream, record_host));
    let Ok(Ok(mut ws)) = accepted.await else { return };
    events.requests.bump();
    while let Ok(Some(Ok(message))) = tokio::time::timeout(Duration::from_secs(60), ws.next()).await {
        if message.is_close() {
            // tungstenite queued the close reply; flushing sends it.
            let _ = ws.flush().await;
            events.clean_closes.bump();
        } else if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
            return;
        }
    }
}

/// Opens a CONNECT tunnel to `target` through the proxy on `proxy_port`; the 200's head is consumed, and
/// nothing after it.
pub fn connect_tunnel(proxy_port: u16, target: &str) -> TcpStream {
    let mut tcp = connect(proxy_port, Duration::from_secs(10));
    write!(tcp, "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").expect("send CONNECT");
    // Byte by byte, so nothing after the head is consumed.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).unwrap_or_else(|e| panic!("reading the CONNECT reply: {e} after {head:?}"));
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 200"), "CONNECT {target}: {head}");
    tcp
}

/// Four curl clients fetch `url` through `proxy` in a loop until `answers` requests were answered (or
/// 20 s passed); then the proxy gets SIGKILL. Returns how many requests were answered with 200 before it.
pub fn load_then_kill_9(proxy: &mut Strata, url: &str, answers: usize) -> usize {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, answered, url, proxy_url) = (stop.clone(), answered.clone(), url.to_string(), proxy.proxy_url());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let args =
                        ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "-x", &proxy_url, &url];
                    let status = Command::new("curl").args(args).output();
                    if status.is_ok_and(|o| o.stdout == b"200") {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while answered.load(Ordering::Relaxed) < answers && Instant::now() < deadline {
        // Nothing to wait on: the clients are separate processes counting their own answers.
        thread::sleep(Duration::from_millis(20));
    }
    proxy.signal(libc::SIGKILL);
    let answered_before = answered.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().unwrap();
    }
    proxy.wait_for_exit(Duration::from_secs(5));
    answered_before
}
