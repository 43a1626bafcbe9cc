//! Options through the real binary, as a user meets them: `--set NAME=VALUE`, `CONFDIR/config.yaml` and
//! `--options`. Each test looks at what changes for the user (which headers the origin receives, which
//! flow lines appear) or at the exit code and the one stderr line of a refusal. The origin is the
//! harness's plain HTTP/1.1 server, whose `/echo` names the request headers it read.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{curl, refusal, run_with_timeout, Finished, Origin, Strata};

/// Bound on a run that should end by itself (a refusal at start, or `--options`).
const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

/// Bound on waits for something that should happen at once.
const SOON: Duration = Duration::from_secs(10);

/// A conditional request header that `anticache` removes.
const IF_NONE_MATCH: &str = "If-None-Match: \"v1\"";

/// A temp confdir holding `yaml` as config.yaml.
fn confdir_with(yaml: &str) -> tempfile::TempDir {
    let confdir = tempfile::tempdir().expect("create temp confdir");
    std::fs::write(confdir.path().join("config.yaml"), yaml).expect("write config.yaml");
    confdir
}

/// Runs strata with `--confdir confdir -p 0 args` until it exits by itself.
fn run_in(confdir: &Path, args: &[&str]) -> Finished {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.arg("--confdir").arg(confdir).args(["-p", "0"]).args(args);
    run_with_timeout(cmd, EXIT_TIMEOUT)
}

/// The names of the request headers the origin read for `GET /echo` through `proxy` with curl `extra`.
fn headers_seen(proxy: &Strata, origin: &Origin, extra: &[&str]) -> Vec<String> {
    let url = origin.url("/echo");
    let mut args = vec!["-i"];
    args.extend_from_slice(extra);
    args.push(&url);
    let done = curl(proxy, &args);
    let line = done.stdout.lines().find_map(|l| l.strip_prefix("x-seen-headers:"));
    let line = line.unwrap_or_else(|| proxy.fail(&format!("no x-seen-headers in:\n{}", done.stdout)));
    line.trim().split(',').map(str::to_string).collect()
}

fn has(headers: &[String], name: &str) -> bool {
    headers.iter().any(|h| h == name)
}

#[test]
fn set_anticache_true_keeps_if_none_match_from_the_origin() {
    let origin = Origin::start();
    let proxy = Strata::start(&["--set", "anticache=true"]);
    let seen = headers_seen(&proxy, &origin, &["-H", IF_NONE_MATCH]);
    proxy.check(!has(&seen, "if-none-match"), format!("origin saw {seen:?}"));
}

#[test]
fn set_anticache_false_lets_if_none_match_through() {
    let origin = Origin::start();
    let proxy = Strata::start(&["--set", "anticache=false"]);
    let seen = headers_seen(&proxy, &origin, &["-H", IF_NONE_MATCH]);
    proxy.check(has(&seen, "if-none-match"), format!("origin saw {seen:?}"));
}

#[test]
fn config_yaml_values_take_effect() {
    let origin = Origin::start();
    let confdir = confdir_with("anticache: true\nmodify_headers:\n  - /~q/x-from-file-a/1\n  - /~q/x-from-file-b/2\n");
    let proxy = Strata::start_in(confdir.path(), &[], &[]);
    let seen = headers_seen(&proxy, &origin, &["-H", IF_NONE_MATCH]);
    proxy.check(!has(&seen, "if-none-match"), format!("anticache from config.yaml: origin saw {seen:?}"));
    proxy.check(
        has(&seen, "x-from-file-a") && has(&seen, "x-from-file-b"),
        format!("modify_headers from config.yaml: origin saw {seen:?}"),
    );
}

#[test]
fn command_line_list_replaces_the_config_yaml_list() {
    let origin = Origin::start();
    let confdir = confdir_with("anticache: true\nmodify_headers: [/~q/x-from-file/1]\n");
    let proxy = Strata::start_in(confdir.path(), &[], &["--set", "modify_headers=/~q/x-from-set/1"]);
    let seen = headers_seen(&proxy, &origin, &["-H", IF_NONE_MATCH]);
    proxy.check(has(&seen, "x-from-set"), format!("origin saw {seen:?}"));
    proxy.check(!has(&seen, "x-from-file"), format!("the file's list should be replaced; origin saw {seen:?}"));
    proxy.check(!has(&seen, "if-none-match"), format!("anticache from the file still applies; origin saw {seen:?}"));
}

