//! Arbitrary bytes as an HTTP/1 request head and as a response head: never a panic, never a head
//! longer than the input, and an accepted request re-serialises to the same head.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::config::Limits;
use strata::layers::http1::codec::{parse_request, parse_response, write_request_head};

const LIMITS: Limits = Limits { max_head_bytes: 64 * 1024, max_headers: 100, max_connections: 10 };

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((head, len))) = parse_request(data, &LIMITS) {
        assert!(len <= data.len());
        let mut again = Vec::new();
        write_request_head(&head, &head.target, &mut again);
        assert_eq!(parse_request(&again, &LIMITS).ok().flatten().map(|(h, _)| h), Some(head));
    }
    if let Ok(Some((_, len))) = parse_response(data, &LIMITS) {
        assert!(len <= data.len());
    }
});
