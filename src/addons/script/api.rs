//! The objects a Lua script sees: `flow`, `flow.request`, `flow.response`, their `headers`, and the
//! `strata` table (`strata.response`, `strata.log`, `strata.json`, `strata.option`). They mirror
//! mitmproxy's flow API, so an addon translates line by line.
//!
//! While a hook runs, its flow sits in a `Slot` shared by every object made for that call; the objects
//! only hold the slot and the call's number. After the call the flow goes back to the proxy, and an object
//! a script kept (in a global, say) fails with "flow object used after its event" instead of reaching
//! into another flow.

use std::sync::{Arc, Mutex, MutexGuard};

use mlua::{
    Error, FromLua, IntoLua, Lua, LuaSerdeExt, MetaMethod, Table, UserData, UserDataFields, UserDataMethods, Value,
};

use std::net::SocketAddr;
use std::time::SystemTime;

use crate::flow::{FlowId, HttpFlow, Request, Response, Timings};
use crate::http::fields::is_token;
use crate::http::message::{Headers, Version};
use crate::http::url::Scheme;

/// The flow of the hook call in progress, that call's number, and the flow as it was before the
/// script's first change in this call (kept so that a failed call leaves the flow unchanged; a call
/// that only reads copies nothing).
#[derive(Default)]
pub struct SlotState {
    call: u64,
    flow: Option<HttpFlow>,
    before: Option<HttpFlow>,
}

/// Shared by the objects of one script.
pub type Slot = Arc<Mutex<SlotState>>;

/// Moves `flow` into the slot for a new call (leaving a placeholder); returns the call's number.
pub fn lend(slot: &Slot, flow: &mut HttpFlow) -> u64 {
    let mut state = lock(slot);
    state.call += 1;
    state.flow = Some(std::mem::replace(flow, placeholder()));
    state.before = None;
    state.call
}

/// Moves the flow back after the call: as the script left it if `succeeded`, else as it was before.
pub fn take_back(slot: &Slot, flow: &mut HttpFlow, succeeded: bool) {
    let mut state = lock(slot);
    let (after, before) = (state.flow.take(), state.before.take());
    if let Some(lent) = if succeeded { after } else { before.or(after) } {
        *flow = lent;
    }
}

/// An empty flow to hold a flow's place while it is lent (no allocation).
fn placeholder() -> HttpFlow {
    HttpFlow {
        id: FlowId::default(),
        client_addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        at_proxy: false,
        server_addr: None,
        request: Request {
            method: String::new(),
            scheme: Scheme::Http,
            host: String::new(),
            port: 0,
            path: String::new(),
            version: Version::Http11,
            headers: Headers::default(),
            body: None,
            body_len: 0,
            stream: true,
            trailers: None,
        },
        response: None,
        error: None,
        websocket: None,
        started_at: SystemTime::UNIX_EPOCH,
        timings: Timings::default(),
        metadata: Vec::new(),
        client_tls: None,
        server_tls: None,
    }
}

fn lock(slot: &Slot) -> MutexGuard<'_, SlotState> {
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A view of the lent flow, valid during its call only.
#[derive(Clone)]
struct Lent {
    slot: Slot,
    call: u64,
}

impl Lent {
    fn read<R>(&self, f: impl FnOnce(&HttpFlow) -> mlua::Result<R>) -> mlua::Result<R> {
        let state = lock(&self.slot);
        match state.flow.as_ref().filter(|_| state.call == self.call) {
            Some(flow) => f(flow),
            None => Err(Error::runtime("flow object used after its event")),
        }
    }

    /// As `read`, for a change: the first change of a call keeps a copy of the flow as it was.
    fn write<R>(&self, f: impl FnOnce(&mut HttpFlow) -> mlua::Result<R>) -> mlua::Result<R> {
        let mut guard = lock(&self.slot);
        let state = &mut *guard;
        let Some(flow) = state.flow.as_mut().filter(|_| state.call == self.call) else {
            return Err(Error::runtime("flow object used after its event"));
        };
        if state.before.is_none() {
            state.before = Some(flow.clone());
        }
        f(flow)
    }
}

