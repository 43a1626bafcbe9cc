use std::time::{Duration, SystemTime};

use super::*;
use crate::flow::{FlowId, Request, Response, Timings, WebSocketData};
use crate::http::message::Version;
use crate::http::url::Scheme;

fn headers(fields: &[(&str, &[u8])]) -> Headers {
    Headers(fields.iter().map(|(name, value)| (name.to_string(), value.to_vec())).collect())
}

/// `GET http://example.com:8080/index.html?q=1` from 10.0.0.1:5000 to 93.184.216.34:8080, answered 200.
fn complete() -> HttpFlow {
    HttpFlow {
        id: FlowId::next(),
        at_proxy: true,
        metadata: Vec::new(),
        client_tls: None,
        server_tls: None,
        client_addr: "10.0.0.1:5000".parse().unwrap(),
        server_addr: Some("93.184.216.34:8080".parse().unwrap()),
        request: Request {
            method: "GET".to_string(),
            scheme: Scheme::Http,
            host: "Example.com".to_string(),
            port: 8080,
            path: "/index.html?q=1".to_string(),
            version: Version::Http11,
            headers: headers(&[
                ("Host", b"example.com:8080"),
                ("Content-Type", b"text/plain"),
                ("X-Quote", b"it's \"here\""),
            ]),
            body: Some(b"hello\nrequest".to_vec()),
            body_len: 13,
            stream: true,
            trailers: None,
        },
        response: Some(Response {
            status: 200,
            reason: "OK".to_string(),
            version: Version::Http11,
            headers: headers(&[("Content-Type", b"application/json"), ("X-Server", b"origin")]),
            body: Some(b"{\"ok\":true,\"raw\":\"\xff\"}".to_vec()),
            body_len: 22,
            stream: true,
            trailers: None,
        }),
        error: None,
        websocket: None,
        started_at: SystemTime::now(),
        timings: Timings::default(),
    }
}

/// A request that got no response and failed; nothing was connected, no body kept.
fn failed() -> HttpFlow {
    let mut flow = complete();
    flow.response = None;
    flow.server_addr = None;
    flow.request.body = None;
    flow.error = Some("cannot connect to example.com:8080".to_string());
    flow
}

/// A WebSocket session after a 101, with one text message each way and a ping.
fn websocket() -> HttpFlow {
    let mut flow = complete();
    let response = flow.response.as_mut().unwrap();
    response.status = 101;
    response.body = None;
    flow.request.body = None;
    let message = |from_client, kind, payload: &[u8]| WebSocketMessage {
        from_client,
        kind,
        payload: payload.to_vec(),
        at: SystemTime::now(),
    };
    flow.websocket = Some(WebSocketData::with_messages(vec![
        message(true, "text", b"hello from client"),
        message(false, "text", b"hello from server"),
        message(true, "ping", b"pingpayload"),
    ]));
    flow
}

fn tcp() -> TcpFlow {
    TcpFlow {
        id: FlowId::next(),
        client_addr: "10.0.0.2:6000".parse().unwrap(),
        server: "db.internal:5432".to_string(),
        bytes_to_server: 10,
        bytes_to_client: 20,
        duration: Duration::from_millis(5),
        messages: Vec::new(),
    }
}

fn filter(text: &str) -> Filter {
    Filter::parse(text).unwrap_or_else(|e| panic!("{e}"))
}

fn matches(text: &str, flow: &HttpFlow) -> bool {
    filter(text).matches(FlowRef::Http(flow))
}

fn matches_tcp(text: &str) -> bool {
    filter(text).matches(FlowRef::Tcp(&tcp()))
}

/// The error's position and its whole message.
fn error(text: &str) -> (usize, String) {
    match Filter::parse(text) {
        Ok(_) => panic!("{text:?} parsed, expected an error"),
        Err(e) => (e.position, e.to_string()),
    }
}

