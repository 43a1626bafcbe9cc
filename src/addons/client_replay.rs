//! `--client-replay FILE.har`: re-sends the recorded requests to their servers, one at a time, logging
//! each exchange as a flow (and recording it with `--save-har`), then reports how many failed. strata
//! opens no listener in this mode. Server connections go through `ServerConnection`, so TLS
//! verification, `--upstream-ca`, `-k` and timeouts apply as for proxied requests.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tokio::io::AsyncWriteExt;

use crate::addons::har::{read_har, RecordedExchange};
use crate::config::{Mode, ModeKind};
use crate::context::{Address, Context, Facts, RootContext};
use crate::error::{ConfigError, ProtocolError};
use crate::flow::{HttpFlow, Request, Response};
use crate::http::message::{RequestHead, Version};
use crate::http::url::Scheme;
use crate::layer::LayerKind;
use crate::layers::http1::codec::{self, collect_body, read_head, response_framing, write_request_head, Collected};
use crate::server_conn::{Purpose, ServerConnection, ServerTls};

/// Replays every exchange in `path`; returns the number of failures (each already reported on stderr).
pub async fn run(root: Arc<RootContext>, path: &Path) -> Result<usize, ConfigError> {
    let recorded =
        read_har(path).map_err(|e| ConfigError::InvalidValue { flag: "--client-replay", reason: e.to_string() })?;
    let facts = Facts {
        client_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        mode: Some(Mode { kind: ModeKind::Regular, listen_host: None, listen_port: None }),
        ..Facts::default()
    };
    let ctx = Context::new(root.clone(), LayerKind::RegularProxy, facts);
    let mut failures = 0;
    for (index, exchange) in recorded.iter().enumerate() {
        let mut flow = new_flow(exchange);
        let result = replay_one(&ctx, exchange, &mut flow).await;
        if let Err(e) = &result {
            failures += 1;
            flow.error = Some(e.to_string());
            eprintln!("client replay: request {} ({} {}) failed: {e}", index + 1, exchange.method, flow.request.url());
        }
        match flow.error {
            Some(_) => root.addons.each_mut(&mut flow, |addon, flow| addon.error(flow)).await,
            None => root.addons.each_mut(&mut flow, |addon, flow| addon.response(flow)).await,
        }
    }
    root.addons.each(&(), |addon, _| addon.done()).await;
    eprintln!("client replay: {} of {} requests answered", recorded.len() - failures, recorded.len());
    Ok(failures)
}

fn new_flow(exchange: &RecordedExchange) -> HttpFlow {
    let mut headers = exchange.request_headers.clone();
    for name in [
        "connection",
        "proxy-connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "transfer-encoding",
        "content-length",
    ] {
        headers.remove(name);
    }
    if !exchange.request_body.is_empty() || !matches!(exchange.method.as_str(), "GET" | "HEAD") {
        headers.set("content-length", exchange.request_body.len().to_string());
    }
    if !headers.contains("host") {
        let host = if exchange.port == exchange.scheme.default_port() {
            exchange.host.clone()
        } else {
            Address::new(exchange.host.clone(), exchange.port).to_string()
        };
        headers.0.insert(0, ("Host".to_string(), host.into_bytes()));
    }
    let request = Request {
        method: exchange.method.clone(),
        scheme: exchange.scheme,
        host: exchange.host.clone(),
        port: exchange.port,
        path: exchange.path.clone(),
        version: Version::Http11,
        headers,
        body_len: exchange.request_body.len() as u64,
        body: Some(exchange.request_body.clone()),
        stream: false,
    };
    HttpFlow::new(SocketAddr::from(([127, 0, 0, 1], 0)), false, request)
}

async fn replay_one(ctx: &Context, exchange: &RecordedExchange, flow: &mut HttpFlow) -> Result<(), ProtocolError> {
    let config = ctx.config();
    let address = Address::new(exchange.host.clone(), exchange.port);
    let tls = (exchange.scheme == Scheme::Https).then(|| ServerTls::http1(exchange.host.clone()));
    let mut server = ServerConnection::new(ctx, Some(address), tls, Purpose::Http);
    let host = server.host();
    let started = Instant::now();
    server.connect().await?;
    flow.timings.connect_ms = started.elapsed().as_secs_f64() * 1000.0;
    flow.server_addr = server.peer_addr();

    let head = RequestHead {
        method: exchange.method.clone(),
        target: exchange.path.clone(),
        version: Version::Http11,
        headers: flow.request.headers.clone(),
    };
    let mut out = Vec::with_capacity(512 + exchange.request_body.len());
    write_request_head(&head, &exchange.path, &mut out);
    out.extend_from_slice(&exchange.request_body);
    let stream = server.stream().expect("connected above");
    let sent = Instant::now();
    stream.write_all(&out).await.map_err(|e| ProtocolError::server_io(&host, e))?;
    stream.flush().await.map_err(|e| ProtocolError::server_io(&host, e))?;
    flow.timings.send_ms = sent.elapsed().as_secs_f64() * 1000.0;

    let waited = Instant::now();
    let response = loop {
        let head = read_head(stream, &config.limits, config.timeouts.read, codec::parse_response)
            .await
            .map_err(|e| ProtocolError::BadResponse { host: host.clone(), reason: e.to_string() })?
            .ok_or_else(|| ProtocolError::BadResponse {
                host: host.clone(),
                reason: "closed before a response".into(),
            })?;
        if !(100..200).contains(&head.status) {
            break head;
        }
    };
    flow.timings.wait_ms = waited.elapsed().as_secs_f64() * 1000.0;
    let framing = response_framing(&exchange.method, &response)
        .map_err(|e| ProtocolError::BadResponse { host: host.clone(), reason: e.to_string() })?;
    let received = Instant::now();
    let limit = config.addons.body_size_limit;
    let body = collect_body(stream, framing, limit, config.timeouts.read)
        .await
        .map_err(|e| ProtocolError::BadResponse { host: host.clone(), reason: format!("{e:?}") })?;
    let (body, body_len) = match body {
        Collected::Complete(body) => {
            let len = body.len() as u64;
            (Some(body), len)
        }
        Collected::Partial { prefix, .. } => (None, prefix.len() as u64),
    };
    flow.timings.receive_ms = received.elapsed().as_secs_f64() * 1000.0;
    flow.response = Some(Response {
        status: response.status,
        reason: response.reason,
        version: response.version,
        headers: response.headers,
        body,
        body_len,
        stream: false,
    });
    Ok(())
}
