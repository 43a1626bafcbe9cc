use std::path::Path;

use clap::Parser;

use super::*;

fn option(name: &str) -> OptionDef {
    table().into_iter().find(|o| o.name == name).unwrap_or_else(|| panic!("no option '{name}'"))
}

/// The flags `--set` items become, or the first error's message.
fn set_flags(items: &[&str]) -> Result<Vec<String>, String> {
    let table = table();
    let mut settings = Settings::default();
    for item in items {
        let (name, value) = match item.split_once('=') {
            Some((name, value)) => (name, Given::Text(value.to_string())),
            None => (*item, Given::Bare),
        };
        settings.add(&table, "--set", name, value, item).map_err(|e| e.to_string())?;
    }
    Ok(settings.flags.iter().map(|f| f.to_string_lossy().into_owned()).collect())
}

/// The flags config.yaml `text` becomes, or the first error's message.
fn yaml_flags(text: &str) -> Result<Vec<String>, String> {
    let table = table();
    let mut settings = Settings::default();
    let doc = YamlLoader::load_from_str(text).expect("test YAML").remove(0);
    for (name, value) in doc.as_hash().expect("a mapping") {
        settings.add_yaml(&table, "config.yaml", name.as_str().unwrap(), value).map_err(|e| e.to_string())?;
    }
    Ok(settings.flags.iter().map(|f| f.to_string_lossy().into_owned()).collect())
}

/// Runs `expand` on `strata --confdir DIR ARGS` with `file` (if any) as DIR/config.yaml.
fn expand_with(file: Option<&str>, args: &[&str]) -> Result<Expanded, ConfigError> {
    let confdir = tempfile::tempdir().expect("temp confdir");
    if let Some(text) = file {
        std::fs::write(confdir.path().join(CONFIG_FILE), text).expect("write config.yaml");
    }
    expand_in(confdir.path(), args)
}

fn expand_in(confdir: &Path, args: &[&str]) -> Result<Expanded, ConfigError> {
    let mut argv: Vec<OsString> = vec!["strata".into(), "--confdir".into(), confdir.into()];
    argv.extend(args.iter().map(OsString::from));
    let given = Cli::command().get_matches_from(&argv);
    match expand(&argv, &given)? {
        Start::Run(expanded) => Ok(expanded),
        Start::Describe(_) => panic!("asked to describe"),
    }
}

/// The final `Cli` for a config.yaml and a command line.
fn cli_with(file: Option<&str>, args: &[&str]) -> Cli {
    let expanded = expand_with(file, args).unwrap_or_else(|e| panic!("{e}"));
    assert!(expanded.unclaimed.is_empty(), "{:?}", expanded.unclaimed);
    Cli::try_parse_from(&expanded.argv).unwrap_or_else(|e| panic!("{:?}: {e}", expanded.argv))
}

// ---- the table ----

#[test]
fn names_are_long_flags_with_underscores() {
    let limit = option("body_size_limit");
    assert_eq!(limit.kind, Kind::Value { long: "body-size-limit".into() });
    assert_eq!(limit.default, ["32m"]);
    assert_eq!(limit.value_name.as_deref(), Some("SIZE"));
    assert_eq!(option("ssl_insecure").kind, Kind::Bool { on: Some("ssl-insecure".into()), off: None });
    assert_eq!(option("ssl_insecure").default, ["false"]);
    assert_eq!(option("listen_port").default, ["8080"]);
    assert_eq!(option("verbose").kind, Kind::Count { long: "verbose".into() });
}

#[test]
fn repeatable_flags_are_lists_and_mode_is_one() {
    assert_eq!(option("mode").kind, Kind::List { long: "mode".into() });
    assert_eq!(option("mode").default, ["regular"]);
    assert_eq!(option("modify_headers").kind, Kind::List { long: "modify-headers".into() });
    assert!(option("modify_headers").default.is_empty());
}

#[test]
fn no_flags_fold_into_the_boolean_they_negate() {
    let global = option("block_global");
    assert_eq!(global.kind, Kind::Bool { on: Some("block-global".into()), off: Some("no-block-global".into()) });
    assert_eq!(global.default, ["true"]);
    assert_eq!(option("block_private").default, ["false"]);
    assert_eq!(option("http2").kind, Kind::Bool { on: None, off: Some("no-http2".into()) });
    assert_eq!(option("http2").default, ["true"]);
    let names: Vec<String> = table().into_iter().map(|o| o.name).collect();
    assert!(!names.iter().any(|n| n.starts_with("no_")), "{names:?}");
}