#[test]
fn q_s_and_e_follow_response_and_error() {
    assert!(!matches("~q", &complete()));
    assert!(matches("~s", &complete()));
    assert!(!matches("~e", &complete()));
    assert!(matches("~q", &failed()));
    assert!(!matches("~s", &failed()));
    assert!(matches("~e", &failed()));
}

#[test]
fn kind_filters_tell_http_websocket_and_tcp_apart() {
    assert!(matches("~http", &complete()));
    assert!(matches("~http", &websocket()));
    assert!(!matches("~websocket", &complete()));
    assert!(matches("~websocket", &websocket()));
    assert!(!matches("~tcp", &complete()));
    assert!(matches("~all", &complete()));
    assert!(matches_tcp("~tcp"));
    assert!(matches_tcp("~all"));
    assert!(!matches_tcp("~http"));
    assert!(!matches_tcp("~websocket"));
}

#[test]
fn tcp_flows_match_only_kind_and_addresses() {
    for text in ["~q", "~s", "~e", "~c 200", "~d .", "~u .", "~m .", "~h .", "~t .", "~b .", "~bq .", "~bs ."] {
        assert!(!matches_tcp(text), "{text}");
        assert!(matches_tcp(&format!("!{text}")), "!{text}");
    }
    assert!(matches_tcp("~src ^10\\.0\\.0\\.2:6000$"));
    assert!(matches_tcp("~dst ^db\\.internal:5432$"));
    assert!(!matches_tcp("~dst example"));
}

#[test]
fn domain_matches_request_host_ignoring_case() {
    assert!(matches("~d ^example\\.com$", &complete()));
    assert!(matches("~d EXAMPLE", &complete()));
    assert!(!matches("~d other", &complete()));
}

#[test]
fn url_matches_the_full_url_with_port() {
    assert!(matches("~u ^http://example\\.com:8080/index\\.html\\?q=1$", &complete()));
    assert!(!matches("~u https:", &complete()));
}

#[test]
fn method_matches_ignoring_case() {
    assert!(matches("~m ^get$", &complete()));
    assert!(!matches("~m POST", &complete()));
}

#[test]
fn header_filters_match_name_value_lines_per_side() {
    assert!(matches("~h '^content-type: text/plain$'", &complete()));
    assert!(matches("~h 'x-server: origin'", &complete()));
    assert!(matches("~hq 'x-quote'", &complete()));
    assert!(!matches("~hq 'x-server'", &complete()));
    assert!(matches("~hs 'x-server: origin'", &complete()));
    assert!(!matches("~hs 'x-quote'", &complete()));
    assert!(!matches("~hs .", &failed()));
    // One field per line: a regex never spans two fields.
    assert!(!matches("~h 'text/plain.*x-quote'", &complete()));
}

#[test]
fn content_type_filters_match_the_field_value() {
    assert!(matches("~t json", &complete()));
    assert!(matches("~t text/plain", &complete()));
    assert!(matches("~tq ^text/plain$", &complete()));
    assert!(!matches("~tq json", &complete()));
    assert!(matches("~ts json", &complete()));
    assert!(!matches("~ts plain", &complete()));
    assert!(!matches("~t content-type", &complete()));
}

#[test]
fn body_filters_match_bytes_and_dot_spans_lines() {
    assert!(matches("~b hello.request", &complete()));
    assert!(matches("~bq HELLO", &complete()));
    assert!(!matches("~bs hello", &complete()));
    assert!(matches("~bs '\"ok\":true'", &complete()));
    assert!(matches("~bs '(?-u:\\xff)'", &complete()));
    assert!(matches("~b ok", &complete()));
}

#[test]
fn absent_bodies_never_match() {
    let flow = failed();
    assert!(!matches("~b .*", &flow));
    assert!(!matches("~bq ''", &flow));
    assert!(matches("!~b .*", &flow));
}

