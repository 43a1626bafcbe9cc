//! Options as mitmproxy users know them: every long flag of `cli::Cli` is also an option, named after the
//! flag with `_` for `-` (`--body-size-limit` -> `body_size_limit`), settable with `--set NAME=VALUE` and in
//! `CONFDIR/config.yaml`. The table is derived from clap's own description of `Cli`, so a new flag is a new
//! option. `expand` turns config.yaml and `--set` into ordinary flags placed before the user's own
//! arguments, so clap and `Config::from_cli` check them as they check flags. Names no built-in option
//! claims are handed back (`Expanded::unclaimed`) for options declared later (scripts); `reject_unclaimed`
//! reports what is left. `describe` is `--options`.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::builder::ArgAction;
use clap::parser::ValueSource;
use clap::{Arg, ArgMatches, CommandFactory, FromArgMatches};
use yaml_rust2::{Yaml, YamlEmitter, YamlLoader};

use crate::cli::Cli;
use crate::config::default_confdir;
use crate::error::ConfigError;

/// The file in the confdir that options are read from (mitmproxy's name and layout).
pub const CONFIG_FILE: &str = "config.yaml";

/// `Cli` arguments that steer option handling itself and are therefore not options.
const NOT_OPTIONS: [&str; 2] = ["set", "options"];

/// The option naming the directory config.yaml is read from, so config.yaml cannot set it.
const CONFDIR: &str = "confdir";

/// Words accepted for true and false, in `--set` and in config.yaml (which also takes YAML's own booleans).
const TRUE_WORDS: [&str; 4] = ["true", "yes", "on", "1"];
const FALSE_WORDS: [&str; 4] = ["false", "no", "off", "0"];

/// What the help text of one flag of an `--X`/`--no-X` pair says to mark it as the default, e.g.
/// "Serve clients with private addresses (the default)." The pair's option defaults to that flag's value.
const DEFAULT_MARK: &str = "(the default";

/// Columns of `--options` output, the `# ` of its comments included.
const DESCRIBE_WIDTH: usize = 100;

/// One option: its name, how a value becomes flags, its default and its help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionDef {
    /// `body_size_limit`.
    pub name: String,
    pub kind: Kind,
    /// The default as text: none, one value, or (for a list) any number.
    pub default: Vec<String>,
    /// The flag's help text (both flags' for a true/false pair).
    pub help: String,
    /// What the flag calls its value (`SIZE`, `REGEX`), if it takes one.
    pub value_name: Option<String>,
    /// The clap argument ids behind the option, to tell whether the command line gave it.
    ids: Vec<String>,
}

/// How an option's value becomes command-line flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// true or false. `on` is the flag meaning true (`--anticache`), `off` the one meaning false
    /// (`--no-http2`); where one is missing, that value is the other flag's absence.
    Bool { on: Option<String>, off: Option<String> },
    /// A flag counted by repetition: `verbose: 2` is `--verbose --verbose`.
    Count { long: String },
    /// One value: `--long=VALUE`.
    Value { long: String },
    /// Any number of values, one `--long=VALUE` each.
    List { long: String },
    /// mitmproxy's `stream_large_bodies`: any size is accepted and changes nothing, because strata always
    /// streams bodies it does not need whole.
    IgnoredSize,
}

/// A `--set` or config.yaml entry whose name no built-in option has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unclaimed {
    /// `--set`, or the path of config.yaml.
    pub origin: String,
    pub name: String,
    /// The value as text: one per `--set`, one per item of a YAML list, `true`/`false` for YAML booleans.
    pub values: Vec<String>,
}

