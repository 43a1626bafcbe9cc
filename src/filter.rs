//! Flow filter expressions in mitmproxy's syntax (`~d example\.com & !~c 200`).
//!
//! `Filter::parse` checks and compiles an expression once, at startup, and reports the first problem
//! with its character position; `Filter::matches` then tests finished HTTP, WebSocket and TCP flows.
//! Printing the error and picking the exit code are left to the caller (`config.rs`, the addons).

use std::fmt;
use std::str::FromStr;

use regex::bytes::{Regex, RegexBuilder};

use crate::flow::{HttpFlow, TcpFlow, WebSocketMessage};
use crate::http::message::Headers;

/// Deepest nesting of `(` and `!` accepted, so that a hostile expression cannot overflow the stack of
/// the recursive parser (or of `matches`).
const MAX_DEPTH: usize = 100;

/// A flow as filters see it. A WebSocket flow is an `HttpFlow` whose `websocket` is `Some`.
#[derive(Debug, Clone, Copy)]
pub enum FlowRef<'a> {
    Http(&'a HttpFlow),
    Tcp(&'a TcpFlow),
}

impl<'a> From<&'a HttpFlow> for FlowRef<'a> {
    fn from(flow: &'a HttpFlow) -> Self {
        FlowRef::Http(flow)
    }
}

impl<'a> From<&'a TcpFlow> for FlowRef<'a> {
    fn from(flow: &'a TcpFlow) -> Self {
        FlowRef::Tcp(flow)
    }
}

/// A checked, compiled filter expression.
///
/// Syntax (as mitmproxy's): `~q ~s ~e ~http ~websocket ~tcp ~all` take no argument; `~d ~u ~m ~h ~hq ~hs
/// ~b ~bq ~bs ~t ~tq ~ts ~src ~dst` take a regex; `~c` takes a status code. Operators are `!`, `&`, `|`
/// and parentheses, binding in that order. Two expressions side by side are joined with "and" at the
/// loosest level, as in mitmproxy: `~q ~d a | ~d b` means `~q & (~d a | ~d b)`. An argument is a bare
/// word (up to whitespace, a parenthesis, `~` or a quote) or is quoted with `'` or `"`, where a
/// backslash escapes the quote and every other backslash is kept for the regex. A bare word in place of
/// a filter means `~u word`. Regexes ignore case.
#[derive(Debug, Clone)]
pub struct Filter {
    text: String,
    root: Node,
}

impl Filter {
    /// Parses and compiles `text`; the error names the first problem and its position.
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        let mut parser = Parser { text, chars: text.chars().collect(), pos: 0, depth: 0, after: None };
        let root = parser.parse_expression()?;
        Ok(Filter { text: text.to_string(), root })
    }

    /// True if `flow` passes the filter.
    pub fn matches(&self, flow: FlowRef<'_>) -> bool {
        self.root.matches(flow)
    }

    /// The parsed expression.
    pub fn root(&self) -> &Node {
        &self.root
    }

    /// True if the filter looks at bodies or messages (`~b`, `~bq`, `~bs`).
    pub fn reads_bodies(&self) -> bool {
        self.root.reads_bodies()
    }

    /// The expression as it was given.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for Filter {
    type Err = FilterError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Filter::parse(text)
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A filter expression that cannot be parsed: unknown `~x`, missing or bad argument (number, regex),
/// unbalanced parentheses, an operator without an operand, an open quote, nesting too deep.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("filter \"{filter}\" at position {position}: expected {expected}")]
pub struct FilterError {
    /// The whole expression, as given.
    pub filter: String,
    /// Where the problem is, as a 0-based character (not byte) offset into `filter`.
    pub position: usize,
    /// What the parser needed there, e.g. `a number after ~c`.
    pub expected: String,
}

/// A filter without an argument.
#[derive(Debug, Clone, Copy)]
pub enum Flag {
    All,
    Http,
    Tcp,
    WebSocket,
    /// `~q`: a request that has no response.
    NoResponse,
    /// `~s`
    HasResponse,
    /// `~e`
    HasError,
}

