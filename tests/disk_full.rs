//! A full disk while recording, through the real binary with curl: strata records onto a 1 MiB tmpfs
//! (`-w FILE`, a SQLite session, or `--save-har FILE`) until the disk is full. The error is logged once,
//! naming the file and saying that recording stopped; every request is still answered whole; strata keeps
//! running; and after SIGTERM the file still reads back with the flows recorded before the disk filled.
//!
//! Mounting a tmpfs needs root (the tests run as root here and in CI). Where `mount` fails, each test
//! prints why to stderr and returns early, passing as skipped. Every wait is bounded.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{curl, run_strata_to_exit, run_with_timeout, Origin, Strata};
use regex::Regex;
use serde_json::Value;

/// Bound on waits for something that should happen at once (a line printed, a run that only reads a file).
const SOON: Duration = Duration::from_secs(10);

/// The size of the small disk.
const DISK: &str = "1m";

/// Each response body: 64 KiB, so that well before `REQUESTS` responses the recording passes 1 MiB.
const BODY_LEN: usize = 64 * 1024;

/// Requests sent while the disk fills up: 40 × 64 KiB is 2.5 MiB of bodies alone.
const REQUESTS: usize = 40;

fn path_str(path: &Path) -> String {
    path.display().to_string()
}

/// A 1 MiB tmpfs mounted on a temp dir, unmounted (lazily, so that it goes even if a process still holds
/// a file on it) when dropped, also when a test panics.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts the tmpfs, or prints why it cannot to stderr and returns None (the test is then skipped).
    fn mount(test: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().expect("create the mount point");
        let mut mount = Command::new("mount");
        mount.args(["-t", "tmpfs", "-o", &format!("size={DISK}"), "tmpfs"]).arg(dir.path());
        // run_with_timeout panics if mount cannot be started or hangs: a reason to skip as well.
        let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_with_timeout(mount, SOON)));
        match done {
            Ok(done) if done.status.success() => Some(SmallDisk { dir }),
            Ok(done) => {
                eprintln!(
                    "{test}: skipped: cannot mount a {DISK} tmpfs on {} ({}): {}",
                    dir.path().display(),
                    done.status,
                    done.stderr.trim()
                );
                None
            }
            Err(_) => {
                eprintln!("{test}: skipped: cannot run mount (see the panic above)");
                None
            }
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Not a panic here: this may run while a test is already panicking.
        match Command::new("umount").arg("-l").arg(self.dir.path()).output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "umount -l {} failed ({}): {}",
                self.dir.path().display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => eprintln!("cannot run umount -l {}: {e}", self.dir.path().display()),
        }
    }
}

