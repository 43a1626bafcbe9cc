//! `HttpLayer`: what one HTTP exchange means, whatever the wire version.
//!
//! A wire layer (`Http1Layer`, `Http2Layer`) reads a request head and hands it over with its
//! `ClientSide`; `exchange` decides where the request goes, makes it a flow, fires the flow's events on
//! the addon chain (which may answer, kill or change it; see `crate::addon`), forwards it through the
//! `ServerConnection` (connected only now, and reused while the client keeps asking the same server) and
//! streams the response back. Everything spelled on the wire goes through the seam in `http_conn`. Errors
//! become a client-visible response in exactly one place, `error_response`, and only while no response
//! head has gone out.

use std::sync::Arc;
use std::time::Instant;

use crate::addon::BodySide;
use crate::config::ModeKind;
use crate::context::{Address, Context};
use crate::error::{ProtocolError, Side};
use crate::flow::{reason_phrase, HttpFlow, Request, Response};
use crate::http::fields::list_members;
use crate::http::message::{Headers, RequestHead, ResponseHead, Version};
use crate::http::url::{is_same_authority, split_host_port, split_url, Scheme};
use crate::layer::LayerKind;
use crate::layers::http_conn::{
    error_body, read_final_response, send_http2_request, send_request_head, ClientSide, ResponseBody, ServerIo,
};
use crate::server_conn::{Purpose, ServerConnection, ServerTls};

/// Longest request target accepted; longer gets 414.
const MAX_URI_BYTES: usize = 16 * 1024;

/// Header fields that concern one connection only and are never forwarded (RFC 9110 section 7.6.1).
/// The proxy's own credentials (`Proxy-Authorization`) are removed too, after the request events (the
/// proxy authentication addon reads them there).
const HOP_BY_HOP: [&str; 6] = ["connection", "proxy-connection", "keep-alive", "te", "trailer", "upgrade"];

/// Fields that frame the message, which a Connection header can never make hop-by-hop.
const FRAMING_FIELDS: [&str; 3] = ["content-length", "transfer-encoding", "host"];

/// The layer that turns HTTP requests into flows.
pub struct HttpLayer {
    ctx: Arc<Context>,
    server: ServerConnection,
    /// True at the proxy's front door (regular and upstream modes, outside any tunnel): `HttpFlow::at_proxy`.
    is_proxy_facing: bool,
}

/// What happens to the client connection after an exchange.
pub enum Next {
    KeepAlive,
    Close,
    /// A 101 switched the connection to WebSocket; the flow goes on in the WebSocket layer.
    Upgraded(Box<HttpFlow>),
}

/// Where a request goes and how its URL reads in the log.
struct Target {
    scheme: Scheme,
    address: Address,
    /// Host as the URL shows it (the Host header's name inside a tunnel).
    display_host: String,
    /// The Host field the server gets, when strata sets it; `None` keeps the client's.
    host_field: Option<String>,
    /// origin-form request target sent to the server.
    path: String,
    /// TLS toward the server, for https.
    tls: Option<ServerTls>,
}

/// One exchange in progress: its flow record, and whether the client has seen any of the response (after
/// which an error can only close the connection).
struct Exchange {
    started: Instant,
    response_started: bool,
    flow: HttpFlow,
}

impl Exchange {
    fn elapsed_ms(since: Instant) -> f64 {
        since.elapsed().as_secs_f64() * 1000.0
    }
}

impl HttpLayer {
    pub fn new(parent: &Arc<Context>) -> Self {
        let ctx = parent.push(LayerKind::Http);
        let server = ServerConnection::new(&ctx, ctx.server().cloned(), None, Purpose::Http);
        let is_proxy_facing =
            matches!(parent.layers().get(1), Some(LayerKind::RegularProxy | LayerKind::UpstreamProxy));
        HttpLayer { ctx, server, is_proxy_facing }
    }

    /// This layer's context (the wire layer's, plus the HttpLayer frame).
    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// True if an idle server connection waits with this client for its next request.
    pub fn holds_idle_server(&self) -> bool {
        self.server.is_idle()
    }

    /// Lets the idle server connection go to the shared pool while the client pauses.
    pub fn park_server(&mut self) {
        self.server.park();
    }

