//! The built-in addons, one file each, and the options that configure them. `chain` puts them in
//! mitmproxy's order: proxy authentication, the CA page, block list, anticache, anticomp, an embedding
//! program's addons and the `-s` scripts, map-remote, map-local, header and body modification, server
//! replay, then the session writer (`-w`), the HAR recorder and the flow log (mitmdump's dumper). Only
//! addons whose option is set are in the chain, so a feature that is off costs nothing per flow.

pub mod anticache;
pub mod anticomp;
pub mod block;
pub mod blocklist;
pub mod dumper;
pub mod har;
pub mod map;
pub mod modify;
pub mod onboarding;
pub mod proxyauth;
pub mod replay;
pub mod save;
pub mod script;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::addon::{Addon, AddonChain};
use crate::certs::CertificateAuthority;
use crate::cli::Cli;
use crate::error::ConfigError;
use crate::filter::Filter;
use crate::options::{self, Unclaimed};

/// The built-in addons' options, checked once at start.
#[derive(Debug, Default)]
pub struct AddonOptions {
    /// The positional FILTER: which flows the log prints.
    pub view: Option<Filter>,
    /// `--flow-detail`: how much the flow log prints (0: nothing).
    pub flow_detail: u8,
    pub proxyauth: Option<Arc<proxyauth::ProxyAuth>>,
    /// `--block-global` and `--block-private`.
    pub access: block::ClientAccess,
    pub block_list: Vec<blocklist::BlockRule>,
    pub anticache: bool,
    pub anticomp: bool,
    pub map_remote: Vec<map::MapRemoteRule>,
    pub map_local: Vec<map::MapLocalRule>,
    pub modify_headers: Vec<modify::ModifyHeadersRule>,
    pub modify_body: Vec<modify::ModifyBodyRule>,
    pub server_replay: Option<replay::ServerReplay>,
    pub client_replay: Option<PathBuf>,
    pub save_har: Option<PathBuf>,
    /// `-w`: the session file, and whether to append to it (`+FILE`).
    pub save_stream: Option<(PathBuf, bool)>,
    /// `--store-max-size`: the session's limit, in bytes.
    pub store_max_size: Option<u64>,
    /// `--store-body-limit`: bytes stored of each body.
    pub store_body_limit: u64,
    /// `--save-stream-filter`, else the positional filter: which flows `-w` keeps.
    pub save_stream_filter: Option<Filter>,
    /// Largest body kept in memory for the hooks above.
    pub body_size_limit: usize,
    /// `-s`: the user's scripts, loaded.
    pub scripts: Vec<Arc<script::Script>>,
}