/// `flow`.
pub struct FlowObject(Lent);

/// `flow.request` or `flow.response`.
struct MessageObject {
    flow: Lent,
    is_request: bool,
}

/// `flow.request.headers` or `flow.response.headers`.
struct HeadersObject {
    flow: Lent,
    is_request: bool,
}

/// A response made by `strata.response(...)`, not yet on a flow.
#[derive(Clone)]
pub struct NewResponse(pub Response);

impl FlowObject {
    pub fn new(slot: &Slot, call: u64) -> Self {
        FlowObject(Lent { slot: slot.clone(), call })
    }
}

impl UserData for FlowObject {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("id", |_, this| this.0.read(|f| Ok(f.id.to_string())));
        fields.add_field_method_get("request", |_, this| Ok(MessageObject { flow: this.0.clone(), is_request: true }));
        fields.add_field_method_get("response", |lua, this| {
            let has_response = this.0.read(|f| Ok(f.response.is_some()))?;
            match has_response {
                true => MessageObject { flow: this.0.clone(), is_request: false }.into_lua(lua),
                false => Ok(Value::Nil),
            }
        });
        fields.add_field_method_set("response", |_, this, value: Value| {
            let response = match value {
                Value::Nil => None,
                Value::UserData(ud) => Some(ud.borrow::<NewResponse>()?.0.clone()),
                _ => {
                    return Err(Error::runtime("flow.response must be made by strata.response(status, headers, body)"))
                }
            };
            this.0.write(|f| {
                f.response = response;
                Ok(())
            })
        });
        fields.add_field_method_get("error", |_, this| this.0.read(|f| Ok(f.error.clone())));
        fields.add_field_method_get("client", |lua, this| {
            let address = this.0.read(|f| Ok(f.client_addr.to_string()))?;
            let client = lua.create_table()?;
            client.set("address", address)?;
            Ok(client)
        });
        fields.add_field_method_get("server", |lua, this| {
            let address = this.0.read(|f| Ok(f.server_addr.map(|a| a.to_string())))?;
            let server = lua.create_table()?;
            server.set("address", address)?;
            Ok(server)
        });
        fields.add_field_method_get("metadata", |_, this| Ok(MetadataObject(this.0.clone())));
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("kill", |_, this, ()| {
            this.0.write(|f| {
                f.kill();
                Ok(())
            })
        });
    }
}

/// `flow.metadata`: text values by name that live with the flow across its events.
struct MetadataObject(Lent);

impl UserData for MetadataObject {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(MetaMethod::Index, |_, this, key: String| {
            this.0.read(|f| Ok(f.metadata.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone())))
        });
        methods.add_meta_method(MetaMethod::NewIndex, |lua, this, (key, value): (String, Value)| {
            let value = match value {
                Value::Nil => None,
                other => Some(lua.coerce_string(other)?.map(|s| s.to_string_lossy()).unwrap_or_default()),
            };
            this.0.write(|f| {
                f.metadata.retain(|(k, _)| *k != key);
                if let Some(value) = value {
                    f.metadata.push((key, value));
                }
                Ok(())
            })
        });
    }
}

impl MessageObject {
    fn read<R>(&self, f: impl FnOnce(&HttpFlow) -> mlua::Result<R>) -> mlua::Result<R> {
        self.flow.read(f)
    }

    fn write<R>(&self, f: impl FnOnce(&mut HttpFlow) -> mlua::Result<R>) -> mlua::Result<R> {
        self.flow.write(f)
    }

    fn body(&self) -> mlua::Result<Option<Vec<u8>>> {
        let is_request = self.is_request;
        self.read(|f| {
            Ok(if is_request { f.request.body.clone() } else { f.response.as_ref().and_then(|r| r.body.clone()) })
        })
    }

