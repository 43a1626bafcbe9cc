//! The flow store: a session on disk in SQLite (bundled, WAL mode), written by `-w FILE` and read by
//! `-r FILE`.
//!
//! Writing goes through one writer thread fed by a bounded channel: each flow event becomes an `Op`, the
//! thread applies whatever has queued up in one transaction, and a full channel makes the flow wait
//! (back-pressure, never silent loss). An HTTP flow is upserted by its id, so it is in the store from its
//! request head on and updated as it progresses; a WebSocket message or a TCP flow is one row. A write
//! error is logged once and ends the recording; proxying goes on.
//!
//! Bodies: a body an addon kept whole is stored inline with its flow; a streamed body (the default) is
//! stored piece by piece as it passes (`bodies`, keyed by the flow's `seq` and the piece's offset), so
//! nothing holds it whole. Either way at most `--store-body-limit` bytes of each body are stored; the
//! flow's `*_body_len` keeps the real length, and a shorter stored body is marked truncated.
//!
//! Durability: `synchronous=OFF`. A crash of strata (even `kill -9`) loses nothing SQLite was handed, and
//! the write-ahead log keeps the file consistent; only a crash of the machine can lose the last writes.
//!
//! Header fields are stored as they would be written on the wire (`name: value\r\n` each), which keeps
//! repeated fields, their order and non-UTF-8 values.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use std::collections::HashMap;

use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::{mpsc, oneshot};

use crate::addon::BodySide;
use crate::flow::{FlowId, HttpFlow, TcpFlow, TcpMessage, WebSocketMessage};
use crate::http::message::Headers;

mod query;
mod read;

pub use query::{Sort, SortColumn};
pub use read::{read_all, SessionReader};

/// Ops queued for the writer before a flow waits for room: each may carry a body piece (up to about
/// 100 KiB) or a kept body, so this bounds the memory a recording holds (the bench soak showed 1024 whole
/// flows grow RSS by 100 MiB; 64 pieces still cost 6 MiB more than 16 at the same rate).
const QUEUE_OPS: usize = 16;

/// Ops applied in one transaction, at most.
const BATCH_OPS: usize = 256;

/// The first bytes of every SQLite database file.
pub const SQLITE_MAGIC: &[u8] = b"SQLite format 3\0";

/// With a size limit, how often (in batches) the writer checks the size.
const SIZE_CHECK_BATCHES: u32 = 16;

/// The schema's version, in `PRAGMA user_version`. Version 1 (bodies inline only) is still read;
/// version 2 (no TLS handshake time, server certificate or message times) is read and, when appended
/// to, gains those columns (`MIGRATE_2`).
const SCHEMA_VERSION: i64 = 3;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS flows (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    started_at REAL NOT NULL,
    client TEXT NOT NULL,
    server TEXT,
    at_proxy INTEGER NOT NULL DEFAULT 0,
    method TEXT, scheme TEXT, host TEXT, port INTEGER, path TEXT, http_version TEXT,
    request_headers BLOB, request_body BLOB, request_body_len INTEGER,
    status INTEGER, reason TEXT, response_version TEXT, response_headers BLOB, response_body BLOB,
    response_body_len INTEGER, request_truncated INTEGER NOT NULL DEFAULT 0,
    response_truncated INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    connect_ms REAL, send_ms REAL, wait_ms REAL, receive_ms REAL,
    websocket INTEGER NOT NULL DEFAULT 0,
    bytes_to_server INTEGER, bytes_to_client INTEGER, duration_ms REAL,
    url TEXT,
    text_indexed INTEGER NOT NULL DEFAULT 0,
    client_sni TEXT, client_alpn TEXT, client_tls_version TEXT,
    server_sni TEXT, server_alpn TEXT, server_tls_version TEXT,
    request_trailers BLOB, response_trailers BLOB,
    ssl_ms REAL, server_cert BLOB
);
CREATE INDEX IF NOT EXISTS flows_host ON flows(host);
CREATE INDEX IF NOT EXISTS flows_status ON flows(status);
CREATE INDEX IF NOT EXISTS flows_not_text_indexed ON flows(seq) WHERE text_indexed = 0;
CREATE INDEX IF NOT EXISTS flows_websocket ON flows(seq) WHERE websocket = 1;
CREATE VIRTUAL TABLE IF NOT EXISTS body_text USING fts5(request, response, tokenize = 'trigram');
CREATE TABLE IF NOT EXISTS messages (
    flow_id TEXT NOT NULL,
    n INTEGER NOT NULL,
    from_client INTEGER NOT NULL,
    kind TEXT NOT NULL,
    content BLOB NOT NULL,
    at REAL,
    PRIMARY KEY (flow_id, n)
);
CREATE TABLE IF NOT EXISTS bodies (
    flow_seq INTEGER NOT NULL,
    side INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (flow_seq, side, offset)
);
";

