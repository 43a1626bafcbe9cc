//! Live updates for the web UI: `Live` is an addon that announces each flow when its request head is in,
//! when its response head is, and when it ends, to every open page (`subscribe`). The channel is a
//! broadcast with a bounded backlog: a page that falls behind misses events and is told so (it then
//! reloads its list from the store). With no page open, the addon does nothing.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::broadcast;

use crate::addon::Addon;
use crate::flow::{HttpFlow, TcpFlow};
use crate::store::StoredFlow;

use super::json;

/// Events kept for a page that is slow to read them (about 1.5 KiB each: a flow's row and its head).
const BACKLOG: usize = 4096;

/// One flow, as it is at the moment of the event: its row, and the flow without bodies (for the page's
/// filter).
#[derive(Clone)]
pub struct Event {
    pub summary: Value,
    pub flow: Arc<StoredFlow>,
}

/// The addon.
pub struct Live {
    events: broadcast::Sender<Event>,
}

impl Default for Live {
    fn default() -> Self {
        Live { events: broadcast::channel(BACKLOG).0 }
    }
}

impl Live {
    /// The events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    fn announce(&self, flow: StoredFlow) {
        if self.events.receiver_count() > 0 {
            let summary = json::summary(&flow);
            let _ = self.events.send(Event { summary, flow: Arc::new(flow) });
        }
    }

    fn http(&self, flow: &mut HttpFlow) {
        if let Some(light) = self.light(flow) {
            self.announce(light);
        }
    }

    /// Announces a flow the intercept stopped, its row marked `"intercepted": PHASE`.
    pub fn announce_paused(&self, flow: &mut HttpFlow, phase: &str) {
        if let Some(light) = self.light(flow) {
            let mut summary = json::summary(&light);
            summary["intercepted"] = phase.into();
            let _ = self.events.send(Event { summary, flow: Arc::new(light) });
        }
    }

    /// The flow without its bodies, if some page listens. The bodies are set aside while the flow is
    /// copied, so a kept body is never copied for an event.
    fn light(&self, flow: &mut HttpFlow) -> Option<StoredFlow> {
        if self.events.receiver_count() == 0 {
            return None;
        }
        let request_body = flow.request.body.take();
        let response_body = flow.response.as_mut().and_then(|r| r.body.take());
        let light = flow.clone();
        flow.request.body = request_body;
        if let Some(response) = &mut flow.response {
            response.body = response_body;
        }
        Some(StoredFlow::Http(Box::new(light)))
    }
}

#[async_trait::async_trait]
impl Addon for Live {
    fn name(&self) -> &str {
        "web"
    }

    fn reads_bodies(&self) -> bool {
        false
    }

    async fn requestheaders(&self, flow: &mut HttpFlow) {
        self.http(flow);
    }

    async fn responseheaders(&self, flow: &mut HttpFlow) {
        self.http(flow);
    }

    async fn response(&self, flow: &mut HttpFlow) {
        self.http(flow);
    }

    async fn error(&self, flow: &mut HttpFlow) {
        self.http(flow);
    }

    async fn websocket_end(&self, flow: &mut HttpFlow) {
        self.http(flow);
    }

    async fn tcp_end(&self, flow: &mut TcpFlow) {
        self.announce(StoredFlow::Tcp(Box::new(flow.clone())));
    }
}
