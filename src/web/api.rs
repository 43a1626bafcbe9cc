//! The web UI's HTTP API (documented in the README's "Web UI"): the flow list with a filter and paging,
//! one flow, its bodies, filter checks, and live updates over a WebSocket. Reads go to the session through
//! a `SessionReader` of their own, on a blocking thread.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use super::intercept::Decision;
use super::{json as flow_json, views, Web};
use crate::filter::{Filter, FilterError, FlowRef};
use crate::store::{SessionReader, Sort, StoredFlow};

/// Most flows one list request returns.
const MAX_PAGE: usize = 1000;

type Params = Query<HashMap<String, String>>;

pub(super) fn routes() -> Router<Arc<Web>> {
    Router::new()
        .route("/api/flows", get(list).delete(clear))
        .route("/api/flows/{id}", get(one).delete(delete_one))
        .route("/api/flows/{id}/send", post(send))
        .route("/api/flows/{id}/{side}/content", get(content))
        .route("/api/flows/{id}/{side}/view", get(content_view))
        .route("/api/flows/{id}/replay", post(replay))
        .route("/api/export.har", get(export_har))
        .route("/api/intercept", get(intercept_state).put(set_intercept))
        .route("/api/flows/{id}/resume", post(resume))
        .route("/api/flows/{id}/kill", post(kill))
        .route("/api/filter", get(check_filter))
        .route("/api/updates", get(updates))
}

/// A JSON error with a status.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// The `filter` parameter, parsed.
fn filter_of(params: &HashMap<String, String>) -> Result<Option<Filter>, FilterError> {
    match params.get("filter").map(|f| f.trim()).filter(|f| !f.is_empty()) {
        None => Ok(None),
        Some(text) => Filter::parse(text).map(Some),
    }
}

/// A bad filter: a 400 that says what is wrong and where.
fn bad_filter(e: FilterError) -> Response {
    let body = json!({ "error": e.to_string(), "position": e.position, "expected": e.expected });
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

/// Runs `read` on the session on a blocking thread; a store error is a 500 naming it.
async fn with_session<T: Send + 'static>(
    web: &Web,
    with_bodies: bool,
    read: impl FnOnce(&mut SessionReader) -> Result<T, String> + Send + 'static,
) -> Result<T, Response> {
    let session = web.session.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let mut reader = SessionReader::open(&session, with_bodies)?;
        read(&mut reader)
    })
    .await;
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e)),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

/// `GET /api/flows?filter=F&sort=S&skip=N&limit=M`: `{"total": T, "flows": [row...]}`, in the order the
/// flows started, or by `sort` (a column name, `-` first for descending).
async fn list(State(web): State<Arc<Web>>, Query(params): Params) -> Response {
    let filter = match filter_of(&params) {
        Ok(filter) => filter,
        Err(e) => return bad_filter(e),
    };
    let number = |name: &str, default: usize| params.get(name).and_then(|v| v.parse().ok()).unwrap_or(default);
    let (skip, limit) = (number("skip", 0), number("limit", 100).min(MAX_PAGE));
    let sort = match params.get("sort").filter(|s| !s.is_empty()) {
        None => None,
        Some(text) => match Sort::parse(text) {
            Some(sort) => Some(sort),
            None => return error(StatusCode::BAD_REQUEST, format!("cannot sort by {text:?}")),
        },
    };
    let page = with_session(&web, false, move |reader| {
        let total = reader.count(filter.as_ref())?;
        let flows = reader.query_sorted(filter.as_ref(), sort, skip, limit)?;
        Ok((total, flows))
    })
    .await;
    match page {
        Ok((total, flows)) => {
            let rows: Vec<Value> = flows.iter().map(flow_json::summary).collect();
            Json(json!({ "total": total, "skip": skip, "flows": rows })).into_response()
        }
        Err(response) => response,
    }
}

/// `GET /api/flows/ID`: the whole flow (bodies only as their lengths; read to know what is stored).
async fn one(State(web): State<Arc<Web>>, Path(id): Path<String>) -> Response {
    match with_session(&web, true, move |reader| reader.flow(&id)).await {
        Ok(Some(flow)) => Json(flow_json::detail(&flow)).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "no such flow"),
        Err(response) => response,
    }
}