    /// Takes the server connection away, with its host for messages, for the layer that owns it after an
    /// upgrade.
    pub fn take_server(&mut self) -> (ServerIo, String) {
        let host = self.server.host();
        (self.server.take_stream().expect("a 101 was read from it"), host)
    }

    /// Where a CONNECT request asks to go: `HOST:PORT`, nothing else.
    pub fn tunnel_target(&self, head: &RequestHead) -> Result<Address, ProtocolError> {
        match split_host_port(&head.target) {
            Some((host, Some(port))) => Ok(Address::new(host, port)),
            _ => Err(ProtocolError::BadRequest(format!("CONNECT target '{}' is not HOST:PORT", head.target))),
        }
    }

    /// The `http_connect` event for a CONNECT to `address`: the response an addon refuses the tunnel with
    /// (a 407 from proxy authentication), if any; a killed CONNECT is refused with an error.
    pub async fn http_connect(&self, head: &RequestHead, address: &Address) -> Result<Option<Response>, ProtocolError> {
        let request = Request {
            method: head.method.clone(),
            scheme: Scheme::Http,
            host: address.host.clone(),
            port: address.port,
            path: String::new(),
            version: head.version,
            headers: head.headers.clone(),
            body: None,
            body_len: 0,
            stream: true,
            trailers: None,
        };
        let mut flow = HttpFlow::new(self.ctx.client_addr(), self.is_proxy_facing, request);
        self.ctx.root().addons.request_phase(&mut flow, |addon, flow| addon.http_connect(flow)).await;
        if flow.is_killed() {
            return Err(ProtocolError::Kill);
        }
        Ok(flow.response)
    }

    /// One request and its response. On failure before the response head went out, the client gets the
    /// error response (and, on HTTP/1, the connection closes).
    pub async fn exchange(
        &mut self,
        client: &mut ClientSide<'_>,
        mut head: RequestHead,
    ) -> Result<Next, ProtocolError> {
        let target = match self.resolve_target(&head) {
            Ok(target) => target,
            Err(error) => {
                send_error(client, &error).await;
                return Err(error);
            }
        };
        let request = Request {
            method: std::mem::take(&mut head.method),
            scheme: target.scheme,
            host: target.display_host.clone(),
            port: target.address.port,
            path: target.path.clone(),
            version: head.version,
            headers: Headers::default(),
            body: None,
            body_len: 0,
            stream: true,
            trailers: None,
        };
        head.method.clone_from(&request.method);
        let mut exchange = Exchange {
            started: Instant::now(),
            response_started: false,
            flow: HttpFlow::new(self.ctx.client_addr(), self.is_proxy_facing, request),
        };
        exchange.flow.client_tls = self.ctx.client_tls_facts().cloned();
        let result = self.forward(client, head, target, &mut exchange).await;
        if let Err(error) = &result {
            if !exchange.response_started {
                send_error(client, error).await;
                if let Some((status, _)) = error_response(error) {
                    // What the client got, so the flow line and the session show its size.
                    let body = error_body(error).into_bytes();
                    exchange.flow.response = Some(Response::new(status, "text/plain; charset=utf-8", body));
                }
            }
            if !exchange.flow.is_killed() {
                exchange.flow.error = Some(error.to_string());
            }
            // The exchange ended here: whatever time no phase accounts for was spent failing.
            let accounted = exchange.flow.timings.total().as_secs_f64() * 1000.0;
            exchange.flow.timings.receive_ms += (Exchange::elapsed_ms(exchange.started) - accounted).max(0.0);
            let killed = matches!(error, ProtocolError::Kill);
            if error_response(error).is_some() || exchange.response_started || killed {
                self.ctx.root().addons.each_mut(&mut exchange.flow, |addon, flow| addon.error(flow)).await;
            }
            self.server.disconnect();
        }
        result
    }