impl AddonOptions {
    /// Parses every hook option and loads the scripts; a bad one is an error naming its flag or file.
    /// `unclaimed` (`--set` and config.yaml entries no built-in option took) are the scripts' settings; a
    /// name no script declares is an unknown option.
    pub fn from_cli(cli: &Cli, unclaimed: &[Unclaimed]) -> Result<AddonOptions, ConfigError> {
        let settings: HashMap<String, String> =
            unclaimed.iter().filter_map(|u| Some((u.name.clone(), u.values.last()?.clone()))).collect();
        let scripts: Vec<Arc<script::Script>> = cli
            .scripts
            .iter()
            .map(|path| script::Script::load(path, &settings).map(Arc::new))
            .collect::<Result<_, _>>()?;
        let declared: Vec<String> = scripts.iter().flat_map(|s| s.options()).map(|o| o.name).collect();
        let unknown: Vec<Unclaimed> = unclaimed.iter().filter(|u| !declared.contains(&u.name)).cloned().collect();
        options::reject_unclaimed(&unknown)?;
        let view = match cli.filter.join(" ").trim() {
            "" => None,
            text => Some(Filter::parse(text).map_err(|e| invalid("FILTER", e.to_string()))?),
        };
        Ok(AddonOptions {
            view: view.clone(),
            flow_detail: if cli.quiet { 0 } else { cli.flow_detail },
            proxyauth: cli.proxyauth.as_deref().map(proxyauth::ProxyAuth::parse).transpose()?.map(Arc::new),
            access: block::ClientAccess { block_global: !cli.no_block_global, block_private: cli.block_private },
            block_list: parse_all(&cli.block_list, blocklist::BlockRule::parse)?,
            anticache: cli.anticache,
            anticomp: cli.anticomp,
            map_remote: parse_all(&cli.map_remote, map::MapRemoteRule::parse)?,
            map_local: parse_all(&cli.map_local, map::MapLocalRule::parse)?,
            modify_headers: parse_all(&cli.modify_headers, modify::ModifyHeadersRule::parse)?,
            modify_body: parse_all(&cli.modify_body, modify::ModifyBodyRule::parse)?,
            server_replay: replay::ServerReplay::from_cli(cli)?,
            client_replay: cli.client_replay.clone(),
            save_har: cli.save_har.as_deref().map(|path| check_new_file("--save-har", path)).transpose()?,
            save_stream: cli.save_stream_file.as_deref().map(save_stream_target).transpose()?,
            store_max_size: match &cli.store_max_size {
                Some(text) => Some(parse_size(text).filter(|&n| n >= 1 << 16).ok_or_else(|| {
                    invalid("--store-max-size", format!("'{text}' is not a size of at least 64k, like 2g"))
                })? as u64),
                None => None,
            },
            store_body_limit: parse_size(&cli.store_body_limit).ok_or_else(|| {
                invalid("--store-body-limit", format!("'{}' is not a size like 32m", cli.store_body_limit))
            })? as u64,
            save_stream_filter: match &cli.save_stream_filter {
                Some(text) => {
                    Some(Filter::parse(text).map_err(|e| invalid("--save-stream-filter", format!("'{text}': {e}")))?)
                }
                None => view.clone(),
            },
            body_size_limit: parse_size(&cli.body_size_limit).ok_or_else(|| {
                invalid("--body-size-limit", format!("'{}' is not a size like 32m", cli.body_size_limit))
            })?,
            scripts,
        })
    }
}

/// The chain for `options` (which it takes apart), with `custom` addons (those of a program embedding
/// strata) and then the scripts in mitmproxy's place for scripts: after the request filters that drop or
/// rewrite traffic for everyone, before mapping, modification and replay. Creates the `--save-har` file;
/// the error names it.
pub fn chain(
    options: &mut AddonOptions,
    ca: &CertificateAuthority,
    custom: Vec<Arc<dyn Addon>>,
) -> Result<AddonChain, ConfigError> {
    let mut addons: Vec<Arc<dyn Addon>> = Vec::new();
    if let Some(auth) = &options.proxyauth {
        addons.push(Arc::new(proxyauth::ProxyAuthAddon(auth.clone())));
    }
    addons.push(Arc::new(onboarding::Onboarding::new(ca)));
    if !options.block_list.is_empty() {
        addons.push(Arc::new(blocklist::BlockList(std::mem::take(&mut options.block_list))));
    }
    if options.anticache {
        addons.push(Arc::new(anticache::AntiCache));
    }
    if options.anticomp {
        addons.push(Arc::new(anticomp::AntiComp));
    }
    addons.extend(custom);
    addons.extend(options.scripts.drain(..).map(|script| script as Arc<dyn Addon>));
    if !options.map_remote.is_empty() {
        addons.push(Arc::new(map::MapRemote(std::mem::take(&mut options.map_remote))));
    }
    if !options.map_local.is_empty() {
        let rules = std::mem::take(&mut options.map_local);
        addons.push(Arc::new(map::MapLocal { rules, size_limit: options.body_size_limit }));
    }
    if !options.modify_headers.is_empty() {
        addons.push(Arc::new(modify::ModifyHeaders(std::mem::take(&mut options.modify_headers))));
    }
    if !options.modify_body.is_empty() {
        addons.push(Arc::new(modify::ModifyBody(std::mem::take(&mut options.modify_body))));
    }
    if let Some(replay) = options.server_replay.take() {
        addons.push(Arc::new(replay));
    }
    if let Some((path, append)) = &options.save_stream {
        let store = crate::store::StoreWriter::create(path, *append, options.store_max_size, options.store_body_limit)
            .map_err(|reason| ConfigError::File { path: path.display().to_string(), reason })?;
        addons.push(Arc::new(save::Save::new(store, options.save_stream_filter.take())));
    }
    if let Some(path) = &options.save_har {
        let recorder = har::SaveHar::create(path.clone())
            .map_err(|reason| ConfigError::File { path: path.display().to_string(), reason })?;
        addons.push(Arc::new(recorder));
    }
    if options.flow_detail > 0 {
        addons.push(Arc::new(dumper::Dumper::new(options.flow_detail, options.view.take())));
    }
    Ok(AddonChain::new(addons))
}