/// What schema 3 added to schema 2.
const MIGRATE_2: &str = "
ALTER TABLE flows ADD COLUMN ssl_ms REAL;
ALTER TABLE flows ADD COLUMN server_cert BLOB;
ALTER TABLE messages ADD COLUMN at REAL;
";

/// `bodies.side` for each body of an exchange.
fn side_code(side: BodySide) -> i64 {
    match side {
        BodySide::Request => 0,
        BodySide::Response => 1,
    }
}

/// One change to the store.
enum Op {
    /// An HTTP flow as it is now; `finished` once it ended (its last write).
    Http {
        flow: Box<HttpFlow>,
        finished: bool,
    },
    /// A piece of a streamed body, already cut to the body limit.
    Body {
        flow: FlowId,
        side: BodySide,
        offset: u64,
        data: Bytes,
    },
    /// The trailer fields of a streamed body, as on the wire.
    Trailers {
        flow: FlowId,
        side: BodySide,
        fields: Vec<u8>,
    },
    Tcp(Box<TcpFlow>),
    /// A WebSocket message (`n` counts them) or a TCP chunk (kind `tcp`; `n` is the bytes relayed
    /// before it, both ways).
    Message {
        flow_id: FlowId,
        n: u64,
        from_client: bool,
        kind: &'static str,
        content: Vec<u8>,
        at: SystemTime,
    },
    /// Drops a flow with its bodies and messages (one the filter did not keep).
    Forget(FlowId),
    /// Answered once everything queued before it is committed.
    Flush(oneshot::Sender<Result<(), String>>),
}

/// A flow read back from a store.
#[derive(Debug, Clone)]
pub enum StoredFlow {
    Http(Box<HttpFlow>),
    Tcp(Box<TcpFlow>),
}

/// The writing end of a store.
pub struct StoreWriter {
    path: PathBuf,
    ops: mpsc::Sender<Op>,
    /// Bytes stored of each body (`--store-body-limit`).
    body_limit: u64,
    /// The writer thread's first error, after which it stopped.
    failed: std::sync::Arc<Mutex<Option<String>>>,
}

