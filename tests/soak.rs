//! Soak: steady load through the real binary for a bounded time (30 s by default; `SOAK_SECS` to change)
//! while strata's resident memory and open file descriptors are sampled. Both must stay flat: memory
//! may not keep growing after warm-up, and once the load stops the descriptors return to where they were.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{fd_count, Conn, Origin, Strata};

#[test]
fn steady_load_keeps_memory_and_descriptors_flat() {
    let secs: u64 = std::env::var("SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    let origin = Origin::start();
    let proxy = Strata::start(&["-q"]);
    let pid = proxy.pid();
    let fds_at_start = fd_count(pid);
    // Positive control: one open client connection shows in the count, so the count measures something.
    {
        let mut held = Conn::open(proxy.port, Duration::from_secs(5));
        held.send(format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", origin.url("/hello"), origin.authority()).as_bytes());
        assert!(held.read_response().starts_with("HTTP/1.1 200"));
        let with_one = fd_count(pid);
        assert!(
            with_one > fds_at_start,
            "{with_one} fds with a client connected, {fds_at_start} before: is the count right?"
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let requests = Arc::new(AtomicU64::new(0));

    // Four clients: keep-alive connections of 50 requests each, small and 64 KiB responses, and CONNECT
    // tunnels carrying one request, so connections, pools and buffers keep being made and released.
    let clients: Vec<_> = (0..4)
        .map(|client| {
            let (stop, requests) = (stop.clone(), requests.clone());
            let (port, authority) = (proxy.port, origin.authority());
            let urls = [origin.url("/hello"), origin.url("/size/65536")];
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let mut conn = Conn::open(port, Duration::from_secs(5));
                    if client == 3 {
                        conn.send(format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes());
                        assert!(conn.read_head_response().starts_with("HTTP/1.1 200"));
                        conn.send(format!("GET /hello HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes());
                        assert!(conn.read_response().starts_with("HTTP/1.1 200"));
                        requests.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    for i in 0..50 {
                        let url = &urls[i % 2];
                        conn.send(format!("GET {url} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes());
                        let response = conn.read_response();
                        assert!(response.starts_with("HTTP/1.1 200"), "{}", &response[..response.len().min(200)]);
                        requests.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();

    let started = Instant::now();
    let mut samples = Vec::new();
    while started.elapsed() < Duration::from_secs(secs) {
        thread::sleep(Duration::from_secs(1));
        samples.push((proxy.proc_status_kb("VmRSS"), fd_count(pid)));
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().expect("client thread");
    }
    let total = requests.load(Ordering::Relaxed);
    assert!(total > 1000, "only {total} requests in {secs} s");

    // Memory: after the first third (warm-up: allocator arenas, pools, caches), the last third may not sit
    // noticeably above the middle third.
    let third = samples.len() / 3;
    let peak = |s: &[(u64, usize)]| s.iter().map(|(rss, _)| *rss).max().unwrap_or(0);
    let (middle, last) = (peak(&samples[third..2 * third]), peak(&samples[2 * third..]));
    eprintln!("soak: {total} requests in {secs} s; RSS peak middle {middle} KiB, last {last} KiB; fds at start {fds_at_start}");
    assert!(last <= middle + middle / 5 + 2048, "RSS kept growing: {middle} KiB -> {last} KiB over {samples:?}");

    // Descriptors: back to the start once clients are gone and the server pool has been swept.
    let deadline = Instant::now() + Duration::from_secs(15);
    while fd_count(pid) > fds_at_start && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(fd_count(pid), fds_at_start, "file descriptors leaked (samples: {samples:?})");
}