    async fn forward(
        &mut self,
        client: &mut ClientSide<'_>,
        mut head: RequestHead,
        target: Target,
        exchange: &mut Exchange,
    ) -> Result<Next, ProtocolError> {
        let root = self.ctx.root().clone();
        let body_size_limit = self.ctx.config().addons.body_size_limit;
        let is_upgrade = is_websocket_upgrade(&head.headers);
        let expects_continue = head.headers.has_token("expect", "100-continue");
        prepare_request_headers(&mut head, &target, is_upgrade);
        if is_upgrade && root.addons.changes_messages() {
            // Messages an addon may change are relayed whole and uncompressed: no extensions (see
            // `layers::websocket`). Otherwise the peers' extensions pass, and the frames with them.
            head.headers.remove("sec-websocket-extensions");
        }
        exchange.flow.request.headers = std::mem::take(&mut head.headers);
        root.addons.request_phase(&mut exchange.flow, |addon, flow| addon.requestheaders(flow)).await;
        if let Some(answered) = self.answered(client, exchange).await {
            return answered;
        }
        if expects_continue && !client.has_no_request_body() {
            client.send_continue().await?;
        }
        if client.has_no_request_body() {
            exchange.flow.request.body = Some(Vec::new());
        } else if !exchange.flow.request.stream {
            match client.collect_request_body(body_size_limit).await? {
                Some(bytes) => {
                    exchange.flow.request.body_len = bytes.len() as u64;
                    exchange.flow.request.body = Some(bytes);
                    exchange.flow.request.trailers = client.request_trailers().cloned();
                }
                None => {
                    tracing::info!(url = %exchange.flow.request.url(), "request body over --body-size-limit: streamed, not recorded")
                }
            }
        }

        let request = &exchange.flow.request;
        let before = (request.scheme, request.host.clone(), request.port);
        root.addons.request_phase(&mut exchange.flow, |addon, flow| addon.request(flow)).await;
        if let Some(answered) = self.answered(client, exchange).await {
            return answered;
        }
        let request = &mut exchange.flow.request;
        request.headers.remove("proxy-authorization");
        let (address, tls) = if (request.scheme, &request.host, request.port) == (before.0, &before.1, before.2) {
            (target.address, target.tls)
        } else {
            // A hook (map-remote) sent the request elsewhere.
            let tls = (request.scheme == Scheme::Https).then(|| ServerTls::http1(request.host.clone()));
            (Address::new(request.host.clone(), request.port), tls)
        };
        // Reverse mode toward an h2c server speaks HTTP/2 at once; anywhere else the server chooses by ALPN.
        let prior_knowledge = matches!(&self.ctx.mode().kind, ModeKind::Reverse(spec) if spec.h2c)
            && self.ctx.server() == Some(&address)
            && !is_upgrade;
        let tls = tls.map(|tls| self.versions_offered(tls, exchange.flow.request.version, is_upgrade));
        self.server.set_server(address, tls, prior_knowledge);
        let (response, body) = self.send_request(client, exchange).await?;
        self.relay_response(client, response, body, is_upgrade, exchange).await
    }

    /// Sends the request (head, and the body: from the flow if it was read whole, else streamed from the
    /// client), then reads the final response head (forwarding 1xx interim responses). A reused server
    /// connection that turns out to be closed is redialled once, if the body can be sent again.
    async fn send_request(
        &mut self,
        client: &mut ClientSide<'_>,
        exchange: &mut Exchange,
    ) -> Result<(ResponseHead, ResponseBody), ProtocolError> {
        let host = self.server.host();
        let timeouts = self.ctx.config().timeouts;
        // The framing fields go out as strata read the body, never in the client's spelling.
        let request = &mut exchange.flow.request;
        match &request.body {
            Some(body) => {
                request.headers.remove("transfer-encoding");
                if !body.is_empty() || request.headers.contains("content-length") {
                    request.headers.set("content-length", body.len().to_string());
                }
            }
            None => client.set_streamed_framing(&mut request.headers),
        }
        loop {
            let was_connected = self.server.is_connected();
            let connect_started = Instant::now();
            self.server.connect().await?;
            // Known only now: the connection may have come from the pool.
            let reused = self.server.is_reused();
            let dialled = !was_connected && !reused;
            let timings = &mut exchange.flow.timings;
            timings.connect_ms = if dialled { Exchange::elapsed_ms(connect_started) } else { -1.0 };
            timings.ssl_ms = match self.server.tls_handshake() {
                Some(handshake) if dialled => handshake.as_secs_f64() * 1000.0,
                _ => -1.0,
            };
            exchange.flow.server_addr = self.server.peer_addr();
            exchange.flow.server_tls = self.server.tls_facts();
            let send_started = Instant::now();
            let response = match self.server.http2() {
                Some(sender) => {
                    let request = &exchange.flow.request;
                    let whole = request.body.as_deref();
                    let tap = self.ctx.root().addons.body_tap(exchange.flow.id, BodySide::Request);
                    send_http2_request(sender, request, whole, client, timeouts.read, &host, tap).await
                }
                None => self.send_http1_request(client, exchange, send_started).await,
            };
            match response {
                Err(e) if reused && client.can_resend_request_body() && is_stale_connection(&e) => {
                    tracing::debug!(%host, "reused server connection was closed; redialling");
                    self.server.discard_stale();
                }
                other => return other,
            }
        }
    }

