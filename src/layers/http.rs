//! `HttpLayer`: the meaning of HTTP requests, whatever the wire version.
//!
//! It reads requests from the client one at a time (pipelined requests are answered in order), decides
//! where each goes, forwards it through the `ServerConnection` (connected only now, and reused while the
//! client keeps asking the same server), streams the response back and logs the flow. CONNECT opens a
//! tunnel whose contents `next_layer()` classifies. Errors become a client-visible response in exactly one
//! place, `error_response`, and only while no response head has gone out.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;

use crate::addons::proxyauth::ProxyAuth;
use crate::addons::{onboarding, LocalResponse, RequestAction};
use crate::config::ModeKind;
use crate::context::{Address, Context, Facts};
use crate::error::{ProtocolError, Side};
use crate::flow::{HttpFlow, Request, Response, Timings};
use crate::http::fields::list_members;
use crate::http::message::{Headers, RequestHead, ResponseHead, Version};
use crate::http::url::{is_same_authority, split_host_port, split_url, Scheme};
use crate::io::{BoxStream, BufIo};
use crate::layer::Layer;
use crate::layer::{run_next_layer, ClientIo, LayerKind};
use crate::layers::http1::{
    self, collect_body, copy_body, forward_partial, read_head, request_framing, response_framing, transfer_codings,
    write_fields, write_request_line, write_response_head, write_status_line, BodyError, Collected, Framing,
    FramingError, HeadError, Rest,
};
use crate::layers::websocket::WebsocketLayer;
use crate::server_conn::{Purpose, ServerConnection, ServerTls};

/// Longest request target accepted; longer gets 414.
const MAX_URI_BYTES: usize = 16 * 1024;

/// Header fields that concern one connection only and are never forwarded (RFC 9110 section 7.6.1),
/// plus the proxy's own credentials.
const HOP_BY_HOP: [&str; 7] =
    ["connection", "proxy-connection", "keep-alive", "te", "trailer", "upgrade", "proxy-authorization"];

/// Fields that frame the message, which a Connection header can never make hop-by-hop.
const FRAMING_FIELDS: [&str; 3] = ["content-length", "transfer-encoding", "host"];

/// The layer that turns HTTP requests into flows.
pub struct HttpLayer {
    ctx: Arc<Context>,
    server: ServerConnection,
    /// True at the proxy's front door (regular and upstream modes, outside any tunnel), where
    /// `--proxyauth` is checked.
    is_proxy_facing: bool,
}

/// Where a request's body is when the request is about to be sent.
enum RequestBody {
    /// There is none.
    Empty,
    /// Read whole into the flow; sent with the head.
    Whole,
    /// Still in the client stream, to be streamed with this framing.
    Stream(Framing),
    /// Over the size limit: this prefix was read, the rest is still in the client stream.
    Partial { prefix: Vec<u8>, rest: Rest },
}

impl RequestBody {
    /// Streams whatever is still to be sent to the server. Returns the payload length if it was only now
    /// known.
    async fn send(
        &self,
        client: &mut ClientIo,
        server: &mut BufIo<BoxStream>,
        read_timeout: Duration,
        host: &str,
    ) -> Result<Option<u64>, ProtocolError> {
        let sent = match self {
            RequestBody::Empty | RequestBody::Whole => None,
            RequestBody::Stream(framing) => Some(copy_body(client, server, *framing, read_timeout).await),
            RequestBody::Partial { prefix, rest } => {
                Some(forward_partial(client, server, prefix, *rest, read_timeout).await)
            }
        };
        match sent {
            Some(result) => result.map(Some).map_err(|e| request_body_error(e, host)),
            None => server.flush().await.map(|()| None).map_err(|e| ProtocolError::server_io(host, e)),
        }
    }

    /// True if nothing was consumed from the client that could not be sent again.
    fn can_resend(&self) -> bool {
        matches!(self, RequestBody::Empty | RequestBody::Whole)
    }

