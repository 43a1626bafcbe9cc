//! Arbitrary bytes as each SOCKS5 message: never a panic, never more bytes claimed than given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::layers::socks5::{parse_greeting, parse_request, parse_user_pass};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((_, len))) = parse_greeting(data) {
        assert!(len <= data.len());
    }
    if let Ok(Some((_, len))) = parse_user_pass(data) {
        assert!(len <= data.len());
    }
    if let Ok(Some((_, len))) = parse_request(data) {
        assert!(len <= data.len());
    }
});