/// The command line with config.yaml and `--set` folded in.
#[derive(Debug)]
pub struct Expanded {
    /// What to parse into `Cli`: the program name, the flags from config.yaml (those the command line does
    /// not give), the flags from `--set`, then the user's own arguments unchanged.
    pub argv: Vec<OsString>,
    /// Entries no built-in option claims, `--set` ones first; for a name in both, only `--set`'s.
    pub unclaimed: Vec<Unclaimed>,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Start {
    /// `--options`: print this text and exit.
    Describe(String),
    /// Run with this command line.
    Run(Expanded),
}

/// Every option, in the order of `--help`, then the ones with no flag of their own.
///
/// Derived from clap: a `--X` flag is the boolean `X`; a `--no-X` flag is `X` with false meaning the flag,
/// folded into `--X` if that exists too (the pair's default is the flag whose help says "(the default");
/// a counted flag is a count; a repeatable flag a list; any other flag one value. The positional filter,
/// `--help`, `--version`, `--set` and `--options` are not options.
pub fn table() -> Vec<OptionDef> {
    let mut command = Cli::command();
    command.build();
    let args: Vec<&Arg> = command
        .get_arguments()
        .filter(|a| a.get_long().is_some() && !NOT_OPTIONS.contains(&a.get_id().as_str()))
        .collect();
    let flag = |long: &str| {
        args.iter().copied().find(|a| a.get_long() == Some(long) && matches!(a.get_action(), ArgAction::SetTrue))
    };
    let mut table = Vec::new();
    for &arg in &args {
        let long = arg.get_long().expect("filtered on having a long name");
        let option = match arg.get_action() {
            ArgAction::SetTrue => match long.strip_prefix("no-") {
                Some(base) if flag(base).is_some() => continue, // described with `--{base}`
                Some(base) => bool_option(base, None, Some(arg)),
                None => bool_option(long, Some(arg), flag(&format!("no-{long}"))),
            },
            ArgAction::Count => valued_option(arg, Kind::Count { long: long.to_string() }),
            ArgAction::Append => valued_option(arg, Kind::List { long: long.to_string() }),
            ArgAction::Set => valued_option(arg, Kind::Value { long: long.to_string() }),
            _ => continue, // --help, --version
        };
        table.push(option);
    }
    table.push(OptionDef {
        name: "stream_large_bodies".into(),
        kind: Kind::IgnoredSize,
        default: Vec::new(),
        help: "Accepted for mitmproxy compatibility and ignored: strata always streams bodies that no feature \
               needs whole (see body_size_limit)."
            .into(),
        value_name: Some("SIZE".into()),
        ids: Vec::new(),
    });
    table
}

fn bool_option(name: &str, on: Option<&Arg>, off: Option<&Arg>) -> OptionDef {
    let default = match (on, off) {
        (Some(on), Some(_)) => help_of(on).contains(DEFAULT_MARK),
        (Some(_), None) => false,
        (None, _) => true,
    };
    let help = match (on, off) {
        (Some(on), Some(off)) => format!("true: {}\nfalse: {}", help_of(on), help_of(off)),
        (Some(on), None) => help_of(on),
        (None, Some(off)) => format!("false: {}", help_of(off)),
        (None, None) => String::new(),
    };
    let long = |arg: Option<&Arg>| arg.and_then(Arg::get_long).map(str::to_string);
    OptionDef {
        name: name.replace('-', "_"),
        kind: Kind::Bool { on: long(on), off: long(off) },
        default: vec![default.to_string()],
        help,
        value_name: None,
        ids: on.iter().chain(off.iter()).map(|a| a.get_id().to_string()).collect(),
    }
}

fn valued_option(arg: &Arg, kind: Kind) -> OptionDef {
    OptionDef {
        name: arg.get_long().unwrap_or_default().replace('-', "_"),
        kind,
        default: arg.get_default_values().iter().map(|v| v.to_string_lossy().into_owned()).collect(),
        help: help_of(arg),
        value_name: arg.get_value_names().and_then(|names| names.first()).map(|n| n.to_string()),
        ids: vec![arg.get_id().to_string()],
    }
}

fn help_of(arg: &Arg) -> String {
    arg.get_long_help().or(arg.get_help()).map(|h| h.to_string()).unwrap_or_default()
}

/// Folds `CONFDIR/config.yaml` and `--set` into the command line `args` (whose parse by `Cli::command()`
/// is `given`), or asks for `--options`.
///
/// Precedence, as in mitmproxy: the command line beats config.yaml. An option the command line gives, as a
/// flag or with `--set`, takes nothing from config.yaml (for a list, the command line's values replace the
/// file's). On the command line `--set NAME=VALUE` is the flag itself: a single-valued option given twice
/// is clap's error, as for a repeated flag; a list collects every value, `--set` ones first. config.yaml
/// is read from `--confdir` (or `--set confdir=DIR`), else `~/.strata`; a missing file is no error. Every
/// entry is checked, also those the command line overrides: a malformed file, a value an option cannot
/// take, or `confdir` in the file is an error naming the file. Unknown names are not an error here: see
/// `reject_unclaimed`.
pub fn expand(args: &[OsString], given: &ArgMatches) -> Result<Start, ConfigError> {
    let table = table();
    let cli = Cli::from_arg_matches(given)
        .map_err(|e| ConfigError::Option { origin: "command line".into(), reason: clap_reason(&e) })?;
    if cli.options {
        return Ok(Start::Describe(describe(&table)));
    }
    let from_set = set_settings(&table, &cli.set)?;
    let confdir = match from_set.last_text(CONFDIR) {
        Some(dir) => Some(PathBuf::from(dir)),
        None => cli.confdir.clone().or_else(|| default_confdir().ok()),
    };
    let from_file = match confdir {
        Some(confdir) => file_settings(&table, &confdir.join(CONFIG_FILE))?,
        None => Settings::default(), // no HOME: Config::from_cli says so
    };

    let on_command_line = names_on_command_line(&table, given, &from_set);
    let mut argv = vec![args.first().cloned().unwrap_or_else(|| "strata".into())];
    let file_entries = from_file.entries.iter().filter(|e| !on_command_line.contains(&e.name));
    argv.extend(file_entries.flat_map(|e| e.flags.iter().cloned()));
    argv.extend(from_set.flags);
    argv.extend(args.iter().skip(1).cloned());
    let set_unclaimed: HashSet<String> = from_set.unclaimed.iter().map(|u| u.name.clone()).collect();
    let mut unclaimed = from_set.unclaimed;
    unclaimed.extend(from_file.unclaimed.into_iter().filter(|u| !set_unclaimed.contains(&u.name)));
    Ok(Start::Run(Expanded { argv, unclaimed }))
}

/// The `--set NAME=VALUE` items (`NAME` alone for a boolean's true), checked.
fn set_settings(table: &[OptionDef], items: &[String]) -> Result<Settings, ConfigError> {
    let mut settings = Settings::default();
    for item in items {
        let (name, value) = match item.split_once('=') {
            Some((name, value)) => (name, Given::Text(value.to_string())),
            None => (item.as_str(), Given::Bare),
        };
        settings.add(table, "--set", name, value, item)?;
    }
    check_with_clap("--set", &settings.flags)?;
    Ok(settings)
}

/// The entries of the config.yaml at `path` (none if it does not exist), checked.
fn file_settings(table: &[OptionDef], path: &Path) -> Result<Settings, ConfigError> {
    let origin = path.display().to_string();
    let mut settings = Settings::default();
    for (name, value) in read_config_file(path)? {
        if name == CONFDIR && !value.is_null() {
            let reason = format!("'{CONFDIR}' cannot be set in the file that is read from it");
            return Err(ConfigError::Option { origin, reason });
        }
        settings.add_yaml(table, &origin, &name, &value)?;
    }
    check_with_clap(&origin, &settings.flags)?;
    Ok(settings)
}

/// Fails on the first unclaimed entry, naming it and where it came from:
/// `error: --set: unknown option 'bogus'`.
///
/// This is the hand-off for options declared after start-up. Scripts, loaded later than the built-in
/// options are known, may declare options of their own; the caller first gives each script the entries of
/// `Expanded::unclaimed` carrying its options' names (and removes them), then calls this with what is
/// left. Until scripts exist, `main` calls it right after `expand`, so an unknown name stops start-up.
pub fn reject_unclaimed(unclaimed: &[Unclaimed]) -> Result<(), ConfigError> {
    match unclaimed.first() {
        Some(u) => {
            Err(ConfigError::Option { origin: u.origin.clone(), reason: format!("unknown option '{}'", u.name) })
        }
        None => Ok(()),
    }
}

/// The `--options` text: one block per option, its help and type as comments, then `name: default`. The
/// whole is a valid config.yaml that sets every option to its default.
pub fn describe(table: &[OptionDef]) -> String {
    let mut out = String::new();
    for option in table {
        let help = if option.help.is_empty() { String::new() } else { format!("{}\n", option.help) };
        for line in wrap(&format!("{help}Type: {}.", type_of(option)), DESCRIBE_WIDTH - 2) {
            out.push_str(format!("# {line}").trim_end());
            out.push('\n');
        }
        out.push_str(&yaml_entry(&option.name, &default_yaml(option)));
        out.push_str("\n\n");
    }
    out
}

fn type_of(option: &OptionDef) -> String {
    let value = option.value_name.as_deref().unwrap_or("VALUE");
    match &option.kind {
        Kind::Bool { on: Some(on), off: Some(off) } => format!("bool (true: --{on}, false: --{off})"),
        Kind::Bool { on: Some(on), off: None } => format!("bool (true: --{on})"),
        Kind::Bool { on: None, off: Some(off) } => format!("bool (false: --{off})"),
        Kind::Bool { .. } => "bool".into(),
        Kind::Count { long } => format!("count (--{long} given that many times)"),
        Kind::Value { long } => format!("{value} (--{long})"),
        Kind::List { long } => format!("list of {value} (--{long}, once per item)"),
        Kind::IgnoredSize => format!("{value}, or null"),
    }
}

fn default_yaml(option: &OptionDef) -> Yaml {
    match option.kind {
        Kind::Bool { .. } => Yaml::Boolean(option.default.first().is_some_and(|d| d == "true")),
        Kind::List { .. } => Yaml::Array(option.default.iter().map(|d| typed_scalar(d)).collect()),
        _ => option.default.first().map_or(Yaml::Null, |d| typed_scalar(d)),
    }
}

/// A default as YAML, so that `8080` is written as a number and `32m` as text.
fn typed_scalar(text: &str) -> Yaml {
    if let Ok(n) = text.parse::<i64>() {
        Yaml::Integer(n)
    } else if text.parse::<f64>().is_ok_and(f64::is_finite) {
        Yaml::Real(text.to_string())
    } else {
        Yaml::String(text.to_string())
    }
}

/// `name: value` as YAML text (a list on the lines below its name).
fn yaml_entry(name: &str, value: &Yaml) -> String {
    if value.is_null() {
        return format!("{name}: null");
    }
    let mut entry = yaml_rust2::yaml::Hash::new();
    entry.insert(Yaml::String(name.to_string()), value.clone());
    let mut text = String::new();
    YamlEmitter::new(&mut text).dump(&Yaml::Hash(entry)).expect("a name and plain values always emit");
    text.strip_prefix("---\n").unwrap_or(&text).to_string()
}

/// Greedy word wrap of each line of `text` to `width` columns (a longer word stays whole).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.lines() {
        let mut line = String::new();
        for word in paragraph.split_whitespace() {
            if !line.is_empty() && line.len() + 1 + word.len() > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        lines.push(line);
    }
    lines
}