#[test]
fn websocket_data_messages_count_as_body() {
    let flow = websocket();
    assert!(matches("~b 'from server'", &flow));
    assert!(matches("~bq 'from client'", &flow));
    assert!(!matches("~bq 'from server'", &flow));
    assert!(matches("~bs 'from server'", &flow));
    assert!(!matches("~bs 'from client'", &flow));
    // Control frames are not messages.
    assert!(!matches("~b pingpayload", &flow));
}

#[test]
fn src_and_dst_match_ip_and_port() {
    assert!(matches("~src ^10\\.0\\.0\\.1:5000$", &complete()));
    assert!(matches("~dst ^93\\.184\\.216\\.34:8080$", &complete()));
    assert!(!matches("~dst .", &failed()));
    assert!(matches("!~dst .", &failed()));
}

#[test]
fn code_matches_the_response_status() {
    assert!(matches("~c 200", &complete()));
    assert!(matches("~c 0200", &complete()));
    assert!(!matches("~c 404", &complete()));
    assert!(!matches("~c 200", &failed()));
    assert!(matches("~c 101", &websocket()));
}

#[test]
fn not_and_or_combine() {
    let flow = complete();
    assert!(matches("!~q", &flow));
    assert!(matches("~s & ~c 200", &flow));
    assert!(!matches("~s & ~c 404", &flow));
    assert!(matches("~q | ~c 200", &flow));
    assert!(!matches("~q | ~c 404", &flow));
    assert!(matches("!!~s", &flow));
}

#[test]
fn operators_need_no_spaces_next_to_filters() {
    let flow = complete();
    assert!(matches("~q|~s", &flow));
    assert!(matches("~s&~c 200", &flow));
    assert!(!matches("!(~s)", &flow));
    assert!(matches("(~q)|(~s)", &flow));
}

#[test]
fn not_binds_tighter_than_and_and_and_tighter_than_or() {
    let flow = complete();
    // !~q & ~q is (!~q) & ~q: false; !(~q & ~q) would be true.
    assert!(!matches("!~q & ~q", &flow));
    // ~q & ~s | ~s is (~q & ~s) | ~s: true; ~q & (~s | ~s) would be false.
    assert!(matches("~q & ~s | ~s", &flow));
    assert!(matches("~s | ~s & ~q", &flow));
    assert!(!matches("~q & (~s | ~s)", &flow));
}

#[test]
fn side_by_side_means_and() {
    let flow = complete();
    assert!(matches("~s ~d example ~c 200", &flow));
    assert!(!matches("~s ~d example ~c 404", &flow));
    assert!(!matches("~q ~d example", &flow));
    assert!(matches("(~s ~c 200)", &flow));
}

#[test]
fn side_by_side_binds_loosest_as_in_mitmproxy() {
    // ~q ~d example | ~c 200 is ~q & (~d example | ~c 200), not (~q & ~d example) | ~c 200.
    assert!(!matches("~q ~d example | ~c 200", &complete()));
    assert!(matches("(~q ~d example) | ~c 200", &complete()));
}

#[test]
fn quoted_arguments_keep_spaces_and_escaped_quotes() {
    let flow = complete();
    assert!(matches("~h \"content-type: text/plain\"", &flow));
    assert!(matches("~h 'x-quote: it\\'s'", &flow));
    assert!(matches("~h \"\\\"here\\\"\"", &flow));
    // Backslashes other than before the quote reach the regex.
    assert!(matches("~u \"index\\.html\\?q=\\d\"", &flow));
    assert!(!matches("~u 'index\\.htmlX'", &flow));
    assert!(matches("~d \"(example|other)\\.com\"", &flow));
    assert!(matches("~d ''", &flow));
}

#[test]
fn bare_words_match_the_url() {
    let flow = complete();
    assert!(matches("example", &flow));
    assert!(matches("index.html", &flow));
    assert!(!matches("nothere", &flow));
    assert!(matches("!nothere", &flow));
    assert!(matches("'q=1$'", &flow));
    assert!(matches("~s example", &flow));
}