impl StoreWriter {
    /// Opens `path` for writing: a new file, or (with `append`) an existing strata session or a new one.
    /// An existing file without `append` is refused, never replaced. Starts the writer thread. With
    /// `max_size`, the oldest flows are dropped whenever the session grows past it; `body_limit` bytes are
    /// stored of each body.
    pub fn create(path: &Path, append: bool, max_size: Option<u64>, body_limit: u64) -> Result<StoreWriter, String> {
        let fail = |e: &dyn std::fmt::Display| e.to_string();
        if path.exists() && !append {
            return Err(fail(&"already exists; strata does not overwrite it (-w): use +FILE to append"));
        }
        // Private before SQLite opens it: its -wal and -shm files take the database file's mode.
        set_private(path).map_err(|e| fail(&e))?;
        let connection = Connection::open(path).map_err(|e| fail(&e))?;
        prepare(&connection).map_err(|e| fail(&e))?;
        let (ops, queue) = mpsc::channel(QUEUE_OPS);
        let failed = std::sync::Arc::new(Mutex::new(None));
        let writer_failed = failed.clone();
        let name = path.display().to_string();
        std::thread::Builder::new()
            .name("strata-store".into())
            .spawn(move || {
                let mut writer = Writer { connection, live: HashMap::new(), body_limit };
                writer.run(queue, &name, max_size, &writer_failed)
            })
            .map_err(|e| fail(&e))?;
        Ok(StoreWriter { path: path.to_path_buf(), ops, body_limit, failed })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stores the flow as it is now (a later call for the same flow replaces it); `finished` on its last
    /// call. Waits while the writer is behind.
    pub async fn http(&self, flow: &HttpFlow, finished: bool) {
        self.send(Op::Http { flow: Box::new(flow.clone()), finished }).await;
    }

    /// Stores a piece of a streamed body (what lies past the body limit is dropped). Waits while the
    /// writer is behind.
    pub async fn body(&self, flow: FlowId, side: BodySide, offset: u64, data: &Bytes) {
        let room = self.body_limit.saturating_sub(offset);
        if room == 0 || data.is_empty() {
            return;
        }
        let data = data.slice(..data.len().min(room as usize));
        self.send(Op::Body { flow, side, offset, data }).await;
    }

    /// Stores a finished TCP flow.
    pub async fn tcp(&self, flow: &TcpFlow) {
        self.send(Op::Tcp(Box::new(flow.clone()))).await;
    }

    /// Stores the `n`th message of a WebSocket flow.
    pub async fn message(&self, flow_id: FlowId, n: u64, message: &WebSocketMessage) {
        let WebSocketMessage { from_client, kind, payload, at } = message.clone();
        self.send(Op::Message { flow_id, n, from_client, kind, content: payload, at }).await;
    }

    /// Stores a chunk of a TCP relay, `offset` bytes (both ways) after its start; chunks past the body
    /// limit are dropped, so a long relay costs the session at most that much.
    pub async fn tcp_chunk(&self, flow_id: FlowId, offset: u64, message: &TcpMessage) {
        let room = self.body_limit.saturating_sub(offset);
        if room == 0 || message.content.is_empty() {
            return;
        }
        let content = message.content[..message.content.len().min(room as usize)].to_vec();
        let op =
            Op::Message { flow_id, n: offset, from_client: message.from_client, kind: "tcp", content, at: message.at };
        self.send(op).await;
    }

    /// Stores the trailer fields of a streamed body.
    pub async fn trailers(&self, flow: FlowId, side: BodySide, trailers: &Headers) {
        self.send(Op::Trailers { flow, side, fields: wire_fields(trailers) }).await;
    }

    /// Drops a flow that is not kept after all, with its bodies and messages.
    pub async fn forget(&self, flow_id: FlowId) {
        self.send(Op::Forget(flow_id)).await;
    }

    /// Waits until everything sent so far is committed; the error is the writer's first.
    pub async fn flush(&self) -> Result<(), String> {
        let (done, answer) = oneshot::channel();
        if self.ops.send(Op::Flush(done)).await.is_err() {
            return Err(self.error().unwrap_or_else(|| format!("{}: the writer stopped", self.path.display())));
        }
        answer.await.unwrap_or_else(|_| Err(format!("{}: the writer stopped", self.path.display())))
    }

    async fn send(&self, op: Op) {
        // A stopped writer has reported why, once; the flow goes on unrecorded.
        let _ = self.ops.send(op).await;
    }

    fn error(&self) -> Option<String> {
        self.failed.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Deletes flows from a session, also while it is being recorded into (SQLite serializes the two
/// writers): the flow with `id`, or every flow. Returns how many were deleted. A flow still in progress
/// comes back with its next write.
pub fn delete(path: &Path, id: Option<&str>) -> Result<usize, String> {
    let fail = |e: rusqlite::Error| format!("{}: {e}", path.display());
    let mut connection = Connection::open(path).map_err(fail)?;
    connection.busy_timeout(std::time::Duration::from_secs(5)).map_err(fail)?;
    let tx = connection.transaction().map_err(fail)?;
    let which = if id.is_some() { "WHERE id = ?1" } else { "WHERE ?1 IS NULL" };
    let seqs = format!("(SELECT seq FROM flows {which})");
    for sql in [
        format!("DELETE FROM bodies WHERE flow_seq IN {seqs}"),
        format!("DELETE FROM body_text WHERE rowid IN {seqs}"),
        format!("DELETE FROM messages WHERE flow_id IN (SELECT id FROM flows {which})"),
    ] {
        tx.execute(&sql, [id]).map_err(fail)?;
    }
    let deleted = tx.execute(&format!("DELETE FROM flows {which}"), [id]).map_err(fail)?;
    tx.commit().map_err(fail)?;
    Ok(deleted)
}

/// The session file is the user's traffic (cookies, credentials): only the owner may read it. Creates
/// it (empty, which SQLite takes as a new database) if it is not there.
fn set_private(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        options.open(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
    }
    #[cfg(not(unix))]
    options.open(path).map(drop)
}

fn prepare(connection: &Connection) -> rusqlite::Result<()> {
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "OFF")?;
    // The writer appends; a small page cache (1 MiB, SQLite's default is 2) is all it needs.
    connection.pragma_update(None, "cache_size", -1024)?;
    let version: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "written by a newer strata (schema {version}, this one reads {SCHEMA_VERSION})"
        )));
    }
    if version == 1 {
        return Err(rusqlite::Error::InvalidParameterName(
            "a session of an earlier strata (schema 1): it can be read (-r), not appended to".into(),
        ));
    }
    connection.execute_batch(SCHEMA)?;
    if version == 2 {
        connection.execute_batch(MIGRATE_2)?;
    }
    connection.pragma_update(None, "user_version", SCHEMA_VERSION)
}