    fn set_body(&self, body: Vec<u8>) -> mlua::Result<()> {
        let is_request = self.is_request;
        self.write(|f| {
            let (slot, len) = match is_request {
                true => (&mut f.request.body, &mut f.request.body_len),
                false => match f.response.as_mut() {
                    Some(r) => (&mut r.body, &mut r.body_len),
                    None => return Err(Error::runtime("the flow has no response")),
                },
            };
            *len = body.len() as u64;
            *slot = Some(body);
            Ok(())
        })
    }
}

impl UserData for MessageObject {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("headers", |_, this| {
            Ok(HeadersObject { flow: this.flow.clone(), is_request: this.is_request })
        });
        fields.add_field_method_get("http_version", |_, this| {
            let is_request = this.is_request;
            this.read(|f| {
                let version = if is_request {
                    f.request.version
                } else {
                    f.response.as_ref().map_or(Version::Http11, |r| r.version)
                };
                Ok(version.as_str())
            })
        });
        fields.add_field_method_get("content", |lua, this| body_value(lua, this.body()?));
        fields.add_field_method_get("text", |lua, this| body_value(lua, this.body()?));
        fields.add_field_method_set("content", |_, this, body: mlua::String| this.set_body(body.as_bytes().to_vec()));
        fields.add_field_method_set("text", |_, this, body: mlua::String| this.set_body(body.as_bytes().to_vec()));

        // The request's own fields.
        fields.add_field_method_get("method", |_, this| this.read(|f| Ok(f.request.method.clone())));
        fields.add_field_method_set("method", |_, this, method: String| {
            if !is_token(method.as_bytes()) {
                return Err(Error::runtime(format!("'{method}' is not a method")));
            }
            this.write(|f| {
                f.request.method = method;
                Ok(())
            })
        });
        fields.add_field_method_get("scheme", |_, this| this.read(|f| Ok(f.request.scheme.as_str())));
        fields.add_field_method_get("host", |_, this| this.read(|f| Ok(f.request.host.clone())));
        fields.add_field_method_set("host", |_, this, host: String| {
            this.write(|f| {
                let url =
                    format!("{}://{}:{}{}", f.request.scheme.as_str(), bracket(&host), f.request.port, f.request.path);
                set_url(f, &url)
            })
        });
        fields.add_field_method_get("port", |_, this| this.read(|f| Ok(f.request.port)));
        fields.add_field_method_set("port", |_, this, port: u16| {
            this.write(|f| {
                let url =
                    format!("{}://{}:{port}{}", f.request.scheme.as_str(), bracket(&f.request.host), f.request.path);
                set_url(f, &url)
            })
        });
        fields.add_field_method_get("path", |_, this| this.read(|f| Ok(f.request.path.clone())));
        fields.add_field_method_set("path", |_, this, path: String| {
            if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
                return Err(Error::runtime(format!(
                    "'{path}' is not a path (it must start with / and have no spaces)"
                )));
            }
            this.write(|f| {
                f.request.path = path;
                Ok(())
            })
        });
        fields.add_field_method_get("url", |_, this| this.read(|f| Ok(f.request.url())));
        fields.add_field_method_set("url", |_, this, url: String| this.write(|f| set_url(f, &url)));

        // The response's own fields.
        fields.add_field_method_get("status_code", |_, this| this.read(|f| Ok(f.response.as_ref().map(|r| r.status))));
        fields.add_field_method_set("status_code", |_, this, status: u16| {
            if !(100..1000).contains(&status) {
                return Err(Error::runtime(format!("{status} is not an HTTP status")));
            }
            this.write(|f| {
                let response = f.response.as_mut().ok_or_else(|| Error::runtime("the flow has no response"))?;
                response.status = status;
                response.reason = crate::flow::reason_phrase(status).to_string();
                Ok(())
            })
        });
        fields
            .add_field_method_get("reason", |_, this| this.read(|f| Ok(f.response.as_ref().map(|r| r.reason.clone()))));
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("json", |lua, this, ()| {
            let body = this.body()?.ok_or_else(|| Error::runtime("the body was streamed, not kept"))?;
            let value: serde_json::Value =
                serde_json::from_slice(&body).map_err(|e| Error::runtime(format!("the body is not JSON: {e}")))?;
            lua.to_value(&value)
        });
    }
}