/// A value as given, before it is checked against an option's kind.
#[derive(Debug, Clone, PartialEq)]
enum Given {
    /// `--set NAME` without `=`: true for a boolean.
    Bare,
    /// `--set` text, or a YAML scalar other than a boolean, as text.
    Text(String),
    /// A YAML boolean.
    Bool(bool),
    /// A YAML sequence of scalars, as text.
    List(Vec<String>),
}

/// One option's flags, from one source.
#[derive(Debug)]
struct Entry {
    name: String,
    flags: Vec<OsString>,
}

/// Settings from one source (`--set`, or config.yaml), turned into flags.
#[derive(Debug, Default)]
struct Settings {
    entries: Vec<Entry>,
    /// Every entry's flags, in order.
    flags: Vec<OsString>,
    /// The last text given per name, for `confdir`.
    texts: Vec<(String, String)>,
    unclaimed: Vec<Unclaimed>,
}

impl Settings {
    /// Adds `name` = `value` from `origin`; `shown` is how the user wrote it, for error messages.
    fn add(
        &mut self,
        table: &[OptionDef],
        origin: &str,
        name: &str,
        value: Given,
        shown: &str,
    ) -> Result<(), ConfigError> {
        let Some(option) = table.iter().find(|o| o.name == name) else {
            let values = match value {
                Given::Bare => Vec::new(),
                Given::Text(text) => vec![text],
                Given::Bool(b) => vec![b.to_string()],
                Given::List(items) => items,
            };
            match self.unclaimed.iter_mut().find(|u| u.name == name) {
                Some(u) => u.values.extend(values),
                None => self.unclaimed.push(Unclaimed { origin: origin.into(), name: name.into(), values }),
            }
            return Ok(());
        };
        let flags =
            flags_for(option, &value, shown).map_err(|reason| ConfigError::Option { origin: origin.into(), reason })?;
        if let Given::Text(text) = value {
            self.texts.push((name.to_string(), text));
        }
        self.flags.extend(flags.iter().cloned());
        self.entries.push(Entry { name: name.to_string(), flags });
        Ok(())
    }

