//! Reading a session back: `SessionReader` pages through it in the order its flows started, with or
//! without their bodies.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;

use rusqlite::{Connection, OpenFlags};

use super::query::{Lowered, Sort};
use super::{fields_from_wire, StoredFlow, SCHEMA_VERSION};
use crate::filter::Filter;
use crate::flow::{
    from_unix_seconds, FlowId, HttpFlow, Request, Response, TcpFlow, TcpMessage, Timings, TlsFacts, WebSocketData,
    WebSocketMessage,
};
use crate::http::message::{Headers, Version};
use crate::http::url::Scheme;

/// Reads a session a page at a time, in the order its flows started, so reading costs memory for one
/// page, not the session; or answers filtered, paged queries (`query`, `count`) from it.
pub struct SessionReader {
    path: PathBuf,
    connection: Connection,
    /// The `seq` of the last flow `next_page` read.
    last: i64,
    /// False to leave bodies unread (`None`), which is most of a session's bytes.
    with_bodies: bool,
    /// The schema version (1 had no body pieces, URL column or text index).
    version: i64,
}

/// Flows per page.
const PAGE_FLOWS: i64 = 256;

/// The columns `row_to_flow` reads, in its order, then `seq`; `?3` says whether to read inline bodies.
const COLUMNS: &str = "kind, id, started_at, client, server, at_proxy, method, scheme, host, port, path,
    http_version, request_headers, iif(?3, request_body, NULL), request_body_len, status, reason,
    response_version, response_headers, iif(?3, response_body, NULL), response_body_len, error,
    connect_ms, send_ms, wait_ms, receive_ms, websocket, bytes_to_server, bytes_to_client, duration_ms, seq";

/// The TLS facts of both connections and the trailers (schema 2 on), after `COLUMNS`.
const TLS_COLUMNS: &str = "client_sni, client_alpn, client_tls_version, server_sni, server_alpn, server_tls_version,
    request_trailers, response_trailers";

/// The TLS handshake time and the server's certificate (schema 3 on), after `TLS_COLUMNS`.
const V3_COLUMNS: &str = "ssl_ms, server_cert";

