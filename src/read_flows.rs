//! `-r FILE` / `--rfile FILE`: flows read from a strata session (`crate::store`), a HAR file or a
//! mitmproxy flow file (`mitmdump -w`, see `crate::mitmproxy_flows`) go through
//! the addon chain as if they had just finished (`response`, or `error` for a failed one), so the flow
//! log prints them (the view filter and `--flow-detail` apply), `-w` stores them and `--save-har` writes
//! them: `strata -n -r session.db --save-har out.har '~d example.com'` exports part of a session.
//! Flows the positional filter does not match are skipped altogether.

use std::path::Path;
use std::sync::Arc;

use crate::addons::har::{read_har, RecordedExchange};
use crate::context::RootContext;
use crate::error::ConfigError;
use crate::filter::Filter;
use crate::flow::{HttpFlow, Request, Response, WebSocketData};
use crate::http::message::{Headers, Version};
use crate::mitmproxy_flows;
use crate::store::{self, StoredFlow};

/// The formats flows are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Session,
    Mitmproxy,
    Har,
}

/// Which format `path` is in, from its first bytes (anything else is read as HAR, whose reader says
/// what is wrong with it).
fn format_of(path: &Path) -> Format {
    let mut start = [0u8; 16];
    let read = std::fs::File::open(path).and_then(|mut file| std::io::Read::read(&mut file, &mut start));
    let start = &start[..read.unwrap_or(0)];
    if start == store::SQLITE_MAGIC {
        Format::Session
    } else if mitmproxy_flows::looks_like_flows(start) {
        Format::Mitmproxy
    } else {
        Format::Har
    }
}

/// Every flow in `path`, whichever of the three formats it is in. The error names the file.
pub fn read(path: &Path) -> Result<Vec<StoredFlow>, String> {
    match format_of(path) {
        Format::Session => store::read_all(path),
        Format::Mitmproxy => {
            let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            mitmproxy_flows::read(&data).map_err(|e| format!("{}: {e}", path.display()))
        }
        Format::Har => {
            let recorded = read_har(path).map_err(|e| e.to_string())?;
            Ok(recorded.iter().map(|exchange| StoredFlow::Http(Box::new(from_har(exchange)))).collect())
        }
    }
}

/// The answered HTTP exchanges in `path` (any of the three formats), for replay.
pub fn exchanges(path: &Path) -> Result<Vec<RecordedExchange>, String> {
    if format_of(path) == Format::Har {
        return read_har(path).map_err(|e| e.to_string());
    }
    let flows = read(path)?;
    Ok(flows
        .iter()
        .filter_map(|flow| match flow {
            StoredFlow::Http(flow) => to_exchange(flow),
            StoredFlow::Tcp(_) => None,
        })
        .collect())
}

/// The exchange of an answered flow, as replay wants it: framing fields set to the body it has.
fn to_exchange(flow: &HttpFlow) -> Option<RecordedExchange> {
    let response = flow.response.as_ref()?;
    let response_body = response.body.clone().unwrap_or_default();
    Some(RecordedExchange {
        status: response.status,
        reason: response.reason.clone(),
        response_headers: framed(&response.headers, &response_body),
        response_body,
        ..request_exchange(flow)
    })
}

/// The request of a flow as an exchange to send again (client replay, the web UI's replay); its
/// response fields are empty.
pub fn request_exchange(flow: &HttpFlow) -> RecordedExchange {
    let request_body = flow.request.body.clone().unwrap_or_default();
    RecordedExchange {
        method: flow.request.method.clone(),
        scheme: flow.request.scheme,
        host: flow.request.host.to_ascii_lowercase(),
        port: flow.request.port,
        path: if flow.request.path.is_empty() { "/".into() } else { flow.request.path.clone() },
        request_headers: framed(&flow.request.headers, &request_body),
        request_body,
        status: 0,
        reason: String::new(),
        response_headers: Headers::default(),
        response_body: Vec::new(),
    }
}

