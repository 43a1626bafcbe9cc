//! URLs and authorities (`host`, `host:port`, `[v6]`, `[v6]:port`) as absolute-form request targets,
//! Host fields, CONNECT targets, HAR files and command-line URLs write them (RFC 3986, RFC 9110 section 4).
//! The one parser for them in strata, strict on purpose: a host that two parsers could read differently
//! is refused, not guessed.

use std::net::Ipv6Addr;

/// The scheme of an http(s) URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    /// The port a URL of this scheme means when it names none.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// `http` or `https`, in any case.
    pub fn from_name(name: &str) -> Option<Scheme> {
        if name.eq_ignore_ascii_case("http") {
            Some(Scheme::Http)
        } else if name.eq_ignore_ascii_case("https") {
            Some(Scheme::Https)
        } else {
            None
        }
    }
}

/// An absolute http(s) URL, split: `scheme://authority[/path][?query]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbsoluteUrl<'a> {
    pub scheme: Scheme,
    /// The authority as written; check it with `split_host_port`.
    pub authority: &'a str,
    /// The path and query, `/` when the URL has none (RFC 9112 section 3.2.1).
    pub path: String,
}

/// Splits an absolute http(s) URL; `None` if `url` does not start with `http://` or `https://`. A
/// fragment is not expected (request targets have none) and stays part of the path.
pub fn split_url(url: &str) -> Option<AbsoluteUrl<'_>> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = Scheme::from_name(scheme)?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = if path.starts_with('?') { format!("/{path}") } else { path.to_string() };
    Some(AbsoluteUrl { scheme, authority, path })
}

/// Splits an authority into host and port (`None` when absent); `None` if it is malformed.
///
/// A host is a name of letters, digits, `-`, `.`, `_` and `~` (RFC 3986's unreserved characters; the
/// sub-delimiters it also allows are refused, as no DNS name contains them), or an IPv6 literal in
/// brackets. A port is 1 to 5 digits up to 65535. User information (`user@host`), whitespace, control
/// characters, paths and an empty port (`host:`) are all refused.
pub fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        host.parse::<Ipv6Addr>().ok()?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        let (host, port) = match s.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (s, None),
        };
        if host.is_empty() || !host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b)) {
            return None;
        }
        (host, port)
    };
    let port = match port {
        Some(p) if (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse::<u16>().ok()?),
        Some(_) => return None,
        None => None,
    };
    Some((host.to_string(), port))
}

/// True if two authorities name the same host and port; a missing port means `default_port`. Host
/// names compare without regard to case (RFC 3986 section 6.2.2.1).
pub fn is_same_authority(a: &str, b: &str, default_port: u16) -> bool {
    match (split_host_port(a), split_host_port(b)) {
        (Some((host_a, port_a)), Some((host_b, port_b))) => {
            host_a.eq_ignore_ascii_case(&host_b) && port_a.unwrap_or(default_port) == port_b.unwrap_or(default_port)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_ips_and_ports() {
        assert_eq!(split_host_port("a:1"), Some(("a".into(), Some(1))));
        assert_eq!(split_host_port("[::1]:8"), Some(("::1".into(), Some(8))));
        assert_eq!(split_host_port("[::1]"), Some(("::1".into(), None)));
        assert_eq!(split_host_port("a"), Some(("a".into(), None)));
        assert_eq!(split_host_port("127.0.0.1:65535"), Some(("127.0.0.1".into(), Some(65535))));
        assert_eq!(split_host_port("my_host.example"), Some(("my_host.example".into(), None)));
    }

    #[test]
    fn refuses_what_another_parser_could_read_differently() {
        for bad in [
            "",
            ":80",
            "a:",
            "a:b",
            "a:65536",
            "a:+80",
            "a:123456",
            "a b",
            "a\0b",
            "a\tb",
            "user@a",
            "a/b",
            "a:80/",
            "a,b",
            "a;b",
            "::1",
            "[::1",
            "[v6]:80",
            "[::1]x",
            "[::1]:",
            "a:80:81",
            "é.example",
        ] {
            assert_eq!(split_host_port(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn absolute_urls_split_into_scheme_authority_and_path() {
        let url = split_url("HTTP://a.example:8080?q=1").unwrap();
        assert_eq!((url.scheme, url.authority, url.path.as_str()), (Scheme::Http, "a.example:8080", "/?q=1"));
        let url = split_url("https://[::1]/x/y?z").unwrap();
        assert_eq!((url.scheme, url.authority, url.path.as_str()), (Scheme::Https, "[::1]", "/x/y?z"));
        assert_eq!(split_url("/relative"), None);
        assert_eq!(split_url("ftp://a/"), None);
    }

    #[test]
    fn same_authority_fills_in_the_default_port() {
        assert!(is_same_authority("Example.com", "example.COM:80", 80));
        assert!(is_same_authority("[::1]:443", "[::1]", 443));
        assert!(!is_same_authority("example.com", "example.com:8080", 80));
        assert!(!is_same_authority("a.example", "b.example", 80));
        assert!(!is_same_authority("a.example", "a b", 80));
    }
}
