//! `--modify-headers /FILTER/NAME/VALUE` and `--modify-body /FILTER/REGEX/REPLACEMENT`, as in mitmproxy:
//! each rule runs on the request and again on the response, whenever its filter matches the flow at
//! that moment (so `~q` limits a rule to requests, `~s` to responses). An empty header VALUE removes the
//! header. Body rules see only bodies that were kept (up to `--body-size-limit`); larger ones stream
//! through unmodified and a log line says so.

use regex::bytes::Regex;

use crate::addon::Addon;
use crate::addons::{invalid, parse_spec};
use crate::error::ConfigError;
use crate::filter::{regex_reason, Filter};
use crate::flow::HttpFlow;
use crate::http::message::Headers;

/// The modify-headers addon: rules apply to the request before it is forwarded and to the response head
/// before it is sent (so they work on streamed bodies too).
pub struct ModifyHeaders(pub Vec<ModifyHeadersRule>);

#[async_trait::async_trait]
impl Addon for ModifyHeaders {
    fn name(&self) -> &str {
        "modifyheaders"
    }

    fn reads_bodies(&self) -> bool {
        false
    }

    async fn request(&self, flow: &mut HttpFlow) {
        self.0.iter().for_each(|rule| rule.apply(flow));
    }

    async fn responseheaders(&self, flow: &mut HttpFlow) {
        self.0.iter().for_each(|rule| rule.apply(flow));
    }
}

/// The modify-body addon: keeps bodies (up to `--body-size-limit`) and rewrites them.
pub struct ModifyBody(pub Vec<ModifyBodyRule>);

#[async_trait::async_trait]
impl Addon for ModifyBody {
    fn name(&self) -> &str {
        "modifybody"
    }

    async fn requestheaders(&self, flow: &mut HttpFlow) {
        flow.request.stream = false;
    }

    async fn request(&self, flow: &mut HttpFlow) {
        self.0.iter().for_each(|rule| rule.apply(flow));
    }

    async fn responseheaders(&self, flow: &mut HttpFlow) {
        if let Some(response) = &mut flow.response {
            response.stream = false;
        }
    }

    async fn response(&self, flow: &mut HttpFlow) {
        self.0.iter().for_each(|rule| rule.apply(flow));
    }
}

/// One header rule.
#[derive(Debug)]
pub struct ModifyHeadersRule {
    filter: Filter,
    name: String,
    /// `None` removes the header.
    value: Option<String>,
}

impl ModifyHeadersRule {
    pub fn parse(spec: &str) -> Result<Self, ConfigError> {
        let (filter, name, value) = parse_spec("--modify-headers", spec)?;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            return Err(invalid("--modify-headers", format!("'{spec}': '{name}' is not a header name")));
        }
        if value.contains(['\r', '\n']) {
            return Err(invalid("--modify-headers", format!("'{spec}': the value contains a line break")));
        }
        Ok(ModifyHeadersRule { filter, name, value: (!value.is_empty()).then_some(value) })
    }

    /// Sets or removes the header on the side the flow is at (response if there is one).
    pub fn apply(&self, flow: &mut HttpFlow) {
        if !self.filter.matches((&*flow).into()) {
            return;
        }
        let headers = current_headers(flow);
        headers.remove(&self.name);
        if let Some(value) = &self.value {
            headers.append(&self.name, value.as_bytes());
        }
    }
}

/// One body rule.
#[derive(Debug)]
pub struct ModifyBodyRule {
    filter: Filter,
    pattern: Regex,
    replacement: Vec<u8>,
}

impl ModifyBodyRule {
    pub fn parse(spec: &str) -> Result<Self, ConfigError> {
        let (filter, pattern, replacement) = parse_spec("--modify-body", spec)?;
        let pattern = Regex::new(&pattern)
            .map_err(|e| invalid("--modify-body", format!("'{spec}': bad regex '{pattern}': {}", regex_reason(&e))))?;
        Ok(ModifyBodyRule { filter, pattern, replacement: replacement.into_bytes() })
    }

    /// Replaces every match in the kept body of the side the flow is at.
    pub fn apply(&self, flow: &mut HttpFlow) {
        if !self.filter.matches((&*flow).into()) {
            return;
        }
        let (body, body_len) = match &mut flow.response {
            Some(response) => (&mut response.body, &mut response.body_len),
            None => (&mut flow.request.body, &mut flow.request.body_len),
        };
        // A body that was not kept (over --body-size-limit) streams through unmodified; HttpLayer logs it.
        if let Some(bytes) = body {
            let replaced = self.pattern.replace_all(bytes, self.replacement.as_slice()).into_owned();
            *body_len = replaced.len() as u64;
            *bytes = replaced;
        }
    }
}

fn current_headers(flow: &mut HttpFlow) -> &mut Headers {
    match &mut flow.response {
        Some(response) => &mut response.headers,
        None => &mut flow.request.headers,
    }
}
