//! The HAR file on disk: `HarRecorder` appends entries to a file that is a complete HAR document at every
//! moment, and stays one when strata is killed.
//!
//! Each entry is written where the closing `]}}` stood, followed by a new closing, in one positioned
//! write. Linux ends a write early when the writer gets a fatal signal (between pages), so a `kill -9`
//! during that write would leave a torn entry. The strata binary therefore hands each entry to a small
//! writer process of its own (`strata __har-writer`, started with `--save-har`, in a process group of its
//! own so that a terminal's Ctrl-C does not reach it): a kill of strata cannot interrupt that process's
//! write, and the writer finishes every entry it received whole, then exits when strata's end of the pipe
//! closes. `record` returns once the entry is in the file. A program embedding strata writes in-process
//! (`use_writer_process` is the binary's choice), where a kill can tear the last entry.
//!
//! Nothing is kept in memory: an entry is serialized, written and dropped, so the cost of a long recording
//! is disk. A write that fails (a full disk) is reported once and ends the recording; proxying goes on.

use std::ffi::OsString;
use std::io::{BufRead, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};

use serde_json::json;

use super::{entry, CREATOR_NAME};
use crate::flow::HttpFlow;

/// Permissions of the HAR file: it holds cookies and credentials, so only the owner may read it.
const HAR_FILE_MODE: u32 = 0o600;

/// What follows the last entry.
pub const CLOSING: &str = "\n]}}\n";

/// A HAR document up to its first entry: what strata's HAR files start with.
pub fn document_head() -> String {
    let creator = json!({ "name": CREATOR_NAME, "version": env!("CARGO_PKG_VERSION") });
    format!("{{\"log\":{{\"version\":\"1.2\",\"creator\":{creator},\"pages\":[],\"entries\":[")
}

/// The first argument that makes the strata binary a HAR writer process.
pub const WRITER_PROCESS_ARG: &str = "__har-writer";

/// The writer process's answer after each entry: written, or failed (followed by the reason and a
/// newline).
const WRITTEN: u8 = b'+';
const FAILED: u8 = b'!';

/// The executable to start as the writer process, once the binary chose it.
static WRITER_EXE: OnceLock<PathBuf> = OnceLock::new();

/// Makes every `HarRecorder` created from now on write through a writer process started from `exe`
/// (the strata binary, whose `main` runs `run_writer_process` for `WRITER_PROCESS_ARG`).
pub fn use_writer_process(exe: PathBuf) {
    let _ = WRITER_EXE.set(exe);
}

/// Appends HAR entries to a file; see the module documentation.
pub struct HarRecorder {
    path: PathBuf,
    state: Mutex<State>,
}

struct State {
    target: Target,
    /// The first write error; after it nothing more is written.
    failed: Option<String>,
    entries: u64,
}

enum Target {
    InProcess(Appender),
    Process { child: Child, stdin: Option<ChildStdin>, answers: ChildStdout },
}

/// Writes entries into the file at the closing's place.
struct Appender {
    file: std::fs::File,
    /// Where the closing `]}}` starts: the next entry goes here.
    end: u64,
    entries: u64,
}

impl Appender {
    /// Writes one entry. A write that fails part way (a full disk) is undone: the closing goes back where
    /// it was and the file is cut after it, so the file stays the document it was.
    fn append(&mut self, json: &[u8]) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let separator: &[u8] = if self.entries == 0 { b"\n" } else { b",\n" };
        let mut bytes = Vec::with_capacity(separator.len() + json.len() + CLOSING.len());
        bytes.extend_from_slice(separator);
        bytes.extend_from_slice(json);
        bytes.extend_from_slice(CLOSING.as_bytes());
        if let Err(e) = self.file.write_all_at(&bytes, self.end) {
            // The closing's bytes were there before, so rewriting them needs no new space.
            let _ = self.file.write_all_at(CLOSING.as_bytes(), self.end);
            let _ = self.file.set_len(self.end + CLOSING.len() as u64);
            return Err(e);
        }
        self.end += (bytes.len() - CLOSING.len()) as u64;
        self.entries += 1;
        Ok(())
    }
}

