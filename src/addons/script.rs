//! `-s FILE` / `--scripts FILE`: user scripts in Lua 5.4, each one addon in the chain.
//!
//! A script defines global functions named after the events (`request`, `response`, `websocket_message`,
//! ...; see `crate::addon`), each called with the flow object of `api`. Bodies are kept only for the body
//! events a script defines (`request`, `response`); a script that defines only `requestheaders` or
//! `responseheaders` leaves bodies streaming.
//!
//! A script cannot take the proxy down: each call runs under a time budget (`HOOK_TIME_BUDGET`, checked
//! every few thousand Lua instructions) and its state under a memory cap (`MEMORY_LIMIT`); `os.exit` is
//! removed. A runtime error is logged once per distinct message, with the file, line and flow URL, and
//! the flow goes on exactly as it was before the call. A syntax or load error at start is a startup
//! error (exit code 2, naming file and line). The file is checked for changes at most once a second
//! while events arrive; a changed file is loaded anew (a broken new version is reported and the old one
//! stays). Calls into one script are serialized: a Lua state runs one function at a time, as a
//! mitmproxy script does.

pub mod api;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use mlua::{Function, HookTriggers, Lua, LuaSerdeExt, Value, VmState};
use tokio::sync::{Mutex as AsyncMutex, MutexGuard};

use crate::addon::{Addon, ClientInfo, ServerInfo, TlsInfo};
use crate::error::ConfigError;
use crate::flow::{HttpFlow, TcpFlow, TcpMessage, WebSocketMessage};

/// Longest a single call into a script may run before it is stopped with an error.
pub const HOOK_TIME_BUDGET: Duration = Duration::from_secs(1);

/// Most memory one script's Lua state may hold.
pub const MEMORY_LIMIT: usize = 64 << 20;

/// How often, at most, the file is checked for changes.
const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Lua instructions between two checks of the time budget.
const BUDGET_CHECK_INSTRUCTIONS: u32 = 10_000;

/// The events a script may define.
const EVENTS: [&str; 24] = [
    "running",
    "done",
    "client_connected",
    "client_disconnected",
    "server_connect",
    "server_connected",
    "server_disconnected",
    "tls_clienthello",
    "tls_established_client",
    "tls_established_server",
    "tls_failed_client",
    "tls_failed_server",
    "http_connect",
    "requestheaders",
    "request",
    "responseheaders",
    "response",
    "error",
    "websocket_start",
    "websocket_message",
    "websocket_end",
    "tcp_start",
    "tcp_message",
    "tcp_end",
];

/// An option a script declared with `strata.option(name, default, help)`.
#[derive(Debug, Clone)]
pub struct ScriptOption {
    pub name: String,
    pub default: String,
    pub help: String,
}

/// One loaded script.
pub struct Script {
    path: PathBuf,
    /// The file name, for logs.
    name: String,
    /// `--set` values, for the options the script declares.
    settings: HashMap<String, String>,
    /// The events it defines, a bit per entry of `EVENTS`, readable without the state's lock.
    defined_mask: AtomicU32,
    /// Whether it defined a per-message event when it was first loaded.
    wants_messages: bool,
    /// Flows waiting for the script wait here without holding a thread.
    state: AsyncMutex<Loaded>,
}

/// A script's Lua state and what it defined.
struct Loaded {
    lua: Lua,
    slot: api::Slot,
    deadline: Arc<Mutex<Instant>>,
    /// The script's event functions, by event.
    functions: HashMap<&'static str, Function>,
    options: Vec<ScriptOption>,
    modified: Option<SystemTime>,
    checked: Instant,
    /// Error messages already logged.
    reported: HashSet<String>,
}

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Script").field("path", &self.path).finish_non_exhaustive()
    }
}

impl Script {
    /// Loads and runs the file; a missing file, a syntax error or an error while it runs is a startup
    /// error naming the file (and line).
    pub fn load(path: &Path, settings: &HashMap<String, String>) -> Result<Script, ConfigError> {
        let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
        let loaded = Loaded::load(path, &name, settings)
            .map_err(|reason| ConfigError::File { path: path.display().to_string(), reason })?;
        Ok(Script {
            path: path.to_path_buf(),
            wants_messages: loaded.functions.contains_key("websocket_message")
                || loaded.functions.contains_key("tcp_message"),
            defined_mask: AtomicU32::new(mask(&loaded.functions)),
            name,
            settings: settings.clone(),
            state: AsyncMutex::new(loaded),
        })
    }

    /// The options the script declared (at start, before any event).
    pub fn options(&self) -> Vec<ScriptOption> {
        self.state.try_lock().map(|state| state.options.clone()).unwrap_or_default()
    }