    /// One try of an HTTP/1 request on the open server stream: head, body, and the final response head.
    async fn send_http1_request(
        &mut self,
        client: &mut ClientSide<'_>,
        exchange: &mut Exchange,
        send_started: Instant,
    ) -> Result<(ResponseHead, ResponseBody), ProtocolError> {
        let host = self.server.host();
        let (limits, read_timeout) = (self.ctx.config().limits, self.ctx.config().timeouts.read);
        let proxy_authority =
            self.server.is_forwarded_to_proxy().then(|| self.server.address().map(Address::to_string)).flatten();
        let server = self.server.stream().expect("connected above");
        let request = &exchange.flow.request;
        send_request_head(server, request, proxy_authority.as_deref(), request.body.as_deref(), &host).await?;
        let tap = self.ctx.root().addons.body_tap(exchange.flow.id, BodySide::Request);
        if let Some(len) = client.send_request_body(server, &host, tap).await? {
            exchange.flow.request.body_len = len;
        }
        exchange.flow.timings.send_ms = Exchange::elapsed_ms(send_started);
        let wait_started = Instant::now();
        let head = read_final_response(server, client, &limits, read_timeout, &host).await;
        exchange.flow.timings.wait_ms = Exchange::elapsed_ms(wait_started);
        let head = head?;
        let body = ResponseBody::http1(&exchange.flow.request.method, &head, &host)?;
        Ok((head, body))
    }

    async fn relay_response(
        &mut self,
        client: &mut ClientSide<'_>,
        mut response: ResponseHead,
        mut body: ResponseBody,
        is_upgrade: bool,
        exchange: &mut Exchange,
    ) -> Result<Next, ProtocolError> {
        let host = self.server.host();
        let root = self.ctx.root().clone();
        let config = self.ctx.config();

        if response.status == 101 {
            // Only a WebSocket upgrade is ever asked for (`prepare_request_headers`); a server that switches
            // to anything else would turn the connection into a tunnel nothing inspects.
            let to_websocket =
                list_members(response.headers.get_all("upgrade")).any(|p| p.eq_ignore_ascii_case(b"websocket"));
            if !is_upgrade || !to_websocket {
                let reason = "101 Switching Protocols to a protocol strata did not ask for".to_string();
                return Err(ProtocolError::BadResponse { host, reason });
            }
            return self.relay_upgrade(client, response, exchange).await;
        }
        let server_keeps_open = body.keeps_connection();
        strip_hop_by_hop(&mut response.headers);
        body.set_framing_fields(&mut response.headers);
        let receive_started = Instant::now();
        exchange.flow.response = Some(Response {
            status: response.status,
            reason: std::mem::take(&mut response.reason),
            version: response.version,
            headers: std::mem::take(&mut response.headers),
            body: body.is_empty().then(Vec::new),
            body_len: 0,
            stream: true,
            trailers: None,
        });
        root.addons.each_mut(&mut exchange.flow, |addon, flow| addon.responseheaders(flow)).await;

        // Read the body now if an addon asked for it whole.
        let flow_response = exchange.flow.response.as_mut().expect("set above");
        if !body.is_empty() && !flow_response.stream {
            let server = self.server.stream();
            let limit = config.addons.body_size_limit;
            match body.collect(server, limit, config.timeouts.read, &host).await? {
                Some(bytes) => {
                    flow_response.body_len = bytes.len() as u64;
                    flow_response.body = Some(bytes);
                    flow_response.trailers = body.trailers().cloned();
                }
                None => {
                    tracing::info!(url = %exchange.flow.request.url(), "response body over --body-size-limit: streamed, not recorded")
                }
            }
        }
        // A whole body: the response event comes before the client sees anything, so it can change it.
        let is_whole = exchange.flow.response.as_ref().is_some_and(|r| r.body.is_some());
        if is_whole {
            exchange.flow.timings.receive_ms = Exchange::elapsed_ms(receive_started);
            root.addons.each_mut(&mut exchange.flow, |addon, flow| addon.response(flow)).await;
        }

        let flow_response = exchange.flow.response.as_mut().expect("set above");
        exchange.response_started = true;
        let whole = flow_response.body.take();
        let server = self.server.stream();
        let tap = root.addons.body_tap(exchange.flow.id, BodySide::Response);
        let sent = client.send_response(flow_response, whole.as_deref(), server, &mut body, &host, tap).await;
        flow_response.body = whole;
        let (bytes, keep_client) = sent?;
        flow_response.body_len = bytes;

        if server_keeps_open {
            self.server.mark_reusable();
        } else {
            self.server.disconnect();
        }
        if !is_whole {
            exchange.flow.timings.receive_ms = Exchange::elapsed_ms(receive_started);
            root.addons.each_mut(&mut exchange.flow, |addon, flow| addon.response(flow)).await;
        }
        Ok(if keep_client { Next::KeepAlive } else { Next::Close })
    }