/// `headers` with framing fields that fit `body`, as it is now whole.
fn framed(headers: &Headers, body: &[u8]) -> Headers {
    let mut headers = headers.clone();
    headers.remove("transfer-encoding");
    if headers.contains("content-length") {
        headers.set("content-length", body.len().to_string());
    }
    headers
}

/// Reads every flow in `path` into the chain; returns how many went through. A session is read a page
/// at a time, so memory does not grow with its size.
pub async fn run(root: &Arc<RootContext>, path: &Path, filter: Option<&Filter>) -> Result<usize, ConfigError> {
    let fail = |reason: String| ConfigError::InvalidValue { flag: "--rfile", reason };
    let mut passed = 0;
    if format_of(path) == Format::Session {
        let with_bodies = root.addons.reads_bodies() || filter.is_some_and(Filter::reads_bodies);
        let mut reader = store::SessionReader::open(path, with_bodies).map_err(fail)?;
        loop {
            let page = reader.next_page(filter).map_err(fail)?;
            if page.is_empty() {
                break;
            }
            for flow in page {
                passed += usize::from(pass(root, flow, None).await);
            }
        }
    } else {
        for flow in read(path).map_err(fail)? {
            passed += usize::from(pass(root, flow, filter).await);
        }
    }
    Ok(passed)
}

/// One flow through the chain, as if it had just finished: `response` (or `error`), then for a
/// WebSocket session each message and its end. False if the filter skips it.
async fn pass(root: &RootContext, flow: StoredFlow, filter: Option<&Filter>) -> bool {
    let addons = &root.addons;
    let mut flow = match flow {
        StoredFlow::Http(flow) => flow,
        StoredFlow::Tcp(mut flow) => {
            if filter.is_some_and(|f| !f.matches((&*flow).into())) {
                return false;
            }
            addons.each_mut(&mut *flow, |addon, flow| addon.tcp_end(flow)).await;
            return true;
        }
    };
    if filter.is_some_and(|f| !f.matches((&*flow).into())) {
        return false;
    }
    if flow.response.is_none() && flow.error.is_none() {
        flow.error = Some("unfinished: the recording ended before the flow did".into());
    }
    // The session's messages are passed on one by one, as they were live, and counted again.
    let messages = flow.websocket.as_mut().map(|session| {
        let mut replayed = WebSocketData::new();
        replayed.duration = session.duration;
        std::mem::replace(session, replayed).messages
    });
    match flow.response {
        None => addons.each_mut(&mut *flow, |addon, flow| addon.error(flow)).await,
        Some(_) => addons.each_mut(&mut *flow, |addon, flow| addon.response(flow)).await,
    }
    if let Some(messages) = messages {
        for mut message in messages {
            if addons.wants_messages() {
                addons.websocket_message(&mut flow, &mut message).await;
            }
            if let Some(websocket) = &mut flow.websocket {
                websocket.count(&message);
            }
        }
        addons.each_mut(&mut *flow, |addon, flow| addon.websocket_end(flow)).await;
    }
    true
}

/// A flow for an exchange recorded in a HAR file.
fn from_har(exchange: &RecordedExchange) -> HttpFlow {
    let request = Request {
        method: exchange.method.clone(),
        scheme: exchange.scheme,
        host: exchange.host.clone(),
        port: exchange.port,
        path: exchange.path.clone(),
        version: Version::Http11,
        headers: exchange.request_headers.clone(),
        body_len: exchange.request_body.len() as u64,
        body: Some(exchange.request_body.clone()),
        stream: true,
        trailers: None,
    };
    let mut flow = HttpFlow::new(std::net::SocketAddr::from(([0, 0, 0, 0], 0)), false, request);
    let mut response =
        Response::with_headers(exchange.status, exchange.response_headers.clone(), exchange.response_body.clone());
    response.reason.clone_from(&exchange.reason);
    flow.response = Some(response);
    flow
}
