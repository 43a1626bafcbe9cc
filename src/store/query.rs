//! Filter expressions evaluated against a session without loading it: a `Filter` becomes a SQL
//! condition on the `flows` table, with the filter's own regexes called from SQL (`strata_re`,
//! `strata_header`, `strata_ctype`), so a session of a million flows answers "flows 1000-1100 matching
//! `~d api & ~c 500`" from its indexes and columns.
//!
//! Every part of a filter but the body searches (`~b`, `~bq`, `~bs`) has an exact SQL form. A body
//! search is narrowed by SQL where it can be (a plain-text pattern of three characters or more is looked
//! up in the trigram index of text bodies; flows with bodies that are not indexed, and WebSocket flows,
//! stay candidates) and then decided by `Filter::matches` on the flow with its bodies. The SQL condition is
//! therefore always a superset of the matches, and exactly them when `exact`.

use std::sync::Arc;

use regex::bytes::Regex;
use rusqlite::functions::FunctionFlags;
use rusqlite::types::{Value, ValueRef};
use rusqlite::Connection;

use crate::filter::{Field, Filter, Flag, Node};

/// How a regex function looks at its column.
type Test = fn(&Regex, &[u8]) -> bool;

/// A filter as SQL over `flows`.
#[derive(Debug)]
pub struct Lowered {
    /// A condition over `flows`'s columns (never NULL).
    pub condition: String,
    /// The values of its `?` parameters, in order.
    pub params: Vec<Value>,
    /// True if the condition matches exactly the flows the filter does; false if it is a superset that
    /// `Filter::matches` must still decide.
    pub exact: bool,
    /// The regexes the condition calls by index.
    regexes: Vec<Regex>,
}

impl Lowered {
    /// The SQL form of `filter` (everything, for none).
    pub fn new(filter: Option<&Filter>) -> Lowered {
        let mut lowered = Lowered { condition: String::new(), params: Vec::new(), exact: true, regexes: Vec::new() };
        match filter {
            Some(filter) => {
                let (condition, exact) = lowered.lower(filter.root());
                lowered.condition = condition;
                lowered.exact = exact;
            }
            None => lowered.condition = "1".into(),
        }
        lowered
    }

    /// The condition for the one flow with `id`.
    pub fn id(id: &str) -> Lowered {
        Lowered { condition: "id = ?".into(), params: vec![Value::Text(id.into())], exact: true, regexes: Vec::new() }
    }

    /// A condition every flow meets: exact only if nothing is to be filtered.
    pub fn everything(exact: bool) -> Lowered {
        Lowered { condition: "1".into(), params: Vec::new(), exact, regexes: Vec::new() }
    }

    /// Makes the condition's regex functions known to `connection` (replacing those of an earlier query).
    pub fn register(&self, connection: &Connection) -> rusqlite::Result<()> {
        let regexes: Arc<[Regex]> = self.regexes.clone().into();
        let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
        let shapes: [(&str, Test); 3] = [
            ("strata_re", |re, bytes| re.is_match(bytes)),
            ("strata_header", any_field),
            ("strata_ctype", any_content_type),
        ];
        for (name, test) in shapes {
            let regexes = regexes.clone();
            connection.create_scalar_function(name, 2, flags, move |ctx| {
                let re = usize::try_from(ctx.get::<i64>(0)?).ok().and_then(|i| regexes.get(i));
                let bytes = match ctx.get_raw(1) {
                    ValueRef::Text(bytes) | ValueRef::Blob(bytes) => Some(bytes),
                    _ => None,
                };
                Ok(matches!((re, bytes), (Some(re), Some(bytes)) if test(re, bytes)))
            })?;
        }
        Ok(())
    }