    /// After a request event: the outcome, if an addon killed the flow or answered it.
    async fn answered(
        &mut self,
        client: &mut ClientSide<'_>,
        exchange: &mut Exchange,
    ) -> Option<Result<Next, ProtocolError>> {
        if exchange.flow.is_killed() {
            return Some(Err(ProtocolError::Kill));
        }
        exchange.flow.response.is_some().then_some(())?;
        Some(self.answer_locally(client, exchange).await)
    }

    /// Answers with the response an addon set on the flow; the request body, if any, is read and
    /// dropped. The response event comes first, so addons can still change it.
    async fn answer_locally(
        &mut self,
        client: &mut ClientSide<'_>,
        exchange: &mut Exchange,
    ) -> Result<Next, ProtocolError> {
        client.drain_request_body().await?;
        self.ctx.root().addons.each_mut(&mut exchange.flow, |addon, flow| addon.response(flow)).await;
        exchange.response_started = true;
        let response = exchange.flow.response.as_mut().expect("an addon answered");
        client.send_local(response).await?;
        Ok(if client.wants_close() { Next::Close } else { Next::KeepAlive })
    }

    /// A 101 Switching Protocols: pass the response on; the connection then belongs to the new protocol.
    async fn relay_upgrade(
        &mut self,
        client: &mut ClientSide<'_>,
        response: ResponseHead,
        exchange: &mut Exchange,
    ) -> Result<Next, ProtocolError> {
        exchange.response_started = true;
        client.send_switching(&response).await?;
        exchange.flow.response = Some(Response {
            status: response.status,
            reason: response.reason,
            version: response.version,
            headers: response.headers,
            body: None,
            body_len: 0,
            stream: true,
            trailers: None,
        });
        self.ctx.root().addons.each_mut(&mut exchange.flow, |addon, flow| addon.response(flow)).await;
        // The session's own events follow in the WebSocket layer.
        Ok(Next::Upgraded(Box::new(exchange.flow.clone())))
    }

