//! Field syntax shared by heads and trailers (RFC 9110 section 5): tokens, comma-separated lists, and
//! the fields that must never arrive as trailers.

/// True if `s` is a non-empty `token` (RFC 9110 section 5.6.2): the syntax of field names, methods and
/// transfer codings.
pub fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The members of a comma-separated list field (RFC 9110 section 5.6.1), over all of its field lines,
/// with surrounding whitespace removed. Empty members (`, chunked` or `a,,b`) are skipped, as the RFC
/// tells recipients to do.
pub fn list_members<'a>(values: impl Iterator<Item = &'a [u8]>) -> impl Iterator<Item = &'a [u8]> {
    values.flat_map(|v| v.split(|&b| b == b',')).map(<[u8]>::trim_ascii).filter(|m| !m.is_empty())
}

/// Fields whose meaning is needed before the content, so a sender must not put them in trailers
/// (RFC 9110 section 6.5.1): framing, routing, request modifiers, authentication, response control data,
/// how to process the content, and connection options. A proxy that passed them on would let a client
/// make a server act on a field that nothing in front of the server checked.
const NOT_IN_TRAILERS: &[&str] = &[
    // Framing (RFC 9112 section 6).
    "content-length",
    "transfer-encoding",
    "trailer",
    // Routing.
    "host",
    // Request modifiers: controls and conditionals (RFC 9110 sections 7.8, 10.1, 13).
    "cache-control",
    "expect",
    "max-forwards",
    "pragma",
    "range",
    "te",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "if-range",
    // Authentication and state (RFC 9110 section 11, RFC 6265).
    "authorization",
    "proxy-authorization",
    "www-authenticate",
    "proxy-authenticate",
    "authentication-info",
    "proxy-authentication-info",
    "cookie",
    "set-cookie",
    // Response control data (RFC 9110 section 10.2).
    "age",
    "date",
    "expires",
    "location",
    "retry-after",
    "vary",
    // Processing the content (RFC 9110 section 8).
    "content-encoding",
    "content-type",
    "content-range",
    // Connection options (RFC 9110 section 7.6.1).
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
];

/// True if a field named `name` may be passed on as a trailer.
pub fn is_allowed_in_trailers(name: &str) -> bool {
    !NOT_IN_TRAILERS.iter().any(|f| name.eq_ignore_ascii_case(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_tchars_only() {
        assert!(is_token(b"GET"));
        assert!(is_token(b"M-SEARCH"));
        assert!(is_token(b"x!#$%&'*+.^_`|~9"));
        assert!(!is_token(b""));
        assert!(!is_token(b"G(T"));
        assert!(!is_token(b"GE T"));
        assert!(!is_token(b"\"chunked\""));
        assert!(!is_token(b"chunked\x0b"));
    }

    #[test]
    fn list_members_skip_empty_elements_and_whitespace() {
        let lines: [&[u8]; 2] = [b" ,chunked", b"a ,, b\t"];
        let members: Vec<&[u8]> = list_members(lines.into_iter()).collect();
        assert_eq!(members, [&b"chunked"[..], b"a", b"b"]);
    }

    #[test]
    fn framing_routing_and_auth_fields_are_not_trailers() {
        for name in ["Content-Length", "TRANSFER-ENCODING", "Host", "Authorization", "Cookie", "Trailer"] {
            assert!(!is_allowed_in_trailers(name), "{name}");
        }
        for name in ["X-Checksum", "Server-Timing", "Digest", "grpc-status"] {
            assert!(is_allowed_in_trailers(name), "{name}");
        }
    }
}