/// The writer thread's state: its connection, and the `seq` of each flow still being written (for its
/// body pieces).
struct Writer {
    connection: Connection,
    live: HashMap<FlowId, i64>,
    body_limit: u64,
}

impl Writer {
    fn run(
        &mut self,
        mut queue: mpsc::Receiver<Op>,
        name: &str,
        max_size: Option<u64>,
        failed: &Mutex<Option<String>>,
    ) {
        let mut batches = 0u32;
        let mut said_trimmed = false;
        while let Some(first) = queue.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < BATCH_OPS {
                match queue.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            let mut flushes = Vec::new();
            let mut result = self.apply(batch, &mut flushes);
            batches = batches.wrapping_add(1);
            if let (Ok(()), Some(max)) = (&result, max_size.filter(|_| batches % SIZE_CHECK_BATCHES == 0)) {
                result = match trim(&self.connection, max) {
                    Ok(dropped) if dropped > 0 && !said_trimmed => {
                        tracing::warn!("{name}: past --store-max-size; dropping the oldest flows ({dropped} so far)");
                        said_trimmed = true;
                        Ok(())
                    }
                    other => other.map(|_| ()),
                };
            }
            if result.is_ok() && !flushes.is_empty() {
                // A flush (at exit) also folds the write-ahead log into the database file.
                result = self.connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
            }
            let outcome = result.map_err(|e| format!("{name}: {e}; recording stopped"));
            if let Err(reason) = &outcome {
                tracing::error!("{reason}");
                *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason.clone());
            }
            for flush in flushes {
                let _ = flush.send(outcome.clone());
            }
            if outcome.is_err() {
                return;
            }
        }
    }

    fn apply(
        &mut self,
        batch: Vec<Op>,
        flushes: &mut Vec<oneshot::Sender<Result<(), String>>>,
    ) -> rusqlite::Result<()> {
        let mut batch = batch;
        let skip = coalesce(&mut batch);
        let tx = self.connection.transaction()?;
        for (op, skip) in batch.into_iter().zip(skip) {
            if skip {
                continue;
            }
            match op {
                Op::Http { flow, finished } => {
                    let seq = upsert_http(&tx, &flow, self.body_limit)?;
                    if finished {
                        self.live.remove(&flow.id);
                        index_text(&tx, seq)?;
                    } else {
                        self.live.insert(flow.id, seq);
                    }
                }
                Op::Body { flow, side, offset, data } => {
                    // A piece of a flow that is not (or no longer) stored has nowhere to go.
                    if let Some(seq) = seq_of(&self.live, &tx, flow)? {
                        tx.prepare_cached(
                            "INSERT OR REPLACE INTO bodies (flow_seq, side, offset, data) VALUES (?1, ?2, ?3, ?4)",
                        )?
                        .execute(params![seq, side_code(side), offset as i64, &data[..]])?;
                    }
                }
                Op::Trailers { flow, side, fields } => {
                    if let Some(seq) = seq_of(&self.live, &tx, flow)? {
                        let sql = match side {
                            BodySide::Request => "UPDATE flows SET request_trailers = ?2 WHERE seq = ?1",
                            BodySide::Response => "UPDATE flows SET response_trailers = ?2 WHERE seq = ?1",
                        };
                        tx.prepare_cached(sql)?.execute(params![seq, fields])?;
                    }
                }
                Op::Tcp(flow) => insert_tcp(&tx, &flow)?,
                Op::Message { flow_id, n, from_client, kind, content, at } => {
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO messages (flow_id, n, from_client, kind, content, at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )?
                    .execute(params![
                        flow_id.to_string(),
                        n as i64,
                        from_client,
                        kind,
                        content,
                        unix_seconds(at)
                    ])?;
                }
                Op::Forget(flow_id) => {
                    self.live.remove(&flow_id);
                    let id = flow_id.to_string();
                    tx.execute("DELETE FROM bodies WHERE flow_seq IN (SELECT seq FROM flows WHERE id = ?1)", [&id])?;
                    tx.execute("DELETE FROM body_text WHERE rowid IN (SELECT seq FROM flows WHERE id = ?1)", [&id])?;
                    tx.execute("DELETE FROM messages WHERE flow_id = ?1", [&id])?;
                    tx.execute("DELETE FROM flows WHERE id = ?1", [&id])?;
                }
                Op::Flush(done) => flushes.push(done),
            }
        }
        tx.commit()
    }
}

