//! Who may use the proxy: `--block-global` (on by default) and `--block-private`, mitmproxy's
//! `block_global` and `block_private`.
//!
//! `--listen-host 0.0.0.0` (what people do to proxy a phone) would otherwise make strata an open proxy for
//! anyone who can reach the port. The client's address is classified once, when the connection is
//! accepted; a blocked client gets a refusal from the first layer that can give one (`next_layer()` rule 0:
//! an HTTP 403, a SOCKS5 "not allowed by ruleset", otherwise a closed connection) and a warning on stderr
//! says how to allow it. Loopback and link-local clients are never blocked.
//!
//! `--proxyauth` does not lift `--block-global`: credentials sent over plain HTTP to a proxy are readable
//! on the way, and mitmproxy keeps the two separate too. Allowing remote clients is an explicit choice
//! (`--no-block-global`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Where a client address comes from, as far as blocking goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// Loopback, link-local or unspecified: this machine or its own link. Never blocked.
    Local,
    /// Not routable on the internet: RFC 1918, shared (CGNAT), unique-local IPv6, and the other
    /// special-purpose ranges that are not globally reachable (documentation, benchmarking, ...).
    Private,
    /// Globally routable.
    Global,
}

/// Classifies `ip` by the IANA special-purpose address registries (RFC 6890); an IPv4-mapped IPv6
/// address is classified as the IPv4 address it carries.
pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => classify_v4(v4),
            None => classify_v6(v6),
        },
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    if ip.is_loopback() || ip.is_link_local() || ip.is_unspecified() {
        return AddressClass::Local;
    }
    let [a, b, c, _] = ip.octets();
    let not_global = a == 0                          // "this network"
        || a == 10                                   // RFC 1918
        || (a == 100 && (64..128).contains(&b))      // shared address space (CGNAT)
        || (a == 172 && (16..32).contains(&b))       // RFC 1918
        || (a == 192 && b == 0 && c == 0)            // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)            // documentation (TEST-NET-1)
        || (a == 192 && b == 168)                    // RFC 1918
        || (a == 198 && (18..20).contains(&b))       // benchmarking
        || (a == 198 && b == 51 && c == 100)         // documentation (TEST-NET-2)
        || (a == 203 && b == 0 && c == 113)          // documentation (TEST-NET-3)
        || a >= 224; // multicast, reserved, broadcast
    if not_global {
        AddressClass::Private
    } else {
        AddressClass::Global
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    let first = ip.segments()[0];
    if ip.is_loopback() || ip.is_unspecified() || (first & 0xffc0) == 0xfe80 {
        return AddressClass::Local;
    }
    let not_global = (first & 0xfe00) == 0xfc00     // unique local
        || first == 0x2001 && ip.segments()[1] == 0x0db8 // documentation
        || (first & 0xff00) == 0xff00               // multicast
        || first == 0x0100 && ip.segments()[1..4] == [0, 0, 0] // discard-only
        || (first & 0xe000) != 0x2000; // outside global unicast 2000::/3
    if not_global {
        AddressClass::Private
    } else {
        AddressClass::Global
    }
}

/// `--block-global` and `--block-private` as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAccess {
    pub block_global: bool,
    pub block_private: bool,
}

impl Default for ClientAccess {
    /// mitmproxy's defaults: global clients blocked, private ones served.
    fn default() -> Self {
        ClientAccess { block_global: true, block_private: false }
    }
}

impl ClientAccess {
    /// Why a client at `ip` must be refused, if it must.
    pub fn check(&self, ip: IpAddr) -> Option<Blocked> {
        match classify(ip) {
            AddressClass::Global if self.block_global => Some(Blocked { client: ip, class: AddressClass::Global }),
            AddressClass::Private if self.block_private => Some(Blocked { client: ip, class: AddressClass::Private }),
            _ => None,
        }
    }
}

/// A client that the options refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocked {
    pub client: IpAddr,
    pub class: AddressClass,
}

impl fmt::Display for Blocked {
    /// One line for the log and the 403 body: who, which option, and how to allow it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (option, what) = match self.class {
            AddressClass::Private => ("block-private", "a private address"),
            _ => ("block-global", "a publicly routable address"),
        };
        write!(
            f,
            "client {} is not allowed (--{option}: {what}); start strata with --no-{option} to allow it",
            self.client
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(ip: &str) -> AddressClass {
        classify(ip.parse().unwrap())
    }

    #[test]
    fn addresses_are_classified_by_the_special_purpose_registries() {
        for ip in ["127.0.0.1", "169.254.3.4", "0.0.0.0", "::1", "fe80::1", "::ffff:127.0.0.1"] {
            assert_eq!(class(ip), AddressClass::Local, "{ip}");
        }
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "192.0.2.1",
            "fd00::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
            "ff02::1",
        ] {
            assert_eq!(class(ip), AddressClass::Private, "{ip}");
        }
        for ip in ["11.0.0.2", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2a00:1450::1", "::ffff:1.2.3.4"] {
            assert_eq!(class(ip), AddressClass::Global, "{ip}");
        }
    }

    #[test]
    fn defaults_block_global_clients_only_and_name_the_way_out() {
        let access = ClientAccess { block_global: true, block_private: false };
        assert_eq!(access.check("127.0.0.1".parse().unwrap()), None);
        assert_eq!(access.check("192.168.0.5".parse().unwrap()), None);
        let blocked = access.check("11.0.0.2".parse().unwrap()).expect("a global client is blocked");
        let line = blocked.to_string();
        assert!(line.contains("11.0.0.2") && line.contains("--block-global") && line.contains("--no-block-global"));
        let strict = ClientAccess { block_global: false, block_private: true };
        assert!(strict.check("10.0.0.1".parse().unwrap()).unwrap().to_string().contains("--no-block-private"));
        assert_eq!(strict.check("::1".parse().unwrap()), None);
    }
}
