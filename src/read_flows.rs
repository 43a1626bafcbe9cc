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
use crate::flow::{HttpFlow, Request, Response};
use crate::http::message::Version;
use crate::mitmproxy_flows;
use crate::store::{self, StoredFlow};

/// Reads every flow in `path` into the chain; returns how many went through.
pub async fn run(root: &Arc<RootContext>, path: &Path, filter: Option<&Filter>) -> Result<usize, ConfigError> {
    let fail = |reason: String| ConfigError::InvalidValue { flag: "--rfile", reason };
    let flows = if store::is_store(path) {
        store::read_all(path).map_err(fail)?
    } else {
        let data = std::fs::read(path).map_err(|e| fail(format!("{}: {e}", path.display())))?;
        if mitmproxy_flows::looks_like_flows(&data) {
            mitmproxy_flows::read(&data).map_err(|e| fail(format!("{}: {e}", path.display())))?
        } else {
            let recorded = read_har(path).map_err(|e| fail(e.to_string()))?;
            recorded.iter().map(|exchange| StoredFlow::Http(Box::new(from_har(exchange)))).collect()
        }
    };
    let mut passed = 0;
    for flow in flows {
        match flow {
            StoredFlow::Http(mut flow) => {
                if filter.is_some_and(|f| !f.matches((&*flow).into())) {
                    continue;
                }
                match (&flow.response, &flow.error) {
                    (None, Some(_)) => root.addons.each_mut(&mut *flow, |addon, flow| addon.error(flow)).await,
                    _ => root.addons.each_mut(&mut *flow, |addon, flow| addon.response(flow)).await,
                }
                if flow.websocket.is_some() {
                    root.addons.each_mut(&mut *flow, |addon, flow| addon.websocket_end(flow)).await;
                }
            }
            StoredFlow::Tcp(mut flow) => {
                if filter.is_some_and(|f| !f.matches((&*flow).into())) {
                    continue;
                }
                root.addons.each_mut(&mut *flow, |addon, flow| addon.tcp_end(flow)).await;
            }
        }
        passed += 1;
    }
    Ok(passed)
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
    };
    let mut flow = HttpFlow::new(std::net::SocketAddr::from(([0, 0, 0, 0], 0)), false, request);
    let mut response =
        Response::with_headers(exchange.status, exchange.response_headers.clone(), exchange.response_body.clone());
    response.reason.clone_from(&exchange.reason);
    flow.response = Some(response);
    flow
}
