//! `RegularProxy`: the mode layer of an explicit HTTP proxy listener (`-m regular`).
//!
//! It records who the client is and in which mode it arrived, then hands the connection to the layer
//! `next_layer()` picks (always HTTP/1: the client talks to us as to a proxy, with absolute-form requests
//! and CONNECT). It has no server of its own: each request or CONNECT names one.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::Mode;
use crate::context::{Context, Facts, RootContext};
use crate::error::ProtocolError;
use crate::layer::{next_layer, BoxFuture, ClientIo, Layer, LayerKind};

pub struct RegularProxy {
    ctx: Arc<Context>,
}

impl RegularProxy {
    pub fn new(root: Arc<RootContext>, client_addr: SocketAddr, mode: Mode) -> Self {
        let facts = Facts { client_addr: Some(client_addr), mode: Some(mode), ..Facts::default() };
        RegularProxy { ctx: Context::new(root, LayerKind::RegularProxy, facts) }
    }
}

impl Layer for RegularProxy {
    fn run(self: Box<Self>, mut io: ClientIo) -> BoxFuture<'static, Result<(), ProtocolError>> {
        Box::pin(async move {
            match next_layer(&self.ctx, &mut io).await? {
                Some(layer) => layer.run(io).await,
                None => Ok(()),
            }
        })
    }
}
