//! A strict view of HTTP/1.1 requests on the wire, for the smuggling corpora: `strict_request`, a parser
//! that refuses everything RFC 9112 lets a recipient refuse (bare LF, folding, both framings, any
//! Transfer-Encoding but `chunked`, non-canonical chunk sizes), and `RecordingOrigin`, a raw TCP origin
//! that records every byte each connection brings, so tests check message boundaries exactly where a
//! server behind strata would see them.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::{EventCount, Reply};

/// One connection the recording origin accepted: the bytes read from it so far.
#[derive(Default)]
pub struct Recorded {
    bytes: Mutex<Vec<u8>>,
}

/// An origin that records every byte of every connection. Once the bytes read so far hold one complete,
/// strictly framed request (`strict_request`), it answers `200 ok` with `Connection: close` and keeps
/// reading (to catch anything sent after the message) until the peer closes.
pub struct RecordingOrigin {
    pub port: u16,
    conns: Arc<Mutex<Vec<Arc<Recorded>>>>,
    pub accepted: Arc<EventCount>,
    finished: Arc<EventCount>,
}

pub const ORIGIN_OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";

impl RecordingOrigin {
    pub fn start() -> RecordingOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind recording origin");
        let port = listener.local_addr().unwrap().port();
        let conns: Arc<Mutex<Vec<Arc<Recorded>>>> = Arc::default();
        let accepted = Arc::new(EventCount::default());
        let finished = Arc::new(EventCount::default());
        let (list, acc, fin) = (conns.clone(), accepted.clone(), finished.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let record = Arc::new(Recorded::default());
                list.lock().unwrap().push(record.clone());
                acc.add(1);
                let fin = fin.clone();
                thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                    let mut answered = false;
                    let mut buf = [0u8; 16 * 1024];
                    loop {
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                let mut bytes = record.bytes.lock().unwrap();
                                bytes.extend_from_slice(&buf[..n]);
                                if !answered && matches!(strict_request(&bytes), Ok(Some(_))) {
                                    answered = true;
                                    let _ = stream.write_all(ORIGIN_OK);
                                }
                            }
                        }
                    }
                    fin.add(1);
                });
            }
        });
        RecordingOrigin { port, conns, accepted, finished }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn authority(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Waits until every accepted connection has been closed by its peer; then the records are final.
    pub fn wait_until_all_closed(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let accepted = self.accepted.get();
            let left = deadline.saturating_duration_since(Instant::now());
            if !self.finished.wait_for(accepted, left) {
                return false;
            }
            // A connection accepted meanwhile must be waited for too.
            if self.accepted.get() == accepted {
                return true;
            }
        }
    }

    /// The bytes of each connection, in accept order.
    pub fn connections(&self) -> Vec<Vec<u8>> {
        self.conns.lock().unwrap().iter().map(|r| r.bytes.lock().unwrap().clone()).collect()
    }
}

/// A request as a strict parser reads it: CRLF only, `name: value` fields, one framing.
#[derive(Debug)]
pub struct Strict {
    pub head: String,
    pub content_length_fields: usize,
    pub transfer_encoding: Option<String>,
    pub payload: Vec<u8>,
    pub trailers: Vec<String>,
    /// Bytes used by the message.
    pub len: usize,
}

/// Parses one request strictly from the start of `buf`: `Ok(None)` if incomplete, an error for anything
/// a strict parser would refuse (bare LF, folding, both framings, a bad chunk).
pub fn strict_request(buf: &[u8]) -> Result<Option<Strict>, String> {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { return Ok(None) };
    let head = String::from_utf8(buf[..head_end].to_vec()).map_err(|_| "head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    if request_line.split(' ').count() != 3 {
        return Err(format!("bad request line {request_line:?}"));
    }
    let mut content_length = None;
    let mut content_length_fields = 0;
    let mut transfer_encoding = None;
    for line in lines {
        if line.contains('\n') || line.contains('\r') || line.contains('\0') {
            return Err(format!("control character in {line:?}"));
        }
        let (name, value) = line.split_once(':').ok_or(format!("no colon in {line:?}"))?;
        if name.is_empty() || name.contains([' ', '\t']) {
            return Err(format!("bad field name in {line:?}"));
        }
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("content-length") {
            content_length_fields += 1;
            let n: u64 = value.parse().map_err(|_| format!("bad Content-Length {value:?}"))?;
            if content_length.is_some_and(|m| m != n) {
                return Err("differing Content-Length fields".into());
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if transfer_encoding.is_some() {
                return Err("two Transfer-Encoding fields".into());
            }
            transfer_encoding = Some(value.to_string());
        }
    }
    let mut at = head_end + 4;
    let mut payload = Vec::new();
    let mut trailers = Vec::new();
    match (&transfer_encoding, content_length) {
        (Some(_), Some(_)) => return Err("both Transfer-Encoding and Content-Length".into()),
        (Some(te), None) => {
            if !te.eq_ignore_ascii_case("chunked") {
                return Err(format!("Transfer-Encoding {te:?}"));
            }
            let line = |at: &mut usize| -> Result<Option<Vec<u8>>, String> {
                let Some(end) = buf[*at..].windows(2).position(|w| w == b"\r\n") else { return Ok(None) };
                let line = buf[*at..*at + end].to_vec();
                if line.contains(&b'\n') || line.contains(&b'\r') || line.contains(&0) {
                    return Err(format!("control character in {:?}", String::from_utf8_lossy(&line)));
                }
                *at += end + 2;
                Ok(Some(line))
            };
            loop {
                let Some(size_line) = line(&mut at)? else { return Ok(None) };
                let text = String::from_utf8(size_line).map_err(|_| "chunk size not ASCII")?;
                let size =
                    usize::from_str_radix(&text, 16).map_err(|_| format!("non-canonical chunk size {text:?}"))?;
                if size == 0 {
                    break;
                }
                if buf.len() < at + size + 2 {
                    return Ok(None);
                }
                payload.extend_from_slice(&buf[at..at + size]);
                if &buf[at + size..at + size + 2] != b"\r\n" {
                    return Err("chunk data not followed by CRLF".into());
                }
                at += size + 2;
            }
            loop {
                let Some(trailer) = line(&mut at)? else { return Ok(None) };
                if trailer.is_empty() {
                    break;
                }
                trailers.push(String::from_utf8_lossy(&trailer).into_owned());
            }
        }
        (None, Some(n)) => {
            let n = n as usize;
            if buf.len() < at + n {
                return Ok(None);
            }
            payload.extend_from_slice(&buf[at..at + n]);
            at += n;
        }
        (None, None) => {}
    }
    Ok(Some(Strict { head, content_length_fields, transfer_encoding, payload, trailers, len: at }))
}

pub fn show(bytes: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(bytes))
}

pub fn head_of(reply: &Reply) -> String {
    let text = reply.text();
    text.split("\r\n\r\n").next().unwrap_or_default().to_string()
}

pub fn body_of(reply: &Reply) -> Vec<u8> {
    match reply.bytes.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => reply.bytes[i + 4..].to_vec(),
        None => Vec::new(),
    }
}

/// `{url}` and `{host}` in a request template, filled in for an origin.
pub fn fill(template: &str, url: &str, host: &str) -> Vec<u8> {
    template.replace("{url}", url).replace("{host}", host).into_bytes()
}
