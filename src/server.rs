//! Listeners, the accept loop and shutdown.
//!
//! `run` prepares the confdir, binds one listener per mode, announces each on stderr, and spawns one task
//! per accepted client, which builds the mode layer and runs the connection to its end; a failing
//! connection never affects another. On SIGINT or SIGTERM it stops accepting, tells idle connections to
//! close, and gives the rest a short grace period.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::addon::{Addon, ClientInfo};
use crate::addons;
use crate::certs::CertificateAuthority;
use crate::client_replay::{self, Playback};
use crate::config::{Config, Mode, ModeKind};
use crate::context::RootContext;
use crate::error::ConfigError;
use crate::io::BufIo;
use crate::layer::Layer;
use crate::layers::mode::{original_destination, ModeLayer};
use crate::layers::tls::server_base_config;
use crate::read_flows;
use crate::server_conn::{upstream_tls_config, ConnectionPool};
use crate::web;

/// How long live connections may go on after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// How long the accept loop pauses after an accept error (e.g. out of file descriptors) instead of spinning.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

/// Runs the proxy until SIGINT or SIGTERM (or, with `--client-replay`, until the replay is done; with
/// `-n`, once `-r`'s flows are read). Returns false if the replay had failures. Errors are startup
/// problems (confdir, bind, files).
pub async fn run(config: Config) -> Result<bool, ConfigError> {
    run_with_addons(config, Vec::new()).await
}

/// As `run`, with addons of the caller's own in the chain (before the `-s` scripts): how a program
/// embeds strata (see `examples/embed.rs`).
pub async fn run_with_addons(mut config: Config, custom: Vec<Arc<dyn Addon>>) -> Result<bool, ConfigError> {
    prepare_confdir(&config)?;
    let ca = CertificateAuthority::load_or_create(&config.confdir)?;
    let client_replay = config.addons.client_replay.clone();
    let mut listeners = Vec::new();
    let serves = client_replay.is_none() && !config.no_server;
    for spec in config.listeners.iter().filter(|_| serves) {
        let listener = TcpListener::bind(spec.addr)
            .await
            .map_err(|source| ConfigError::Bind { addr: spec.addr.to_string(), source })?;
        let addr = listener.local_addr().map_err(|source| ConfigError::Bind { addr: spec.addr.to_string(), source })?;
        listeners.push((listener, addr, spec.mode.clone()));
    }
    // Handlers go in before the `listening on` line, so a signal sent on seeing it is always handled.
    let signals = ShutdownSignals::install();
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    // The positional filter also chooses which of -r's flows are read; the chain takes the original.
    let rfile_filter = config.addons.view.clone();
    let web_session = web_session(&mut config)?;
    let live = web_session.as_ref().map(|_| Arc::new(web::Live::default()));
    let intercept = live.as_ref().map(|live| Arc::new(web::Intercept::new(live.clone())));
    let mut custom = custom;
    if let (Some(live), Some(intercept)) = (&live, &intercept) {
        // Before the recorders: what they record is what went on after the user's edits.
        custom.push(live.clone());
        custom.push(intercept.clone());
    }
    let mut addons = addons::chain(&mut config.addons, &ca, custom)?;
    let playback = client_replay.as_ref().map(|_| Arc::new(Playback::default()));
    if let Some(playback) = &playback {
        addons.push(playback.clone());
    }
    let root = Arc::new(RootContext {
        addons,
        listen_addrs: listeners.iter().map(|(_, addr, _)| *addr).collect(),
        ca,
        upstream_tls: upstream_tls_config(&config.upstream_tls),
        tls_server_base: server_base_config(),
        pool: ConnectionPool::default(),
        config,
        shutdown: shutdown_rx,
    });
    if let (Some(path), Some(playback)) = (client_replay, playback) {
        let failures = client_replay::run(root.clone(), &playback, &path).await?;
        return Ok(failures == 0);
    }
    if let Some(path) = &root.config.rfile {
        read_flows::run(&root, path, rfile_filter.as_ref()).await?;
    }
    if root.config.no_server {
        root.addons.each(&(), |addon, _| addon.done()).await;
        return Ok(true);
    }

    let sweeper = tokio::spawn({
        let root = root.clone();
        async move {
            let mut ticks = tokio::time::interval(ConnectionPool::SWEEP_INTERVAL);
            loop {
                ticks.tick().await;
                root.pool.sweep();
            }
        }
    });

    // Every connection task holds a clone of `alive`; when all are dropped, `all_done` yields None.
    let (alive, mut all_done) = mpsc::channel::<()>(1);
    let mut accept_loops = JoinSet::new();
    let slots = Arc::new(Semaphore::new(root.config.limits.max_connections));
    for (listener, addr, mode) in listeners {
        eprintln!("listening on {addr} ({mode})");
        accept_loops.spawn(accept_loop(listener, Arc::new(mode), root.clone(), alive.clone(), slots.clone()));
    }
    drop(alive);
    if let (Some(options), Some((session, _)), Some(live), Some(intercept)) =
        (&root.config.web, &web_session, live, intercept)
    {
        let addr = web::start(root.clone(), options.clone(), session.clone(), live, intercept).await?;
        eprintln!("web UI at http://{addr}/?token={}", options.token);
    }
    root.addons.each(&(), |addon, _| addon.running()).await;

    signals.wait().await;
    tracing::info!("shutting down");
    sweeper.abort();
    accept_loops.shutdown().await;
    let _ = shutdown_tx.send(true);
    if tokio::time::timeout(SHUTDOWN_GRACE, all_done.recv()).await.is_err() {
        tracing::info!("grace period over; closing remaining connections");
    }
    root.addons.each(&(), |addon, _| addon.done()).await;
    if let Some((session, true)) = &web_session {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", session.display()));
        }
    }
    Ok(true)
}