    /// The state for a call of `event`, reloaded first if the file changed; `None` if the script does not
    /// define the event. The check needs no lock, so events a script does not handle never wait for it.
    async fn enter(&self, event: &str) -> Option<MutexGuard<'_, Loaded>> {
        if !self.defines(event) {
            // Still notice a changed file (it may define the event now), if nobody is in the script.
            if let Ok(mut state) = self.state.try_lock() {
                self.reload_if_changed(&mut state);
            }
            return None;
        }
        let mut state = self.state.lock().await;
        self.reload_if_changed(&mut state);
        state.functions.contains_key(event).then_some(state)
    }

    fn reload_if_changed(&self, state: &mut Loaded) {
        if state.checked.elapsed() >= RELOAD_CHECK_INTERVAL {
            state.checked = Instant::now();
            let modified = std::fs::metadata(&self.path).and_then(|m| m.modified()).ok();
            if modified.is_some() && modified != state.modified {
                match Loaded::load(&self.path, &self.name, &self.settings) {
                    Ok(new) => {
                        eprintln!("{}: reloaded", self.name);
                        self.defined_mask.store(mask(&new.functions), Ordering::Relaxed);
                        *state = new;
                    }
                    Err(reason) => {
                        state.modified = modified;
                        eprintln!("{}: not reloaded, keeping the previous version: {reason}", self.name);
                    }
                }
            }
        }
    }

    /// True if the script (as last loaded) defines `event`.
    fn defines(&self, event: &str) -> bool {
        let bit = EVENTS.iter().position(|e| *e == event).map_or(0, |i| 1 << i);
        self.defined_mask.load(Ordering::Relaxed) & bit != 0
    }

    /// Calls `event` with the flow object; on error the flow stays as it was.
    async fn call_flow(&self, event: &'static str, flow: &mut HttpFlow) {
        let Some(mut state) = self.enter(event).await else {
            return;
        };
        let call = api::lend(&state.slot, flow);
        let object = api::FlowObject::new(&state.slot, call);
        let result = state.call(event, object);
        api::take_back(&state.slot, flow, result.is_ok());
        if let Err(e) = result {
            state.report(&self.name, event, &e, &flow.request.url());
        }
    }

    /// Calls a per-message event with the flow (an HTTP flow object, or a table for a TCP flow) and a
    /// message table `{content, from_client, type}`; returns the message's content after a successful call.
    async fn call_message(
        &self,
        event: &'static str,
        flow: Subject<'_>,
        message: (&[u8], bool, &str),
    ) -> Option<Vec<u8>> {
        let mut state = self.enter(event).await?;
        let (content, from_client, kind) = message;
        let table = state.message_table(content, from_client, kind);
        let (result, url) = match flow {
            Subject::Http(flow) => {
                let call = api::lend(&state.slot, flow);
                let object = api::FlowObject::new(&state.slot, call);
                let result = table.and_then(|table| state.call(event, (object, table.clone())).map(|()| table));
                api::take_back(&state.slot, flow, result.is_ok());
                (result, flow.request.url())
            }
            Subject::Tcp(flow) => {
                let url = format!("tcp://{}", flow.server);
                let info = tcp_table(&state.lua, flow);
                let result = table.and_then(|table| state.call(event, (info?, table.clone())).map(|()| table));
                (result, url)
            }
        };
        match result.and_then(|table| table.get::<mlua::String>("content")) {
            Ok(content) => Some(content.as_bytes().to_vec()),
            Err(e) => {
                state.report(&self.name, event, &e, &url);
                None
            }
        }
    }

    /// Calls an event about a connection or a TCP flow, with a table describing it (made by `describe`).
    async fn call_table(
        &self,
        event: &'static str,
        what: &str,
        describe: impl FnOnce(&Lua) -> mlua::Result<mlua::Table>,
    ) {
        let Some(mut state) = self.enter(event).await else {
            return;
        };
        let result = describe(&state.lua).and_then(|table| state.call(event, table));
        if let Err(e) = result {
            state.report(&self.name, event, &e, what);
        }
    }

    /// Calls an event without a flow (`running`, `done`).
    async fn call_plain(&self, event: &'static str) {
        let Some(mut state) = self.enter(event).await else {
            return;
        };
        if let Err(e) = state.call(event, ()) {
            state.report(&self.name, event, &e, "");
        }
    }
}

