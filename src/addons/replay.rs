//! `--server-replay FILE` (HAR, a strata session or a mitmdump flow file): requests that match a recorded one are
//! answered with its recorded response, in recorded order, each once (`--server-replay-reuse`: any number of
//! times), without any server connection: the TLS layer completes the client handshake from the SNI alone and
//! nothing dials out. Matching, as in mitmproxy: method, scheme, host (unless `--server-replay-ignore-host`),
//! port, path and query (minus `--server-replay-ignore-params`), and the body of non-GET requests (unless
//! `--server-replay-ignore-content`). Unmatched requests follow `--server-replay-extra`.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::addon::Addon;
use crate::addons::har::RecordedExchange;
use crate::addons::invalid;
use crate::cli::Cli;
use crate::error::ConfigError;
use crate::flow::{HttpFlow, Response};

#[async_trait::async_trait]
impl Addon for ServerReplay {
    fn name(&self) -> &str {
        "serverplayback"
    }

    /// The body is part of the match.
    async fn requestheaders(&self, flow: &mut HttpFlow) {
        flow.request.stream = false;
    }

    async fn request(&self, flow: &mut HttpFlow) {
        self.answer(flow);
    }
}

/// What happens to a request no recording matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extra {
    /// Send it to its server.
    Forward,
    /// Close the client connection.
    Kill,
    /// Answer with this status.
    Status(u16),
}

/// The recorded responses, by request key.
#[derive(Debug)]
pub struct ServerReplay {
    responses: Mutex<HashMap<String, VecDeque<Arc<RecordedExchange>>>>,
    ignore_params: Vec<String>,
    ignore_host: bool,
    ignore_content: bool,
    reuse: bool,
    extra: Extra,
}

impl ServerReplay {
    /// Reads the HAR files named by `--server-replay`; `None` if there are none.
    pub fn from_cli(cli: &Cli) -> Result<Option<Self>, ConfigError> {
        if cli.server_replay.is_empty() {
            return Ok(None);
        }
        let extra = match cli.server_replay_extra.as_str() {
            "forward" => Extra::Forward,
            "kill" => Extra::Kill,
            "204" | "400" | "404" | "500" => Extra::Status(cli.server_replay_extra.parse().expect("digits")),
            other => {
                return Err(invalid(
                    "--server-replay-extra",
                    format!("'{other}' is not forward, kill, 204, 400, 404 or 500"),
                ))
            }
        };
        let mut replay = ServerReplay {
            responses: Mutex::new(HashMap::new()),
            ignore_params: cli.server_replay_ignore_params.clone(),
            ignore_host: cli.server_replay_ignore_host,
            ignore_content: cli.server_replay_ignore_content,
            reuse: cli.server_replay_reuse,
            extra,
        };
        for path in &cli.server_replay {
            replay.load(path)?;
        }
        Ok(Some(replay))
    }

    fn load(&mut self, path: &Path) -> Result<(), ConfigError> {
        let recorded = crate::read_flows::exchanges(path).map_err(|e| invalid("--server-replay", e))?;
        let keyed: Vec<(String, RecordedExchange)> = recorded
            .into_iter()
            .map(|e| (self.key(&e.method, e.scheme.as_str(), &e.host, e.port, &e.path, &e.request_body), e))
            .collect();
        let responses = self.responses.get_mut().expect("not shared yet");
        for (key, exchange) in keyed {
            responses.entry(key).or_default().push_back(Arc::new(exchange));
        }
        Ok(())
    }

    /// Answers the flow with its recorded response, or does what `--server-replay-extra` says.
    fn answer(&self, flow: &mut HttpFlow) {
        let request = &flow.request;
        let body = request.body.as_deref().unwrap_or_default();
        let key = self.key(&request.method, request.scheme.as_str(), &request.host, request.port, &request.path, body);
        let recorded = {
            let mut responses = self.responses.lock().expect("replay lock");
            let queue = responses.get_mut(&key);
            match (queue, self.reuse) {
                (Some(queue), true) => queue.front().cloned(),
                (Some(queue), false) => queue.pop_front(),
                (None, _) => None,
            }
        };
        match (recorded, self.extra) {
            (Some(recorded), _) => flow.response = Some(response_of(&recorded)),
            (None, Extra::Forward) => {}
            (None, Extra::Kill) => flow.kill(),
            (None, Extra::Status(status)) => flow.response = Some(Response::new(status, "", Vec::new())),
        }
    }

    fn key(&self, method: &str, scheme: &str, host: &str, port: u16, path: &str, body: &[u8]) -> String {
        let host = if self.ignore_host { "" } else { host };
        let path = self.without_ignored_params(path);
        let mut key = format!("{method} {scheme}://{}:{port}{path}", host.to_ascii_lowercase());
        if method != "GET" && !self.ignore_content {
            key.push(' ');
            key.push_str(&String::from_utf8_lossy(body));
        }
        key
    }

    fn without_ignored_params(&self, path: &str) -> String {
        let Some((path, query)) = path.split_once('?') else { return path.to_string() };
        let kept: Vec<&str> = query
            .split('&')
            .filter(|param| {
                let name = param.split('=').next().unwrap_or("");
                !self.ignore_params.iter().any(|ignored| ignored == name)
            })
            .collect();
        if kept.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{}", kept.join("&"))
        }
    }
}

/// The recorded response as strata sends it: its headers without framing fields (the body is sent whole
/// with a new Content-Length), and without a Content-Encoding the recorded body evidently does not have
/// (browsers and mitmproxy store bodies decoded).
fn response_of(recorded: &RecordedExchange) -> Response {
    let mut headers = recorded.response_headers.clone();
    for name in ["content-length", "transfer-encoding", "connection", "keep-alive"] {
        headers.remove(name);
    }
    if let Some(encoding) = headers.get("content-encoding") {
        if !looks_encoded(encoding, &recorded.response_body) {
            headers.remove("content-encoding");
        }
    }
    let mut response = Response::with_headers(recorded.status, headers, recorded.response_body.clone());
    if !recorded.reason.is_empty() {
        response.reason.clone_from(&recorded.reason);
    }
    response
}

/// True if `body` plausibly carries `encoding` (by magic number, or for formats without one, by not being
/// readable text).
fn looks_encoded(encoding: &[u8], body: &[u8]) -> bool {
    let encoding = String::from_utf8_lossy(encoding).trim().to_ascii_lowercase();
    match encoding.as_str() {
        "gzip" | "x-gzip" => body.starts_with(&[0x1f, 0x8b]),
        "zstd" => body.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]),
        "identity" | "" => false,
        _ => std::str::from_utf8(body).is_err(),
    }
}