    /// Adds a config.yaml entry; a null value is no entry at all.
    fn add_yaml(&mut self, table: &[OptionDef], origin: &str, name: &str, value: &Yaml) -> Result<(), ConfigError> {
        let bad = |reason: String| ConfigError::Option { origin: origin.into(), reason };
        let given = match value {
            Yaml::Null => return Ok(()),
            Yaml::Boolean(b) => Given::Bool(*b),
            Yaml::Array(items) => Given::List(
                items
                    .iter()
                    .map(|item| {
                        scalar_text(item).ok_or_else(|| bad(format!("'{name}' has a list item that is not a value")))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            other => Given::Text(scalar_text(other).ok_or_else(|| bad(format!("'{name}' has no usable value")))?),
        };
        let shown = match &given {
            Given::Text(text) => format!("{name}: {text}"),
            Given::Bool(b) => format!("{name}: {b}"),
            Given::List(items) => format!("{name}: [{}]", items.join(", ")),
            Given::Bare => name.to_string(),
        };
        self.add(table, origin, name, given, &shown)
    }

    fn last_text(&self, name: &str) -> Option<&str> {
        self.texts.iter().rev().find(|(n, _)| n == name).map(|(_, text)| text.as_str())
    }
}

/// The flags that give `option` the value `value`, or why it cannot take it (`shown` is the setting as the
/// user wrote it).
fn flags_for(option: &OptionDef, value: &Given, shown: &str) -> Result<Vec<OsString>, String> {
    let flag = |long: &str| OsString::from(format!("--{long}"));
    // `--long=VALUE`: a value starting with `-` is not mistaken for a flag.
    let valued = |long: &str, text: &str| OsString::from(format!("--{long}={text}"));
    let name = &option.name;
    match (&option.kind, value) {
        (Kind::Bool { on, off }, value) => {
            let truth = match value {
                Given::Bare => true,
                Given::Bool(b) => *b,
                Given::Text(text) => parse_bool(text).ok_or_else(|| format!("'{shown}' is not true or false"))?,
                Given::List(_) => return Err(format!("'{shown}' is not true or false")),
            };
            let long = if truth { on } else { off };
            Ok(long.iter().map(|l| flag(l)).collect())
        }
        (Kind::Count { long }, Given::Text(text)) => match text.trim().parse::<u8>() {
            Ok(n) => Ok(vec![flag(long); usize::from(n)]),
            Err(_) => Err(format!("'{shown}' is not a count from 0 to 255")),
        },
        (Kind::Count { .. }, _) => Err(format!("'{shown}' is not a count from 0 to 255")),
        (Kind::Value { long } | Kind::List { long }, Given::Text(text)) => Ok(vec![valued(long, text)]),
        (Kind::Value { long } | Kind::List { long }, Given::Bool(b)) => Ok(vec![valued(long, &b.to_string())]),
        (Kind::List { long }, Given::List(items)) => Ok(items.iter().map(|item| valued(long, item)).collect()),
        (Kind::Value { .. }, Given::List(_)) => Err(format!("'{name}' takes one value, not a list")),
        (Kind::Value { .. } | Kind::List { .. }, Given::Bare) => Err(format!("'{name}' needs a value: {name}=VALUE")),
        (Kind::IgnoredSize, Given::Text(text)) if crate::addons::parse_size(text).is_some() => Ok(Vec::new()),
        (Kind::IgnoredSize, _) => Err(format!("'{shown}' is not a size like 32m")),
    }
}

/// true/yes/on/1 or false/no/off/0, in any case.
fn parse_bool(text: &str) -> Option<bool> {
    let text = text.trim().to_ascii_lowercase();
    if TRUE_WORDS.contains(&text.as_str()) {
        Some(true)
    } else if FALSE_WORDS.contains(&text.as_str()) {
        Some(false)
    } else {
        None
    }
}

/// A YAML scalar as text (`8080`, `1.5`, `32m`); None for lists, mappings and aliases.
fn scalar_text(value: &Yaml) -> Option<String> {
    match value {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(n) => Some(n.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The entries of config.yaml at `path`, in file order; none if there is no such file. A confdir that is
/// not a directory is left to `Config::from_cli`, which reports it as the confdir's problem.
fn read_config_file(path: &Path) -> Result<Vec<(String, Yaml)>, ConfigError> {
    use std::io::ErrorKind::{NotADirectory, NotFound};
    let bad = |reason: String| ConfigError::File { path: path.display().to_string(), reason };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if matches!(e.kind(), NotFound | NotADirectory) => return Ok(Vec::new()),
        Err(e) => return Err(bad(format!("cannot read: {e}"))),
    };
    let mut documents =
        YamlLoader::load_from_str(&text).map_err(|e| bad(format!("not valid YAML: {}", one_line(&e.to_string()))))?;
    if documents.len() > 1 {
        return Err(bad("more than one YAML document".into()));
    }
    match documents.pop() {
        None | Some(Yaml::Null) => Ok(Vec::new()),
        Some(Yaml::Hash(entries)) => entries
            .into_iter()
            .map(|(name, value)| match scalar_text(&name) {
                Some(name) => Ok((name, value)),
                None => Err(bad("an option name is not text".into())),
            })
            .collect(),
        Some(_) => Err(bad("not a mapping of option names to values".into())),
    }
}

/// Options the command line gives: as flags (per clap) or with `--set`.
fn names_on_command_line(table: &[OptionDef], given: &ArgMatches, from_set: &Settings) -> HashSet<String> {
    let as_flags = table
        .iter()
        .filter(|o| o.ids.iter().any(|id| given.value_source(id) == Some(ValueSource::CommandLine)))
        .map(|o| o.name.clone());
    as_flags.chain(from_set.entries.iter().map(|e| e.name.clone())).collect()
}

/// Parses `flags` alone, so that a bad value is reported with its origin instead of as a flag the user
/// never typed.
fn check_with_clap(origin: &str, flags: &[OsString]) -> Result<(), ConfigError> {
    let argv = std::iter::once(OsString::from("strata")).chain(flags.iter().cloned());
    match Cli::command().try_get_matches_from(argv) {
        Ok(_) => Ok(()),
        Err(e) => Err(ConfigError::Option { origin: origin.into(), reason: clap_reason(&e) }),
    }
}

/// The first line of a clap error, without its `error: `.
fn clap_reason(e: &clap::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests;
