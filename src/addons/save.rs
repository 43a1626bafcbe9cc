//! `-w FILE` / `--save-stream-file FILE` (`+FILE` appends): every flow goes to a session in the flow
//! store (`crate::store`) as it happens: an HTTP flow when its request head is in, when its response head
//! is, and when it ends, its streamed bodies piece by piece as they pass (with their trailers) (nothing is buffered for the store), WebSocket
//! messages and TCP chunks as they pass, TCP flows when they end. `--save-stream-filter` (or the positional filter)
//! chooses which finished flows are kept: one it does not keep is dropped from the session at its end.

use std::sync::Arc;

use bytes::Bytes;

use crate::addon::{Addon, BodySide};
use crate::filter::Filter;
use crate::flow::{FlowId, HttpFlow, TcpFlow, TcpMessage, WebSocketMessage};
use crate::http::message::Headers;
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

    /// Stores a finished flow if the filter keeps it, else drops what was stored of it.
    async fn finish(&self, flow: &HttpFlow) {
        if self.filter.as_ref().is_none_or(|filter| filter.matches(flow.into())) {
            self.store.http(flow, true).await;
        } else {
            self.store.forget(flow.id).await;
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

    /// It records messages; it never changes them.
    fn changes_messages(&self) -> bool {
        false
    }

    fn wants_body_chunks(&self) -> bool {
        true
    }

    /// Waits for everything to be written. A failure was logged by the writer when it happened.
    async fn done(&self) {
        let _ = self.store.flush().await;
    }

    async fn requestheaders(&self, flow: &mut HttpFlow) {
        self.store.http(flow, false).await;
    }

    async fn body_chunk(&self, flow: FlowId, side: BodySide, offset: u64, data: &Bytes) {
        self.store.body(flow, side, offset, data).await;
    }

    async fn body_trailers(&self, flow: FlowId, side: BodySide, trailers: &Headers) {
        self.store.trailers(flow, side, trailers).await;
    }

    /// The response head is stored as soon as it is in, before its body.
    async fn responseheaders(&self, flow: &mut HttpFlow) {
        self.store.http(flow, false).await;
    }

    async fn response(&self, flow: &mut HttpFlow) {
        self.finish(flow).await;
    }

    async fn error(&self, flow: &mut HttpFlow) {
        self.finish(flow).await;
    }

    /// Messages are stored as they pass; a session the filter does not keep is dropped at its end.
    async fn websocket_message(&self, flow: &mut HttpFlow, message: &mut WebSocketMessage) {
        let n = flow.websocket.as_ref().map_or(0, |ws| ws.messages_from_client + ws.messages_from_server);
        self.store.message(flow.id, n, message).await;
    }

    async fn websocket_end(&self, flow: &mut HttpFlow) {
        self.finish(flow).await;
    }

    /// Chunks are stored as they pass (up to the body limit per relay); a relay the filter does not keep
    /// is dropped at its end.
    async fn tcp_message(&self, flow: &mut TcpFlow, message: &mut TcpMessage) {
        self.store.tcp_chunk(flow.id, flow.bytes_to_server + flow.bytes_to_client, message).await;
    }

    async fn tcp_end(&self, flow: &mut TcpFlow) {
        if self.filter.as_ref().is_none_or(|filter| filter.matches((&*flow).into())) {
            self.store.tcp(flow).await;
        } else {
            self.store.forget(flow.id).await;
        }
    }
}