/// Folds the HTTP writes of one flow in a batch into one: the flow's latest state is written where its first
/// write was (so a new flow still takes its place in the session's order), and the writes after it are
/// skipped (the returned flags). A body piece or trailers between two writes need the row as it is, so a
/// run of writes ends there. Under load a flow's request head, response head and end often land in one
/// batch, and one upsert then does the work of three.
fn coalesce(batch: &mut [Op]) -> Vec<bool> {
    let mut skip = vec![false; batch.len()];
    // Per flow: the position of the run's first write, and of its latest.
    let mut runs: HashMap<FlowId, (usize, usize)> = HashMap::new();
    let end_run = |batch: &mut [Op], skip: &mut [bool], (first, latest): (usize, usize)| {
        if latest != first {
            batch.swap(first, latest);
            skip[latest] = true;
        }
    };
    for i in 0..batch.len() {
        match &batch[i] {
            Op::Http { flow, .. } => match runs.get_mut(&flow.id) {
                Some((first, latest)) => {
                    if *latest != *first {
                        skip[*latest] = true;
                    }
                    *latest = i;
                }
                None => {
                    runs.insert(flow.id, (i, i));
                }
            },
            Op::Body { flow, .. } | Op::Trailers { flow, .. } | Op::Forget(flow) => {
                if let Some(run) = runs.remove(flow) {
                    end_run(batch, &mut skip, run);
                }
            }
            Op::Tcp(_) | Op::Message { .. } | Op::Flush(_) => {}
        }
    }
    for run in runs.into_values() {
        end_run(batch, &mut skip, run);
    }
    skip
}

/// The `seq` of a flow being written (`live`), or of one already stored.
fn seq_of(live: &HashMap<FlowId, i64>, tx: &rusqlite::Transaction<'_>, flow: FlowId) -> rusqlite::Result<Option<i64>> {
    match live.get(&flow) {
        Some(&seq) => Ok(Some(seq)),
        None => tx.query_row("SELECT seq FROM flows WHERE id = ?1", [flow.to_string()], |row| row.get(0)).optional(),
    }
}

