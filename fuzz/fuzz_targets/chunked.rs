//! Arbitrary bytes as a chunk-size line, and as a chunked body relayed by `copy_body`: never a panic,
//! never more payload out than bytes in.
#![no_main]

use std::io::Cursor;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use strata::io::BufIo;
use strata::layers::http1::codec::{copy_body, parse_chunk_size, Framing};

fuzz_target!(|data: &[u8]| {
    let _ = parse_chunk_size(data);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let mut src = BufIo::new(Cursor::new(data.to_vec()));
    let mut out = Vec::new();
    let copied = runtime.block_on(copy_body(&mut src, &mut out, Framing::Chunked, Duration::from_secs(1)));
    if let Ok(n) = copied {
        assert!(n <= data.len() as u64 && n <= out.len() as u64);
    }
});
