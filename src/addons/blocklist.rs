//! `--block-list :FILTER:STATUS`: matching requests are answered with STATUS and an empty body; 444
//! closes the connection without any response, as nginx (and mitmproxy) do.

use crate::addon::Addon;
use crate::addons::invalid;
use crate::error::ConfigError;
use crate::filter::Filter;
use crate::flow::{HttpFlow, Response};

/// The addon: the first matching rule answers (or, for 444, kills) the request.
pub struct BlockList(pub Vec<BlockRule>);

#[async_trait::async_trait]
impl Addon for BlockList {
    fn name(&self) -> &str {
        "blocklist"
    }

    fn reads_bodies(&self) -> bool {
        false
    }

    async fn request(&self, flow: &mut HttpFlow) {
        if let Some(rule) = self.0.iter().find(|rule| rule.filter.matches((&*flow).into())) {
            rule.apply(flow);
        }
    }
}

/// One block rule.
#[derive(Debug)]
pub struct BlockRule {
    filter: Filter,
    status: u16,
}

impl BlockRule {
    /// Parses `:FILTER:STATUS` (any first character is the separator; the status is after the last one).
    pub fn parse(spec: &str) -> Result<Self, ConfigError> {
        let bad = || invalid("--block-list", format!("'{spec}' is not :FILTER:STATUS"));
        let mut chars = spec.chars();
        let separator = chars.next().ok_or_else(bad)?;
        let (filter, status) = chars.as_str().rsplit_once(separator).ok_or_else(bad)?;
        let filter = Filter::parse(filter).map_err(|e| invalid("--block-list", format!("'{spec}': {e}")))?;
        let status = status
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|s| (100..1000).contains(s))
            .ok_or_else(|| invalid("--block-list", format!("'{spec}': '{status}' is not an HTTP status")))?;
        Ok(BlockRule { filter, status })
    }

    fn apply(&self, flow: &mut HttpFlow) {
        if self.status == 444 {
            flow.kill();
        } else {
            flow.response = Some(Response::new(self.status, "", Vec::new()));
        }
    }
}