#[test]
fn bare_words_keep_and_and_or_characters_as_regex() {
    let flow = complete();
    assert!(matches("~d other|example", &flow));
    let mut with_query = flow.clone();
    with_query.request.path = "/index.html?q=1&r=2".to_string();
    assert!(matches("~u q=1&", &with_query));
    assert!(!matches("~d other&example", &flow));
}

#[test]
fn parsing_is_also_from_str_and_display_gives_the_text_back() {
    let parsed: Filter = "~d example & ~s".parse().unwrap();
    assert!(parsed.matches((&complete()).into()));
    assert_eq!(parsed.to_string(), "~d example & ~s");
    assert_eq!(parsed.as_str(), "~d example & ~s");
    assert!("~x".parse::<Filter>().is_err());
}

#[test]
fn bad_number_after_c_names_position_and_expectation() {
    assert_eq!(error("~c abc"), (3, "filter \"~c abc\" at position 3: expected a number after ~c".to_string()));
    assert_eq!(error("~c"), (2, "filter \"~c\" at position 2: expected a number after ~c".to_string()));
    assert_eq!(error("~c 20x").0, 3);
    assert_eq!(error("~c -1").0, 3);
    let (position, message) = error("~s ~c 99999");
    assert_eq!(position, 6);
    assert!(message.ends_with("expected a number up to 65535 after ~c"), "{message}");
}

#[test]
fn unknown_filter_is_named_with_the_known_ones() {
    let (position, message) = error("~s & ~x foo");
    assert_eq!(position, 5);
    assert!(message.contains("found ~x"), "{message}");
    assert!(message.contains("~websocket"), "{message}");
    assert_eq!(error("~").0, 0);
    assert_eq!(error("~Q").0, 0);
    assert_eq!(error("~qq").0, 0);
}

#[test]
fn missing_argument_is_reported_where_it_should_be() {
    assert_eq!(error("~d"), (2, "filter \"~d\" at position 2: expected a regex after ~d".to_string()));
    assert_eq!(error("~d   "), (5, "filter \"~d   \" at position 5: expected a regex after ~d".to_string()));
    assert_eq!(error("~h ~q").0, 3);
    assert_eq!(error("~d | ~q").0, 3);
    assert_eq!(error("~d )").0, 3);
    let (position, message) = error("~d (a|b)");
    assert_eq!(position, 3);
    assert!(message.contains("quote a regex that has parentheses"), "{message}");
}

#[test]
fn bad_regex_names_the_regex_and_the_reason() {
    let (position, message) = error("~s & ~d \"(foo\"");
    assert_eq!(position, 8);
    assert!(message.contains("expected a valid regex after ~d, not \"(foo\""), "{message}");
    assert!(message.contains("unclosed group"), "{message}");
    assert!(!message.contains('\n'), "{message}");
    let (position, message) = error("~s a[");
    assert_eq!(position, 3);
    assert!(message.contains("bare word"), "{message}");
    // Look-around is not in the regex crate.
    assert_eq!(error("~u 'a(?=b)'").0, 3);
}

#[test]
fn unbalanced_parentheses_are_reported() {
    assert_eq!(
        error("(~q | ~s"),
        (8, "filter \"(~q | ~s\" at position 8: expected ) to close the ( at position 0".to_string())
    );
    assert_eq!(
        error("~s ((~q) "),
        (9, "filter \"~s ((~q) \" at position 9: expected ) to close the ( at position 3".to_string())
    );
    let (position, message) = error("~q )");
    assert_eq!(position, 3);
    assert!(message.ends_with("expected the end of the filter, found an unmatched )"), "{message}");
    assert_eq!(error(")").0, 0);
    assert_eq!(error("()"), (1, "filter \"()\" at position 1: expected a filter after (, found )".to_string()));
}

