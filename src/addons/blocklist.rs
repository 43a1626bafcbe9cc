//! `--block-list :FILTER:STATUS`: matching requests are answered with STATUS and an empty body; 444
//! closes the connection without any response, as nginx (and mitmproxy) do.

use crate::addons::{invalid, LocalResponse, RequestAction};
use crate::error::ConfigError;
use crate::filter::Filter;
use crate::flow::HttpFlow;

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

    /// The answer for a blocked flow, or `None` if this rule does not match it.
    pub fn check(&self, flow: &HttpFlow) -> Option<RequestAction> {
        if !self.filter.matches(flow.into()) {
            return None;
        }
        Some(if self.status == 444 {
            RequestAction::Kill
        } else {
            RequestAction::Respond(LocalResponse::new(self.status, "", Vec::new()))
        })
    }
}