    /// Where the request goes. At the proxy's front door (regular and upstream modes) the absolute-form
    /// URL names the server. Everywhere else the server is fixed (the reverse target, the original
    /// destination, the CONNECT or SOCKS target) and an absolute-form target's authority is at most a Host
    /// value (RFC 9112 section 3.2.2), never a route: otherwise a reverse proxy would be an open proxy, and
    /// a request inside a tunnel could leave it.
    fn resolve_target(&self, head: &RequestHead) -> Result<Target, ProtocolError> {
        if head.target.len() > MAX_URI_BYTES {
            return Err(ProtocolError::UriTooLong { limit: MAX_URI_BYTES });
        }
        let host_header = single_host_field(&head.headers)?;
        let absolute = split_url(&head.target);
        let named = match &absolute {
            Some(url) => {
                let (host, port) = split_host_port(url.authority)
                    .ok_or_else(|| ProtocolError::BadRequest(format!("invalid host in '{}'", head.target)))?;
                // RFC 9112 section 3.2.2 lets the target win; refusing is safer for a proxy, since a server
                // behind it may go by the Host field instead.
                if let Some(field) =
                    host_header.filter(|h| !is_same_authority(h, url.authority, url.scheme.default_port()))
                {
                    return Err(ProtocolError::BadRequest(format!(
                        "Host field '{field}' disagrees with the request target '{}'",
                        head.target
                    )));
                }
                Some((url.scheme, Address::new(host, port.unwrap_or(url.scheme.default_port()))))
            }
            None if head.target.starts_with('/') || head.target == "*" => None,
            None => return Err(ProtocolError::BadRequest(format!("invalid request target '{}'", head.target))),
        };
        let path = absolute.map_or_else(|| head.target.clone(), |url| url.path);

        let Some(address) = self.ctx.server().cloned() else {
            let Some((scheme, address)) = named else {
                return Err(ProtocolError::BadRequest(
                    "a proxy request needs an absolute URL (http://host/path) as its target".into(),
                ));
            };
            let tls = (scheme == Scheme::Https).then(|| ServerTls::http1(address.host.clone()));
            let host_field = Some(host_field_for(scheme, &address));
            return Ok(Target { scheme, display_host: address.host.clone(), address, host_field, path, tls });
        };
        let (scheme, tls) = if self.ctx.is_server_tls() {
            let server_name = self.ctx.sni().unwrap_or(&address.host);
            (Scheme::Https, Some(ServerTls::http1(server_name)))
        } else {
            (Scheme::Http, None)
        };
        if self.rewrites_host() {
            let host_field = Some(host_field_for(scheme, &address));
            return Ok(Target { scheme, display_host: address.host.clone(), address, host_field, path, tls });
        }
        // The client's Host field goes on as it is; an absolute-form target's authority replaces it.
        let (display_host, host_field) = match (named, host_header.and_then(split_host_port)) {
            (Some((named_scheme, named)), _) => (named.host.clone(), Some(host_field_for(named_scheme, &named))),
            (None, Some((host, _))) => (host, None),
            (None, None) => (address.host.clone(), Some(host_field_for(scheme, &address))),
        };
        Ok(Target { scheme, address, display_host, host_field, path, tls })
    }

    /// What to offer the server by ALPN: both HTTP versions, the client's own first, so a server that
    /// speaks only one of them is still reached; HTTP/1.1 alone for a WebSocket upgrade (it needs an
    /// HTTP/1.1 connection) or with `--no-http2`.
    fn versions_offered(&self, tls: ServerTls, client_version: Version, is_upgrade: bool) -> ServerTls {
        if is_upgrade || !self.ctx.config().http2 {
            return tls;
        }
        ServerTls::http(tls.server_name, client_version == Version::Http2)
    }

    /// True if the Host header is set to the server's address: always in reverse mode, unless
    /// `--keep-host-header`.
    fn rewrites_host(&self) -> bool {
        matches!(self.ctx.mode().kind, ModeKind::Reverse(_)) && !self.ctx.config().keep_host_header
    }
}

/// True for failures that mean "the idle server connection was already closed when we used it".
fn is_stale_connection(e: &ProtocolError) -> bool {
    match e {
        ProtocolError::BadResponse { reason, .. } => reason.starts_with("connection closed before"),
        ProtocolError::ServerIo { source, .. } => crate::error::is_ordinary_io(source),
        _ => false,
    }
}

/// The value of the request's Host field, if it has one; more than one, or one that is not a valid
/// authority (whitespace, NUL, user information, an empty value), is a 400 (RFC 9112 section 3.2).
fn single_host_field(headers: &Headers) -> Result<Option<&str>, ProtocolError> {
    let mut fields = headers.get_all("host");
    let Some(value) = fields.next() else { return Ok(None) };
    if fields.next().is_some() {
        return Err(ProtocolError::BadRequest("more than one Host field".into()));
    }
    match std::str::from_utf8(value).ok().filter(|v| split_host_port(v).is_some()) {
        Some(value) => Ok(Some(value)),
        None => Err(ProtocolError::BadRequest(format!("invalid Host field '{}'", String::from_utf8_lossy(value)))),
    }
}

