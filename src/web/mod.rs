//! `strata --web`: the flow browser. An HTTP server (axum) beside the proxy listeners serves the page
//! (`web/`, compiled into the binary) and the API it uses, which is also the supported automation
//! interface (README, "Web UI"). The flows come from the session in the flow store (`-w FILE`, or a
//! session in the confdir that is removed at exit unless `--web-keep-session`), so a long run costs disk,
//! not memory; live updates come from the `Live` addon.
//!
//! Every request needs the token printed at start (`?token=`, the cookie the page then holds, or
//! `Authorization: Bearer`), and a Host that is the listen address or localhost, so that neither another
//! site in the browser nor a DNS-rebinding name can reach it.

mod api;
pub mod intercept;
pub mod json;
pub mod live;
pub mod views;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::config::WebOptions;
use crate::context::RootContext;
use crate::error::ConfigError;
pub use intercept::Intercept;
pub use live::Live;

/// What every handler shares.
struct Web {
    options: WebOptions,
    /// The proxy, for replays (they go through its layers like any request).
    root: Arc<RootContext>,
    /// The session the flows are read from.
    session: PathBuf,
    live: Arc<Live>,
    intercept: Arc<Intercept>,
    /// The listen address as a Host value, and its port (for `localhost:PORT`).
    port: u16,
}

/// The name of the cookie that carries the token.
const COOKIE: &str = "strata-web";

/// Binds the UI's listener and serves it until the process ends; returns the bound address.
pub async fn start(
    root: Arc<RootContext>,
    options: WebOptions,
    session: PathBuf,
    live: Arc<Live>,
    intercept: Arc<Intercept>,
) -> Result<SocketAddr, ConfigError> {
    let bind_error = |source| ConfigError::Bind { addr: options.addr.to_string(), source };
    let listener = tokio::net::TcpListener::bind(options.addr).await.map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
    let web = Arc::new(Web { options, root, session, live, intercept, port: addr.port() });
    let app = Router::new()
        .route("/", get(|| async { asset("text/html; charset=utf-8", include_str!("../../web/index.html")) }))
        .route("/app.js", get(|| async { asset("text/javascript; charset=utf-8", include_str!("../../web/app.js")) }))
        .route("/style.css", get(|| async { asset("text/css; charset=utf-8", include_str!("../../web/style.css")) }))
        .merge(api::routes())
        .layer(middleware::from_fn_with_state(web.clone(), guard))
        .with_state(web);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("web UI: {e}");
        }
    });
    Ok(addr)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-store")], body).into_response()
}

/// Lets a request through only with an allowed Host and the token; a request that brought the token in
/// its query gets the cookie, so the page's later requests need not carry it.
async fn guard(State(web): State<Arc<Web>>, request: Request, next: Next) -> Response {
    if !web.allows_host(request.headers()) {
        return (StatusCode::FORBIDDEN, "strata web UI: this Host is not allowed\n").into_response();
    }
    let from_query = request.uri().query().is_some_and(|q| query_token(q) == Some(web.options.token.as_str()));
    if !from_query && !web.has_token(request.headers()) {
        return (StatusCode::UNAUTHORIZED, "strata web UI: open the URL with the token strata printed\n")
            .into_response();
    }
    let mut response = next.run(request).await;
    if from_query {
        let cookie = format!("{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/", web.options.token);
        if let Ok(value) = cookie.parse() {
            response.headers_mut().insert(header::SET_COOKIE, value);
        }
    }
    response
}

impl Web {
    /// The listen address itself, or a loopback name, with the UI's port.
    fn allows_host(&self, headers: &HeaderMap) -> bool {
        let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else { return false };
        let port = self.port.to_string();
        let listen = self.options.addr.ip().to_string();
        let bracketed = format!("[{listen}]");
        ["localhost", "127.0.0.1", "[::1]", listen.as_str(), bracketed.as_str()]
            .iter()
            .any(|name| host.eq_ignore_ascii_case(&format!("{name}:{port}")))
    }

    /// The token in the cookie or an `Authorization: Bearer` field.
    fn has_token(&self, headers: &HeaderMap) -> bool {
        let token = self.options.token.as_str();
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| t.trim() == token);
        let cookie = headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).any(|v| {
            v.split(';').any(|pair| pair.trim().split_once('=').is_some_and(|(n, t)| n == COOKIE && t == token))
        });
        bearer || cookie
    }
}

/// The `token` parameter of a query string.
fn query_token(query: &str) -> Option<&str> {
    query.split('&').find_map(|pair| pair.strip_prefix("token="))
}