/// With `--web`: the session the UI reads, and whether it is strata's own to remove at exit. It is the `-w`
/// session if there is one; otherwise a new one in the confdir (`web-session-PID.db`), which `-w` is then
/// set to.
fn web_session(config: &mut Config) -> Result<Option<(std::path::PathBuf, bool)>, ConfigError> {
    let Some(options) = &config.web else { return Ok(None) };
    if config.no_server || config.addons.client_replay.is_some() {
        return Ok(None);
    }
    if let Some((path, _)) = &config.addons.save_stream {
        return Ok(Some((path.clone(), false)));
    }
    let path = config.confdir.join(format!("web-session-{}.db", std::process::id()));
    // A leftover of an earlier run with the same process id: strata's own file.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    config.addons.save_stream = Some((path.clone(), false));
    Ok(Some((path, !options.keep_session)))
}

/// Creates the confdir (private to the user) if it does not exist yet.
fn prepare_confdir(config: &Config) -> Result<(), ConfigError> {
    let dir = &config.confdir;
    let fail = |reason: String| ConfigError::File { path: dir.display().to_string(), reason };
    if dir.exists() {
        return if dir.is_dir() { Ok(()) } else { Err(fail("exists and is not a directory".into())) };
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| fail(format!("cannot create: {e}")))
}

async fn accept_loop(
    listener: TcpListener,
    mode: Arc<Mode>,
    root: Arc<RootContext>,
    alive: mpsc::Sender<()>,
    slots: Arc<Semaphore>,
) {
    loop {
        // At --max-connections, stop accepting until a connection ends: new clients wait in the backlog
        // instead of the process running out of file descriptors.
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let (socket, client_addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let span = tracing::debug_span!("conn", client = %client_addr, mode = %mode);
        let held = (alive.clone(), slot);
        tokio::spawn(serve_connection(root.clone(), mode.clone(), socket, client_addr, held).instrument(span));
    }
}

/// Runs one client connection through its mode layer and logs how it ended. `held` (the shutdown's count
/// of live connections and the `--max-connections` slot) is let go when it returns.
///
/// This is the connection's task, alive as long as the connection, so it is kept small: it is spawned as it
/// is (wrapping it in another async block would hold its arguments twice), it is an `async move` block
/// rather than an async fn (for the same reason), and its events are boxed.
#[allow(clippy::manual_async_fn)] // on purpose: see above
fn serve_connection(
    root: Arc<RootContext>,
    mode: Arc<Mode>,
    socket: TcpStream,
    client_addr: SocketAddr,
    held: (mpsc::Sender<()>, OwnedSemaphorePermit),
) -> impl std::future::Future<Output = ()> + Send {
    async move {
        let Ok(local_addr) = socket.local_addr() else { return };
        let original_dst = match mode.kind {
            ModeKind::Transparent => match original_destination(&socket) {
                Ok(dst) if dst == local_addr => {
                    tracing::warn!("refusing a connection that was not redirected: its destination is strata itself");
                    return;
                }
                Ok(dst) => Some(dst),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the original destination (is the iptables REDIRECT rule in place?)");
                    return;
                }
            },
            _ => None,
        };
        let layer = ModeLayer::new(root.clone(), &mode, client_addr, local_addr, original_dst);
        // The events are boxed (and their ClientInfo made twice) so that the task, which lives as long as the
        // connection, is only as large as what it holds while the layers run.
        let client = ClientInfo { address: client_addr, mode: mode.to_string() };
        Box::pin(root.addons.each(&client, |addon, client| addon.client_connected(client))).await;
        drop(client);
        if let Some(blocked) = layer.context().blocked() {
            tracing::warn!("{blocked}");
        }
        tracing::debug!(server = ?layer.context().server(), "accepted");
        match Box::new(layer).run(BufIo::new(Box::new(socket))).await {
            Ok(()) => tracing::debug!("connection closed"),
            Err(e) if e.is_ordinary_end() => tracing::debug!(error = %e, "connection ended"),
            Err(e) => tracing::info!(error = %e, "connection failed"),
        }
        let client = ClientInfo { address: client_addr, mode: mode.to_string() };
        Box::pin(root.addons.each(&client, |addon, client| addon.client_disconnected(client))).await;
        drop(held);
    }
}

/// SIGTERM and SIGINT, caught from the moment they are installed.
struct ShutdownSignals(Option<(Signal, Signal)>);

impl ShutdownSignals {
    fn install() -> Self {
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(term), Ok(int)) => ShutdownSignals(Some((term, int))),
            _ => {
                tracing::warn!("cannot install signal handlers; stop with SIGKILL");
                ShutdownSignals(None)
            }
        }
    }

    async fn wait(self) {
        let Some((mut term, mut int)) = self.0 else { return std::future::pending().await };
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
    }
}
