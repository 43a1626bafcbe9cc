//! The web UI in a real browser: tests/web_ui/ui.mjs drives Debian's chromium with playwright-core against
//! `strata --web` and checks the page: rows appear live, the filter and its error, a JSON body indented and
//! foldable, an image shown, replay, intercept with an edit and with a kill, edit and send, sorting, a
//! selection exported as HAR, WebSocket messages (sent with the `ws` library) with direction and time.
//! Needs node, chromium and `npm ci` in tests/web_ui; .ci/run does all three. A missing one fails the test
//! with a message that names it.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{run_with_timeout, Strata};

/// Bound on the whole browser run.
const BROWSER_RUN: Duration = Duration::from_secs(90);

#[test]
fn the_page_shows_live_rows_filters_and_bodies_in_chromium() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web_ui");
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run `npm ci` in tests/web_ui (.ci/run does)"
    );
    let proxy = Strata::start(&["--web", "--web-port", "0"]);
    let line = proxy.wait_for_stderr_line(|l| l.starts_with("web UI at "), Duration::from_secs(10));
    let url = line.trim().trim_start_matches("web UI at ").to_string();
    let mut node = Command::new("node");
    node.arg(dir.join("ui.mjs"))
        .current_dir(&dir)
        .env("STRATA_UI", &url)
        .env("STRATA_PROXY", proxy.proxy_url())
        .env("HOME", tempfile::tempdir().unwrap().keep());
    for name in
        ["http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"]
    {
        node.env_remove(name);
    }
    let done = run_with_timeout(node, BROWSER_RUN);
    println!("{}", done.stdout);
    proxy.check(
        done.status.success() && done.stdout.trim_end().ends_with("ok"),
        format!("the browser run failed ({}):\n{}\n{}", done.status, done.stdout, done.stderr),
    );
}