#[test]
fn every_flag_pair_marks_exactly_one_side_as_the_default() {
    let mut command = Cli::command();
    command.build();
    let help = |long: &str| command.get_arguments().find(|a| a.get_long() == Some(long)).map(help_of);
    let mut pairs = 0;
    for arg in command.get_arguments() {
        let Some(base) = arg.get_long().and_then(|l| l.strip_prefix("no-")) else { continue };
        let Some(on_help) = help(base) else { continue };
        let marks = [on_help, help_of(arg)].iter().filter(|h| h.contains(DEFAULT_MARK)).count();
        assert_eq!(marks, 1, "--{base}/--no-{base}: say \"{DEFAULT_MARK})\" in the help of the default side");
        pairs += 1;
    }
    assert!(pairs >= 2, "block_global and block_private are pairs");
}

#[test]
fn meta_arguments_are_not_options() {
    let names: Vec<String> = table().into_iter().map(|o| o.name).collect();
    for meta in ["set", "options", "help", "version", "filter"] {
        assert!(!names.iter().any(|n| n == meta), "{meta} in {names:?}");
    }
    let unique: HashSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "{names:?}");
}

// ---- --set ----

#[test]
fn booleans_take_words_and_a_bare_name_means_true() {
    assert_eq!(set_flags(&["anticache=true"]).unwrap(), ["--anticache"]);
    assert_eq!(set_flags(&["anticache"]).unwrap(), ["--anticache"]);
    assert_eq!(set_flags(&["anticache=false"]).unwrap(), Vec::<String>::new());
    for word in ["yes", "on", "1", "TRUE"] {
        assert_eq!(parse_bool(word), Some(true), "{word}");
    }
    for word in ["no", "off", "0", "False"] {
        assert_eq!(parse_bool(word), Some(false), "{word}");
    }
    assert_eq!(parse_bool("maybe"), None);
}

#[test]
fn booleans_become_whichever_flag_says_it() {
    assert_eq!(set_flags(&["block_global=false"]).unwrap(), ["--no-block-global"]);
    assert_eq!(set_flags(&["block_global=true"]).unwrap(), ["--block-global"]);
    assert_eq!(set_flags(&["http2=false"]).unwrap(), ["--no-http2"]);
    assert_eq!(set_flags(&["http2=true"]).unwrap(), Vec::<String>::new());
}

#[test]
fn values_become_flag_equals_value_even_when_they_start_with_a_dash() {
    assert_eq!(set_flags(&["body_size_limit=1m"]).unwrap(), ["--body-size-limit=1m"]);
    assert_eq!(set_flags(&["connect_timeout=-1"]).unwrap(), ["--connect-timeout=-1"]);
    assert_eq!(set_flags(&["proxyauth=a=b"]).unwrap(), ["--proxyauth=a=b"]);
    assert_eq!(set_flags(&["verbose=2"]).unwrap(), ["--verbose", "--verbose"]);
    assert_eq!(set_flags(&["verbose=0"]).unwrap(), Vec::<String>::new());
}

#[test]
fn repeated_list_settings_append() {
    assert_eq!(
        set_flags(&["modify_headers=/~q/a/1", "modify_headers=/~q/b/2"]).unwrap(),
        ["--modify-headers=/~q/a/1", "--modify-headers=/~q/b/2"]
    );
}

#[test]
fn stream_large_bodies_takes_any_size_and_changes_nothing() {
    for size in ["1m", "512k", "0", "2g"] {
        assert_eq!(set_flags(&[&format!("stream_large_bodies={size}")]).unwrap(), Vec::<String>::new());
    }
    assert_eq!(
        set_flags(&["stream_large_bodies=big"]).unwrap_err(),
        "--set: 'stream_large_bodies=big' is not a size like 32m"
    );
}

#[test]
fn bad_set_values_are_named_as_written() {
    assert_eq!(set_flags(&["anticache=maybe"]).unwrap_err(), "--set: 'anticache=maybe' is not true or false");
    assert_eq!(set_flags(&["verbose=lots"]).unwrap_err(), "--set: 'verbose=lots' is not a count from 0 to 255");
    assert_eq!(set_flags(&["listen_host"]).unwrap_err(), "--set: 'listen_host' needs a value: listen_host=VALUE");
}

