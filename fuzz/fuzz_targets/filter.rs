//! Arbitrary text as a filter expression (mitmproxy syntax): never a panic or a stack overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::filter::Filter;

fuzz_target!(|text: &str| {
    if let Err(e) = Filter::parse(text) {
        assert!(e.position <= text.chars().count());
    }
});