/// The bits of `EVENTS` for the events in `functions`.
fn mask(functions: &HashMap<&'static str, Function>) -> u32 {
    EVENTS.iter().enumerate().filter(|(_, e)| functions.contains_key(*e)).fold(0, |mask, (i, _)| mask | 1 << i)
}

/// What a per-message event is about.
enum Subject<'a> {
    Http(&'a mut HttpFlow),
    Tcp(&'a TcpFlow),
}

impl Loaded {
    fn load(path: &Path, name: &str, settings: &HashMap<String, String>) -> Result<Loaded, String> {
        let source = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let lua = Lua::new();
        let lua_error = |e: mlua::Error| first_line(&e);
        lua.set_memory_limit(MEMORY_LIMIT).map_err(lua_error)?;
        // Every event makes a few short-lived objects (the flow, its request or response, headers): the
        // generational collector frees them young; the incremental one let them pile up to the cap.
        lua.gc_gen(0, 0);
        let deadline = Arc::new(Mutex::new(Instant::now() + HOOK_TIME_BUDGET));
        let budget = deadline.clone();
        lua.set_global_hook(HookTriggers::new().every_nth_instruction(BUDGET_CHECK_INSTRUCTIONS), move |_, _| {
            let deadline = *budget.lock().unwrap_or_else(|p| p.into_inner());
            if Instant::now() > deadline {
                return Err(mlua::Error::runtime(format!("stopped: ran longer than its {HOOK_TIME_BUDGET:?} budget")));
            }
            Ok(VmState::Continue)
        })
        .map_err(lua_error)?;
        let options = Arc::new(Mutex::new(Vec::new()));
        install_api(&lua, name, settings, options.clone()).map_err(lua_error)?;
        let globals = lua.globals();
        // Lua's own `error` function shares an event's name: only what the script defines counts.
        let built_in: Vec<Value> =
            EVENTS.iter().map(|event| globals.get::<Value>(*event)).collect::<Result<_, _>>().map_err(lua_error)?;
        lua.load(&source[..]).set_name(format!("@{}", path.display())).exec().map_err(lua_error)?;
        let mut functions = HashMap::new();
        for (event, before) in EVENTS.into_iter().zip(built_in) {
            match globals.get::<Value>(event) {
                Ok(Value::Function(function)) if Value::Function(function.clone()) != before => {
                    functions.insert(event, function);
                }
                _ => {}
            }
        }
        let options = options.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(Loaded {
            lua,
            slot: api::Slot::default(),
            deadline,
            functions,
            options,
            modified,
            checked: Instant::now(),
            reported: HashSet::new(),
        })
    }

    /// Calls the global function `event` with `args`, within the time budget.
    fn call(&self, event: &str, args: impl mlua::IntoLuaMulti) -> mlua::Result<()> {
        let function = self.functions.get(event).ok_or_else(|| mlua::Error::runtime(format!("no function {event}")))?;
        *self.deadline.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now() + HOOK_TIME_BUDGET;
        function.call::<()>(args)
    }

    fn message_table(&self, content: &[u8], from_client: bool, kind: &str) -> mlua::Result<mlua::Table> {
        let table = self.lua.create_table()?;
        table.set("content", self.lua.create_string(content)?)?;
        table.set("from_client", from_client)?;
        table.set("type", kind)?;
        Ok(table)
    }

    /// Logs a runtime error once per distinct message.
    fn report(&mut self, script: &str, event: &str, error: &mlua::Error, url: &str) {
        let message = first_line(error);
        if self.reported.insert(message.clone()) {
            let on = if url.is_empty() { String::new() } else { format!(" on {url}") };
            tracing::error!("{script}: error in {event}{on}: {message} (the flow goes on unchanged)");
        }
    }
}

/// `{id, client = {address}, server = {address}, bytes_to_server, bytes_to_client}` for a TCP flow.
fn tcp_table(lua: &Lua, flow: &TcpFlow) -> mlua::Result<mlua::Table> {
    let table = lua.create_table()?;
    table.set("id", flow.id.to_string())?;
    table.set("client", lua.create_table_from([("address", flow.client_addr.to_string())])?)?;
    table.set("server", lua.create_table_from([("address", flow.server.clone())])?)?;
    table.set("bytes_to_server", flow.bytes_to_server)?;
    table.set("bytes_to_client", flow.bytes_to_client)?;
    Ok(table)
}

/// `{address, mode}` for a client connection.
fn client_table(lua: &Lua, client: &ClientInfo) -> mlua::Result<mlua::Table> {
    lua.create_table_from([("address", client.address.to_string()), ("mode", client.mode.clone())])
}

/// `{address, peer, error}` for a server connection.
fn server_table(lua: &Lua, server: &ServerInfo) -> mlua::Result<mlua::Table> {
    let table = lua.create_table()?;
    table.set("address", server.address.clone())?;
    table.set("peer", server.peer.map(|p| p.to_string()))?;
    table.set("error", server.error.clone())?;
    Ok(table)
}

/// `{client, sni, alpn = {...}, error}` for a TLS handshake.
fn tls_table(lua: &Lua, tls: &TlsInfo) -> mlua::Result<mlua::Table> {
    let table = lua.create_table()?;
    table.set("client", tls.client.to_string())?;
    table.set("sni", tls.sni.clone())?;
    let alpn: Vec<mlua::String> = tls.alpn.iter().map(|p| lua.create_string(p)).collect::<mlua::Result<_>>()?;
    table.set("alpn", lua.create_sequence_from(alpn)?)?;
    table.set("error", tls.error.clone())?;
    Ok(table)
}

/// The useful line of a Lua error: `FILE:LINE: message`, without the traceback.
fn first_line(error: &mlua::Error) -> String {
    let text = match error {
        mlua::Error::CallbackError { cause, .. } => return first_line(cause),
        mlua::Error::RuntimeError(text) | mlua::Error::SyntaxError { message: text, .. } => text.clone(),
        other => other.to_string(),
    };
    text.lines().next().unwrap_or_default().to_string()
}

/// The `strata` table, `print` (to stdout, a line at a time) and no `os.exit`.
fn install_api(
    lua: &Lua,
    name: &str,
    settings: &HashMap<String, String>,
    options: Arc<Mutex<Vec<ScriptOption>>>,
) -> mlua::Result<()> {
    let strata = lua.create_table()?;
    strata.set(
        "response",
        lua.create_function(|lua, (status, headers, body): (u16, Option<mlua::Table>, Option<mlua::String>)| {
            api::new_response(lua, status, headers, body)
        })?,
    )?;
    let log = lua.create_table()?;
    for (level, prefix) in [("info", ""), ("warn", "warning: "), ("error", "error: ")] {
        let script = name.to_string();
        log.set(
            level,
            lua.create_function(move |_, message: mlua::String| {
                eprintln!("{script}: {prefix}{}", message.to_string_lossy());
                Ok(())
            })?,
        )?;
    }
    strata.set("log", log)?;
    let json = lua.create_table()?;
    json.set(
        "decode",
        lua.create_function(|lua, text: mlua::String| {
            let value: serde_json::Value =
                serde_json::from_slice(&text.as_bytes()).map_err(|e| mlua::Error::runtime(format!("not JSON: {e}")))?;
            lua.to_value(&value)
        })?,
    )?;
    json.set(
        "encode",
        lua.create_function(|lua, value: Value| {
            let value: serde_json::Value = lua.from_value(value)?;
            Ok(value.to_string())
        })?,
    )?;
    strata.set("json", json)?;
    let settings = settings.clone();
    strata.set(
        "option",
        lua.create_function(move |lua, (name, default, help): (String, Value, Option<String>)| {
            let default_text = lua.coerce_string(default.clone())?.map(|s| s.to_string_lossy()).unwrap_or_default();
            options.lock().unwrap_or_else(|p| p.into_inner()).push(ScriptOption {
                name: name.clone(),
                default: default_text,
                help: help.unwrap_or_default(),
            });
            match settings.get(&name) {
                Some(value) => match default {
                    Value::Integer(_) | Value::Number(_) => Ok(value
                        .parse::<f64>()
                        .map(Value::Number)
                        .map_err(|_| mlua::Error::runtime(format!("option {name}: '{value}' is not a number")))?),
                    Value::Boolean(_) => match value.as_str() {
                        "true" => Ok(Value::Boolean(true)),
                        "false" => Ok(Value::Boolean(false)),
                        _ => Err(mlua::Error::runtime(format!("option {name}: '{value}' is not true or false"))),
                    },
                    _ => Ok(Value::String(lua.create_string(value)?)),
                },
                None => Ok(default),
            }
        })?,
    )?;
    lua.globals().set("strata", strata)?;
    let tostring: Function = lua.globals().get("tostring")?;
    lua.globals().set(
        "print",
        lua.create_function(move |_, args: mlua::Variadic<Value>| {
            let mut line = Vec::new();
            for (i, value) in args.into_iter().enumerate() {
                if i > 0 {
                    line.push(b'\t');
                }
                let text: mlua::String = tostring.call(value)?;
                line.extend_from_slice(&text.as_bytes());
            }
            line.push(b'\n');
            let mut stdout = std::io::stdout().lock();
            let _ = std::io::Write::write_all(&mut stdout, &line);
            let _ = std::io::Write::flush(&mut stdout);
            Ok(())
        })?,
    )?;
    let os: mlua::Table = lua.globals().get("os")?;
    os.set("exit", Value::Nil)?;
    Ok(())
}

#[async_trait::async_trait]
impl Addon for Script {
    fn name(&self) -> &str {
        &self.name
    }

    fn wants_messages(&self) -> bool {
        self.wants_messages
    }

    async fn running(&self) {
        self.call_plain("running").await;
    }

    async fn done(&self) {
        self.call_plain("done").await;
    }

    async fn client_connected(&self, client: &ClientInfo) {
        self.call_table("client_connected", "", |lua| client_table(lua, client)).await;
    }

    async fn client_disconnected(&self, client: &ClientInfo) {
        self.call_table("client_disconnected", "", |lua| client_table(lua, client)).await;
    }

    async fn server_connect(&self, server: &ServerInfo) {
        self.call_table("server_connect", &server.address, |lua| server_table(lua, server)).await;
    }

    async fn server_connected(&self, server: &ServerInfo) {
        self.call_table("server_connected", &server.address, |lua| server_table(lua, server)).await;
    }

    async fn server_disconnected(&self, server: &ServerInfo) {
        self.call_table("server_disconnected", &server.address, |lua| server_table(lua, server)).await;
    }

    async fn tls_clienthello(&self, tls: &TlsInfo) {
        self.call_table("tls_clienthello", "", |lua| tls_table(lua, tls)).await;
    }

    async fn tls_established_client(&self, tls: &TlsInfo) {
        self.call_table("tls_established_client", "", |lua| tls_table(lua, tls)).await;
    }

    async fn tls_established_server(&self, tls: &TlsInfo) {
        self.call_table("tls_established_server", "", |lua| tls_table(lua, tls)).await;
    }

    async fn tls_failed_client(&self, tls: &TlsInfo) {
        self.call_table("tls_failed_client", "", |lua| tls_table(lua, tls)).await;
    }

    async fn tls_failed_server(&self, tls: &TlsInfo) {
        self.call_table("tls_failed_server", "", |lua| tls_table(lua, tls)).await;
    }

    async fn http_connect(&self, flow: &mut HttpFlow) {
        self.call_flow("http_connect", flow).await;
    }

    async fn requestheaders(&self, flow: &mut HttpFlow) {
        if self.defines("request") {
            flow.request.stream = false;
        }
        self.call_flow("requestheaders", flow).await;
    }

    async fn request(&self, flow: &mut HttpFlow) {
        self.call_flow("request", flow).await;
    }

    async fn responseheaders(&self, flow: &mut HttpFlow) {
        if self.defines("response") {
            if let Some(response) = flow.response.as_mut() {
                response.stream = false;
            }
        }
        self.call_flow("responseheaders", flow).await;
    }

    async fn response(&self, flow: &mut HttpFlow) {
        self.call_flow("response", flow).await;
    }

    async fn error(&self, flow: &mut HttpFlow) {
        self.call_flow("error", flow).await;
    }

    async fn websocket_start(&self, flow: &mut HttpFlow) {
        self.call_flow("websocket_start", flow).await;
    }

    /// Text and binary messages only, as mitmproxy delivers them (control frames are the protocol's).
    async fn websocket_message(&self, flow: &mut HttpFlow, message: &mut WebSocketMessage) {
        let (from_client, kind) = (message.from_client, message.kind);
        if !matches!(kind, "text" | "binary") {
            return;
        }
        if let Some(content) =
            self.call_message("websocket_message", Subject::Http(flow), (&message.payload, from_client, kind)).await
        {
            message.payload = content;
        }
    }

    async fn websocket_end(&self, flow: &mut HttpFlow) {
        self.call_flow("websocket_end", flow).await;
    }

    async fn tcp_start(&self, flow: &mut TcpFlow) {
        self.call_table("tcp_start", &format!("tcp://{}", flow.server), |lua| tcp_table(lua, flow)).await;
    }

    async fn tcp_message(&self, flow: &mut TcpFlow, message: &mut TcpMessage) {
        let kind = "tcp";
        if let Some(content) =
            self.call_message("tcp_message", Subject::Tcp(flow), (&message.content, message.from_client, kind)).await
        {
            message.content = content;
        }
    }

    async fn tcp_end(&self, flow: &mut TcpFlow) {
        self.call_table("tcp_end", &format!("tcp://{}", flow.server), |lua| tcp_table(lua, flow)).await;
    }
}