/// A body as a Lua string, or nil when it was streamed.
fn body_value(lua: &Lua, body: Option<Vec<u8>>) -> mlua::Result<Value> {
    match body {
        Some(body) => Ok(Value::String(lua.create_string(body)?)),
        None => Ok(Value::Nil),
    }
}

/// Points the request at `url`, and its Host field at the new authority.
fn set_url(flow: &mut HttpFlow, url: &str) -> mlua::Result<()> {
    if !flow.request.set_url(url) {
        return Err(Error::runtime(format!("'{url}' is not an http:// or https:// URL")));
    }
    let request = &mut flow.request;
    let host = if request.port == request.scheme.default_port() {
        bracket(&request.host)
    } else {
        format!("{}:{}", bracket(&request.host), request.port)
    };
    request.headers.set("host", host);
    Ok(())
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

impl HeadersObject {
    fn read<R>(&self, f: impl FnOnce(&Headers) -> mlua::Result<R>) -> mlua::Result<R> {
        let is_request = self.is_request;
        self.flow.read(|flow| match is_request {
            true => f(&flow.request.headers),
            false => match flow.response.as_ref() {
                Some(response) => f(&response.headers),
                None => Err(Error::runtime("the flow has no response")),
            },
        })
    }

    fn write<R>(&self, f: impl FnOnce(&mut Headers) -> mlua::Result<R>) -> mlua::Result<R> {
        let is_request = self.is_request;
        self.flow.write(|flow| match is_request {
            true => f(&mut flow.request.headers),
            false => match flow.response.as_mut() {
                Some(response) => f(&mut response.headers),
                None => Err(Error::runtime("the flow has no response")),
            },
        })
    }

    /// Sets (replacing every field of that name) or, with `append`, adds a field.
    fn put(&self, name: &str, value: &mlua::String, append: bool) -> mlua::Result<()> {
        let value = value.as_bytes().to_vec();
        checked_field(name, &value)?;
        self.write(|h| {
            if append {
                h.append(name, value);
            } else {
                h.set(name, value);
            }
            Ok(())
        })
    }
}

/// A header name or value from Lua: names must be tokens, values must not break the line.
fn checked_field(name: &str, value: &[u8]) -> mlua::Result<()> {
    if !is_token(name.as_bytes()) {
        return Err(Error::runtime(format!("'{name}' is not a header name")));
    }
    if value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(Error::runtime(format!("the value of '{name}' contains a line break or NUL")));
    }
    Ok(())
}

