//! Property tests for everything strata parses from the network or the command line: HTTP/1 heads,
//! chunk sizes and chunked bodies, SOCKS5 messages, filter expressions, `host:port`. Each property runs
//! a bounded number of cases (the whole file takes a few seconds), so it runs in CI on the stable
//! toolchain; the cargo-fuzz targets in `fuzz/` feed the same functions for as long as one cares to run
//! them (nightly only).
//!
//! The TLS handshake itself is parsed by rustls' `Acceptor` (fuzzed upstream); strata's own look at the
//! ClientHello, `peek_sni` (for `--ignore-hosts` by SNI), is covered here.

use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use strata::config::Limits;
use strata::filter::Filter;
use strata::http::message::{Headers, RequestHead, ResponseHead, Version};
use strata::http::url::split_host_port;
use strata::io::BufIo;
use strata::layers::http1::codec::{
    copy_body, parse_chunk_size, parse_request, parse_response, write_request_head, write_response_head, Framing,
};
use strata::layers::socks5;

const CASES: u32 = 256;

/// `CASES` cases, and no regression files written into the source tree (a failure prints its minimal
/// input; turn it into a plain test).
fn config() -> ProptestConfig {
    ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() }
}

fn limits(max_headers: usize) -> Limits {
    Limits { max_head_bytes: 64 * 1024, max_headers, max_connections: 10 }
}

// ---- generators ----

/// A token (RFC 9110 section 5.6.2): method or field name.
fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,16}"
}

/// A field value: visible ASCII and obs-text-free, spaces and tabs only inside.
fn field_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![Just(Vec::new()), "[!-~]([ \t!-~]{0,30}[!-~])?".prop_map(String::into_bytes),]
}

/// An origin-form request target.
fn target() -> impl Strategy<Value = String> {
    "/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]{0,40}"
}

fn version() -> impl Strategy<Value = Version> {
    prop_oneof![Just(Version::Http10), Just(Version::Http11)]
}

fn headers() -> impl Strategy<Value = Headers> {
    prop::collection::vec((token(), field_value()), 0..12).prop_map(Headers)
}

fn request_head() -> impl Strategy<Value = RequestHead> {
    (token(), target(), version(), headers()).prop_map(|(method, target, version, headers)| RequestHead {
        method,
        target,
        version,
        headers,
    })
}

fn response_head() -> impl Strategy<Value = ResponseHead> {
    (version(), 100u16..=599, "[ \t!-~]{0,20}", headers()).prop_map(|(version, status, reason, headers)| ResponseHead {
        version,
        status,
        reason: reason.trim_start().to_string(),
        headers,
    })
}

fn request_bytes(head: &RequestHead) -> Vec<u8> {
    let mut out = Vec::new();
    write_request_head(head, &head.target, &mut out);
    out
}

/// One edit of a byte string, biased toward the bytes HTTP/1 framing cares about.
#[derive(Debug, Clone)]
enum Mutation {
    Replace(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
}

fn interesting_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        prop::sample::select(vec![
            b'\r', b'\n', b' ', b'\t', b':', b';', b',', 0u8, 0x0b, 0x0c, 0x7f, 0x80, 0xff, b'"'
        ]),
        any::<u8>(),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), interesting_byte()).prop_map(|(i, b)| Mutation::Replace(i, b)),
        (any::<usize>(), interesting_byte()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len();
        match *m {
            Mutation::Replace(i, b) if len > 0 => bytes[i % len] = b,
            Mutation::Insert(i, b) => bytes.insert(i % (len + 1), b),
            Mutation::Delete(i) if len > 0 => {
                bytes.remove(i % len);
            }
            Mutation::Truncate(i) => bytes.truncate(i % (len + 1)),
            _ => {}
        }
    }
    bytes
}

