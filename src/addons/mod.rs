//! Hooks that see each HTTP flow and may change it, answer it locally or record it, in the order
//! mitmproxy runs its namesakes: proxy authentication (checked by `HttpLayer` before anything else),
//! the CA page, block list, anticache/anticomp, map-remote, map-local, header and body modification,
//! server replay; then, on the response, modification again; at the end, the HAR recorder. A request
//! answered here never opens a server connection.

pub mod block;
pub mod blocklist;
pub mod client_replay;
pub mod har;
pub mod map;
pub mod modify;
pub mod onboarding;
pub mod proxyauth;
pub mod replay;

use std::path::PathBuf;

use crate::cli::Cli;
use crate::error::ConfigError;
use crate::filter::{Filter, FlowRef};
use crate::flow::HttpFlow;
use crate::http::message::Headers;

/// A complete response made by strata itself.
#[derive(Debug, Clone)]
pub struct LocalResponse {
    pub status: u16,
    pub reason: String,
    /// Header fields; `content-length` is set from the body when sent.
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl LocalResponse {
    /// A response with a body of `content_type`.
    pub fn new(status: u16, content_type: &str, body: Vec<u8>) -> Self {
        let mut headers = Headers::default();
        if !content_type.is_empty() {
            headers.append("content-type", content_type);
        }
        LocalResponse { status, reason: reason_phrase(status).to_string(), headers, body }
    }

    /// A short plain-text response.
    pub fn text(status: u16, text: &str) -> Self {
        LocalResponse::new(status, "text/plain; charset=utf-8", text.as_bytes().to_vec())
    }
}

/// What a request hook decided.
#[derive(Debug)]
pub enum RequestAction {
    /// Send the (possibly changed) request to its (possibly changed) server.
    Forward,
    /// Answer with this response; no server connection.
    Respond(LocalResponse),
    /// Drop the client connection without a response.
    Kill,
}

/// All hooks, configured once at start.
#[derive(Debug, Default)]
pub struct Addons {
    /// The positional FILTER: which flows the log prints.
    pub view: Option<Filter>,
    pub proxyauth: Option<proxyauth::ProxyAuth>,
    /// `--block-global` and `--block-private`.
    pub access: block::ClientAccess,
    pub block_list: Vec<blocklist::BlockRule>,
    pub anticache: bool,
    pub anticomp: bool,
    pub map_remote: Vec<map::MapRemote>,
    pub map_local: Vec<map::MapLocal>,
    pub modify_headers: Vec<modify::ModifyHeaders>,
    pub modify_body: Vec<modify::ModifyBody>,
    pub server_replay: Option<replay::ServerReplay>,
    pub client_replay: Option<PathBuf>,
    pub save_har: Option<PathBuf>,
    /// Largest body kept in memory for the hooks above.
    pub body_size_limit: usize,
}

impl Addons {
    /// Parses every hook option; a bad one is an error naming its flag.
    pub fn from_cli(cli: &Cli) -> Result<Addons, ConfigError> {
        let view = match cli.filter.join(" ").trim() {
            "" => None,
            text => Some(Filter::parse(text).map_err(|e| invalid("FILTER", e.to_string()))?),
        };
        Ok(Addons {
            view,
            proxyauth: cli.proxyauth.as_deref().map(proxyauth::ProxyAuth::parse).transpose()?,
            access: block::ClientAccess { block_global: !cli.no_block_global, block_private: cli.block_private },
            block_list: parse_all(&cli.block_list, blocklist::BlockRule::parse)?,
            anticache: cli.anticache,
            anticomp: cli.anticomp,
            map_remote: parse_all(&cli.map_remote, map::MapRemote::parse)?,
            map_local: parse_all(&cli.map_local, map::MapLocal::parse)?,
            modify_headers: parse_all(&cli.modify_headers, modify::ModifyHeaders::parse)?,
            modify_body: parse_all(&cli.modify_body, modify::ModifyBody::parse)?,
            server_replay: replay::ServerReplay::from_cli(cli)?,
            client_replay: cli.client_replay.clone(),
            save_har: cli.save_har.as_deref().map(check_new_file).transpose()?,
            body_size_limit: parse_size(&cli.body_size_limit).ok_or_else(|| {
                invalid("--body-size-limit", format!("'{}' is not a size like 32m", cli.body_size_limit))
            })?,
        })
    }

    /// True if request bodies must be kept (up to the limit) for a hook or the HAR file.
    pub fn keeps_request_bodies(&self) -> bool {
        self.save_har.is_some() || !self.modify_body.is_empty() || self.server_replay.is_some() || self.view.is_some()
    }

    /// True if response bodies must be kept (up to the limit) for a hook or the HAR file.
    pub fn keeps_response_bodies(&self) -> bool {
        self.save_har.is_some() || !self.modify_body.is_empty() || self.view.is_some()
    }