impl HarRecorder {
    /// Creates `path` (0600, refusing an existing file) holding an empty HAR document, and its writer
    /// process if the binary chose one. The error names the file and cause.
    pub fn create(path: impl Into<PathBuf>) -> Result<Self, String> {
        let path = path.into();
        let fail = |e: std::io::Error| format!("{}: {e}", path.display());
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, HAR_FILE_MODE);
        let mut file = options.open(&path).map_err(fail)?;
        let head = document_head();
        file.write_all(format!("{head}{CLOSING}").as_bytes()).map_err(fail)?;
        let end = head.len() as u64;
        let target = match WRITER_EXE.get() {
            Some(exe) => {
                drop(file);
                let mut child = Command::new(exe)
                    .arg(WRITER_PROCESS_ARG)
                    .arg(&path)
                    .arg(end.to_string())
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .process_group(0)
                    .spawn()
                    .map_err(|e| format!("{}: cannot start the HAR writer process: {e}", path.display()))?;
                let (stdin, answers) = (child.stdin.take(), child.stdout.take().expect("piped"));
                Target::Process { child, stdin, answers }
            }
            None => Target::InProcess(Appender { file, end, entries: 0 }),
        };
        Ok(HarRecorder { path, state: Mutex::new(State { target, failed: None, entries: 0 }) })
    }

    /// The file this recorder writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends the entry of `flow` to the file; returns once it is there.
    pub fn record(&self, flow: &HttpFlow) {
        let json = entry(flow).to_string();
        let mut state = self.lock_state();
        if state.failed.is_some() {
            return;
        }
        let written = match &mut state.target {
            Target::InProcess(appender) => appender.append(json.as_bytes()),
            Target::Process { stdin, answers, .. } => hand_over(stdin.as_mut(), answers, json.as_bytes()),
        };
        match written {
            Ok(()) => state.entries += 1,
            Err(e) => {
                let reason = format!(
                    "{}: {e}; HAR recording stopped (the file holds the {} entries before)",
                    self.path.display(),
                    state.entries
                );
                tracing::error!("{reason}");
                state.failed = Some(reason);
            }
        }
    }

    /// Ends the recording (at exit): the writer process finishes and the file is made durable. The error
    /// names the file; a write error `record` already reported is not reported again.
    pub fn flush(&self) -> Result<(), String> {
        let mut state = self.lock_state();
        let fail = |e: std::io::Error| format!("{}: {e}", self.path.display());
        match &mut state.target {
            Target::InProcess(appender) => appender.file.sync_data().map_err(fail),
            Target::Process { child, stdin, .. } => {
                // The writer syncs the file and exits when its input ends.
                drop(stdin.take());
                let status = child.wait().map_err(fail)?;
                match status.success() || state.failed.is_some() {
                    true => Ok(()),
                    false => Err(format!("{}: the HAR writer process ended with {status}", self.path.display())),
                }
            }
        }
    }

    /// The state stays consistent even if a holder panicked (it changes after a whole write), so a
    /// poisoned lock is still usable.
    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Sends one entry to the writer process (its length, then its bytes) and waits for its answer.
fn hand_over(stdin: Option<&mut ChildStdin>, answers: &mut ChildStdout, json: &[u8]) -> std::io::Result<()> {
    let stdin = stdin.ok_or_else(|| std::io::Error::other("the HAR writer process was stopped"))?;
    let len = u32::try_from(json.len()).map_err(|_| std::io::Error::other("entry over 4 GiB"))?;
    stdin.write_all(&len.to_le_bytes())?;
    stdin.write_all(json)?;
    stdin.flush()?;
    let mut answer = [0u8];
    answers.read_exact(&mut answer)?;
    match answer[0] {
        WRITTEN => Ok(()),
        _ => {
            let mut reason = String::new();
            let _ = std::io::BufReader::new(answers).read_line(&mut reason);
            Err(std::io::Error::other(reason.trim_end().to_string()))
        }
    }
}

/// The writer process (`strata __har-writer FILE END`): appends each entry read from stdin to FILE, whose
/// closing starts at byte END, answering on stdout after each; at the end of its input (strata exited or
/// was killed) it syncs the file and exits. An entry cut short by strata's death is not written. Returns
/// the exit code.
pub fn run_writer_process(args: &[OsString]) -> u8 {
    let [path, end] = args else {
        eprintln!("error: usage: strata {WRITER_PROCESS_ARG} FILE END");
        return 2;
    };
    let Some(end) = end.to_str().and_then(|e| e.parse::<u64>().ok()) else {
        eprintln!("error: {WRITER_PROCESS_ARG}: END must be a byte offset");
        return 2;
    };
    let path = Path::new(path);
    let file = match std::fs::OpenOptions::new().write(true).open(path) {
        Ok(file) => file,
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            return 1;
        }
    };
    let mut appender = Appender { file, end, entries: 0 };
    let (mut input, mut output) = (std::io::stdin().lock(), std::io::stdout().lock());
    loop {
        let mut len = [0u8; 4];
        if input.read_exact(&mut len).is_err() {
            break;
        }
        let mut json = vec![0u8; u32::from_le_bytes(len) as usize];
        if input.read_exact(&mut json).is_err() {
            break;
        }
        if let Err(e) = appender.append(&json) {
            // strata reports it, once.
            let _ = writeln!(output, "{}{e}", FAILED as char).and_then(|()| output.flush());
            return 1;
        }
        // strata may be gone (killed): the entry is written all the same.
        let _ = output.write_all(&[WRITTEN]).and_then(|()| output.flush());
    }
    match appender.file.sync_data() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            1
        }
    }
}
