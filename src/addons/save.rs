//! `-w FILE` / `--save-stream-file FILE` (`+FILE` appends): every flow goes to a session in the flow
//! store (`crate::store`) as it happens: an HTTP flow when its request head is in, again when its
//! request is complete, and when it ends; WebSocket messages as they pass; TCP flows when they end.
//! `--save-stream-filter` (or the positional filter) chooses which finished flows are kept.

use std::sync::Arc;

use crate::addon::Addon;
use crate::filter::Filter;
use crate::flow::{HttpFlow, TcpFlow, WebSocketMessage};
use crate::store::StoreWriter;

/// The addon.
pub struct Save {
    store: Arc<StoreWriter>,
    filter: Option<Filter>,
}

impl Save {
    pub fn new(store: StoreWriter, filter: Option<Filter>) -> Self {
        Save { store: Arc::new(store), filter }
    }

    /// True if the flow is to be kept; before it ends, a filter only sees part of it, so an unfinished
    /// flow is stored only without a filter.
    fn keeps(&self, flow: &HttpFlow, finished: bool) -> bool {
        match &self.filter {
            None => true,
            Some(filter) => finished && filter.matches(flow.into()),
        }
    }
}

#[async_trait::async_trait]
impl Addon for Save {
    fn name(&self) -> &str {
        "save"
    }

    fn wants_messages(&self) -> bool {
        true
    }

    async fn done(&self) {
        if let Err(reason) = self.store.flush().await {
            tracing::error!("{reason}");
        }
    }

    async fn requestheaders(&self, flow: &mut HttpFlow) {
        flow.request.stream = false;
        if self.keeps(flow, false) {
            self.store.http(flow).await;
        }
    }

    async fn responseheaders(&self, flow: &mut HttpFlow) {
        if let Some(response) = &mut flow.response {
            response.stream = false;
        }
    }

    async fn response(&self, flow: &mut HttpFlow) {
        if self.keeps(flow, true) {
            self.store.http(flow).await;
        }
    }

    async fn error(&self, flow: &mut HttpFlow) {
        if self.keeps(flow, true) {
            self.store.http(flow).await;
        }
    }

    /// Messages are stored as they pass; a session the filter does not keep has them dropped at its end.
    async fn websocket_message(&self, flow: &mut HttpFlow, message: &mut WebSocketMessage) {
        let n = flow.websocket.as_ref().map_or(0, |ws| ws.messages_from_client + ws.messages_from_server);
        self.store.message(flow.id, n, message).await;
    }

    async fn websocket_end(&self, flow: &mut HttpFlow) {
        if self.keeps(flow, true) {
            self.store.http(flow).await;
        } else {
            self.store.forget(flow.id).await;
        }
    }

    async fn tcp_end(&self, flow: &mut TcpFlow) {
        if self.filter.as_ref().is_none_or(|filter| filter.matches((&*flow).into())) {
            self.store.tcp(flow).await;
        }
    }
}