/// Drops the oldest flows (a tenth of them at a time) while the session's used pages exceed `max`;
/// returns how many were dropped. Freed pages are reused by later writes.
fn trim(connection: &Connection, max: u64) -> rusqlite::Result<u64> {
    let used = |c: &Connection| -> rusqlite::Result<u64> {
        let pages: i64 = c.pragma_query_value(None, "page_count", |row| row.get(0))?;
        let free: i64 = c.pragma_query_value(None, "freelist_count", |row| row.get(0))?;
        let size: i64 = c.pragma_query_value(None, "page_size", |row| row.get(0))?;
        Ok(((pages - free).max(0) * size) as u64)
    };
    let mut dropped = 0;
    while used(connection)? > max {
        let total: i64 = connection.query_row("SELECT COUNT(*) FROM flows", [], |row| row.get(0))?;
        if total <= 1 {
            break;
        }
        let batch = (total / 10).max(1);
        let tx = connection.unchecked_transaction()?;
        tx.execute("DELETE FROM bodies WHERE flow_seq IN (SELECT seq FROM flows ORDER BY seq LIMIT ?1)", [batch])?;
        tx.execute("DELETE FROM body_text WHERE rowid IN (SELECT seq FROM flows ORDER BY seq LIMIT ?1)", [batch])?;
        tx.execute("DELETE FROM messages WHERE flow_id IN (SELECT id FROM flows ORDER BY seq LIMIT ?1)", [batch])?;
        let n = tx.execute("DELETE FROM flows WHERE seq IN (SELECT seq FROM flows ORDER BY seq LIMIT ?1)", [batch])?;
        tx.commit()?;
        dropped += n as u64;
    }
    Ok(dropped)
}

/// Inserts or updates an HTTP flow; returns its `seq`. Kept bodies are stored inline, cut to `body_limit`.
fn upsert_http(tx: &rusqlite::Transaction<'_>, flow: &HttpFlow, body_limit: u64) -> rusqlite::Result<i64> {
    let request = &flow.request;
    let response = flow.response.as_ref();
    fn cut(body: &Option<Vec<u8>>, limit: u64) -> Option<&[u8]> {
        body.as_deref().map(|b| &b[..b.len().min(limit as usize)])
    }
    let truncated = |len: u64| len > body_limit;
    tx.prepare_cached(
        "INSERT INTO flows (id, kind, started_at, client, server, at_proxy, method, scheme, host, port, path,
            http_version, request_headers, request_body, request_body_len, status, reason, response_version,
            response_headers, response_body, response_body_len, error, connect_ms, send_ms, wait_ms, receive_ms,
            websocket, duration_ms, request_truncated, response_truncated, url, client_sni, client_alpn,
            client_tls_version, server_sni, server_alpn, server_tls_version, request_trailers, response_trailers,
            ssl_ms, server_cert)
         VALUES (?1, 'http', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19,
            ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34, ?35, ?36, ?37, ?38, ?39,
            ?40)
         ON CONFLICT(id) DO UPDATE SET server = excluded.server, method = excluded.method,
            scheme = excluded.scheme, host = excluded.host, port = excluded.port, path = excluded.path,
            request_headers = excluded.request_headers, request_body = excluded.request_body,
            request_body_len = excluded.request_body_len, status = excluded.status, reason = excluded.reason,
            response_version = excluded.response_version, response_headers = excluded.response_headers,
            response_body = excluded.response_body, response_body_len = excluded.response_body_len,
            error = excluded.error, connect_ms = excluded.connect_ms, send_ms = excluded.send_ms,
            wait_ms = excluded.wait_ms, receive_ms = excluded.receive_ms, websocket = excluded.websocket,
            duration_ms = excluded.duration_ms, request_truncated = excluded.request_truncated,
            response_truncated = excluded.response_truncated, url = excluded.url,
            client_sni = excluded.client_sni, client_alpn = excluded.client_alpn,
            client_tls_version = excluded.client_tls_version, server_sni = excluded.server_sni,
            server_alpn = excluded.server_alpn, server_tls_version = excluded.server_tls_version,
            request_trailers = coalesce(excluded.request_trailers, request_trailers),
            response_trailers = coalesce(excluded.response_trailers, response_trailers),
            ssl_ms = excluded.ssl_ms, server_cert = excluded.server_cert
         RETURNING seq",
    )?
    .query_row(
        params![
            flow.id.to_string(),
            unix_seconds(flow.started_at),
            flow.client_addr.to_string(),
            flow.server_addr.map(|a| a.to_string()),
            flow.at_proxy,
            request.method,
            request.scheme.as_str(),
            request.host,
            request.port,
            request.path,
            request.version.as_str(),
            wire_fields(&request.headers),
            cut(&request.body, body_limit),
            request.body_len as i64,
            response.map(|r| r.status),
            response.map(|r| r.reason.clone()),
            response.map(|r| r.version.as_str()),
            response.map(|r| wire_fields(&r.headers)),
            response.and_then(|r| cut(&r.body, body_limit)),
            response.map(|r| r.body_len as i64),
            flow.error,
            flow.timings.connect_ms,
            flow.timings.send_ms,
            flow.timings.wait_ms,
            flow.timings.receive_ms,
            flow.websocket.is_some(),
            flow.websocket.as_ref().map(|ws| ws.duration.as_secs_f64() * 1000.0),
            truncated(request.body_len),
            response.is_some_and(|r| truncated(r.body_len)),
            request.url(),
            flow.client_tls.as_ref().and_then(|t| t.sni.clone()),
            flow.client_tls.as_ref().and_then(|t| t.alpn.clone()),
            flow.client_tls.as_ref().and_then(|t| t.version.clone()),
            flow.server_tls.as_ref().and_then(|t| t.sni.clone()),
            flow.server_tls.as_ref().and_then(|t| t.alpn.clone()),
            flow.server_tls.as_ref().and_then(|t| t.version.clone()),
            request.trailers.as_ref().map(wire_fields),
            response.and_then(|r| r.trailers.as_ref()).map(wire_fields),
            flow.timings.ssl_ms,
            flow.server_tls.as_ref().and_then(|t| t.certificate.as_deref()),
        ],
        |row| row.get(0),
    )
}