impl SessionReader {
    /// Opens a session; the error names the file. Opened read-write when it can be (nothing is written),
    /// so that SQLite removes its `-wal` and `-shm` files again on close. Without `with_bodies`, flows come
    /// without their bodies (their lengths are still there) unless a filter needs them.
    pub fn open(path: &Path, with_bodies: bool) -> Result<SessionReader, String> {
        let fail = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
        let connection = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
            .or_else(|_| Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY))
            .map_err(|e| fail(&e))?;
        let version: i64 =
            connection.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(|e| fail(&e))?;
        if !(1..=SCHEMA_VERSION).contains(&version) {
            return Err(fail(&format!("not a strata session this strata reads (schema version {version})")));
        }
        Ok(SessionReader { path: path.to_path_buf(), connection, last: 0, with_bodies, version })
    }

    /// The next page of flows matching `filter` (all, for none); empty at the end.
    pub fn next_page(&mut self, filter: Option<&Filter>) -> Result<Vec<StoredFlow>, String> {
        let lowered = self.lower(filter)?;
        loop {
            let page = self.select(&lowered, self.last, PAGE_FLOWS, 0, "seq")?;
            let Some(&(last, _)) = page.last() else { return Ok(Vec::new()) };
            self.last = last;
            let flows = keep_matching(page, filter, lowered.exact);
            if !flows.is_empty() {
                return Ok(flows);
            }
        }
    }

    /// The flows matching `filter` (all, for none) in the order they started, without the first `skip`
    /// of them, at most `limit`. Uses the session's indexes; a body search reads the bodies of the flows
    /// the text index cannot rule out.
    pub fn query(&mut self, filter: Option<&Filter>, skip: usize, limit: usize) -> Result<Vec<StoredFlow>, String> {
        self.query_sorted(filter, None, skip, limit)
    }

    /// As `query`, in the order `sort` gives (the order they started, for none).
    pub fn query_sorted(
        &mut self,
        filter: Option<&Filter>,
        sort: Option<Sort>,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<StoredFlow>, String> {
        let lowered = self.lower(filter)?;
        let order = sort.map_or_else(|| "seq".to_string(), Sort::sql);
        if lowered.exact {
            let page = self.select(&lowered, 0, limit as i64, skip as i64, &order)?;
            return Ok(page.into_iter().map(|(_, flow)| flow).collect());
        }
        // Candidates in order, a page at a time: by `seq` after the last one, or (sorted) by position.
        let (mut after, mut offset, mut skipped, mut flows) = (0, 0, 0, Vec::new());
        while flows.len() < limit {
            let page = self.select(&lowered, after, PAGE_FLOWS, offset, &order)?;
            let Some(&(last, _)) = page.last() else { break };
            match sort {
                None => after = last,
                Some(_) => offset += PAGE_FLOWS,
            }
            for flow in keep_matching(page, filter, false) {
                if skipped < skip {
                    skipped += 1;
                } else if flows.len() < limit {
                    flows.push(flow);
                }
            }
        }
        Ok(flows)
    }

    /// The flow with `id` (as `FlowId` shows it), if the session has it.
    pub fn flow(&mut self, id: &str) -> Result<Option<StoredFlow>, String> {
        let lowered = Lowered::id(id);
        Ok(self.select(&lowered, 0, 1, 0, "seq")?.into_iter().next().map(|(_, flow)| flow))
    }

    /// How many flows match `filter`.
    pub fn count(&mut self, filter: Option<&Filter>) -> Result<usize, String> {
        let lowered = self.lower(filter)?;
        if lowered.exact {
            let sql = format!("SELECT COUNT(*) FROM flows WHERE {}", lowered.condition);
            let count: i64 = self
                .connection
                .query_row(&sql, rusqlite::params_from_iter(&lowered.params), |row| row.get(0))
                .map_err(|e| self.fail(e))?;
            return Ok(count as usize);
        }
        let (mut after, mut count) = (0, 0);
        loop {
            let page = self.select(&lowered, after, PAGE_FLOWS, 0, "seq")?;
            let Some(&(last, _)) = page.last() else { return Ok(count) };
            after = last;
            count += keep_matching(page, filter, false).len();
        }
    }

    fn fail(&self, e: rusqlite::Error) -> String {
        format!("{}: {e}", self.path.display())
    }

    /// The SQL form of `filter`, its functions registered. A schema-1 session has no columns for it:
    /// every flow is a candidate there.
    fn lower(&self, filter: Option<&Filter>) -> Result<Lowered, String> {
        let lowered = if self.version >= 2 { Lowered::new(filter) } else { Lowered::everything(filter.is_none()) };
        lowered.register(&self.connection).map_err(|e| self.fail(e))?;
        Ok(lowered)
    }

    /// Up to `limit` flows after `seq` `after` that meet the condition, `offset` of them skipped, with
    /// their `seq`. Bodies are read if the reader wants them or the condition is not exact (a body
    /// search decides on them).
    fn select(
        &self,
        lowered: &Lowered,
        after: i64,
        limit: i64,
        offset: i64,
        order: &str,
    ) -> Result<Vec<(i64, StoredFlow)>, String> {
        let fail = |e: rusqlite::Error| self.fail(e);
        let with_bodies = self.with_bodies || !lowered.exact;
        let sql = format!(
            "SELECT {COLUMNS}, {}, {} FROM flows WHERE seq > ?1 AND ({}) ORDER BY {order} LIMIT ?2 OFFSET ?4",
            if self.version >= 2 { TLS_COLUMNS } else { "NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL" },
            if self.version >= 3 { V3_COLUMNS } else { "NULL, NULL" },
            // The condition's own parameters come after the four fixed ones.
            renumber(&lowered.condition, 5)
        );
        let mut statement = self.connection.prepare_cached(&sql).map_err(fail)?;
        let mut values: Vec<rusqlite::types::Value> =
            vec![after.into(), limit.into(), with_bodies.into(), offset.into()];
        values.extend(lowered.params.iter().cloned());
        let rows = statement
            .query_map(rusqlite::params_from_iter(values), |row| Ok((row.get::<_, i64>(30)?, row_to_flow(row)?)))
            .map_err(fail)?;
        let mut flows = Vec::new();
        for row in rows {
            let (seq, mut flow) = row.map_err(fail)?;
            match &mut flow {
                StoredFlow::Http(http) => {
                    if with_bodies && self.version >= 2 {
                        read_pieces(&self.connection, seq, http).map_err(fail)?;
                    }
                    if let Some(duration) = http.websocket.as_ref().map(|ws| ws.duration) {
                        let mut data = messages(&self.connection, self.version, http.id.to_string()).map_err(fail)?;
                        data.duration = duration;
                        http.websocket = Some(data);
                    }
                }
                StoredFlow::Tcp(tcp) if with_bodies => {
                    tcp.messages = tcp_chunks(&self.connection, self.version, tcp.id.to_string()).map_err(fail)?;
                }
                StoredFlow::Tcp(_) => {}
            }
            flows.push((seq, flow));
        }
        Ok(flows)
    }
}