impl UserData for HeadersObject {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("get", |lua, this, name: String| {
            let value = this.read(|h| Ok(h.get(&name).map(<[u8]>::to_vec)))?;
            value.map(|v| lua.create_string(v)).transpose()
        });
        methods.add_method("get_all", |lua, this, name: String| {
            let values: Vec<Vec<u8>> = this.read(|h| Ok(h.get_all(&name).map(<[u8]>::to_vec).collect()))?;
            lua.create_sequence_from(
                values.into_iter().map(|v| lua.create_string(v)).collect::<mlua::Result<Vec<_>>>()?,
            )
        });
        methods.add_method("set", |_, this, (name, value): (String, mlua::String)| this.put(&name, &value, false));
        methods.add_method("add", |_, this, (name, value): (String, mlua::String)| this.put(&name, &value, true));
        methods.add_method("remove", |_, this, name: String| {
            this.write(|h| {
                h.remove(&name);
                Ok(())
            })
        });
        // `headers:items()`: every field in order, repeats kept, as {name, value} pairs.
        methods.add_method("items", |lua, this, ()| items(lua, this));
        // `headers["name"]`: the values joined with ", " (nil if absent), as in mitmproxy.
        methods.add_meta_method(MetaMethod::Index, |lua, this, name: String| {
            let values: Vec<Vec<u8>> = this.read(|h| Ok(h.get_all(&name).map(<[u8]>::to_vec).collect()))?;
            match values.is_empty() {
                true => Ok(Value::Nil),
                false => Ok(Value::String(lua.create_string(values.join(&b", "[..]))?)),
            }
        });
        // `headers["name"] = value` replaces every field of that name; `= nil` removes them.
        methods.add_meta_method(MetaMethod::NewIndex, |_, this, (name, value): (String, Option<mlua::String>)| {
            match value {
                Some(value) => this.put(&name, &value, false),
                None => this.write(|h| {
                    h.remove(&name);
                    Ok(())
                }),
            }
        });
        // `for name, value in pairs(headers)`: every field in order, repeats kept.
        methods.add_meta_method(MetaMethod::Pairs, |lua, this, ()| {
            let items = items(lua, this)?;
            let position = std::sync::atomic::AtomicI64::new(0);
            lua.create_function(move |_, ()| {
                let index = position.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                match items.get::<Option<Table>>(index)? {
                    Some(pair) => Ok((pair.get::<Value>(1)?, pair.get::<Value>(2)?)),
                    None => Ok((Value::Nil, Value::Nil)),
                }
            })
        });
        methods.add_meta_method(MetaMethod::Len, |_, this, ()| this.read(|h| Ok(h.0.len())));
    }
}

fn items(lua: &Lua, headers: &HeadersObject) -> mlua::Result<Table> {
    let fields: Vec<(String, Vec<u8>)> = headers.read(|h| Ok(h.0.clone()))?;
    let list = lua.create_table_with_capacity(fields.len(), 0)?;
    for (name, value) in fields {
        let pair = lua.create_table()?;
        pair.raw_push(name)?;
        pair.raw_push(lua.create_string(value)?)?;
        list.raw_push(pair)?;
    }
    Ok(list)
}

impl UserData for NewResponse {}

impl FromLua for NewResponse {
    fn from_lua(value: Value, _: &Lua) -> mlua::Result<Self> {
        match value {
            Value::UserData(ud) => Ok(ud.borrow::<NewResponse>()?.clone()),
            _ => Err(Error::runtime("expected a response made by strata.response")),
        }
    }
}

/// `strata.response(status, headers, body)`: headers as a table of name = value (a list value repeats
/// the field) or a list of {name, value} pairs; body a string (or nil).
pub fn new_response(
    lua: &Lua,
    status: u16,
    headers: Option<Table>,
    body: Option<mlua::String>,
) -> mlua::Result<NewResponse> {
    if !(100..1000).contains(&status) {
        return Err(Error::runtime(format!("{status} is not an HTTP status")));
    }
    let mut fields = Headers::default();
    if let Some(headers) = headers {
        for pair in headers.pairs::<Value, Value>() {
            let (key, value) = pair?;
            let (name, values) = match (key, value) {
                (Value::Integer(_), Value::Table(pair)) => (pair.get::<String>(1)?, vec![pair.get::<mlua::String>(2)?]),
                (Value::String(name), Value::Table(list)) => {
                    (name.to_str()?.to_string(), list.sequence_values::<mlua::String>().collect::<mlua::Result<_>>()?)
                }
                (Value::String(name), Value::String(value)) => (name.to_str()?.to_string(), vec![value]),
                (Value::String(name), other @ (Value::Integer(_) | Value::Number(_) | Value::Boolean(_))) => {
                    (name.to_str()?.to_string(), vec![lua.create_string(other.to_string()?)?])
                }
                _ => return Err(Error::runtime("headers must be a table of name = value")),
            };
            for value in values {
                let value = value.as_bytes().to_vec();
                checked_field(&name, &value)?;
                fields.append(&name, value);
            }
        }
    }
    let body = body.map(|b| b.as_bytes().to_vec()).unwrap_or_default();
    Ok(NewResponse(Response::with_headers(status, fields, body)))
}