/// The Host field for a request to `address` over `scheme`: the port only when it is not the default.
fn host_field_for(scheme: Scheme, address: &Address) -> String {
    if address.port == scheme.default_port() {
        bracket(&address.host)
    } else {
        address.to_string()
    }
}

/// True if the request asks to upgrade to WebSocket, the one upgrade strata relays. Every other
/// `Upgrade` (h2c, TLS) is removed with the hop-by-hop fields, so the server answers in HTTP/1.1 and
/// later requests on the connection stay visible to strata.
fn is_websocket_upgrade(headers: &Headers) -> bool {
    headers.has_token("connection", "upgrade")
        && list_members(headers.get_all("upgrade")).any(|p| p.eq_ignore_ascii_case(b"websocket"))
}

/// Removes hop-by-hop fields, and the fields the Connection header names.
fn strip_hop_by_hop(headers: &mut Headers) {
    let named: Vec<String> = headers
        .get_all("connection")
        .flat_map(|v| v.split(|&b| b == b','))
        .filter_map(|t| std::str::from_utf8(t.trim_ascii()).ok())
        .filter(|t| !t.is_empty())
        // The framing fields describe the message strata forwards; naming them in Connection must not
        // strip them, or the body would be read differently downstream (request smuggling).
        .filter(|t| !FRAMING_FIELDS.iter().any(|f| t.eq_ignore_ascii_case(f)))
        .map(str::to_string)
        .collect();
    for name in named.iter().map(String::as_str).chain(HOP_BY_HOP) {
        headers.remove(name);
    }
}

/// Turns the client's request headers into those the server gets.
fn prepare_request_headers(head: &mut RequestHead, target: &Target, is_websocket_upgrade: bool) {
    // `TE: trailers` says the client takes trailers; gRPC servers insist on it (RFC 9113 section 8.2.2
    // keeps it in HTTP/2, where all other TE values are gone).
    let takes_trailers = head.headers.has_token("te", "trailers");
    strip_hop_by_hop(&mut head.headers);
    if takes_trailers {
        head.headers.append("te", "trailers");
    }
    head.headers.remove("expect");
    if is_websocket_upgrade {
        head.headers.append("connection", "Upgrade");
        head.headers.append("upgrade", "websocket");
    }
    let host = match &target.host_field {
        Some(host) => host.clone(),
        None if head.headers.contains("host") => return,
        None => host_field_for(target.scheme, &target.address),
    };
    if head.headers.contains("host") {
        head.headers.set("host", host);
    } else {
        // RFC 9112 section 3.2: Host comes first.
        head.headers.0.insert(0, ("Host".to_string(), host.into_bytes()));
    }
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// The response a client sees for an error, as status and reason phrase; `None` when nothing can or
/// should be sent (the client is gone, or the flow was killed). The one place errors become statuses.
pub fn error_response(error: &ProtocolError) -> Option<(u16, &'static str)> {
    use ProtocolError::*;
    match error {
        BadRequest(_) => Some((400, "Bad Request")),
        HeadTooLarge { .. } | TooManyHeaders { .. } => Some((431, "Request Header Fields Too Large")),
        UriTooLong { .. } => Some((414, "URI Too Long")),
        BadResponse { .. }
        | Connect { .. }
        | SelfConnect { .. }
        | ServerTls { .. }
        | ServerIo { .. }
        | ServerReset { .. } => Some((502, "Bad Gateway")),
        Timeout { side: Side::Server, .. } => Some((504, "Gateway Timeout")),
        Refused { status, .. } => Some((*status, reason_phrase(*status))),
        Blocked(_) => Some((403, "Forbidden")),
        Timeout { side: Side::Client, .. } | ClientIo(_) | ClientTls(_) | Kill => None,
    }
}

/// Sends the error response for `error`, if it has one.
async fn send_error(client: &mut ClientSide<'_>, error: &ProtocolError) {
    if let Some((status, reason)) = error_response(error) {
        client.send_error(status, reason, error).await;
    }
}