    /// A condition for `node`, and whether it is exact.
    fn lower(&mut self, node: &Node) -> (String, bool) {
        match node {
            Node::Flag(flag) => (flag_condition(*flag).into(), true),
            Node::Code(code) => {
                self.params.push(Value::Integer(i64::from(*code)));
                // `IS` is false, never NULL, for a flow without a status, and can use the status index.
                ("status IS ?".into(), true)
            }
            Node::Not(inner) => {
                let params = self.params.len();
                match self.lower(inner) {
                    (condition, true) => (format!("NOT ({condition})"), true),
                    // The complement of a superset says nothing: its condition (and parameters) go.
                    (_, false) => {
                        self.params.truncate(params);
                        ("1".into(), false)
                    }
                }
            }
            Node::And(items) | Node::Or(items) => {
                let joiner = if matches!(node, Node::And(_)) { " AND " } else { " OR " };
                let parts: Vec<(String, bool)> = items.iter().map(|item| self.lower(item)).collect();
                let exact = parts.iter().all(|(_, exact)| *exact);
                let conditions: Vec<String> = parts.into_iter().map(|(c, _)| format!("({c})")).collect();
                (conditions.join(joiner), exact)
            }
            Node::Regex(field, re) if field.is_body() => (self.body_condition(*field, re), false),
            Node::Regex(field, re) => {
                let index = self.regexes.len();
                self.regexes.push(re.clone());
                let call = |function: &str, column: &str| format!("{function}({index}, {column})");
                let condition = match field {
                    Field::Domain => call("strata_re", "host"),
                    Field::Method => call("strata_re", "method"),
                    Field::Url => call("strata_re", "url"),
                    Field::Src => call("strata_re", "client"),
                    Field::Dst => call("strata_re", "server"),
                    Field::Header => {
                        format!(
                            "({} OR {})",
                            call("strata_header", "request_headers"),
                            call("strata_header", "response_headers")
                        )
                    }
                    Field::RequestHeader => call("strata_header", "request_headers"),
                    Field::ResponseHeader => call("strata_header", "response_headers"),
                    Field::ContentType => {
                        format!(
                            "({} OR {})",
                            call("strata_ctype", "request_headers"),
                            call("strata_ctype", "response_headers")
                        )
                    }
                    Field::RequestContentType => call("strata_ctype", "request_headers"),
                    Field::ResponseContentType => call("strata_ctype", "response_headers"),
                    Field::Body | Field::RequestBody | Field::ResponseBody => unreachable!("matched above"),
                };
                // A TCP flow has none of the HTTP fields; `~src` and `~dst` apply to both kinds.
                let http_only = !matches!(field, Field::Src | Field::Dst);
                (if http_only { format!("(kind = 'http' AND {condition})") } else { condition }, true)
            }
        }
    }

    /// The candidates for a body search: flows whose indexed text holds the pattern's required pieces,
    /// and every flow the index cannot speak for.
    fn body_condition(&mut self, field: Field, re: &Regex) -> String {
        let Some(pieces) = required_pieces(re.as_str()) else { return "kind = 'http'".into() };
        let column = match field {
            Field::RequestBody => "request : ",
            Field::ResponseBody => "response : ",
            _ => "",
        };
        let query: Vec<String> = pieces.iter().map(|p| format!("{column}\"{}\"", p.replace('"', "\"\""))).collect();
        self.params.push(Value::Text(query.join(" AND ")));
        // One IN over three indexed lookups: an OR across the columns would read every row.
        "(kind = 'http' AND seq IN (SELECT rowid FROM body_text WHERE body_text MATCH ? \
         UNION ALL SELECT seq FROM flows WHERE text_indexed = 0 \
         UNION ALL SELECT seq FROM flows WHERE websocket = 1))"
            .into()
    }
}

/// An order of the flow list: one of its columns, ascending or descending; flows that tie stay in the
/// order they started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    pub column: SortColumn,
    pub descending: bool,
}

/// The columns the flow list sorts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortColumn {
    Time,
    Method,
    Url,
    Status,
    Type,
    Size,
    Duration,
}

impl Sort {
    /// `status`, or `-status` for descending; the names are the list's columns (`time`, `method`, `url`,
    /// `status`, `type`, `size`, `duration`).
    pub fn parse(text: &str) -> Option<Sort> {
        let (descending, name) = match text.strip_prefix('-') {
            Some(name) => (true, name),
            None => (false, text),
        };
        let column = match name {
            "time" => SortColumn::Time,
            "method" => SortColumn::Method,
            "url" => SortColumn::Url,
            "status" => SortColumn::Status,
            "type" => SortColumn::Type,
            "size" => SortColumn::Size,
            "duration" => SortColumn::Duration,
            _ => return None,
        };
        Some(Sort { column, descending })
    }