#[test]
fn clap_checks_set_values_and_the_error_names_set() {
    let err = check_with_clap("--set", &["--flow-detail=9".into()]).unwrap_err().to_string();
    assert!(err.starts_with("--set: invalid value '9' for '--flow-detail"), "{err}");
    assert!(!err.contains('\n'), "{err}");
}

#[test]
fn unknown_names_are_handed_back_not_rejected() {
    let expanded = expand_with(None, &["--set", "bogus=1", "--set", "bogus=2", "--set", "anticache"]).unwrap();
    let bogus = Unclaimed { origin: "--set".into(), name: "bogus".into(), values: vec!["1".into(), "2".into()] };
    assert_eq!(expanded.unclaimed, [bogus]);
    assert_eq!(reject_unclaimed(&expanded.unclaimed).unwrap_err().to_string(), "--set: unknown option 'bogus'");
    assert!(reject_unclaimed(&[]).is_ok());
}

// ---- config.yaml ----

#[test]
fn yaml_values_become_flags() {
    let flags = yaml_flags(
        "anticache: true\nblock_global: false\nflow_detail: 0\nconnect_timeout: 2.5\n\
         modify_headers:\n  - /~q/a/1\n  - /~q/b/2\nignore_hosts: one\nproxyauth: null\n",
    )
    .unwrap();
    assert_eq!(
        flags,
        [
            "--anticache",
            "--no-block-global",
            "--flow-detail=0",
            "--connect-timeout=2.5",
            "--modify-headers=/~q/a/1",
            "--modify-headers=/~q/b/2",
            "--ignore-hosts=one",
        ]
    );
}

#[test]
fn bad_yaml_values_are_named_as_written() {
    assert_eq!(yaml_flags("anticache: maybe").unwrap_err(), "config.yaml: 'anticache: maybe' is not true or false");
    assert_eq!(
        yaml_flags("listen_host: [a, b]").unwrap_err(),
        "config.yaml: 'listen_host' takes one value, not a list"
    );
    assert_eq!(
        yaml_flags("modify_headers: [{a: 1}]").unwrap_err(),
        "config.yaml: 'modify_headers' has a list item that is not a value"
    );
}

#[test]
fn file_values_apply_when_the_command_line_is_silent() {
    let cli = cli_with(Some("anticache: true\nflow_detail: 2\nmodify_headers: [/~q/a/1, /~q/b/2]\n"), &[]);
    assert!(cli.anticache);
    assert_eq!(cli.flow_detail, 2);
    assert_eq!(cli.modify_headers, ["/~q/a/1", "/~q/b/2"]);
}

#[test]
fn command_line_scalars_beat_the_file() {
    let file = Some("flow_detail: 0\nanticache: true\nblock_global: false\nbody_size_limit: 1k\n");
    let cli = cli_with(file, &["--flow-detail", "2", "--set", "anticache=false", "--block-global"]);
    assert_eq!(cli.flow_detail, 2);
    assert!(!cli.anticache, "--set anticache=false must drop the file's true");
    assert!(!cli.no_block_global);
    assert_eq!(cli.body_size_limit, "1k", "options the command line leaves alone come from the file");
}

#[test]
fn command_line_lists_replace_the_files_list() {
    let file = Some("modify_headers: [/~q/file/1, /~q/file/2]\nmode: [socks5]\n");
    let cli = cli_with(file, &["--modify-headers", "/~q/cli/1", "--set", "modify_headers=/~q/cli/2"]);
    assert_eq!(cli.modify_headers, ["/~q/cli/2", "/~q/cli/1"]);
    assert_eq!(cli.modes.len(), 1, "{:?}", cli.modes);
    let cli = cli_with(file, &["-m", "regular"]);
    assert_eq!(cli.modes.iter().map(|m| m.to_string()).collect::<Vec<_>>(), ["regular"]);
    assert_eq!(cli.modify_headers, ["/~q/file/1", "/~q/file/2"]);
}

#[test]
fn user_arguments_keep_their_place_after_the_options() {
    let expanded = expand_with(Some("anticache: true\n"), &["--set", "anticomp=yes", "~d example.org"]).unwrap();
    let argv: Vec<String> = expanded.argv.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    assert_eq!(argv[..3], ["strata", "--anticache", "--anticomp"]);
    let cli = Cli::try_parse_from(&expanded.argv).unwrap();
    assert_eq!(cli.filter, ["~d example.org"]);
}