/// `-w FILE` or `-w +FILE` (append): the path and whether to append. Without `+`, an existing file is
/// refused, as `--save-har` refuses one.
fn save_stream_target(spec: &str) -> Result<(PathBuf, bool), ConfigError> {
    match spec.strip_prefix('+') {
        Some(path) => Ok((PathBuf::from(path), true)),
        None => check_new_file("-w", std::path::Path::new(spec)).map(|path| (path, false)),
    }
}

/// `--save-har` never replaces a file: an existing one is the user's (perhaps an earlier recording).
fn check_new_file(flag: &str, path: &std::path::Path) -> Result<PathBuf, ConfigError> {
    if path.exists() {
        return Err(ConfigError::File {
            path: path.display().to_string(),
            reason: format!(
                "already exists; strata does not overwrite it ({flag}): remove it or choose another name{}",
                if flag == "-w" { " (-w +FILE appends)" } else { "" }
            ),
        });
    }
    Ok(path.to_path_buf())
}

fn parse_all<T>(specs: &[String], parse: fn(&str) -> Result<T, ConfigError>) -> Result<Vec<T>, ConfigError> {
    specs.iter().map(|spec| parse(spec)).collect()
}

/// An invalid value of `flag`.
pub fn invalid(flag: &'static str, reason: String) -> ConfigError {
    ConfigError::InvalidValue { flag, reason }
}

/// Splits a mitmproxy rule spec whose first character is the separator into its parts, with the filter
/// (`~all` when left out) first: `/FILTER/A/B` or `/A/B` give (filter, A, B). A `B` starting with `@` is
/// read from that file.
pub fn parse_spec(flag: &'static str, spec: &str) -> Result<(Filter, String, String), ConfigError> {
    let mut chars = spec.chars();
    let separator = chars.next().ok_or_else(|| invalid(flag, "empty rule".into()))?;
    let parts: Vec<&str> = chars.as_str().splitn(3, separator).collect();
    let (filter, subject, replacement) = match parts.as_slice() {
        [subject, replacement] => ("~all", *subject, *replacement),
        [filter, subject, replacement] => (*filter, *subject, *replacement),
        _ => {
            return Err(invalid(flag, format!("'{spec}' is not {separator}[FILTER{separator}]A{separator}B")));
        }
    };
    let filter = Filter::parse(if filter.trim().is_empty() { "~all" } else { filter })
        .map_err(|e| invalid(flag, format!("'{spec}': {e}")))?;
    let replacement = match replacement.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|e| invalid(flag, format!("cannot read '{path}': {e}")))?,
        None => replacement.to_string(),
    };
    Ok((filter, subject.to_string(), replacement))
}

/// Parses sizes like `32m`, `512k`, `1g` or plain bytes.
pub fn parse_size(text: &str) -> Option<usize> {
    let text = text.trim().to_ascii_lowercase();
    let text = text.strip_suffix('b').unwrap_or(&text);
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, ""),
    };
    let factor: usize = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return None,
    };
    digits.parse::<usize>().ok()?.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_split_on_their_first_character() {
        let (filter, a, b) = parse_spec("--x", "/~q/name/value").unwrap();
        assert_eq!((filter.as_str(), a.as_str(), b.as_str()), ("~q", "name", "value"));
        let (filter, a, b) = parse_spec("--x", "|name|va/lue").unwrap();
        assert_eq!((filter.as_str(), a.as_str(), b.as_str()), ("~all", "name", "va/lue"));
        assert!(parse_spec("--x", "/only").is_err());
        assert!(parse_spec("--x", "/~bogus/a/b").is_err());
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("32m"), Some(32 << 20));
        assert_eq!(parse_size("512k"), Some(512 << 10));
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("2GB"), Some(2 << 30));
        assert_eq!(parse_size("lots"), None);
    }
}