/// `GET /api/flows/ID/request/content` (or `response`): the body as stored (still content-encoded), with
/// the message's Content-Type; `?download` makes it an attachment.
async fn content(
    State(web): State<Arc<Web>>,
    Path((id, side)): Path<(String, String)>,
    Query(params): Params,
) -> Response {
    if side != "request" && side != "response" {
        return error(StatusCode::NOT_FOUND, "the side is request or response");
    }
    let flow = match with_session(&web, true, move |reader| reader.flow(&id)).await {
        Ok(Some(StoredFlow::Http(flow))) => flow,
        Ok(_) => return error(StatusCode::NOT_FOUND, "no such HTTP flow"),
        Err(response) => return response,
    };
    let (headers, body) = match side.as_str() {
        "request" => (&flow.request.headers, flow.request.body.clone()),
        _ => match &flow.response {
            Some(response) => (&response.headers, response.body.clone()),
            None => return error(StatusCode::NOT_FOUND, "the flow has no response"),
        },
    };
    let content_type = headers
        .get("content-type")
        .and_then(|v| std::str::from_utf8(v).ok())
        .unwrap_or("application/octet-stream")
        .to_string();
    let mut response = (
        [(header::CONTENT_TYPE, content_type), (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string())],
        body.unwrap_or_default(),
    )
        .into_response();
    if params.contains_key("download") {
        let disposition = format!("attachment; filename=\"{side}-body\"");
        if let Ok(value) = disposition.parse() {
            response.headers_mut().insert(header::CONTENT_DISPOSITION, value);
        }
    }
    // A body is the traffic's, not the page's: never run it as part of the UI.
    if let Ok(value) = "sandbox".parse() {
        response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, value);
    }
    response
}

/// `POST /api/flows/ID/replay`: sends the flow's request again through the proxy (a new flow, which the
/// list shows live); `{"answer": STATUS_LINE}`, or 502 with the error when nothing came back.
async fn replay(State(web): State<Arc<Web>>, Path(id): Path<String>) -> Response {
    let flow = match with_session(&web, true, move |reader| reader.flow(&id)).await {
        Ok(Some(StoredFlow::Http(flow))) => flow,
        Ok(_) => return error(StatusCode::NOT_FOUND, "no such HTTP flow"),
        Err(response) => return response,
    };
    answer_of(crate::client_replay::replay(&web.root, &crate::read_flows::request_exchange(&flow)).await)
}

/// The answer to a replayed request: its status line, or 502 when nothing came back.
fn answer_of(answer: Vec<u8>) -> Response {
    let status_line = String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_string();
    if status_line.is_empty() {
        return error(StatusCode::BAD_GATEWAY, "the request got no answer");
    }
    Json(json!({ "answer": status_line })).into_response()
}

/// `POST /api/flows/ID/send`, with JSON edits of its request (as for `resume`): sends the flow's request,
/// edited, as a new flow (the original stays); `{"answer": STATUS_LINE}`, or 502.
async fn send(State(web): State<Arc<Web>>, Path(id): Path<String>, body: axum::body::Bytes) -> Response {
    let edits: Value = match serde_json::from_slice(&body) {
        Ok(edits) => edits,
        Err(_) if body.is_empty() => Value::Null,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("the edits are not JSON: {e}")),
    };
    let mut flow = match with_session(&web, true, move |reader| reader.flow(&id)).await {
        Ok(Some(StoredFlow::Http(flow))) => flow,
        Ok(_) => return error(StatusCode::NOT_FOUND, "no such HTTP flow"),
        Err(response) => return response,
    };
    super::intercept::apply(&mut flow, super::intercept::Phase::Request, &edits);
    answer_of(crate::client_replay::replay(&web.root, &crate::read_flows::request_exchange(&flow)).await)
}

/// `DELETE /api/flows/ID`: removes the flow from the session.
async fn delete_one(State(web): State<Arc<Web>>, Path(id): Path<String>) -> Response {
    deleted(&web, Some(id)).await
}

/// `DELETE /api/flows`: removes every flow from the session.
async fn clear(State(web): State<Arc<Web>>) -> Response {
    deleted(&web, None).await
}