/// The body of the origin's `/size/N`: `abc...z` repeated.
fn expected_body(len: usize) -> String {
    (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect()
}

/// GETs `url` through `proxy` with curl and checks the answer is a 200 with the whole body.
fn fetch_whole(proxy: &Strata, url: &str, what: &str) {
    let got = curl(proxy, &["-w", "\n%{http_code}", url]);
    let (body, status) = got.stdout.rsplit_once('\n').unwrap_or(("", &got.stdout));
    proxy.check(status == "200", format!("{what}: {url} answered {status:?}"));
    proxy.check(
        body == expected_body(BODY_LEN),
        format!("{what}: {url} answered a body of {} bytes, not the {BODY_LEN} served", body.len()),
    );
}

/// Sends `REQUESTS` GETs of 64 KiB through `proxy`, one after the other, each answered whole.
fn fill_the_disk(proxy: &Strata, url: &str) {
    for n in 1..=REQUESTS {
        fetch_whole(proxy, url, &format!("request {n} of {REQUESTS}"));
    }
}

/// The stderr lines that name `file`.
fn lines_naming(proxy: &Strata, file: &str) -> Vec<String> {
    proxy.stderr_text().lines().filter(|l| l.contains(file)).map(str::to_string).collect()
}

/// Waits for the error line about `file` (one that says `stopped`), then checks that strata still
/// proxies: one more whole 200. Returns the stderr lines naming the file by then.
fn wait_for_the_error_and_proxy_once_more(proxy: &Strata, file: &str, stopped: &str, url: &str) -> Vec<String> {
    proxy.wait_for_stderr_line(|l| l.contains(file) && l.contains(stopped), SOON);
    fetch_whole(proxy, url, "the request after recording stopped");
    lines_naming(proxy, file)
}

/// The error is on stderr once, while strata ran and by its exit: exactly one line names `file`, saying
/// why (the disk is full) and `stopped`. Returns that line.
fn check_logged_once(proxy: &Strata, file: &str, stopped: &str, while_running: &[String]) -> String {
    proxy.check(
        while_running.len() == 1,
        format!("expected one stderr line naming {file} while strata ran, got {while_running:#?}"),
    );
    let by_exit = lines_naming(proxy, file);
    proxy.check(
        by_exit.len() == 1,
        format!("expected one stderr line naming {file} by strata's exit, got {by_exit:#?}"),
    );
    let line = &by_exit[0];
    let cause = Regex::new(r"(?i)disk is full|no space left on device").unwrap();
    proxy.check(
        line.contains(stopped) && cause.is_match(line),
        format!("the error does not say {stopped:?} and why: {line}"),
    );
    line.clone()
}

/// SIGTERM, then a clean exit, with one flow line for each request sent (the flow log went on).
fn terminate(proxy: &mut Strata) {
    proxy.signal(libc::SIGTERM);
    let status = proxy.wait_for_exit(SOON);
    proxy.check(status.success(), format!("strata exited with {status} after SIGTERM"));
    let live = proxy.stdout_lines();
    proxy.check(live.len() == REQUESTS + 1, format!("expected {} flow lines, got {live:#?}", REQUESTS + 1));
}

/// A flow line without its last field, the duration.
fn without_duration(line: &str) -> String {
    line.rsplit_once(' ').map_or(line, |(rest, _)| rest).to_string()
}

/// A flow line up to its arrow: `CLIENT METHOD URL`.
fn up_to_arrow(line: &str) -> String {
    line.split(" -> ").next().unwrap_or(line).to_string()
}

/// `-w` on a disk that fills up: proxying goes on, every response whole; after SIGTERM, `strata -n -r`
/// prints the flows recorded before, as the live run printed them; the SQLite error is logged once, naming
/// the session and saying recording stopped. Skipped (passes, saying why on stderr) where a tmpfs cannot
/// be mounted.
///
/// The flow being recorded when the disk filled may be in the session in part (its request head, maybe
/// its response head, are stored before its body): read back, it shows as `-> <error>` or as a 200 of
/// `0b`, as a flow cut short by a kill does. It is tolerated as the last line read back if it is the next
/// live flow's request.
#[test]
fn w_on_a_full_disk_logs_once_stops_recording_and_keeps_proxying() {
    let started = Instant::now();
    let Some(disk) = SmallDisk::mount("w_on_a_full_disk_logs_once_stops_recording_and_keeps_proxying") else {
        return;
    };
    let origin = Origin::start();
    let url = origin.url(&format!("/size/{BODY_LEN}"));
    let session = disk.file("s.db");
    let name = path_str(&session);
    let mut proxy = Strata::start(&["-w", &name]);

    fill_the_disk(&proxy, &url);
    let while_running = wait_for_the_error_and_proxy_once_more(&proxy, &name, "recording stopped", &url);
    terminate(&mut proxy);
    let live = proxy.stdout_lines();

    let done = run_strata_to_exit(&["-n", "-r", &name], SOON);
    assert!(
        done.status.success(),
        "strata -n -r {name} exited with {}\n--- stdout:\n{}\n--- stderr:\n{}",
        done.status,
        done.stdout,
        done.stderr
    );
    let read: Vec<String> = done.stdout.lines().map(str::to_string).collect();
    let whole = Regex::new(&format!(r"^127\.0\.0\.1:\d+ GET {} -> 200 64k \S+$", regex::escape(&url))).unwrap();
    let complete = read.iter().take_while(|l| whole.is_match(l)).count();
    let in_progress = &read[complete..];
    assert!(
        complete > 0 && complete < REQUESTS && in_progress.len() <= 1,
        "flows read back from the full disk (expected some, not all, of the {} answered, each a whole 200, \
         but for the last, maybe):\n{}\n--- stderr:\n{}",
        live.len(),
        read.join("\n"),
        done.stderr
    );
    let read_whole: Vec<String> = read[..complete].iter().map(|l| without_duration(l)).collect();
    let live_whole: Vec<String> = live[..complete].iter().map(|l| without_duration(l)).collect();
    assert_eq!(read_whole, live_whole, "the flows read back against the first ones of the live run");
    if let Some(last) = in_progress.first() {
        assert_eq!(
            up_to_arrow(last),
            up_to_arrow(&live[complete]),
            "the flow in progress when recording stopped: {last}"
        );
    }

    check_logged_once(&proxy, &name, "recording stopped", &while_running);
    eprintln!(
        "{complete} whole flows (and {} in progress) of {} read back; the test took {:?}",
        in_progress.len(),
        live.len(),
        started.elapsed()
    );
}

/// `--save-har` on a disk that fills up: proxying goes on, every response whole; after SIGTERM the file
/// is a HAR document holding the entries written before, each a whole 64 KiB response, as many as the
/// error says; the write error is logged once, naming the file and saying HAR recording stopped. Skipped
/// (passes, saying why on stderr) where a tmpfs cannot be mounted.
#[test]
fn save_har_on_a_full_disk_logs_once_stops_recording_and_keeps_proxying() {
    let started = Instant::now();
    let Some(disk) = SmallDisk::mount("save_har_on_a_full_disk_logs_once_stops_recording_and_keeps_proxying") else {
        return;
    };
    let origin = Origin::start();
    let url = origin.url(&format!("/size/{BODY_LEN}"));
    let har = disk.file("s.har");
    let name = path_str(&har);
    let mut proxy = Strata::start(&["--save-har", &name]);

    fill_the_disk(&proxy, &url);
    let while_running = wait_for_the_error_and_proxy_once_more(&proxy, &name, "HAR recording stopped", &url);
    terminate(&mut proxy);

    let bytes = std::fs::read(&har).unwrap_or_else(|e| panic!("read {name}: {e}"));
    let tail = String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(120)..]).into_owned();
    let document: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        proxy.fail(&format!("{name} ({} bytes) is not JSON ({e}); it ends with:\n{tail}", bytes.len()))
    });
    let entries = document
        .pointer("/log/entries")
        .and_then(Value::as_array)
        .unwrap_or_else(|| proxy.fail(&format!("no log.entries array in {name}; it ends with:\n{tail}")));
    proxy.check(
        !entries.is_empty() && entries.len() < REQUESTS,
        format!("{name} holds {} entries (expected some, not all, of {} answered)", entries.len(), REQUESTS + 1),
    );
    for (n, entry) in entries.iter().enumerate() {
        let (request, response) = (&entry["request"], &entry["response"]);
        proxy.check(
            request["method"] == "GET"
                && request["url"] == url.as_str()
                && response["status"] == 200
                && response["content"]["size"] == BODY_LEN
                && response["content"]["text"].as_str().map(str::len) == Some(BODY_LEN),
            format!(
                "entry {n} is not a whole 200 for {url}: {} {} -> {} size {}",
                request["method"], request["url"], response["status"], response["content"]["size"]
            ),
        );
    }

    let line = check_logged_once(&proxy, &name, "HAR recording stopped", &while_running);
    let held = Regex::new(r"the file holds the (\d+) entries before").unwrap();
    let held = held.captures(&line).and_then(|c| c[1].parse::<usize>().ok());
    proxy.check(
        held == Some(entries.len()),
        format!("the error says the file holds {held:?} entries; it holds {}: {line}", entries.len()),
    );
    eprintln!("{} entries of {} in the HAR file; the test took {:?}", entries.len(), REQUESTS + 1, started.elapsed());
}