/// What a strict RFC 9112 section 7.1 chunk-size line (without its CRLF) is worth: 1 to 15 hex digits
/// (strata's bound), then `*( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] )`, written
/// here as one regular expression, independently of strata's hand-written parser.
fn strict_chunk_size(line: &[u8]) -> Option<u64> {
    static LINE: std::sync::OnceLock<regex::bytes::Regex> = std::sync::OnceLock::new();
    let line_re = LINE.get_or_init(|| {
        let token = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+";
        let quoted = r#""(?:[\t !\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*""#;
        let ext = format!(r"[ \t]*;[ \t]*{token}(?:[ \t]*=[ \t]*(?:{token}|{quoted}))?");
        regex::bytes::Regex::new(&format!(r"(?-u)\A([0-9a-fA-F]{{1,15}})(?:{ext})*\z")).unwrap()
    });
    let digits = line_re.captures(line)?.get(1)?.as_bytes();
    u64::from_str_radix(std::str::from_utf8(digits).unwrap(), 16).ok()
}

/// A chunked body as a client could send it: chunks of the given sizes cut from `payload`, optional
/// extensions, then trailers.
fn chunked_wire(payload: &[u8], sizes: &[usize], extensions: &[bool], trailers: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    for (i, &size) in sizes.iter().enumerate() {
        let size = size.min(payload.len() - at);
        if size == 0 {
            continue;
        }
        out.extend_from_slice(format!("{size:X}").as_bytes());
        if extensions.get(i).copied().unwrap_or(false) {
            out.extend_from_slice(b" ; name=\"quoted;value\"");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&payload[at..at + size]);
        out.extend_from_slice(b"\r\n");
        at += size;
    }
    if at < payload.len() {
        out.extend_from_slice(format!("{:x}\r\n", payload.len() - at).as_bytes());
        out.extend_from_slice(&payload[at..]);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Decodes a chunked body strictly (CRLF everywhere, hex sizes without extensions): payload, trailer
/// lines, and the number of bytes used. Panics on anything else.
fn decode_canonical_chunked(wire: &[u8]) -> (Vec<u8>, Vec<String>, usize) {
    let mut at = 0;
    let mut payload = Vec::new();
    let line = |at: &mut usize| -> String {
        let end = wire[*at..].windows(2).position(|w| w == b"\r\n").expect("CRLF") + *at;
        let line = String::from_utf8(wire[*at..end].to_vec()).expect("ASCII line");
        *at = end + 2;
        line
    };
    loop {
        let size_line = line(&mut at);
        assert!(size_line.bytes().all(|b| b.is_ascii_hexdigit()), "non-canonical chunk size line {size_line:?}");
        let size = usize::from_str_radix(&size_line, 16).unwrap();
        if size == 0 {
            break;
        }
        payload.extend_from_slice(&wire[at..at + size]);
        assert_eq!(&wire[at + size..at + size + 2], b"\r\n", "chunk data not followed by CRLF");
        at += size + 2;
    }
    let mut trailers = Vec::new();
    loop {
        let l = line(&mut at);
        if l.is_empty() {
            return (payload, trailers, at);
        }
        trailers.push(l);
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Sends `input` in pieces of `piece` bytes through a duplex pipe of `pipe` bytes into `copy_body` with
/// `framing`; returns its result, what it wrote, and what was left in the source afterwards.
fn run_copy_body(
    input: Vec<u8>,
    piece: usize,
    pipe: usize,
    framing: Framing,
) -> (Result<u64, String>, Vec<u8>, Vec<u8>) {
    runtime().block_on(async move {
        let (src, mut peer) = tokio::io::duplex(pipe);
        let writer = tokio::spawn(async move {
            for part in input.chunks(piece.max(1)) {
                if peer.write_all(part).await.is_err() {
                    return;
                }
            }
            // Dropping `peer` ends the stream.
        });
        let mut src = BufIo::new(src);
        let mut dst = Vec::new();
        let result =
            copy_body(&mut src, &mut dst, framing, Duration::from_secs(10)).await.map_err(|e| format!("{e:?}"));
        let mut rest = Vec::new();
        src.read_to_end(&mut rest).await.unwrap();
        writer.await.unwrap();
        (result, dst, rest)
    })
}

// ---- HTTP/1 heads ----

proptest! {
    #![proptest_config(config())]

    #[test]
    fn peek_sni_never_panics_on_records_of_any_content(
        body in prop::collection::vec(any::<u8>(), 0..600),
        claimed in 0u16..700,
    ) {
        let mut record = vec![0x16, 0x03, 0x01];
        record.extend_from_slice(&claimed.to_be_bytes());
        record.extend_from_slice(&body);
        let _ = strata::layers::tls::peek_sni(&record);
    }

    #[test]
    fn parse_request_never_panics_on_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        max_headers in 0usize..300,
    ) {
        if let Ok(Some((_, len))) = parse_request(&bytes, &limits(max_headers)) {
            prop_assert!(len <= bytes.len());
        }
    }

    #[test]
    fn parse_response_never_panics_on_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        max_headers in 0usize..300,
    ) {
        if let Ok(Some((_, len))) = parse_response(&bytes, &limits(max_headers)) {
            prop_assert!(len <= bytes.len());
        }
    }

    #[test]
    fn parse_request_never_panics_on_http_looking_bytes(
        text in "(GET|POST|CONNECT|[A-Z]{1,4}) [ -~]{0,20} HTTP/1\\.[0-9](\r?\n[ -~\t\r\0]{0,30}){0,6}(\r\n|\n){0,3}",
    ) {
        let bytes = text.into_bytes();
        if let Ok(Some((_, len))) = parse_request(&bytes, &limits(100)) {
            prop_assert!(len <= bytes.len());
        }
    }

    /// Mutated valid heads: no panic; whatever is still accepted re-serialises to bytes that parse to
    /// the same head (what strata forwards means what it read).
    #[test]
    fn mutated_request_heads_never_panic_and_accepted_ones_are_stable(
        head in request_head(),
        mutations in prop::collection::vec(mutation(), 1..6),
        body in prop::collection::vec(any::<u8>(), 0..16),
    ) {
        let mut bytes = request_bytes(&head);
        bytes.extend_from_slice(&body);
        let bytes = mutate(bytes, &mutations);
        if let Ok(Some((parsed, len))) = parse_request(&bytes, &limits(100)) {
            prop_assert!(len <= bytes.len());
            let again = request_bytes(&parsed);
            match parse_request(&again, &limits(100)) {
                Ok(Some((reparsed, n))) => {
                    prop_assert_eq!(n, again.len());
                    prop_assert_eq!(reparsed, parsed);
                }
                other => prop_assert!(false, "accepted {:?}, but its re-serialisation {:?} gives {:?}",
                    String::from_utf8_lossy(&bytes), String::from_utf8_lossy(&again), other),
            }
        }
    }

    #[test]
    fn mutated_response_heads_never_panic(
        head in response_head(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let mut bytes = Vec::new();
        write_response_head(&head, &mut bytes);
        let bytes = mutate(bytes, &mutations);
        if let Ok(Some((_, len))) = parse_response(&bytes, &limits(100)) {
            prop_assert!(len <= bytes.len());
        }
    }

    /// A valid request round-trips through `write_request_head` and `parse_request`; every proper prefix
    /// is incomplete (never an error, never a shorter head), and bytes after the head are not used.
    #[test]
    fn valid_request_round_trips_and_its_prefixes_are_incomplete(
        head in request_head(),
        after in prop::collection::vec(any::<u8>(), 0..16),
    ) {
        let bytes = request_bytes(&head);
        for cut in 0..bytes.len() {
            let prefix = parse_request(&bytes[..cut], &limits(100));
            prop_assert!(matches!(prefix, Ok(None)), "prefix {:?} gave {:?}", String::from_utf8_lossy(&bytes[..cut]), prefix);
        }
        let mut with_more = bytes.clone();
        with_more.extend_from_slice(&after);
        match parse_request(&with_more, &limits(100)) {
            Ok(Some((parsed, len))) => {
                prop_assert_eq!(len, bytes.len());
                prop_assert_eq!(parsed, head);
            }
            other => prop_assert!(false, "{:?} gave {:?}", String::from_utf8_lossy(&bytes), other),
        }
    }

    #[test]
    fn valid_response_round_trips(head in response_head()) {
        let mut bytes = Vec::new();
        write_response_head(&head, &mut bytes);
        match parse_response(&bytes, &limits(100)) {
            Ok(Some((parsed, len))) => {
                prop_assert_eq!(len, bytes.len());
                prop_assert_eq!(parsed.status, head.status);
                prop_assert_eq!(parsed.version, head.version);
                prop_assert_eq!(parsed.headers, head.headers);
            }
            other => prop_assert!(false, "{:?} gave {:?}", String::from_utf8_lossy(&bytes), other),
        }
    }

    /// Whatever status line a server sends, strata either refuses it or writes back the same status.
    #[test]
    fn response_status_survives_reserialisation(code in "[0-9]{3}", reason in "[ -~]{0,10}") {
        let text = format!("HTTP/1.1 {code} {reason}\r\nContent-Length: 0\r\n\r\n");
        if let Ok(Some((head, _))) = parse_response(text.as_bytes(), &limits(100)) {
            let mut out = Vec::new();
            write_response_head(&head, &mut out);
            let written = String::from_utf8_lossy(&out).into_owned();
            prop_assert!(written.starts_with(&format!("HTTP/1.1 {code} ")),
                "read status {}, wrote {:?}", code, written);
        }
    }
}

// ---- chunked bodies ----

proptest! {
    #![proptest_config(config())]

    #[test]
    fn parse_chunk_size_never_panics(line in prop::collection::vec(any::<u8>(), 0..40)) {
        if let Ok(n) = parse_chunk_size(&line) {
            // Whatever is accepted starts with the hex digits of the value.
            let digits: Vec<u8> = line.iter().copied().take_while(u8::is_ascii_hexdigit).collect();
            prop_assert_eq!(u64::from_str_radix(std::str::from_utf8(&digits).unwrap(), 16).ok(), Some(n));
        }
    }

    /// Valid chunk-size lines are read with their value, extensions or not.
    #[test]
    fn parse_chunk_size_reads_every_hex_form(
        value in 0u64..(1 << 60),
        width in 0usize..4,
        upper in any::<bool>(),
        ext in prop::option::of("([ \t]{0,2};[ \t]{0,2}[a-z]{1,5}([ \t]?=[ \t]?([a-z0-9]{1,6}|\"[a-z0-9 ;=]{0,6}\"))?){1,3}"),
    ) {
        let digits = if upper { format!("{value:0width$X}") } else { format!("{value:0width$x}") };
        prop_assume!(digits.len() <= 15);
        let line = format!("{digits}{}", ext.unwrap_or_default());
        prop_assert_eq!(parse_chunk_size(line.as_bytes()), Ok(value));
    }

    /// Lines built from the bytes that matter: accepted exactly when they are a strict chunk-size line.
    #[test]
    fn parse_chunk_size_accepts_exactly_the_hex_forms(
        digits in "[0-9a-fA-F]{0,17}",
        tail in proptest::string::bytes_regex("(?s-u:[0-9a-fA-FxX+\\- ;\t=\r\n\x0b\x0c\x00gG\"\\\\]{0,8})").unwrap(),
    ) {
        let mut line = digits.into_bytes();
        line.extend_from_slice(&tail);
        let got = parse_chunk_size(&line).ok();
        prop_assert_eq!(got, strict_chunk_size(&line), "line {:?}", String::from_utf8_lossy(&line));
    }

    /// Random chunk sizes, extensions and trailers: `copy_body` forwards the same payload, canonically
    /// framed, with the trailers, and leaves the bytes after the body (a pipelined request) unread.
    #[test]
    fn chunked_bodies_survive_copy_body(
        payload in prop::collection::vec(any::<u8>(), 0..20_000),
        sizes in prop::collection::vec(1usize..5000, 0..12),
        extensions in prop::collection::vec(any::<bool>(), 12),
        trailers in prop::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,10}", "[!-~]([ !-~]{0,10}[!-~])?"), 0..3),
        piece in 1usize..3000,
        pipe in 1usize..70_000,
    ) {
        let mut input = chunked_wire(&payload, &sizes, &extensions, &trailers);
        input.extend_from_slice(b"GET /next HTTP/1.1\r\n\r\n");
        let (result, out, rest) = run_copy_body(input, piece, pipe, Framing::Chunked);
        prop_assert_eq!(result, Ok(payload.len() as u64));
        let (decoded, got_trailers, used) = decode_canonical_chunked(&out);
        prop_assert_eq!(used, out.len(), "bytes after the last chunk");
        prop_assert_eq!(decoded, payload);
        // Fields that must not be trailers (RFC 9110 section 6.5.1) are dropped; the rest go through.
        let want: Vec<String> = trailers
            .iter()
            .filter(|(n, _)| strata::http::fields::is_allowed_in_trailers(n))
            .map(|(n, v)| format!("{n}: {v}"))
            .collect();
        prop_assert_eq!(got_trailers, want);
        prop_assert_eq!(rest, b"GET /next HTTP/1.1\r\n\r\n".to_vec());
    }

    /// A Content-Length body: exactly that many bytes go through, the rest stays.
    #[test]
    fn length_bodies_survive_copy_body(
        payload in prop::collection::vec(any::<u8>(), 0..20_000),
        after in prop::collection::vec(any::<u8>(), 0..100),
        piece in 1usize..3000,
        pipe in 1usize..70_000,
    ) {
        let mut input = payload.clone();
        input.extend_from_slice(&after);
        let (result, out, rest) = run_copy_body(input, piece, pipe, Framing::Length(payload.len() as u64));
        prop_assert_eq!(result, Ok(payload.len() as u64));
        prop_assert_eq!(out, payload);
        prop_assert_eq!(rest, after);
    }

    /// Corrupting a chunked body never panics and never yields more payload than was sent.
    #[test]
    fn corrupted_chunked_bodies_never_panic(
        payload in prop::collection::vec(any::<u8>(), 0..3000),
        sizes in prop::collection::vec(1usize..700, 0..6),
        mutations in prop::collection::vec(mutation(), 1..4),
        piece in 1usize..500,
    ) {
        let input = mutate(chunked_wire(&payload, &sizes, &[], &[]), &mutations);
        let len = input.len() as u64;
        let (result, out, _) = run_copy_body(input, piece, 4096, Framing::Chunked);
        if let Ok(n) = result {
            prop_assert!(n <= len);
            prop_assert!(out.len() as u64 >= n);
        }
    }
}

// ---- SOCKS5 ----

proptest! {
    #![proptest_config(config())]

    #[test]
    fn socks5_parsers_never_panic_or_overclaim(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(Some((_, len))) = socks5::parse_greeting(&bytes) {
            prop_assert!(len <= bytes.len());
        }
        if let Ok(Some((_, len))) = socks5::parse_request(&bytes) {
            prop_assert!(len <= bytes.len());
        }
        if let Ok(Some((_, len))) = socks5::parse_user_pass(&bytes) {
            prop_assert!(len <= bytes.len());
        }
    }

    /// SOCKS5-shaped input (right version bytes, plausible lengths): same guarantees, plus every prefix
    /// of an accepted message is incomplete.
    #[test]
    fn socks5_shaped_messages_never_overclaim(
        kind in 0u8..3,
        second in prop_oneof![Just(1u8), any::<u8>()],
        atyp in prop_oneof![Just(1u8), Just(3u8), Just(4u8), any::<u8>()],
        rest in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut bytes = match kind {
            0 => vec![5, second],
            1 => vec![1, second],
            _ => vec![5, second, 0, atyp],
        };
        bytes.extend_from_slice(&rest);
        type Check = fn(&[u8]) -> Option<Result<usize, ()>>;
        let checks: [Check; 3] = [
            |b| socks5::parse_greeting(b).map(|p| p.map(|(_, n)| n)).map_err(|_| ()).transpose(),
            |b| socks5::parse_user_pass(b).map(|p| p.map(|(_, n)| n)).map_err(|_| ()).transpose(),
            |b| socks5::parse_request(b).map(|p| p.map(|(_, n)| n)).map_err(|_| ()).transpose(),
        ];
        let check = checks[kind as usize];
        if let Some(Ok(len)) = check(&bytes) {
            prop_assert!(len <= bytes.len());
            for cut in 0..len {
                prop_assert_eq!(check(&bytes[..cut]), None, "prefix of {} bytes of an accepted message", cut);
            }
            prop_assert_eq!(check(&bytes[..len]), Some(Ok(len)));
        }
    }
}

// ---- filter expressions and host:port ----

fn filter_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "~d",
            "~u",
            "~c",
            "~q",
            "~s",
            "~e",
            "~h",
            "~hq",
            "~b",
            "~m",
            "~src",
            "~dst",
            "~t",
            "~all",
            "~websocket",
            "~tcp",
            "~x",
            "~",
            "!",
            "&",
            "|",
            "(",
            ")",
            "\"",
            "'",
            "\\",
            " ",
            "\t",
            "a",
            "200",
            "99999",
            ".*",
            "[",
            "(?",
            "ü",
            "日本",
            "\\\"",
            "a|b",
            "a&b",
        ])
        .prop_map(str::to_string),
        "[ -~]{1,4}",
        any::<char>().prop_map(String::from),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn filter_parse_never_panics_on_arbitrary_strings(text in any::<String>()) {
        if let Err(e) = Filter::parse(&text) {
            prop_assert!(e.position <= text.chars().count());
        }
    }

    #[test]
    fn filter_parse_never_panics_on_filter_like_strings(pieces in prop::collection::vec(filter_piece(), 0..24)) {
        let text: String = pieces.concat();
        match Filter::parse(&text) {
            Ok(filter) => prop_assert_eq!(filter.as_str(), text.as_str()),
            Err(e) => prop_assert!(e.position <= text.chars().count(), "{e}"),
        }
    }

    #[test]
    fn split_host_port_never_panics(text in any::<String>(), shaped in "[\\[\\]:0-9a-f.@/ ]{0,24}") {
        for s in [&text, &shaped] {
            if let Some((host, _)) = split_host_port(s) {
                prop_assert!(!host.is_empty());
            }
        }
    }

    #[test]
    fn split_host_port_reads_what_was_joined(
        host in prop_oneof!["[a-z0-9-]{1,20}(\\.[a-z0-9-]{1,20}){0,3}", "[0-9]{1,3}(\\.[0-9]{1,3}){3}"],
        v6 in any::<[u16; 8]>(),
        port in any::<u16>(),
    ) {
        prop_assert_eq!(split_host_port(&format!("{host}:{port}")), Some((host.clone(), Some(port))));
        prop_assert_eq!(split_host_port(&host), Some((host.clone(), None)));
        let v6 = std::net::Ipv6Addr::from(v6).to_string();
        prop_assert_eq!(split_host_port(&format!("[{v6}]:{port}")), Some((v6.clone(), Some(port))));
        prop_assert_eq!(split_host_port(&format!("[{v6}]")), Some((v6, None)));
    }
}

/// Deep nesting must be refused with an error, not overflow the recursive parser's stack.
#[test]
fn deeply_nested_filters_are_refused_without_stack_overflow() {
    for text in ["(".repeat(100_000), "!".repeat(100_000), format!("{}~q{}", "(".repeat(5000), ")".repeat(5000))] {
        assert!(Filter::parse(&text).is_err(), "{}...", &text[..10]);
    }
    let ok = format!("{}~q{}", "(".repeat(50), ")".repeat(50));
    assert!(Filter::parse(&ok).is_ok());
}
