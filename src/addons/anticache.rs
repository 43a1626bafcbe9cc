//! `--anticache`: removes the request fields that make a server answer 304 Not Modified
//! (`If-None-Match`, `If-Modified-Since`), so every response comes with its body, as mitmproxy's option
//! of the same name does.

use crate::addon::Addon;
use crate::flow::HttpFlow;

pub struct AntiCache;

#[async_trait::async_trait]
impl Addon for AntiCache {
    fn name(&self) -> &str {
        "anticache"
    }

    fn reads_bodies(&self) -> bool {
        false
    }

    async fn request(&self, flow: &mut HttpFlow) {
        flow.request.headers.remove("if-none-match");
        flow.request.headers.remove("if-modified-since");
    }
}
