//! `--anticomp`: asks servers for uncompressed responses (`Accept-Encoding: identity`), so bodies are
//! readable in the log, filters and the HAR file, as mitmproxy's option of the same name does.

use crate::addon::Addon;
use crate::flow::HttpFlow;

pub struct AntiComp;

#[async_trait::async_trait]
impl Addon for AntiComp {
    fn name(&self) -> &str {
        "anticomp"
    }

    fn reads_bodies(&self) -> bool {
        false
    }

    async fn request(&self, flow: &mut HttpFlow) {
        flow.request.headers.set("accept-encoding", "identity");
    }
}