    /// Runs the request hooks on a flow whose request head (and body, if kept) is complete.
    pub fn on_request(&self, flow: &mut HttpFlow) -> RequestAction {
        if let Some(action) = self.block_list.iter().find_map(|rule| rule.check(flow)) {
            return action;
        }
        if self.anticache {
            flow.request.headers.remove("if-none-match");
            flow.request.headers.remove("if-modified-since");
        }
        if self.anticomp {
            flow.request.headers.set("accept-encoding", "identity");
        }
        for rule in &self.map_remote {
            rule.apply(flow);
        }
        if let Some(response) = self.map_local.iter().find_map(|rule| rule.answer(flow, self.body_size_limit)) {
            return RequestAction::Respond(response);
        }
        for rule in &self.modify_headers {
            rule.apply(flow);
        }
        for rule in &self.modify_body {
            rule.apply(flow);
        }
        match &self.server_replay {
            Some(replay) => replay.answer(flow),
            None => RequestAction::Forward,
        }
    }

    /// Runs the response hooks on a flow whose response head (and body, if kept) is complete.
    pub fn on_response(&self, flow: &mut HttpFlow) {
        for rule in &self.modify_headers {
            rule.apply(flow);
        }
        for rule in &self.modify_body {
            rule.apply(flow);
        }
    }

    /// True if the flow log prints this flow.
    pub fn is_shown(&self, flow: FlowRef<'_>) -> bool {
        self.view.as_ref().is_none_or(|filter| filter.matches(flow))
    }
}

/// `--save-har` never replaces a file: an existing one is the user's (perhaps an earlier recording).
fn check_new_file(path: &std::path::Path) -> Result<PathBuf, ConfigError> {
    if path.exists() {
        return Err(ConfigError::File {
            path: path.display().to_string(),
            reason: "already exists; strata does not overwrite it (--save-har): remove it or choose another name"
                .into(),
        });
    }
    Ok(path.to_path_buf())
}

fn parse_all<T>(specs: &[String], parse: fn(&str) -> Result<T, ConfigError>) -> Result<Vec<T>, ConfigError> {
    specs.iter().map(|spec| parse(spec)).collect()
}

/// An invalid value of `flag`.
pub fn invalid(flag: &'static str, reason: String) -> ConfigError {
    ConfigError::InvalidValue { flag, reason }
}

/// Splits a mitmproxy rule spec whose first character is the separator into its parts, with the filter
/// (`~all` when left out) first: `/FILTER/A/B` or `/A/B` give (filter, A, B). A `B` starting with `@` is
/// read from that file.
pub fn parse_spec(flag: &'static str, spec: &str) -> Result<(Filter, String, String), ConfigError> {
    let mut chars = spec.chars();
    let separator = chars.next().ok_or_else(|| invalid(flag, "empty rule".into()))?;
    let parts: Vec<&str> = chars.as_str().splitn(3, separator).collect();
    let (filter, subject, replacement) = match parts.as_slice() {
        [subject, replacement] => ("~all", *subject, *replacement),
        [filter, subject, replacement] => (*filter, *subject, *replacement),
        _ => {
            return Err(invalid(flag, format!("'{spec}' is not {separator}[FILTER{separator}]A{separator}B")));
        }
    };
    let filter = Filter::parse(if filter.trim().is_empty() { "~all" } else { filter })
        .map_err(|e| invalid(flag, format!("'{spec}': {e}")))?;
    let replacement = match replacement.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|e| invalid(flag, format!("cannot read '{path}': {e}")))?,
        None => replacement.to_string(),
    };
    Ok((filter, subject.to_string(), replacement))
}

/// Parses sizes like `32m`, `512k`, `1g` or plain bytes.
pub fn parse_size(text: &str) -> Option<usize> {
    let text = text.trim().to_ascii_lowercase();
    let text = text.strip_suffix('b').unwrap_or(&text);
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, ""),
    };
    let factor: usize = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return None,
    };
    digits.parse::<usize>().ok()?.checked_mul(factor)
}

/// The reason phrase strata sends with a status.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        407 => "Proxy Authentication Required",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_split_on_their_first_character() {
        let (filter, a, b) = parse_spec("--x", "/~q/name/value").unwrap();
        assert_eq!((filter.as_str(), a.as_str(), b.as_str()), ("~q", "name", "value"));
        let (filter, a, b) = parse_spec("--x", "|name|va/lue").unwrap();
        assert_eq!((filter.as_str(), a.as_str(), b.as_str()), ("~all", "name", "va/lue"));
        assert!(parse_spec("--x", "/only").is_err());
        assert!(parse_spec("--x", "/~bogus/a/b").is_err());
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("32m"), Some(32 << 20));
        assert_eq!(parse_size("512k"), Some(512 << 10));
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("2GB"), Some(2 << 30));
        assert_eq!(parse_size("lots"), None);
    }
}
