//! `examples/embed.rs`: a program embedding strata with its own addon works through a real client.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{curl, Origin, Strata};

/// The example's binary, which `cargo test` builds next to the test binaries.
fn example(name: &str) -> PathBuf {
    let deps = std::env::current_exe().expect("test binary path");
    deps.parent().and_then(|d| d.parent()).expect("target dir").join("examples").join(name)
}

#[test]
fn an_embedding_program_runs_its_own_addon_beside_the_built_in_ones() {
    let origin = Origin::start();
    let mut proxy = Strata::start_program(&example("embed"), &[]);
    let got = curl(&proxy, &["-s", "-i", &origin.url("/hello")]);
    proxy.check(got.stdout.to_ascii_lowercase().contains("x-served-by: embed"), format!("no stamp:\n{}", got.stdout));
    // The built-in flow log still prints the flow.
    proxy.wait_for_stdout_line(|l| l.contains("/hello -> 200"), Duration::from_secs(5));
    proxy.signal(libc::SIGTERM);
    proxy.wait_for_exit(Duration::from_secs(10));
    let stderr = proxy.stderr_text();
    proxy.check(stderr.contains("1 requests to 127.0.0.1"), format!("no summary at done:\n{stderr}"));
}