#[test]
fn command_line_scalars_beat_config_yaml() {
    let origin = Origin::start();
    let confdir = confdir_with("anticache: true\nflow_detail: 0\n");
    let proxy = Strata::start_in(confdir.path(), &[], &["--set", "anticache=false", "--flow-detail", "2"]);
    let seen = headers_seen(&proxy, &origin, &["-H", IF_NONE_MATCH]);
    proxy.check(has(&seen, "if-none-match"), format!("--set anticache=false should win; origin saw {seen:?}"));
    // flow_detail 2 prints the request head under the flow line; the file's 0 would print nothing.
    proxy.wait_for_stdout_line(|l| l.to_ascii_lowercase().contains("if-none-match"), SOON);
}

#[test]
fn unknown_set_name_exits_2_naming_it() {
    let confdir = tempfile::tempdir().unwrap();
    let line = refusal(&run_in(confdir.path(), &["--set", "bogus=1"]));
    assert_eq!(line, "error: --set: unknown option 'bogus'");
}

#[test]
fn unknown_config_yaml_name_exits_2_naming_the_file_and_the_name() {
    let confdir = confdir_with("bodysize_limit: 1m\n");
    let line = refusal(&run_in(confdir.path(), &[]));
    let path = confdir.path().join("config.yaml");
    assert_eq!(line, format!("error: {}: unknown option 'bodysize_limit'", path.display()));
}

#[test]
fn malformed_config_yaml_exits_2_naming_the_file() {
    let confdir = confdir_with("mode: [regular\n");
    let line = refusal(&run_in(confdir.path(), &[]));
    let path = confdir.path().join("config.yaml");
    assert!(line.starts_with(&format!("error: {}: not valid YAML", path.display())), "{line}");
}

#[test]
fn a_boolean_that_is_neither_exits_2_saying_so() {
    let confdir = tempfile::tempdir().unwrap();
    let line = refusal(&run_in(confdir.path(), &["--set", "anticache=maybe"]));
    assert_eq!(line, "error: --set: 'anticache=maybe' is not true or false");
}

/// A bad regex is one line naming the flag and the pattern (the regex crate's own message is several).
#[test]
fn a_bad_regex_exits_2_with_one_line_naming_the_flag() {
    let confdir = tempfile::tempdir().unwrap();
    let line = refusal(&run_in(confdir.path(), &["--ignore-hosts", "(unclosed"]));
    assert!(line.starts_with("error: ") && line.contains("--ignore-hosts") && line.contains("(unclosed"), "{line}");
    assert!(line.ends_with("unclosed group"), "{line}");
    let line = refusal(&run_in(confdir.path(), &["--modify-body", "/~q/(x/y"]));
    assert!(line.contains("--modify-body") && line.ends_with("unclosed group"), "{line}");
}

#[test]
fn a_bad_value_in_config_yaml_is_checked_like_the_flag_and_names_the_file() {
    let confdir = confdir_with("flow_detail: 9\n");
    let line = refusal(&run_in(confdir.path(), &[]));
    let path = confdir.path().join("config.yaml");
    assert!(line.starts_with(&format!("error: {}: invalid value '9' for '--flow-detail", path.display())), "{line}");
}

#[test]
fn options_lists_every_option_with_its_default_and_help() {
    // A broken config.yaml does not stand in the way of reading the list.
    let confdir = confdir_with("mode: [regular\n");
    let done = run_in(confdir.path(), &["--options"]);
    assert!(done.status.success(), "{:?}\n{}", done.status, done.stderr);
    let text = done.stdout;
    for expected in [
        "\nbody_size_limit: 32m\n",
        "# Largest body held in memory",
        "# Type: SIZE (--body-size-limit).",
        "\nblock_global: true\n",
        "\nhttp2: true\n",
        "\nstream_large_bodies: null\n",
    ] {
        assert!(text.contains(expected), "no {expected:?} in:\n{text}");
    }
}

#[test]
fn stream_large_bodies_is_accepted_and_changes_nothing() {
    let origin = Origin::start();
    let proxy = Strata::start(&["--set", "stream_large_bodies=1m"]);
    let done = curl(&proxy, &[&origin.url("/hello")]);
    proxy.check(done.stdout == "hello, world\n", format!("body {:?}", done.stdout));
}