    /// Reads and drops what is left of the body in the client stream (for a request answered locally).
    async fn drain(&self, client: &mut ClientIo, read_timeout: Duration) -> Result<(), ProtocolError> {
        let mut sink = tokio::io::sink();
        let drained = match self {
            RequestBody::Empty | RequestBody::Whole => return Ok(()),
            RequestBody::Stream(framing) => copy_body(client, &mut sink, *framing, read_timeout).await,
            RequestBody::Partial { rest, .. } => forward_partial(client, &mut sink, &[], *rest, read_timeout).await,
        };
        drained.map(|_| ()).map_err(|e| request_body_error(e, "(local)"))
    }
}

/// What happens to the client connection after an exchange.
enum Next {
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
        let ctx = parent.push(LayerKind::Http, Facts::default());
        let server = ServerConnection::new(&ctx, ctx.server().cloned(), None, Purpose::Http);
        let is_proxy_facing =
            matches!(parent.layers().get(1), Some(LayerKind::RegularProxy | LayerKind::UpstreamProxy));
        HttpLayer { ctx, server, is_proxy_facing }
    }

    /// Serves requests until the client or an error ends the connection.
    pub async fn run(mut self, mut client: ClientIo) -> Result<(), ProtocolError> {
        tracing::debug!(stack = %self.ctx.stack(), "http layer");
        loop {
            if !self.wait_for_request(&mut client).await? {
                return Ok(());
            }
            let limits = self.ctx.config().limits;
            let head =
                match read_head(&mut client, &limits, self.ctx.config().timeouts.read, http1::parse_request).await {
                    Ok(Some(head)) => head,
                    Ok(None) => return Ok(()),
                    Err(e) => return self.refuse(&mut client, request_head_error(e, &limits)).await,
                };
            if let Some(blocked) = self.ctx.blocked() {
                return self.refuse(&mut client, ProtocolError::Blocked(*blocked)).await;
            }
            if head.method == "CONNECT" {
                return self.open_tunnel(client, head).await;
            }
            // Boxed, so an idle connection's task does not carry the exchange's (large) state machine.
            match Box::pin(self.exchange(&mut client, head)).await? {
                Next::KeepAlive => continue,
                Next::Close => {
                    let _ = client.shutdown().await;
                    return Ok(());
                }
                Next::Upgraded(flow) => return self.run_upgraded(client, flow).await,
            }
        }
    }

    /// Waits for the first byte of the next request, up to the idle timeout. False if the client closed,
    /// went idle for too long, or the proxy is shutting down.
    async fn wait_for_request(&self, client: &mut ClientIo) -> Result<bool, ProtocolError> {
        if !client.buffered().is_empty() {
            return Ok(true);
        }
        client.release_if_empty();
        let mut shutdown = self.ctx.root().shutdown.clone();
        let idle = self.ctx.config().timeouts.idle;
        tokio::select! {
            read = timeout(idle, client.fill_idle()) => match read {
                Ok(Ok(more)) => Ok(more),
                Ok(Err(e)) => Err(ProtocolError::ClientIo(e)),
                Err(_) => Ok(false),
            },
            _ = shutdown.wait_for(|&stop| stop) => Ok(false),
        }
    }

    /// Answers a request that cannot be served with its error response, then ends the connection.
    async fn refuse(&self, client: &mut ClientIo, error: ProtocolError) -> Result<(), ProtocolError> {
        send_error_response(client, &error).await;
        Err(error)
    }

    /// CONNECT: confirm the tunnel, then let `next_layer()` decide what runs inside it.
    async fn open_tunnel(self, mut client: ClientIo, head: RequestHead) -> Result<(), ProtocolError> {
        let address = match split_host_port(&head.target) {
            Some((host, Some(port))) => Address::new(host, port),
            _ => {
                let error = ProtocolError::BadRequest(format!("CONNECT target '{}' is not HOST:PORT", head.target));
                return self.refuse(&mut client, error).await;
            }
        };
        if let Some(challenge) = self.check_proxy_auth(&head.headers) {
            write_local_response(&mut client, challenge, true).await?;
            return Ok(());
        }
        client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await.map_err(ProtocolError::ClientIo)?;
        client.flush().await.map_err(ProtocolError::ClientIo)?;
        let ctx = self.ctx.with_facts(Facts { server: Some(address), ..Facts::default() });
        run_next_layer(&ctx, client).await
    }

    /// One request and its response. On failure before the response head went out, the client gets the
    /// error response and the connection closes.
    async fn exchange(&mut self, client: &mut ClientIo, mut head: RequestHead) -> Result<Next, ProtocolError> {
        let resolved = self.resolve_target(&head).and_then(|target| {
            let framing = request_framing(&head).map_err(|e| match e {
                FramingError::Invalid(reason) => ProtocolError::BadRequest(reason),
                FramingError::Unsupported(reason) => ProtocolError::Refused { status: 501, reason },
            })?;
            Ok((target, framing))
        });
        let (target, framing) = match resolved {
            Ok(resolved) => resolved,
            Err(error) => {
                send_error_response(client, &error).await;
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
        };
        head.method.clone_from(&request.method);
        let mut exchange = Exchange {
            started: Instant::now(),
            response_started: false,
            flow: HttpFlow {
                client_addr: self.ctx.client_addr(),
                server_addr: None,
                request,
                response: None,
                error: None,
                websocket: None,
                started_at: SystemTime::now(),
                timings: Timings::default(),
            },
        };
        let result = self.forward(client, head, target, framing, &mut exchange).await;
        if let Err(error) = &result {
            if !exchange.response_started {
                send_error_response(client, error).await;
                if let Some((status, reason)) = error_response(error) {
                    exchange.flow.response = Some(Response {
                        status,
                        reason: reason.to_string(),
                        version: Version::Http11,
                        headers: Headers::default(),
                        body: None,
                        body_len: 0,
                    });
                }
            }
            exchange.flow.error = Some(error.to_string());
            // The exchange ended here: whatever time no phase accounts for was spent failing.
            let accounted = exchange.flow.timings.total().as_secs_f64() * 1000.0;
            exchange.flow.timings.receive_ms += (Exchange::elapsed_ms(exchange.started) - accounted).max(0.0);
            if error_response(error).is_some() || exchange.response_started {
                self.finish(&exchange);
            }
            self.server.disconnect();
        }
        result
    }

    async fn forward(
        &mut self,
        client: &mut ClientIo,
        mut head: RequestHead,
        target: Target,
        framing: Framing,
        exchange: &mut Exchange,
    ) -> Result<Next, ProtocolError> {
        let addons = self.ctx.config().addons.clone();
        let client_wants_close = wants_close(head.version, &head.headers);
        if let Some(challenge) = self.check_proxy_auth(&head.headers) {
            exchange.flow.request.headers = std::mem::take(&mut head.headers);
            return self.answer_locally(client, framing, client_wants_close, challenge, exchange).await;
        }
        if onboarding::is_onboarding_host(&target.address.host) {
            exchange.flow.request.headers = std::mem::take(&mut head.headers);
            let response = onboarding::answer(&target.path, &self.ctx.root().ca);
            return self.answer_locally(client, framing, client_wants_close, response, exchange).await;
        }
        let is_upgrade = is_websocket_upgrade(&head.headers);
        let expects_continue = head.headers.has_token("expect", "100-continue");
        prepare_request_headers(&mut head, &target, is_upgrade);
        // The framing fields go out as strata read them, never in the client's spelling: repeated (equal)
        // Content-Length fields as one (RFC 9110 section 8.6), any list of codings as `chunked`.
        match framing {
            Framing::Length(n) => head.headers.set("content-length", n.to_string()),
            Framing::Chunked => head.headers.set("transfer-encoding", "chunked"),
            Framing::Empty | Framing::Close => {}
        }
        exchange.flow.request.headers = std::mem::take(&mut head.headers);

        // Like mitmproxy, answer `Expect: 100-continue` here and forward the request without it: the body
        // then flows in one go and no server has to support the expectation.
        if expects_continue && framing != Framing::Empty && head.version == Version::Http11 {
            client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.map_err(ProtocolError::ClientIo)?;
            client.flush().await.map_err(ProtocolError::ClientIo)?;
        }
        let mut body = self.read_request_body(client, framing, addons.keeps_request_bodies(), exchange).await?;

        let request = &exchange.flow.request;
        let before = (request.scheme, request.host.clone(), request.port);
        match addons.on_request(&mut exchange.flow) {
            RequestAction::Forward => {}
            RequestAction::Kill => return Err(ProtocolError::Kill),
            RequestAction::Respond(response) => {
                body.drain(client, self.ctx.config().timeouts.read).await?;
                return self.answer_locally(client, Framing::Empty, client_wants_close, response, exchange).await;
            }
        }
        let request = &mut exchange.flow.request;
        let (address, tls) = if (request.scheme, &request.host, request.port) == (before.0, &before.1, before.2) {
            (target.address, target.tls)
        } else {
            // A hook (map-remote) sent the request elsewhere.
            let tls = (request.scheme == Scheme::Https).then(|| ServerTls::http1(request.host.clone()));
            (Address::new(request.host.clone(), request.port), tls)
        };
        self.server.set_server(address, tls);

        if let RequestBody::Whole = body {
            let len = request.body.as_ref().map_or(0, Vec::len);
            request.headers.remove("transfer-encoding");
            request.headers.set("content-length", len.to_string());
        }
        let mut out = Vec::with_capacity(512);
        if self.server.is_forwarded_to_proxy() {
            let authority = self.server.address().map(Address::to_string).unwrap_or_default();
            write_request_line(
                &request.method,
                &format!("http://{authority}{}", request.path),
                request.version,
                &mut out,
            );
        } else {
            write_request_line(&request.method, &request.path, request.version, &mut out);
        }
        write_fields(&request.headers, &mut out);
        out.extend_from_slice(b"\r\n");
        if let (RequestBody::Whole, Some(bytes)) = (&body, &request.body) {
            out.extend_from_slice(bytes);
        }
        let response = self.send_request(client, &out, &mut body, exchange).await?;
        self.relay_response(client, &head, response, client_wants_close, is_upgrade, exchange).await
    }

    /// Reads the request body into the flow if hooks or the HAR file want it (up to the size limit);
    /// otherwise leaves it to be streamed.
    async fn read_request_body(
        &self,
        client: &mut ClientIo,
        framing: Framing,
        keep: bool,
        exchange: &mut Exchange,
    ) -> Result<RequestBody, ProtocolError> {
        if framing == Framing::Empty {
            exchange.flow.request.body = Some(Vec::new());
            return Ok(RequestBody::Empty);
        }
        if !keep {
            return Ok(RequestBody::Stream(framing));
        }
        let config = self.ctx.config();
        let collected = collect_body(client, framing, config.addons.body_size_limit, config.timeouts.read)
            .await
            .map_err(|e| request_body_error(e, "(client)"))?;
        Ok(match collected {
            Collected::Complete(bytes) => {
                exchange.flow.request.body_len = bytes.len() as u64;
                exchange.flow.request.body = Some(bytes);
                RequestBody::Whole
            }
            Collected::Partial { prefix, rest } => {
                tracing::info!(url = %exchange.flow.request.url(), "request body over --body-size-limit: streamed, not recorded");
                RequestBody::Partial { prefix, rest }
            }
        })
    }

    /// Sends the request head (with a whole body, if read) and streams the rest of the body, then reads
    /// the final response head (forwarding 1xx interim responses). A reused server connection that turns
    /// out to be closed is redialled once, if the body can be sent again.
    async fn send_request(
        &mut self,
        client: &mut ClientIo,
        request_head: &[u8],
        body: &mut RequestBody,
        exchange: &mut Exchange,
    ) -> Result<ResponseHead, ProtocolError> {
        let host = self.server.host();
        let timeouts = self.ctx.config().timeouts;
        let limits = self.ctx.config().limits;
        loop {
            let was_connected = self.server.is_connected();
            let connect_started = Instant::now();
            self.server.connect().await?;
            // Known only now: the connection may have come from the pool.
            let reused = self.server.is_reused();
            let dialled = !was_connected && !reused;
            let timings = &mut exchange.flow.timings;
            timings.connect_ms = if dialled { Exchange::elapsed_ms(connect_started) } else { -1.0 };
            exchange.flow.server_addr = self.server.peer_addr();
            let send_started = Instant::now();
            let server = self.server.stream().expect("connected above");
            let sent = match server.write_all(request_head).await {
                Ok(()) => body.send(client, server, timeouts.read, &host).await,
                Err(e) => Err(ProtocolError::server_io(&host, e)),
            };
            let response = match sent {
                Ok(streamed) => {
                    if let Some(len) = streamed {
                        exchange.flow.request.body_len = len;
                    }
                    exchange.flow.timings.send_ms = Exchange::elapsed_ms(send_started);
                    let wait_started = Instant::now();
                    let head = read_final_response(server, client, &limits, timeouts.read, &host).await;
                    exchange.flow.timings.wait_ms = Exchange::elapsed_ms(wait_started);
                    head
                }
                Err(e) => Err(e),
            };
            match response {
                Err(e) if reused && body.can_resend() && is_stale_connection(&e) => {
                    tracing::debug!(%host, "reused server connection was closed; redialling");
                    self.server.discard_stale();
                }
                other => return other,
            }
        }
    }

    async fn relay_response(
        &mut self,
        client: &mut ClientIo,
        request: &RequestHead,
        mut response: ResponseHead,
        client_wants_close: bool,
        is_upgrade: bool,
        exchange: &mut Exchange,
    ) -> Result<Next, ProtocolError> {
        let host = self.server.host();
        let config = self.ctx.config();
        let addons = config.addons.clone();
        let bad_response = |reason: String| ProtocolError::BadResponse { host: host.clone(), reason };
        let framing = response_framing(&request.method, &response).map_err(|e| bad_response(e.to_string()))?;

        if response.status == 101 {
            // Only a WebSocket upgrade is ever asked for (`prepare_request_headers`); a server that switches
            // to anything else would turn the connection into a tunnel nothing inspects.
            let to_websocket =
                list_members(response.headers.get_all("upgrade")).any(|p| p.eq_ignore_ascii_case(b"websocket"));
            if !is_upgrade || !to_websocket {
                return Err(bad_response("101 Switching Protocols to a protocol strata did not ask for".into()));
            }
            return self.relay_upgrade(client, response, exchange).await;
        }
        let server_keeps_open = !wants_close(response.version, &response.headers) && framing != Framing::Close;
        strip_hop_by_hop(&mut response.headers);
        if response.headers.contains("transfer-encoding") {
            match transfer_codings(&response.headers) {
                Ok(codings) => response.headers.set("transfer-encoding", codings.join(", ")),
                Err(_) => response.headers.remove("transfer-encoding"),
            }
        }
        if let Framing::Length(n) = framing {
            response.headers.set("content-length", n.to_string());
        }
        let receive_started = Instant::now();
        exchange.flow.response = Some(Response {
            status: response.status,
            reason: std::mem::take(&mut response.reason),
            version: response.version,
            headers: std::mem::take(&mut response.headers),
            body: (framing == Framing::Empty).then(Vec::new),
            body_len: 0,
        });

        // Read the body now if a hook or the HAR file wants it whole.
        let server = self.server.stream().expect("a response was read from it");
        let mut partial = None;
        if framing != Framing::Empty && addons.keeps_response_bodies() {
            let collected = collect_body(server, framing, addons.body_size_limit, config.timeouts.read)
                .await
                .map_err(|e| response_body_error(e, &host))?;
            let flow_response = exchange.flow.response.as_mut().expect("set above");
            match collected {
                Collected::Complete(bytes) => flow_response.body = Some(bytes),
                Collected::Partial { prefix, rest } => partial = Some((prefix, rest)),
            }
        }
        addons.on_response(&mut exchange.flow);

        let flow_response = exchange.flow.response.as_mut().expect("set above");
        let whole_body = framing != Framing::Empty && flow_response.body.is_some();
        if whole_body {
            // Sent with a Content-Length, so even a close-delimited body leaves the client connection usable.
            let len = flow_response.body.as_ref().map_or(0, Vec::len);
            flow_response.headers.remove("transfer-encoding");
            flow_response.headers.set("content-length", len.to_string());
        }
        let keep_client = !client_wants_close && (framing != Framing::Close || whole_body);
        // RFC 9110 section 6.2: an intermediary sends its own version, so the client reads the connection
        // state from the Connection header set here, not from the server's version.
        let mut out = Vec::with_capacity(512);
        write_status_line(Version::Http11, flow_response.status, &flow_response.reason, &mut out);
        write_fields(&flow_response.headers, &mut out);
        if !keep_client {
            out.extend_from_slice(b"connection: close\r\n");
        } else if request.version == Version::Http10 {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");
        exchange.response_started = true;

        let server = self.server.stream().expect("a response was read from it");
        let bytes = match (&flow_response.body, partial) {
            (Some(body), _) => {
                out.extend_from_slice(body);
                client.write_all(&out).await.map_err(ProtocolError::ClientIo)?;
                body.len() as u64
            }
            (None, Some((prefix, rest))) => {
                tracing::info!(url = %exchange.flow.request.url(), "response body over --body-size-limit: streamed, not recorded");
                client.write_all(&out).await.map_err(ProtocolError::ClientIo)?;
                forward_partial(server, client, &prefix, rest, config.timeouts.read)
                    .await
                    .map_err(|e| response_body_error(e, &host))?
            }
            (None, None) => {
                // One write for head and body when the whole body is already buffered.
                let small = match framing {
                    Framing::Length(n) if n <= server.buffered().len() as u64 => Some(n as usize),
                    _ => None,
                };
                match small {
                    Some(n) => {
                        out.extend_from_slice(&server.buffered()[..n]);
                        server.consume(n);
                        client.write_all(&out).await.map_err(ProtocolError::ClientIo)?;
                        n as u64
                    }
                    None => {
                        client.write_all(&out).await.map_err(ProtocolError::ClientIo)?;
                        copy_body(server, client, framing, config.timeouts.read)
                            .await
                            .map_err(|e| response_body_error(e, &host))?
                    }
                }
            }
        };
        client.flush().await.map_err(ProtocolError::ClientIo)?;
        flow_response.body_len = bytes;
        exchange.flow.timings.receive_ms = Exchange::elapsed_ms(receive_started);

        if server_keeps_open {
            self.server.mark_reusable();
        } else {
            self.server.disconnect();
        }
        self.finish(exchange);
        Ok(if keep_client { Next::KeepAlive } else { Next::Close })
    }

    /// With `--proxyauth`, the 407 for a request at the proxy's front door that lacks valid credentials.
    fn check_proxy_auth(&self, headers: &Headers) -> Option<LocalResponse> {
        let auth = self.ctx.config().addons.proxyauth.as_ref()?;
        (self.is_proxy_facing && !auth.accepts_headers(headers)).then(ProxyAuth::challenge)
    }

    /// Answers with a response made here; the request body, if any, is read and dropped.
    async fn answer_locally(
        &mut self,
        client: &mut ClientIo,
        request_framing: Framing,
        client_wants_close: bool,
        response: LocalResponse,
        exchange: &mut Exchange,
    ) -> Result<Next, ProtocolError> {
        let read_timeout = self.ctx.config().timeouts.read;
        copy_body(client, &mut tokio::io::sink(), request_framing, read_timeout)
            .await
            .map_err(|e| request_body_error(e, "(local)"))?;
        exchange.response_started = true;
        let body_len = response.body.len() as u64;
        let head = write_local_response(client, response, client_wants_close).await?;
        exchange.flow.response = Some(Response {
            status: head.status,
            reason: head.reason,
            version: Version::Http11,
            headers: head.headers,
            body_len,
            body: Some(head.body),
        });
        self.finish(exchange);
        Ok(if client_wants_close { Next::Close } else { Next::KeepAlive })
    }

    /// A 101 Switching Protocols: pass the response on; the connection then belongs to the new protocol.
    async fn relay_upgrade(
        &mut self,
        client: &mut ClientIo,
        response: ResponseHead,
        exchange: &mut Exchange,
    ) -> Result<Next, ProtocolError> {
        let mut out = Vec::with_capacity(256);
        write_response_head(&response, &mut out);
        exchange.response_started = true;
        client.write_all(&out).await.map_err(ProtocolError::ClientIo)?;
        client.flush().await.map_err(ProtocolError::ClientIo)?;
        exchange.flow.response = Some(Response {
            status: response.status,
            reason: response.reason,
            version: response.version,
            headers: response.headers,
            body: None,
            body_len: 0,
        });
        self.ctx.root().log_http(&exchange.flow);
        // The flow is recorded (HAR) when the session ends, with its messages.
        Ok(Next::Upgraded(Box::new(exchange.flow.clone())))
    }

    /// Runs what follows a 101: the WebSocket layer.
    async fn run_upgraded(mut self, client: ClientIo, flow: Box<HttpFlow>) -> Result<(), ProtocolError> {
        let host = self.server.host();
        let server = self.server.take_stream().expect("a 101 was read from it");
        Box::new(WebsocketLayer::new(&self.ctx, server, host, *flow)).run(client).await
    }

    /// The exchange is complete: log it (if the view filter shows it) and record it.
    fn finish(&self, exchange: &Exchange) {
        self.ctx.root().log_http(&exchange.flow);
        self.ctx.root().record_http(&exchange.flow);
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

    /// True if the Host header is set to the server's address: always in reverse mode, unless
    /// `--keep-host-header`.
    fn rewrites_host(&self) -> bool {
        matches!(self.ctx.mode().kind, ModeKind::Reverse(_)) && !self.ctx.config().keep_host_header
    }
}

/// Sends a response made by strata, with its Content-Length (and `Connection: close` if `close`), in one
/// write. Returns it, with the headers as sent.
async fn write_local_response(
    client: &mut ClientIo,
    mut response: LocalResponse,
    close: bool,
) -> Result<LocalResponse, ProtocolError> {
    response.headers.set("content-length", response.body.len().to_string());
    if close {
        response.headers.append("connection", "close");
    }
    let head = ResponseHead {
        version: Version::Http11,
        status: response.status,
        reason: std::mem::take(&mut response.reason),
        headers: std::mem::take(&mut response.headers),
    };
    let mut out = Vec::with_capacity(256 + response.body.len());
    write_response_head(&head, &mut out);
    out.extend_from_slice(&response.body);
    client.write_all(&out).await.map_err(ProtocolError::ClientIo)?;
    client.flush().await.map_err(ProtocolError::ClientIo)?;
    Ok(LocalResponse { status: head.status, reason: head.reason, headers: head.headers, body: response.body })
}

/// Reads response heads until a final one, passing 1xx interim responses (other than 101) to the client.
async fn read_final_response(
    server: &mut crate::io::BufIo<crate::io::BoxStream>,
    client: &mut ClientIo,
    limits: &crate::config::Limits,
    read_timeout: std::time::Duration,
    host: &str,
) -> Result<ResponseHead, ProtocolError> {
    loop {
        let head = read_head(server, limits, read_timeout, http1::parse_response)
            .await
            .map_err(|e| response_head_error(e, host))?
            .ok_or_else(|| ProtocolError::BadResponse {
                host: host.to_string(),
                reason: "connection closed before a response".into(),
            })?;
        if !(100..200).contains(&head.status) || head.status == 101 {
            return Ok(head);
        }
        let mut out = Vec::with_capacity(128);
        write_response_head(&head, &mut out);
        client.write_all(&out).await.map_err(ProtocolError::ClientIo)?;
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

/// True if the sender of a message with these headers will not keep the connection open.
fn wants_close(version: Version, headers: &Headers) -> bool {
    match version {
        Version::Http11 => headers.has_token("connection", "close"),
        Version::Http10 => !headers.has_token("connection", "keep-alive"),
    }
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
    strip_hop_by_hop(&mut head.headers);
    head.headers.remove("expect");
    if is_websocket_upgrade {
        // The WebSocket layer parses frames without extensions; asking for none keeps both sides agreed.
        head.headers.remove("sec-websocket-extensions");
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

fn request_head_error(e: HeadError, limits: &crate::config::Limits) -> ProtocolError {
    match e {
        HeadError::Io(e) => ProtocolError::ClientIo(e),
        HeadError::Timeout => ProtocolError::Timeout { side: Side::Client, step: "request head" },
        HeadError::Truncated => ProtocolError::ClientIo(std::io::ErrorKind::UnexpectedEof.into()),
        HeadError::TooLarge => ProtocolError::HeadTooLarge { limit: limits.max_head_bytes },
        HeadError::TooManyHeaders => ProtocolError::TooManyHeaders { limit: limits.max_headers },
        HeadError::Malformed(reason) => ProtocolError::BadRequest(reason),
    }
}

fn response_head_error(e: HeadError, host: &str) -> ProtocolError {
    let bad = |reason: &str| ProtocolError::BadResponse { host: host.to_string(), reason: reason.to_string() };
    match e {
        HeadError::Io(e) => ProtocolError::server_io(host, e),
        HeadError::Timeout => ProtocolError::Timeout { side: Side::Server, step: "response head" },
        HeadError::Truncated => bad("connection closed in the middle of the response head"),
        HeadError::TooLarge => bad("response head too large"),
        HeadError::TooManyHeaders => bad("too many header fields in the response"),
        HeadError::Malformed(reason) => bad(&reason),
    }
}

fn request_body_error(e: BodyError, host: &str) -> ProtocolError {
    match e {
        BodyError::Read(e) => ProtocolError::ClientIo(e),
        BodyError::Truncated => ProtocolError::ClientIo(std::io::ErrorKind::UnexpectedEof.into()),
        BodyError::Timeout => ProtocolError::Timeout { side: Side::Client, step: "request body" },
        BodyError::Malformed(reason) => ProtocolError::BadRequest(reason),
        BodyError::Write(e) => ProtocolError::server_io(host, e),
    }
}

fn response_body_error(e: BodyError, host: &str) -> ProtocolError {
    match e {
        BodyError::Read(e) => ProtocolError::server_io(host, e),
        BodyError::Truncated => ProtocolError::server_io(host, std::io::ErrorKind::UnexpectedEof.into()),
        BodyError::Timeout => ProtocolError::Timeout { side: Side::Server, step: "response body" },
        BodyError::Malformed(reason) => ProtocolError::BadResponse { host: host.to_string(), reason },
        BodyError::Write(e) => ProtocolError::ClientIo(e),
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
        BadResponse { .. } | Connect { .. } | SelfConnect { .. } | ServerTls { .. } | ServerIo { .. } => {
            Some((502, "Bad Gateway"))
        }
        Timeout { side: Side::Server, .. } => Some((504, "Gateway Timeout")),
        Refused { status, .. } => Some((*status, crate::addons::reason_phrase(*status))),
        Blocked(_) => Some((403, "Forbidden")),
        Timeout { side: Side::Client, .. } | ClientIo(_) | ClientTls(_) | Kill => None,
    }
}

/// Writes the error response for `error` (if it has one): a short text body naming the cause, and
/// `Connection: close`, since the rest of the connection's bytes cannot be trusted.
async fn send_error_response<W: AsyncWrite + Unpin>(client: &mut W, error: &ProtocolError) {
    let Some((status, reason)) = error_response(error) else { return };
    let body = format!("strata: {error}\n");
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = client.write_all(format!("{head}{body}").as_bytes()).await;
    let _ = client.flush().await;
    let _ = client.shutdown().await;
}