async fn deleted(web: &Web, id: Option<String>) -> Response {
    let session = web.session.clone();
    match tokio::task::spawn_blocking(move || crate::store::delete(&session, id.as_deref())).await {
        Ok(Ok(n)) => Json(json!({ "deleted": n })).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `GET /api/export.har?filter=F` or `?ids=ID,ID,...`: the matching flows, or the listed ones (the page's
/// selection, in the order given), as a HAR file, written as it is read (a page of flows at a time), so an
/// export of any size costs one page of memory.
/// Flows read by id per page of an export of a selection.
const EXPORT_BY_ID: usize = 50;

async fn export_har(State(web): State<Arc<Web>>, Query(params): Params) -> Response {
    let filter = match filter_of(&params) {
        Ok(filter) => filter,
        Err(e) => return bad_filter(e),
    };
    let mut ids: Option<std::collections::VecDeque<String>> =
        params.get("ids").map(|ids| ids.split(',').filter(|id| !id.is_empty()).map(str::to_string).collect());
    let mut reader = match SessionReader::open(&web.session, true) {
        Ok(reader) => reader,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
    };
    let (pieces, receive) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || {
        let _ = pieces.blocking_send(Ok(crate::addons::har::document_head().into_bytes()));
        let mut first = true;
        loop {
            let page = match ids.as_mut() {
                None => reader.next_page(filter.as_ref()),
                Some(ids) => {
                    let chunk: Vec<String> = ids.drain(..ids.len().min(EXPORT_BY_ID)).collect();
                    chunk.iter().filter_map(|id| reader.flow(id).transpose()).collect()
                }
            };
            let page = match page {
                Ok(page) if page.is_empty() && ids.as_ref().is_none_or(|ids| ids.is_empty()) => break,
                Ok(page) => page,
                Err(e) => {
                    let _ = pieces.blocking_send(Err(std::io::Error::other(e)));
                    return;
                }
            };
            let mut out = Vec::new();
            for flow in page {
                if let StoredFlow::Http(flow) = flow {
                    out.extend_from_slice(if first { b"\n" } else { b",\n" });
                    out.extend_from_slice(crate::addons::har::entry(&flow).to_string().as_bytes());
                    first = false;
                }
            }
            if pieces.blocking_send(Ok(out)).is_err() {
                return;
            }
        }
        let _ = pieces.blocking_send(Ok(crate::addons::har::CLOSING.as_bytes().to_vec()));
    });
    let stream = futures_util::stream::unfold(receive, |mut receive| async move {
        receive.recv().await.map(|piece| (piece, receive))
    });
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CONTENT_DISPOSITION, "attachment; filename=\"strata.har\""),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// `GET /api/intercept`: `{"filter": F or null, "paused": [flow...]}`, each paused flow as `/api/flows/ID`
/// shows it plus `intercepted` (`request` or `response`) and `body` (`{"text"}` or `{"base64"}`) of the
/// paused message.
async fn intercept_state(State(web): State<Arc<Web>>) -> Response {
    Json(json!({ "filter": web.intercept.filter_text(), "paused": web.intercept.paused() })).into_response()
}

/// `PUT /api/intercept?filter=F`: sets the intercept filter (an empty one stops intercepting).
async fn set_intercept(State(web): State<Arc<Web>>, Query(params): Params) -> Response {
    match filter_of(&params) {
        Ok(filter) => {
            web.intercept.set_filter(filter);
            Json(json!({ "filter": web.intercept.filter_text() })).into_response()
        }
        Err(e) => bad_filter(e),
    }
}

/// `POST /api/flows/ID/resume`, with optional JSON edits of the paused message (`method`, `url`, `status`,
/// `headers` as `[[name, value], ...]`, `body` as `{"text"}` or `{"base64"}`).
async fn resume(State(web): State<Arc<Web>>, Path(id): Path<String>, body: axum::body::Bytes) -> Response {
    let edits = match body.is_empty() {
        true => Value::Null,
        false => match serde_json::from_slice(&body) {
            Ok(edits) => edits,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("the edits are not JSON: {e}")),
        },
    };
    decided(web.intercept.decide(&id, Decision::Resume(edits)))
}

/// `POST /api/flows/ID/kill`: ends a paused flow (its client connection is closed).
async fn kill(State(web): State<Arc<Web>>, Path(id): Path<String>) -> Response {
    decided(web.intercept.decide(&id, Decision::Kill))
}

fn decided(found: bool) -> Response {
    match found {
        true => Json(json!({ "ok": true })).into_response(),
        false => error(StatusCode::NOT_FOUND, "no such paused flow"),
    }
}

/// `GET /api/flows/ID/request/view` (or `response`): the body decoded and shown as its type suggests
/// (`views::view`), plus `decoded` (the content coding undone) or `note` (why it was not).
async fn content_view(State(web): State<Arc<Web>>, Path((id, side)): Path<(String, String)>) -> Response {
    let flow = match with_session(&web, true, move |reader| reader.flow(&id)).await {
        Ok(Some(StoredFlow::Http(flow))) => flow,
        Ok(_) => return error(StatusCode::NOT_FOUND, "no such HTTP flow"),
        Err(response) => return response,
    };
    let (headers, body, len) = match (side.as_str(), &flow.response) {
        ("request", _) => (&flow.request.headers, &flow.request.body, flow.request.body_len),
        ("response", Some(r)) => (&r.headers, &r.body, r.body_len),
        _ => return error(StatusCode::NOT_FOUND, "no such body"),
    };
    let text = |name: &str| headers.get(name).map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default();
    let stored = body.as_deref().unwrap_or_default();
    let encoding = text("content-encoding");
    let (bytes, note) = match views::decode(&encoding, stored) {
        Ok(bytes) => (bytes, None),
        Err(note) => (stored.to_vec(), Some(note)),
    };
    let mut shown = views::view(&text("content-type"), &bytes);
    if (stored.len() as u64) < len {
        shown["truncated"] = json!({ "stored": stored.len(), "len": len });
    }
    if note.is_none() && !encoding.is_empty() {
        shown["decoded"] = json!(encoding);
    }
    shown["note"] = json!(note);
    Json(shown).into_response()
}

/// `GET /api/filter?filter=F`: `{"ok": true}`, or a 400 with the error and its position.
async fn check_filter(Query(params): Params) -> Response {
    match filter_of(&params) {
        Ok(_) => Json(json!({ "ok": true })).into_response(),
        Err(e) => bad_filter(e),
    }
}

/// `GET /api/updates?filter=F` (WebSocket): `{"flow": row}` for each live event of a flow the filter
/// matches (a flow is announced when its request head is in, when its response head is, and when it
/// ends), `{"lagged": N}` when the page fell behind and missed N events.
async fn updates(State(web): State<Arc<Web>>, Query(params): Params, upgrade: WebSocketUpgrade) -> Response {
    let filter = match filter_of(&params) {
        Ok(filter) => filter,
        Err(e) => return bad_filter(e),
    };
    let events = web.live.subscribe();
    upgrade.on_upgrade(move |socket| forward(socket, events, filter))
}

/// Rows sent in one live message at most.
const LIVE_BATCH: usize = 500;

/// The least time between two live messages to a page: under load, rows gather into fewer, larger
/// messages (a page that had to take thousands of small ones a second fell ever further behind). At
/// 40,000 events a second (three per flow) a pause fills a quarter of the events' backlog.
const LIVE_PACE: std::time::Duration = std::time::Duration::from_millis(25);

/// Sends the page the rows of the flows that match its filter: `{"flows": [row...]}` with every event
/// waiting at that moment (a flow's latest row only), so a busy proxy costs the page one message per wake-up
/// rather than three per flow; `{"lagged": N}` when it missed events.
async fn forward(
    mut socket: WebSocket,
    mut events: tokio::sync::broadcast::Receiver<super::live::Event>,
    filter: Option<Filter>,
) {
    let matches = |event: &super::live::Event| {
        let flow: FlowRef<'_> = match &*event.flow {
            StoredFlow::Http(flow) => (&**flow).into(),
            StoredFlow::Tcp(flow) => (&**flow).into(),
        };
        filter.as_ref().is_none_or(|f| f.matches(flow))
    };
    loop {
        let first = tokio::select! {
            event = events.recv() => event,
            incoming = socket.recv() => match incoming {
                // The page says nothing; its close (or a broken socket) ends the stream.
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => continue,
            },
        };
        let mut rows: Vec<Value> = Vec::new();
        let mut places: HashMap<String, usize> = HashMap::new();
        let mut lagged = 0;
        let mut next = Some(first);
        while let Some(event) = next.take() {
            match event {
                Ok(event) if matches(&event) => {
                    // A later event of the same flow replaces its row, in place.
                    let id = event.summary["id"].as_str().unwrap_or_default().to_string();
                    match places.get(&id) {
                        Some(&place) => rows[place] = event.summary,
                        None => {
                            places.insert(id, rows.len());
                            rows.push(event.summary);
                        }
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(missed)) => lagged += missed,
                Err(RecvError::Closed) => return,
            }
            if rows.len() < LIVE_BATCH {
                next = match events.try_recv() {
                    Ok(event) => Some(Ok(event)),
                    Err(TryRecvError::Lagged(missed)) => Some(Err(RecvError::Lagged(missed))),
                    Err(TryRecvError::Empty | TryRecvError::Closed) => None,
                };
            }
        }
        let message = match (lagged, rows.is_empty()) {
            (0, true) => continue,
            (0, false) => json!({ "flows": rows }),
            // The page reloads its list from the store: rows it got with the notice would be in it anyway.
            (missed, _) => json!({ "lagged": missed }),
        };
        if socket.send(Message::Text(message.to_string().into())).await.is_err() {
            return;
        }
        tokio::time::sleep(LIVE_PACE).await;
    }
}