/// Bodies up to this size whose content type says text (and that are UTF-8) are indexed for `~b`
/// (trigram full-text search) as their flow ends; others are searched by reading them. A trigram index
/// costs about as much as the text again, and its writing time grows with it: larger texts are rare and
/// read fast enough.
const TEXT_INDEX_LIMIT: u64 = 256 << 10;

/// What a body gives the full-text index.
enum Text {
    Empty,
    Indexed(String),
    /// Binary, encoded, truncated or too large: `~b` reads it instead.
    NotIndexed,
}

/// Indexes the text bodies of a finished flow (stored as `seq`, read back) in `body_text`, and marks the flow
/// `text_indexed` when every body it has is in the index, so a body search can skip the flows the index
/// rules out.
fn index_text(tx: &rusqlite::Transaction<'_>, seq: i64) -> rusqlite::Result<()> {
    type Row = (Option<Vec<u8>>, Option<Vec<u8>>, Option<i64>, Option<Vec<u8>>, Option<Vec<u8>>, Option<i64>);
    let row: Option<Row> = tx
        .prepare_cached(
            "SELECT request_headers, request_body, request_body_len, response_headers, response_body,
                response_body_len FROM flows WHERE seq = ?1",
        )?
        .query_row([seq], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
        .optional()?;
    // Dropped since (trimmed, or not kept by the filter).
    let Some((request_headers, request_body, request_len, response_headers, response_body, response_len)) = row else {
        return Ok(());
    };
    let text = |side, headers: Option<Vec<u8>>, kept, len: Option<i64>| {
        let headers = fields_from_wire(&headers.unwrap_or_default());
        body_text(tx, seq, side, &headers, &kept, len.unwrap_or(0).max(0) as u64)
    };
    let request_text = text(BodySide::Request, request_headers, request_body, request_len)?;
    let response_text = text(BodySide::Response, response_headers, response_body, response_len)?;
    let as_text = |text: &Text| match text {
        Text::Indexed(text) => Some(text.clone()),
        _ => None,
    };
    let complete = !matches!(request_text, Text::NotIndexed) && !matches!(response_text, Text::NotIndexed);
    if !complete {
        // Already marked so (0 is the column's default); a body search reads this flow.
        return Ok(());
    }
    tx.prepare_cached("DELETE FROM body_text WHERE rowid = ?1")?.execute([seq])?;
    if matches!(request_text, Text::Indexed(_)) || matches!(response_text, Text::Indexed(_)) {
        tx.prepare_cached("INSERT INTO body_text (rowid, request, response) VALUES (?1, ?2, ?3)")?.execute(params![
            seq,
            as_text(&request_text),
            as_text(&response_text)
        ])?;
    }
    tx.prepare_cached("UPDATE flows SET text_indexed = 1 WHERE seq = ?1")?.execute([seq])?;
    Ok(())
}

/// One body's text for the index: its kept copy or its stored pieces, when it is text.
fn body_text(
    tx: &rusqlite::Transaction<'_>,
    seq: i64,
    side: BodySide,
    headers: &Headers,
    kept: &Option<Vec<u8>>,
    len: u64,
) -> rusqlite::Result<Text> {
    if len == 0 {
        return Ok(Text::Empty);
    }
    let encoded = headers.get_all("content-encoding").any(|v| !v.trim_ascii().eq_ignore_ascii_case(b"identity"));
    let textual = headers.get("content-type").is_some_and(|v| {
        let v = String::from_utf8_lossy(v).to_ascii_lowercase();
        ["text/", "json", "xml", "javascript", "x-www-form-urlencoded", "graphql"].iter().any(|t| v.contains(t))
    });
    if encoded || !textual || len > TEXT_INDEX_LIMIT {
        return Ok(Text::NotIndexed);
    }
    let bytes = match kept {
        Some(body) => body.clone(),
        None => {
            let mut statement =
                tx.prepare_cached("SELECT data FROM bodies WHERE flow_seq = ?1 AND side = ?2 ORDER BY offset")?;
            let mut rows = statement.query(params![seq, side_code(side)])?;
            let mut bytes = Vec::new();
            while let Some(row) = rows.next()? {
                bytes.extend_from_slice(row.get_ref(0)?.as_blob()?);
            }
            bytes
        }
    };
    // A text type over bytes that are not UTF-8 (random data, another charset) is searched by reading.
    match String::from_utf8(bytes) {
        Ok(text) if text.len() as u64 == len => Ok(Text::Indexed(text)),
        _ => Ok(Text::NotIndexed),
    }
}

fn insert_tcp(tx: &rusqlite::Transaction<'_>, flow: &TcpFlow) -> rusqlite::Result<()> {
    let started = SystemTime::now().checked_sub(flow.duration).unwrap_or(UNIX_EPOCH);
    tx.execute(
        "INSERT OR REPLACE INTO flows (id, kind, started_at, client, server, bytes_to_server, bytes_to_client,
            duration_ms) VALUES (?1, 'tcp', ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            flow.id.to_string(),
            unix_seconds(started),
            flow.client_addr.to_string(),
            flow.server,
            flow.bytes_to_server as i64,
            flow.bytes_to_client as i64,
            flow.duration.as_secs_f64() * 1000.0,
        ],
    )?;
    Ok(())
}

fn unix_seconds(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// `name: value\r\n` per field, as on the wire.
fn wire_fields(headers: &Headers) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in &headers.0 {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn fields_from_wire(bytes: &[u8]) -> Headers {
    let mut headers = Headers::default();
    for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(colon) = line.iter().position(|&b| b == b':') {
            let name = String::from_utf8_lossy(&line[..colon]).into_owned();
            let value = line[colon + 1..].strip_prefix(b" ").unwrap_or(&line[colon + 1..]);
            headers.append(&name, value.to_vec());
        }
    }
    headers
}

#[cfg(test)]
mod tests;