/// The flows of `page` that `filter` matches (all of them, when the SQL condition was exact).
fn keep_matching(page: Vec<(i64, StoredFlow)>, filter: Option<&Filter>, exact: bool) -> Vec<StoredFlow> {
    let matches = |flow: &StoredFlow| match flow {
        StoredFlow::Http(flow) => filter.is_none_or(|f| f.matches((&**flow).into())),
        StoredFlow::Tcp(flow) => filter.is_none_or(|f| f.matches((&**flow).into())),
    };
    page.into_iter().map(|(_, flow)| flow).filter(|flow| exact || matches(flow)).collect()
}

/// `condition` with its anonymous `?` parameters numbered from `first` (`?5`, `?6`, ...).
fn renumber(condition: &str, first: usize) -> String {
    let mut out = String::with_capacity(condition.len() + 8);
    let mut next = first;
    for c in condition.chars() {
        out.push(c);
        if c == '?' {
            out.push_str(&next.to_string());
            next += 1;
        }
    }
    out
}

/// Fills in the bodies of `flow` (stored as `seq`) that were stored piece by piece.
fn read_pieces(connection: &Connection, seq: i64, flow: &mut HttpFlow) -> rusqlite::Result<()> {
    let mut statement =
        connection.prepare_cached("SELECT side, data FROM bodies WHERE flow_seq = ?1 ORDER BY side, offset")?;
    let mut rows = statement.query([seq])?;
    while let Some(row) = rows.next()? {
        let body = match row.get::<_, i64>(0)? {
            0 => &mut flow.request.body,
            _ => match &mut flow.response {
                Some(response) => &mut response.body,
                None => continue,
            },
        };
        body.get_or_insert_with(Vec::new).extend_from_slice(row.get_ref(1)?.as_blob()?);
    }
    Ok(())
}

/// Every flow of a session, in the order they started (for replay, which needs them all at once).
pub fn read_all(path: &Path) -> Result<Vec<StoredFlow>, String> {
    let mut reader = SessionReader::open(path, true)?;
    let mut flows = Vec::new();
    loop {
        let page = reader.next_page(None)?;
        if page.is_empty() {
            return Ok(flows);
        }
        flows.extend(page);
    }
}

fn messages(connection: &Connection, version: i64, flow_id: String) -> rusqlite::Result<WebSocketData> {
    let mut statement = connection.prepare_cached(messages_sql(version))?;
    let rows = statement.query_map([flow_id], |row| {
        let kind: String = row.get(1)?;
        Ok(WebSocketMessage {
            from_client: row.get(0)?,
            kind: message_kind(&kind),
            payload: row.get(2)?,
            at: from_unix_seconds(row.get(3)?),
        })
    })?;
    let mut data = WebSocketData::new();
    for message in rows {
        let message = message?;
        data.count(&message);
        data.messages.push(message);
    }
    Ok(data)
}

/// The messages of a flow, in order, for a session of schema `version` (before 3 they have no time).
fn messages_sql(version: i64) -> &'static str {
    if version >= 3 {
        "SELECT from_client, kind, content, at FROM messages WHERE flow_id = ?1 ORDER BY n"
    } else {
        "SELECT from_client, kind, content, NULL FROM messages WHERE flow_id = ?1 ORDER BY n"
    }
}

/// The chunks a TCP flow's session kept.
fn tcp_chunks(connection: &Connection, version: i64, flow_id: String) -> rusqlite::Result<Vec<TcpMessage>> {
    let mut statement = connection.prepare_cached(messages_sql(version))?;
    let rows = statement.query_map([flow_id], |row| {
        Ok(TcpMessage { from_client: row.get(0)?, content: row.get(2)?, at: from_unix_seconds(row.get(3)?) })
    })?;
    rows.collect()
}

/// The static name of a message kind read back.
fn message_kind(kind: &str) -> &'static str {
    ["text", "binary", "ping", "pong", "close", "frame"].into_iter().find(|k| *k == kind).unwrap_or("binary")
}