/// What a regex filter looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Body,
    RequestBody,
    ResponseBody,
    ContentType,
    RequestContentType,
    ResponseContentType,
    Domain,
    Dst,
    Header,
    RequestHeader,
    ResponseHeader,
    Method,
    Src,
    Url,
}

/// The kinds of `~name`, to look up while parsing.
enum Spec {
    Flag(Flag),
    Regex(Field),
    Code,
}

/// Every `~name` understood, in the order the unknown-filter error lists them.
const FILTERS: &[(&str, Spec)] = &[
    ("all", Spec::Flag(Flag::All)),
    ("b", Spec::Regex(Field::Body)),
    ("bq", Spec::Regex(Field::RequestBody)),
    ("bs", Spec::Regex(Field::ResponseBody)),
    ("c", Spec::Code),
    ("d", Spec::Regex(Field::Domain)),
    ("dst", Spec::Regex(Field::Dst)),
    ("e", Spec::Flag(Flag::HasError)),
    ("h", Spec::Regex(Field::Header)),
    ("hq", Spec::Regex(Field::RequestHeader)),
    ("hs", Spec::Regex(Field::ResponseHeader)),
    ("http", Spec::Flag(Flag::Http)),
    ("m", Spec::Regex(Field::Method)),
    ("q", Spec::Flag(Flag::NoResponse)),
    ("s", Spec::Flag(Flag::HasResponse)),
    ("src", Spec::Regex(Field::Src)),
    ("t", Spec::Regex(Field::ContentType)),
    ("tcp", Spec::Flag(Flag::Tcp)),
    ("tq", Spec::Regex(Field::RequestContentType)),
    ("ts", Spec::Regex(Field::ResponseContentType)),
    ("u", Spec::Regex(Field::Url)),
    ("websocket", Spec::Flag(Flag::WebSocket)),
];

/// The parsed expression tree, public for evaluators of their own (the flow store turns it into SQL);
/// `Filter::matches` is what it means.
#[derive(Debug, Clone)]
pub enum Node {
    Flag(Flag),
    Regex(Field, Regex),
    Code(u16),
    Not(Box<Node>),
    And(Vec<Node>),
    Or(Vec<Node>),
}

impl Node {
    fn and(mut items: Vec<Node>) -> Node {
        if items.len() == 1 {
            items.remove(0)
        } else {
            Node::And(items)
        }
    }

    fn or(mut items: Vec<Node>) -> Node {
        if items.len() == 1 {
            items.remove(0)
        } else {
            Node::Or(items)
        }
    }

    fn reads_bodies(&self) -> bool {
        match self {
            Node::Not(inner) => inner.reads_bodies(),
            Node::And(items) | Node::Or(items) => items.iter().any(Node::reads_bodies),
            Node::Regex(field, _) => field.is_body(),
            Node::Flag(_) | Node::Code(_) => false,
        }
    }

    fn matches(&self, flow: FlowRef<'_>) -> bool {
        match (self, flow) {
            (Node::Not(inner), _) => !inner.matches(flow),
            (Node::And(items), _) => items.iter().all(|item| item.matches(flow)),
            (Node::Or(items), _) => items.iter().any(|item| item.matches(flow)),
            (Node::Flag(flag), _) => flag.matches(flow),
            (Node::Code(code), FlowRef::Http(f)) => f.response.as_ref().is_some_and(|r| r.status == *code),
            (Node::Code(_), FlowRef::Tcp(_)) => false,
            (Node::Regex(field, re), FlowRef::Http(f)) => field.matches_http(re, f),
            (Node::Regex(field, re), FlowRef::Tcp(f)) => field.matches_tcp(re, f),
        }
    }
}

impl Flag {
    fn matches(self, flow: FlowRef<'_>) -> bool {
        match (self, flow) {
            (Flag::All, _) => true,
            (Flag::Http, FlowRef::Http(_)) => true,
            (Flag::Tcp, FlowRef::Tcp(_)) => true,
            (Flag::WebSocket, FlowRef::Http(f)) => f.websocket.is_some(),
            (Flag::NoResponse, FlowRef::Http(f)) => f.response.is_none(),
            (Flag::HasResponse, FlowRef::Http(f)) => f.response.is_some(),
            (Flag::HasError, FlowRef::Http(f)) => f.error.is_some(),
            // A TCP flow records no error, request or response.
            (_, FlowRef::Tcp(_)) | (Flag::Tcp, FlowRef::Http(_)) => false,
        }
    }
}