    /// The `ORDER BY` list.
    pub fn sql(self) -> String {
        let key = match self.column {
            SortColumn::Time => "seq",
            SortColumn::Method => "method",
            SortColumn::Url => "url",
            SortColumn::Status => "status",
            SortColumn::Type => {
                "CASE WHEN kind = 'tcp' THEN 3 WHEN websocket = 1 THEN 2 WHEN http_version = 'HTTP/2.0' THEN 1 ELSE 0 END"
            }
            SortColumn::Size => "coalesce(response_body_len, bytes_to_client)",
            SortColumn::Duration => {
                "coalesce(max(connect_ms, 0) + send_ms + wait_ms + receive_ms, duration_ms)"
            }
        };
        format!("{key} {}, seq", if self.descending { "DESC" } else { "ASC" })
    }
}

fn flag_condition(flag: Flag) -> &'static str {
    match flag {
        Flag::All => "1",
        Flag::Http => "kind = 'http'",
        Flag::Tcp => "kind = 'tcp'",
        Flag::WebSocket => "websocket = 1",
        Flag::NoResponse => "(kind = 'http' AND status IS NULL)",
        Flag::HasResponse => "(kind = 'http' AND status IS NOT NULL)",
        Flag::HasError => "(kind = 'http' AND error IS NOT NULL)",
    }
}

/// For a pattern that is plain text apart from `.` (any character) and backslash-escaped punctuation:
/// the runs of text every match must contain, each three characters or more (the trigram index's
/// shortest). `None` when the pattern has other syntax, a run too short to look up, or non-ASCII text
/// (whose case folding the index and the regex might not agree on).
fn required_pieces(pattern: &str) -> Option<Vec<String>> {
    let mut pieces = vec![String::new()];
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '.' => pieces.push(String::new()),
            '\\' => match chars.next() {
                Some(escaped) if escaped.is_ascii_punctuation() => pieces.last_mut()?.push(escaped),
                _ => return None,
            },
            '+' | '*' | '?' | '(' | ')' | '|' | '[' | ']' | '{' | '}' | '^' | '$' => return None,
            c if c.is_ascii() && !c.is_ascii_control() => pieces.last_mut()?.push(c),
            _ => return None,
        }
    }
    pieces.retain(|piece| !piece.is_empty());
    (!pieces.is_empty() && pieces.iter().all(|piece| piece.len() >= 3)).then_some(pieces)
}

/// `strata_header`: some field of a stored header block (`name: value\r\n` each) matches.
fn any_field(re: &Regex, block: &[u8]) -> bool {
    block
        .split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .any(|line| !line.is_empty() && re.is_match(line))
}

/// `strata_ctype`: the value of some Content-Type field of a stored header block matches.
fn any_content_type(re: &Regex, block: &[u8]) -> bool {
    block.split(|&b| b == b'\n').map(|line| line.strip_suffix(b"\r").unwrap_or(line)).any(|line| {
        let Some(colon) = line.iter().position(|&b| b == b':') else { return false };
        let value = &line[colon + 1..];
        line[..colon].eq_ignore_ascii_case(b"content-type") && re.is_match(value.strip_prefix(b" ").unwrap_or(value))
    })
}

#[cfg(test)]
mod tests {
    use super::required_pieces;

    #[test]
    fn plain_patterns_give_their_pieces_and_others_none() {
        assert_eq!(required_pieces("password"), Some(vec!["password".to_string()]));
        assert_eq!(required_pieces("example.com"), Some(vec!["example".to_string(), "com".to_string()]));
        assert_eq!(required_pieces(r"a\.b\.c\.d"), Some(vec!["a.b.c.d".to_string()]));
        assert_eq!(required_pieces("ab"), None);
        assert_eq!(required_pieces("x.yz"), None);
        assert_eq!(required_pieces("colou?r"), None);
        assert_eq!(required_pieces("a|bcd"), None);
        assert_eq!(required_pieces(r"\d{3}"), None);
        assert_eq!(required_pieces("café"), None);
    }
}