fn row_to_flow(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredFlow> {
    let kind: String = row.get(0)?;
    let id: String = row.get(1)?;
    let started_at: f64 = row.get(2)?;
    let client: String = row.get(3)?;
    let server: Option<String> = row.get(4)?;
    let client_addr = client.parse().unwrap_or_else(|_| ([0, 0, 0, 0], 0).into());
    let started = from_unix_seconds(Some(started_at));
    if kind == "tcp" {
        return Ok(StoredFlow::Tcp(Box::new(TcpFlow {
            id: FlowId::parse(&id).unwrap_or_default(),
            client_addr,
            server: server.unwrap_or_default(),
            bytes_to_server: row.get::<_, Option<i64>>(27)?.unwrap_or(0) as u64,
            bytes_to_client: row.get::<_, Option<i64>>(28)?.unwrap_or(0) as u64,
            duration: Duration::from_secs_f64(row.get::<_, Option<f64>>(29)?.unwrap_or(0.0).max(0.0) / 1000.0),
            messages: Vec::new(),
        })));
    }
    let version = |text: Option<String>| match text.as_deref() {
        Some("HTTP/1.0") => Version::Http10,
        Some("HTTP/2.0") => Version::Http2,
        _ => Version::Http11,
    };
    let request = Request {
        method: row.get::<_, Option<String>>(6)?.unwrap_or_default(),
        scheme: row.get::<_, Option<String>>(7)?.as_deref().and_then(Scheme::from_name).unwrap_or(Scheme::Http),
        host: row.get::<_, Option<String>>(8)?.unwrap_or_default(),
        port: row.get::<_, Option<u16>>(9)?.unwrap_or(80),
        path: row.get::<_, Option<String>>(10)?.unwrap_or_default(),
        version: version(row.get(11)?),
        headers: fields_from_wire(&row.get::<_, Option<Vec<u8>>>(12)?.unwrap_or_default()),
        body: row.get(13)?,
        body_len: row.get::<_, Option<i64>>(14)?.unwrap_or(0) as u64,
        stream: true,
        trailers: None,
    };
    let response = match row.get::<_, Option<u16>>(15)? {
        Some(status) => Some(Response {
            status,
            reason: row.get::<_, Option<String>>(16)?.unwrap_or_default(),
            version: version(row.get(17)?),
            headers: fields_from_wire(&row.get::<_, Option<Vec<u8>>>(18)?.unwrap_or_default()),
            body: row.get(19)?,
            body_len: row.get::<_, Option<i64>>(20)?.unwrap_or(0) as u64,
            stream: true,
            trailers: None,
        }),
        None => None,
    };
    let mut flow = HttpFlow::new(client_addr, row.get(5)?, request);
    flow.id = FlowId::parse(&id).unwrap_or_default();
    flow.started_at = started;
    flow.server_addr = server.and_then(|s| s.parse().ok());
    flow.response = response;
    flow.error = row.get(21)?;
    flow.timings = Timings {
        connect_ms: row.get::<_, Option<f64>>(22)?.unwrap_or(-1.0),
        ssl_ms: row.get::<_, Option<f64>>(39)?.unwrap_or(-1.0),
        send_ms: row.get::<_, Option<f64>>(23)?.unwrap_or(0.0),
        wait_ms: row.get::<_, Option<f64>>(24)?.unwrap_or(0.0),
        receive_ms: row.get::<_, Option<f64>>(25)?.unwrap_or(0.0),
    };
    if row.get::<_, bool>(26)? {
        let mut data = WebSocketData::new();
        data.duration = Duration::from_secs_f64(row.get::<_, Option<f64>>(29)?.unwrap_or(0.0).max(0.0) / 1000.0);
        flow.websocket = Some(data);
    }
    let tls = |first: usize| -> rusqlite::Result<Option<TlsFacts>> {
        let facts = TlsFacts {
            sni: row.get(first)?,
            alpn: row.get(first + 1)?,
            version: row.get(first + 2)?,
            certificate: None,
        };
        Ok((facts != TlsFacts::default()).then_some(facts))
    };
    flow.client_tls = tls(31)?;
    flow.server_tls = tls(34)?;
    if let Some(server_tls) = &mut flow.server_tls {
        server_tls.certificate = row.get::<_, Option<Vec<u8>>>(40)?.map(Bytes::from);
    }
    let trailers = |column: usize| -> rusqlite::Result<Option<Headers>> {
        Ok(row.get::<_, Option<Vec<u8>>>(column)?.map(|wire| fields_from_wire(&wire)))
    };
    flow.request.trailers = trailers(37)?;
    if let Some(response) = &mut flow.response {
        response.trailers = trailers(38)?;
    }
    Ok(StoredFlow::Http(Box::new(flow)))
}
