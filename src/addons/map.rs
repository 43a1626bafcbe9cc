//! `--map-remote |FILTER|URL-REGEX|REPLACEMENT` sends matching requests to another URL;
//! `--map-local |FILTER|URL-REGEX|PATH` answers them from a local file or directory. As in mitmproxy,
//! for a directory the part of the URL path after the regex match is looked up inside it (an
//! `index.html` for a directory); the lookup never leaves the directory: `..` segments are refused.

use std::path::{Component, Path, PathBuf};

use regex::Regex;

use crate::addon::Addon;
use crate::addons::{invalid, parse_spec};
use crate::error::ConfigError;
use crate::filter::{regex_reason, Filter};
use crate::flow::{HttpFlow, Response};

/// The map-remote addon: every matching rule rewrites the URL, in order.
pub struct MapRemote(pub Vec<MapRemoteRule>);

#[async_trait::async_trait]
impl Addon for MapRemote {
    fn name(&self) -> &str {
        "mapremote"
    }

    fn reads_bodies(&self) -> bool {
        false
    }

    async fn request(&self, flow: &mut HttpFlow) {
        for rule in &self.0 {
            rule.apply(flow);
        }
    }
}

/// The map-local addon: the first matching rule answers the request.
pub struct MapLocal {
    pub rules: Vec<MapLocalRule>,
    /// `--body-size-limit`: larger files are refused with 500.
    pub size_limit: usize,
}

#[async_trait::async_trait]
impl Addon for MapLocal {
    fn name(&self) -> &str {
        "maplocal"
    }

    async fn request(&self, flow: &mut HttpFlow) {
        flow.response = self.rules.iter().find_map(|rule| rule.answer(flow, self.size_limit));
    }
}

/// One map-remote rule.
#[derive(Debug)]
pub struct MapRemoteRule {
    filter: Filter,
    pattern: Regex,
    replacement: String,
}

impl MapRemoteRule {
    pub fn parse(spec: &str) -> Result<Self, ConfigError> {
        let (filter, pattern, replacement) = parse_spec("--map-remote", spec)?;
        let pattern = Regex::new(&pattern)
            .map_err(|e| invalid("--map-remote", format!("'{spec}': bad regex '{pattern}': {}", regex_reason(&e))))?;
        Ok(MapRemoteRule { filter, pattern, replacement })
    }

    /// Rewrites the request's URL (and so its server and Host header) if the rule matches.
    pub fn apply(&self, flow: &mut HttpFlow) {
        if !self.filter.matches((&*flow).into()) {
            return;
        }
        let url = flow.request.url();
        if !self.pattern.is_match(&url) {
            return;
        }
        let mapped = self.pattern.replace_all(&url, self.replacement.as_str()).into_owned();
        if !flow.request.set_url(&mapped) {
            tracing::warn!(%url, %mapped, "--map-remote produced something that is not an http(s) URL; ignored");
            return;
        }
        let request = &mut flow.request;
        let host = if request.port == request.scheme.default_port() {
            request.host.clone()
        } else {
            format!("{}:{}", request.host, request.port)
        };
        request.headers.set("host", host);
    }
}

/// One map-local rule.
#[derive(Debug)]
pub struct MapLocalRule {
    filter: Filter,
    pattern: Regex,
    source: PathBuf,
}

impl MapLocalRule {
    pub fn parse(spec: &str) -> Result<Self, ConfigError> {
        let (filter, pattern, source) = parse_spec("--map-local", spec)?;
        let pattern = Regex::new(&pattern)
            .map_err(|e| invalid("--map-local", format!("'{spec}': bad regex '{pattern}': {}", regex_reason(&e))))?;
        let source = PathBuf::from(source);
        if !source.exists() {
            return Err(invalid("--map-local", format!("'{spec}': {} does not exist", source.display())));
        }
        Ok(MapLocalRule { filter, pattern, source })
    }

    /// The local answer for a matching request: the file's contents, or 404 if there is no such file.
    pub fn answer(&self, flow: &HttpFlow, size_limit: usize) -> Option<Response> {
        if !self.filter.matches(flow.into()) {
            return None;
        }
        let url = flow.request.url();
        let found = self.pattern.find(&url)?;
        let path = match self.source.is_dir() {
            true => match join_inside(&self.source, url_path(&url[found.end()..])) {
                Some(path) => path,
                // The rule matched: a path that would leave the directory is refused, never forwarded.
                None => return Some(Response::text(404, "strata: no such file for --map-local\n")),
            },
            false => self.source.clone(),
        };
        let path = if path.is_dir() { path.join("index.html") } else { path };
        let too_big = std::fs::metadata(&path).map(|m| m.len() > size_limit as u64).unwrap_or(false);
        if too_big {
            return Some(Response::text(500, "strata: --map-local file is over --body-size-limit\n"));
        }
        Some(match std::fs::read(&path) {
            Ok(body) => Response::new(200, content_type(&path), body),
            Err(_) => Response::text(404, "strata: no such file for --map-local\n"),
        })
    }
}

/// The path part of what followed the match: up to `?` or `#`.
fn url_path(rest: &str) -> &str {
    rest.split(['?', '#']).next().unwrap_or("")
}

/// `dir` joined with the segments of `relative`; `None` if a segment would climb out (`..`) or is not a
/// plain name.
fn join_inside(dir: &Path, relative: &str) -> Option<PathBuf> {
    let mut path = dir.to_path_buf();
    for segment in relative.split('/').filter(|s| !s.is_empty() && *s != ".") {
        let mut components = Path::new(segment).components();
        match (components.next(), components.next()) {
            (Some(Component::Normal(name)), None) => path.push(name),
            _ => return None,
        }
    }
    Some(path)
}

/// A Content-Type from the file extension, for the few types a dev server serves most.
fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase().as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joining_never_leaves_the_directory() {
        let dir = Path::new("/srv/www");
        assert_eq!(join_inside(dir, "/js/app.js"), Some(PathBuf::from("/srv/www/js/app.js")));
        assert_eq!(join_inside(dir, "./a//b"), Some(PathBuf::from("/srv/www/a/b")));
        assert_eq!(join_inside(dir, "/../etc/passwd"), None);
        assert_eq!(join_inside(dir, "a/../../x"), None);
        assert_eq!(url_path("/a/b?x=1"), "/a/b");
    }
}
