//! Intercept: flows that match the intercept filter (set from the page, `PUT /api/intercept`) stop at
//! their request and again at their response until the user resumes them, edited or not, or kills them.
//! A paused flow waits in this addon (its connection simply waits too), is announced live, and is listed
//! by `paused` for a page that was reloaded. Bodies of matching flows are kept whole so they can be edited.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use base64::Engine as _;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::{json as flow_json, Live};
use crate::addon::Addon;
use crate::filter::Filter;
use crate::flow::HttpFlow;
use crate::http::message::Headers;
use crate::store::StoredFlow;

/// Where a flow was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Request,
    Response,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Request => "request",
            Phase::Response => "response",
        }
    }
}

/// What the user decided for a paused flow.
pub enum Decision {
    /// Go on, with these changes to the paused message (`null` fields stay as they are).
    Resume(Value),
    Kill,
}

struct Paused {
    phase: Phase,
    flow: HttpFlow,
    decide: oneshot::Sender<Decision>,
}

/// The addon.
pub struct Intercept {
    filter: RwLock<Option<Filter>>,
    paused: Mutex<HashMap<String, Paused>>,
    live: Arc<Live>,
}

impl Intercept {
    pub fn new(live: Arc<Live>) -> Self {
        Intercept { filter: RwLock::new(None), paused: Mutex::new(HashMap::new()), live }
    }

    /// Sets (or, with `None`, clears) the intercept filter; flows already paused stay paused.
    pub fn set_filter(&self, filter: Option<Filter>) {
        *self.filter.write().unwrap_or_else(|p| p.into_inner()) = filter;
    }

    pub fn filter_text(&self) -> Option<String> {
        self.filter.read().unwrap_or_else(|p| p.into_inner()).as_ref().map(|f| f.as_str().to_string())
    }

    /// The paused flows, each as the detail view shows it, with its phase and the paused message's body.
    pub fn paused(&self) -> Vec<Value> {
        let paused = self.lock();
        let mut list: Vec<(&String, &Paused)> = paused.iter().collect();
        list.sort_by_key(|(_, p)| p.flow.started_at);
        list.into_iter()
            .map(|(_, p)| {
                let mut value = flow_json::detail(&StoredFlow::Http(Box::new(p.flow.clone())));
                value["intercepted"] = json!(p.phase.as_str());
                let body = match p.phase {
                    Phase::Request => p.flow.request.body.clone(),
                    Phase::Response => p.flow.response.as_ref().and_then(|r| r.body.clone()),
                };
                value["body"] = body_json(&body.unwrap_or_default());
                value
            })
            .collect()
    }

    /// Hands the decision to the paused flow `id`; false if no flow of that id is paused.
    pub fn decide(&self, id: &str, decision: Decision) -> bool {
        match self.lock().remove(id) {
            Some(paused) => paused.decide.send(decision).is_ok(),
            None => false,
        }
    }

    fn matches(&self, flow: &HttpFlow) -> bool {
        self.filter.read().unwrap_or_else(|p| p.into_inner()).as_ref().is_some_and(|f| f.matches(flow.into()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Paused>> {
        self.paused.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops `flow` until the user decides; then applies the decision.
    async fn pause(&self, flow: &mut HttpFlow, phase: Phase) {
        let (decide, decided) = oneshot::channel();
        self.lock().insert(flow.id.to_string(), Paused { phase, flow: flow.clone(), decide });
        self.live.announce_paused(flow, phase.as_str());
        match decided.await {
            Ok(Decision::Resume(edits)) => apply(flow, phase, &edits),
            // A dropped decision (strata stopping) kills too: nothing was approved.
            Ok(Decision::Kill) | Err(_) => flow.kill(),
        }
    }
}

/// `{"text": ...}` for UTF-8, else `{"base64": ...}`.
fn body_json(body: &[u8]) -> Value {
    match std::str::from_utf8(body) {
        Ok(text) => json!({ "text": text }),
        Err(_) => json!({ "base64": base64::engine::general_purpose::STANDARD.encode(body) }),
    }
}

/// Applies the page's edits to a message of `flow`: `method` and `url` (request), `status` (response),
/// `headers` (`[[name, value], ...]`) and `body` (`{"text"}` or `{"base64"}`); what is not given stays.
pub fn apply(flow: &mut HttpFlow, phase: Phase, edits: &Value) {
    let headers = edits["headers"].as_array().map(|pairs| {
        let mut headers = Headers::default();
        for pair in pairs {
            if let (Some(name), Some(value)) = (pair[0].as_str(), pair[1].as_str()) {
                headers.append(name, value.as_bytes().to_vec());
            }
        }
        headers
    });
    let body = match (&edits["body"]["text"], &edits["body"]["base64"]) {
        (Value::String(text), _) => Some(text.as_bytes().to_vec()),
        (_, Value::String(encoded)) => base64::engine::general_purpose::STANDARD.decode(encoded).ok(),
        _ => None,
    };
    match phase {
        Phase::Request => {
            let request = &mut flow.request;
            if let Some(method) = edits["method"].as_str().filter(|m| !m.is_empty()) {
                request.method = method.to_string();
            }
            if let Some(url) = edits["url"].as_str() {
                request.set_url(url);
            }
            if let Some(headers) = headers {
                request.headers = headers;
            }
            if let Some(body) = body {
                request.body_len = body.len() as u64;
                request.body = Some(body);
            }
        }
        Phase::Response => {
            let Some(response) = &mut flow.response else { return };
            if let Some(status) = edits["status"].as_u64().and_then(|s| u16::try_from(s).ok()) {
                response.status = status;
                response.reason = crate::flow::reason_phrase(status).to_string();
            }
            if let Some(headers) = headers {
                response.headers = headers;
            }
            if let Some(body) = body {
                response.body_len = body.len() as u64;
                response.body = Some(body);
            }
        }
    }
}

#[async_trait::async_trait]
impl Addon for Intercept {
    fn name(&self) -> &str {
        "intercept"
    }

    /// A matching request is kept whole, so it can be edited.
    async fn requestheaders(&self, flow: &mut HttpFlow) {
        if self.matches(flow) {
            flow.request.stream = false;
        }
    }

    async fn request(&self, flow: &mut HttpFlow) {
        if self.matches(flow) {
            self.pause(flow, Phase::Request).await;
        }
    }

    async fn responseheaders(&self, flow: &mut HttpFlow) {
        if self.matches(flow) {
            if let Some(response) = &mut flow.response {
                response.stream = false;
            }
        }
    }

    async fn response(&self, flow: &mut HttpFlow) {
        // A body too large to keep has been relayed already: nothing left to stop.
        if self.matches(flow) && flow.response.as_ref().is_some_and(|r| r.body.is_some()) && !flow.is_killed() {
            self.pause(flow, Phase::Response).await;
        }
    }
}