impl Field {
    /// True for the body fields (`~b`, `~bq`, `~bs`).
    pub fn is_body(self) -> bool {
        matches!(self, Field::Body | Field::RequestBody | Field::ResponseBody)
    }

    fn matches_http(self, re: &Regex, f: &HttpFlow) -> bool {
        let request = &f.request;
        let response = f.response.as_ref();
        match self {
            Field::Body => {
                has_body_match(re, &request.body)
                    || response.is_some_and(|r| has_body_match(re, &r.body))
                    || has_message_match(re, f, None)
            }
            Field::RequestBody => has_body_match(re, &request.body) || has_message_match(re, f, Some(true)),
            Field::ResponseBody => {
                response.is_some_and(|r| has_body_match(re, &r.body)) || has_message_match(re, f, Some(false))
            }
            Field::ContentType => {
                has_content_type_match(re, &request.headers)
                    || response.is_some_and(|r| has_content_type_match(re, &r.headers))
            }
            Field::RequestContentType => has_content_type_match(re, &request.headers),
            Field::ResponseContentType => response.is_some_and(|r| has_content_type_match(re, &r.headers)),
            Field::Domain => re.is_match(request.host.as_bytes()),
            Field::Dst => f.server_addr.is_some_and(|addr| re.is_match(addr.to_string().as_bytes())),
            Field::Header => {
                has_header_match(re, &request.headers) || response.is_some_and(|r| has_header_match(re, &r.headers))
            }
            Field::RequestHeader => has_header_match(re, &request.headers),
            Field::ResponseHeader => response.is_some_and(|r| has_header_match(re, &r.headers)),
            Field::Method => re.is_match(request.method.as_bytes()),
            Field::Src => re.is_match(f.client_addr.to_string().as_bytes()),
            Field::Url => re.is_match(request.url().as_bytes()),
        }
    }

    fn matches_tcp(self, re: &Regex, f: &TcpFlow) -> bool {
        match self {
            Field::Src => re.is_match(f.client_addr.to_string().as_bytes()),
            Field::Dst => re.is_match(f.server.as_bytes()),
            // Bodies of TCP flows are not kept; everything else is HTTP only.
            _ => false,
        }
    }
}

/// An absent (streamed, not kept) body never matches, not even `.*`.
fn has_body_match(re: &Regex, body: &Option<Vec<u8>>) -> bool {
    body.as_deref().is_some_and(|body| re.is_match(body))
}

/// WebSocket data messages count as body, as in mitmproxy; `from_client` picks a direction.
fn has_message_match(re: &Regex, f: &HttpFlow, from_client: Option<bool>) -> bool {
    let is_data = |m: &WebSocketMessage| matches!(m.kind, "text" | "binary");
    f.websocket
        .as_ref()
        .map_or(&[][..], |ws| &ws.messages)
        .iter()
        .any(|m| is_data(m) && from_client.is_none_or(|side| m.from_client == side) && re.is_match(&m.payload))
}

/// Header fields are matched one at a time, as `name: value`.
fn has_header_match(re: &Regex, headers: &Headers) -> bool {
    headers.0.iter().any(|(name, value)| {
        let mut line = Vec::with_capacity(name.len() + 2 + value.len());
        line.extend_from_slice(name.as_bytes());
        line.extend_from_slice(b": ");
        line.extend_from_slice(value);
        re.is_match(&line)
    })
}

fn has_content_type_match(re: &Regex, headers: &Headers) -> bool {
    headers.get_all("content-type").any(|value| re.is_match(value))
}

/// Characters that end a bare word (besides whitespace), as in mitmproxy. `!`, `&` and `|` do not:
/// `~d a|b` is one regex, so operators between filters want spaces around them unless next to `~`.
fn is_word_char(c: char) -> bool {
    !c.is_whitespace() && !matches!(c, '(' | ')' | '~' | '\'' | '"')
}