#[test]
fn dangling_operators_are_reported() {
    assert_eq!(error("~q &"), (4, "filter \"~q &\" at position 4: expected a filter after &".to_string()));
    assert_eq!(error("~q | "), (5, "filter \"~q | \" at position 5: expected a filter after |".to_string()));
    assert_eq!(error("!"), (1, "filter \"!\" at position 1: expected a filter after !".to_string()));
    assert_eq!(error("& ~q"), (0, "filter \"& ~q\" at position 0: expected a filter before &".to_string()));
    assert_eq!(
        error("~q & | ~s"),
        (5, "filter \"~q & | ~s\" at position 5: expected a filter after &, found |".to_string())
    );
    assert_eq!(error("(~q |)").0, 5);
    assert_eq!(error("~q ! "), (5, "filter \"~q ! \" at position 5: expected a filter after !".to_string()));
}

#[test]
fn empty_filter_is_an_error() {
    assert_eq!(error(""), (0, "filter \"\" at position 0: expected a filter".to_string()));
    assert_eq!(error("   ").0, 3);
}

#[test]
fn unterminated_quote_is_reported_at_the_end() {
    assert_eq!(
        error("~d \"abc"),
        (7, "filter \"~d \"abc\" at position 7: expected a closing \" for the quote at position 3".to_string())
    );
    assert_eq!(error("'it\\'s").0, 6);
    assert_eq!(error("~d 'abc\\").0, 8);
}

#[test]
fn positions_count_characters_not_bytes() {
    assert_eq!(error("äöü ~zz").0, 4);
    assert_eq!(error("~d 'ä(' ").0, 3);
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let (position, message) = error(&"(".repeat(100_000));
    assert_eq!(position, MAX_DEPTH);
    assert!(message.contains("levels of nested"), "{message}");
    assert_eq!(error(&format!("{}~q", "!".repeat(100_000))).0, MAX_DEPTH);
    let ok = format!("{}~q{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    assert!(!matches(&ok, &complete()));
    assert!(matches(&format!("{}~q", "!".repeat(MAX_DEPTH - 1)), &complete()));
}

/// xorshift64: a small, seeded, dependency-free source of noise.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_token_soup_never_panics() {
    const TOKENS: &[&str] = &[
        "~q",
        "~s",
        "~e",
        "~c",
        "~d",
        "~u",
        "~h",
        "~hq",
        "~bs",
        "~t",
        "~src",
        "~dst",
        "~tcp",
        "~all",
        "~websocket",
        "~x",
        "~",
        "(",
        ")",
        "!",
        "&",
        "|",
        "\"",
        "'",
        "\\",
        " ",
        " ",
        "\t",
        "foo",
        "200",
        "99999",
        ".*",
        "[",
        "]",
        "{",
        "}",
        "{2}",
        "?",
        "+",
        "*",
        "$",
        "^",
        "ä",
        "é",
        "😀",
        "\\'",
        "\\\"",
    ];
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let flows = [complete(), failed(), websocket()];
    let tcp = tcp();
    let mut parsed = 0;
    for _ in 0..4000 {
        let mut text = String::new();
        for _ in 0..rng.below(12) {
            if rng.below(4) == 0 {
                // Any char, biased towards ASCII.
                let limit = if rng.below(2) == 0 { 0x80 } else { 0x11_0000 };
                text.extend(char::from_u32(rng.below(limit) as u32));
            } else {
                text.push_str(TOKENS[rng.below(TOKENS.len())]);
            }
        }
        match Filter::parse(&text) {
            Ok(filter) => {
                parsed += 1;
                for flow in &flows {
                    filter.matches(FlowRef::Http(flow));
                }
                filter.matches(FlowRef::Tcp(&tcp));
            }
            Err(e) => {
                assert!(e.position <= text.chars().count(), "{e}");
                assert_eq!(e.filter, text);
            }
        }
    }
    // The soup must exercise the matching side too, not only the errors.
    assert!(parsed > 100, "only {parsed} parsed");
}