#[test]
fn set_names_also_replace_unknown_file_entries() {
    let expanded = expand_with(Some("bogus: 1\nother: [a, b]\n"), &["--set", "bogus=2"]).unwrap();
    let names: Vec<(&str, &str, &[String])> =
        expanded.unclaimed.iter().map(|u| (u.origin.as_str(), u.name.as_str(), u.values.as_slice())).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!(names[0], ("--set", "bogus", &["2".to_string()][..]));
    assert!(names[1].0.ends_with(CONFIG_FILE) && names[1].1 == "other", "{names:?}");
    assert_eq!(names[1].2, ["a", "b"]);
}

#[test]
fn a_missing_or_empty_file_is_no_error() {
    assert!(expand_with(None, &[]).unwrap().argv.len() == 3);
    assert!(expand_with(Some(""), &[]).unwrap().argv.len() == 3);
    assert!(expand_with(Some("# only a comment\n"), &[]).unwrap().argv.len() == 3);
}

#[test]
fn a_confdir_that_is_a_file_is_left_to_config() {
    let file = tempfile::NamedTempFile::new().unwrap();
    assert!(expand_in(file.path(), &[]).is_ok());
}

#[test]
fn malformed_files_are_errors_naming_the_file() {
    for (text, reason) in [
        ("mode: [regular\n", "not valid YAML"),
        ("- a\n- b\n", "not a mapping of option names to values"),
        ("a: 1\n---\nb: 2\n", "more than one YAML document"),
        ("anticache: true\nanticache: false\n", "duplicated key"),
        ("confdir: /tmp\n", "'confdir' cannot be set"),
    ] {
        let err = expand_with(Some(text), &[]).unwrap_err().to_string();
        assert!(err.contains(CONFIG_FILE) && err.contains(reason), "{text:?}: {err}");
        assert!(!err.contains('\n'), "{err}");
    }
}

#[test]
fn values_the_command_line_overrides_are_still_checked() {
    let err = expand_with(Some("flow_detail: 9\n"), &["--flow-detail", "1"]).unwrap_err().to_string();
    assert!(err.contains(CONFIG_FILE) && err.contains("invalid value '9' for '--flow-detail"), "{err}");
}

#[test]
fn set_confdir_says_where_config_yaml_is() {
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::write(elsewhere.path().join(CONFIG_FILE), "anticache: true\n").unwrap();
    let empty = tempfile::tempdir().unwrap();
    let confdir = format!("confdir={}", elsewhere.path().display());
    let expanded = expand_in(empty.path(), &["--set", &confdir]).unwrap();
    assert!(expanded.argv.iter().any(|a| a == "--anticache"), "{:?}", expanded.argv);
}

// ---- --options ----

#[test]
fn options_describes_every_option_as_a_config_yaml_of_defaults() {
    let table = table();
    let text = describe(&table);
    assert!(text.contains("\nbody_size_limit: 32m\n"), "{text}");
    assert!(text.contains("\nblock_global: true\n"), "{text}");
    assert!(text.contains("# Type: SIZE (--body-size-limit)."), "{text}");
    assert!(text.lines().all(|l| l.len() <= DESCRIBE_WIDTH), "{text}");
    let doc = YamlLoader::load_from_str(&text).expect("--options is YAML").remove(0);
    let names: Vec<&str> = doc.as_hash().unwrap().keys().map(|k| k.as_str().unwrap()).collect();
    assert_eq!(names, table.iter().map(|o| o.name.as_str()).collect::<Vec<_>>());

    let cli = cli_with(Some(&text), &[]);
    let defaults = Cli::parse_from(["strata"]);
    assert_eq!(cli.modes, defaults.modes);
    assert_eq!(cli.body_size_limit, defaults.body_size_limit);
    assert_eq!(cli.listen_port, defaults.listen_port);
    assert_eq!((cli.no_block_global, cli.block_private, cli.no_http2), (false, false, false));
}

#[test]
fn options_is_asked_for_before_any_file_is_read() {
    let confdir = tempfile::tempdir().unwrap();
    std::fs::write(confdir.path().join(CONFIG_FILE), "not: [valid").unwrap();
    let argv: Vec<OsString> = vec!["strata".into(), "--confdir".into(), confdir.path().into(), "--options".into()];
    let given = Cli::command().get_matches_from(&argv);
    assert!(matches!(expand(&argv, &given), Ok(Start::Describe(_))));
}