/// A recursive-descent parser over the characters of the expression (positions are char offsets).
///
/// ```text
/// expression := or+            side by side: and, loosest
/// or         := and ("|" and)*
/// and        := not ("&" not)*
/// not        := "!" not | atom
/// atom       := "(" expression ")" | "~"name [argument] | argument   (a lone argument is ~u)
/// ```
struct Parser<'a> {
    text: &'a str,
    chars: Vec<char>,
    pos: usize,
    depth: usize,
    /// The operator just consumed, for "expected a filter after &".
    after: Option<char>,
}

impl Parser<'_> {
    fn error(&self, position: usize, expected: impl Into<String>) -> FilterError {
        FilterError { filter: self.text.to_string(), position, expected: expected.into() }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_whitespace(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    /// Counts one more level of `(` or `!` opened at `at`.
    fn enter(&mut self, at: usize) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(at, format!("at most {MAX_DEPTH} levels of nested ( and !")));
        }
        Ok(())
    }

    /// The whole input: an expression and nothing after it.
    fn parse_expression(&mut self) -> Result<Node, FilterError> {
        let node = self.parse_sequence()?;
        match self.peek() {
            None => Ok(node),
            Some(')') => Err(self.error(self.pos, "the end of the filter, found an unmatched )")),
            Some(c) => Err(self.error(self.pos, format!("the end of the filter, found {c}"))),
        }
    }

    /// One or more `or` expressions side by side; stops before `)` or at the end.
    fn parse_sequence(&mut self) -> Result<Node, FilterError> {
        let mut items = vec![self.parse_or()?];
        loop {
            self.skip_whitespace();
            match self.peek() {
                None | Some(')') => return Ok(Node::and(items)),
                Some(_) => items.push(self.parse_or()?),
            }
        }
    }

    fn parse_or(&mut self) -> Result<Node, FilterError> {
        let mut items = vec![self.parse_and()?];
        loop {
            self.skip_whitespace();
            if self.peek() != Some('|') {
                return Ok(Node::or(items));
            }
            self.pos += 1;
            self.after = Some('|');
            items.push(self.parse_and()?);
        }
    }

    fn parse_and(&mut self) -> Result<Node, FilterError> {
        let mut items = vec![self.parse_not()?];
        loop {
            self.skip_whitespace();
            if self.peek() != Some('&') {
                return Ok(Node::and(items));
            }
            self.pos += 1;
            self.after = Some('&');
            items.push(self.parse_not()?);
        }
    }

    fn parse_not(&mut self) -> Result<Node, FilterError> {
        self.skip_whitespace();
        if self.peek() != Some('!') {
            return self.parse_atom();
        }
        self.enter(self.pos)?;
        self.pos += 1;
        self.after = Some('!');
        let inner = self.parse_not()?;
        self.depth -= 1;
        Ok(Node::Not(Box::new(inner)))
    }

    fn parse_atom(&mut self) -> Result<Node, FilterError> {
        self.skip_whitespace();
        let start = self.pos;
        let after = self.after.take();
        let Some(c) = self.peek() else {
            let expected = match after {
                Some(op) => format!("a filter after {op}"),
                None => "a filter".to_string(),
            };
            return Err(self.error(start, expected));
        };
        match c {
            '(' => {
                self.enter(start)?;
                self.pos += 1;
                self.after = Some('(');
                let inner = self.parse_sequence()?;
                if self.peek() != Some(')') {
                    return Err(self.error(self.pos, format!(") to close the ( at position {start}")));
                }
                self.pos += 1;
                self.depth -= 1;
                Ok(inner)
            }
            ')' | '&' | '|' => {
                let expected = match after {
                    Some(op) => format!("a filter after {op}, found {c}"),
                    None if c == ')' => "a filter, found an unmatched )".to_string(),
                    None => format!("a filter before {c}"),
                };
                Err(self.error(start, expected))
            }
            '~' => self.parse_filter(),
            _ => {
                let pattern = self.parse_argument("a filter")?;
                compile(self, Field::Url, &pattern, start, "for a bare word (matched as ~u)")
            }
        }
    }

    /// `~name` and its argument, if it takes one.
    fn parse_filter(&mut self) -> Result<Node, FilterError> {
        let start = self.pos;
        self.pos += 1;
        let name_start = self.pos;
        while self.peek().is_some_and(char::is_alphanumeric) {
            self.pos += 1;
        }
        let name: String = self.chars[name_start..self.pos].iter().collect();
        let Some((_, spec)) = FILTERS.iter().find(|(known, _)| *known == name) else {
            let known: Vec<String> = FILTERS.iter().map(|(known, _)| format!("~{known}")).collect();
            return Err(self.error(start, format!("one of {}, found ~{name}", known.join(" "))));
        };
        match spec {
            Spec::Flag(flag) => Ok(Node::Flag(*flag)),
            Spec::Regex(field) => {
                let context = format!("after ~{name}");
                self.skip_whitespace();
                let at = self.pos;
                let pattern = self.parse_argument(&format!("a regex {context}"))?;
                compile(self, *field, &pattern, at, &context)
            }
            Spec::Code => {
                self.skip_whitespace();
                let at = self.pos;
                let digits = self.parse_argument("a number after ~c")?;
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(self.error(at, "a number after ~c"));
                }
                let code = digits.parse().map_err(|_| self.error(at, "a number up to 65535 after ~c"))?;
                Ok(Node::Code(code))
            }
        }
    }

    /// A bare word or a quoted string; `expected` names what is missing otherwise.
    fn parse_argument(&mut self, expected: &str) -> Result<String, FilterError> {
        self.skip_whitespace();
        match self.peek() {
            Some('"' | '\'') => self.parse_quoted(),
            Some('(') => Err(self.error(self.pos, format!("{expected} (quote a regex that has parentheses)"))),
            // A word may contain & and |, but one that starts with them is an operator out of place.
            Some(c) if is_word_char(c) && !matches!(c, '&' | '|') => {
                let start = self.pos;
                while self.peek().is_some_and(is_word_char) {
                    self.pos += 1;
                }
                Ok(self.chars[start..self.pos].iter().collect())
            }
            _ => Err(self.error(self.pos, expected)),
        }
    }

    /// `"..."` or `'...'`; a backslash before the quote character escapes it, other backslashes stay.
    fn parse_quoted(&mut self) -> Result<String, FilterError> {
        let open = self.pos;
        let Some(quote) = self.peek() else {
            return Err(self.error(open, "a quote"));
        };
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.error(self.pos, format!("a closing {quote} for the quote at position {open}")));
            };
            self.pos += 1;
            if c == quote {
                return Ok(out);
            }
            if c != '\\' {
                out.push(c);
                continue;
            }
            match self.peek() {
                Some(next) if next == quote => out.push(next),
                Some(next) => {
                    out.push('\\');
                    out.push(next);
                }
                None => continue,
            }
            self.pos += 1;
        }
    }
}

/// Compiles a case-insensitive regex for `field`; bodies let `.` match newlines, as mitmproxy's do.
fn compile(parser: &Parser<'_>, field: Field, pattern: &str, at: usize, context: &str) -> Result<Node, FilterError> {
    RegexBuilder::new(pattern)
        .case_insensitive(true)
        .dot_matches_new_line(field.is_body())
        .build()
        .map(|re| Node::Regex(field, re))
        .map_err(|e| parser.error(at, format!("a valid regex {context}, not {pattern:?} ({})", regex_reason(&e))))
}

/// The last line of a regex error (`unclosed group`), without the multi-line caret diagram: errors are one
/// line, wherever a regex comes from (filters, `--ignore-hosts`, `--modify-body`, `--map-remote`).
pub fn regex_reason(error: &regex::Error) -> String {
    let text = error.to_string();
    let last = text.lines().rev().find(|line| !line.trim().is_empty()).unwrap_or("invalid regex");
    last.trim().trim_start_matches("error: ").to_string()
}

#[cfg(test)]
mod tests;
