//! `WebsocketLayer`: relays a WebSocket session frame by frame, after HTTP negotiated the upgrade.
//!
//! strata is a transparent middle, not a third endpoint: each frame goes to the other side as its sender
//! wrote it (masking, fragmentation, reserved bits, control frames and all), and strata never answers a
//! ping or starts a close itself. Each direction runs on its own, so a peer that is slow to read holds
//! back only what is sent to it. Frames are also read for the record: a data message is reassembled (and,
//! when the peers negotiated permessage-deflate, inflated) and given to the `websocket_message` event
//! once complete; control frames are recorded as messages of their kind.
//!
//! Two ways to relay, chosen per session:
//! - Nothing may change messages (recording, printing, the web UI): frames stream through as they arrive,
//!   and the handshake's extensions (permessage-deflate) pass through, since strata can read a compressed
//!   message without recompressing it.
//! - An addon may change messages (`AddonChain::changes_messages`, e.g. a script): `HttpLayer` removes
//!   the extensions from the handshake, the frames of a data message are held until it is complete, and
//!   then either sent as they came or, if the event changed its payload, replaced by one frame carrying
//!   the new payload. Control frames never wait.
//!
//! A frame strata cannot parse ends the reading of that direction's frames: its bytes are relayed as they
//! are from then on, and the peer that gets them judges them.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use flate2::{Decompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{Mutex, Notify};
use tokio::time::timeout;

use crate::addon::AddonChain;
use crate::context::Context;
use crate::error::{ProtocolError, Side};
use crate::flow::{HttpFlow, WebSocketData, WebSocketMessage};
use crate::http::message::Headers;
use crate::io::{BoxStream, BufIo};
use crate::layer::{BoxFuture, ClientIo, Layer, LayerKind};

/// Bytes read from a side at a time.
const READ_BYTES: usize = 16 * 1024;

/// Most of a message kept for the record (and, when an addon may change messages, held before it is
/// sent); the rest of a longer message is relayed without being kept.
const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// Relays the WebSocket session of an upgraded HTTP exchange.
pub struct WebsocketLayer {
    ctx: Arc<Context>,
    server: BufIo<BoxStream>,
    server_host: String,
    /// The handshake's HTTP flow, with the session's record.
    flow: HttpFlow,
    /// The peers agreed on permessage-deflate (its RSV1 bit marks a compressed message).
    deflate: bool,
}

impl WebsocketLayer {
    /// `server` is the upgraded server connection; `flow` the handshake's flow, with the server's 101.
    pub fn new(parent: &Arc<Context>, server: BufIo<BoxStream>, server_host: String, mut flow: HttpFlow) -> Self {
        let ctx = parent.push(LayerKind::Websocket);
        flow.websocket = Some(WebSocketData::new());
        let deflate = flow.response.as_ref().is_some_and(|r| accepted_deflate(&r.headers));
        WebsocketLayer { ctx, server, server_host, flow, deflate }
    }

    async fn relay(mut self, client: ClientIo) -> Result<(), ProtocolError> {
        tracing::debug!(stack = %self.ctx.stack(), url = %self.flow.request.url(), deflate = self.deflate, "websocket");
        let root = self.ctx.root().clone();
        let addons = &root.addons;
        addons.each_mut(&mut self.flow, |addon, flow| addon.websocket_start(flow)).await;
        let (client_read, client_write) = tokio::io::split(client);
        let (server_read, server_write) = tokio::io::split(self.server);
        let flow = Mutex::new(self.flow);
        let closing_timeout = self.ctx.config().timeouts.read;
        let shared = Shared {
            addons,
            flow: &flow,
            hold: addons.changes_messages(),
            closing_timeout,
            closes: Default::default(),
            ended: AtomicUsize::new(0),
            ending: Notify::new(),
        };
        let up = Pump::new(Side::Client, self.deflate, shared.hold).run(client_read, server_write, &shared);
        let down = Pump::new(Side::Server, self.deflate, shared.hold).run(server_read, client_write, &shared);
        let (up, down) = tokio::join!(up, down);
        let mut flow = flow.into_inner();
        if let Some(websocket) = &mut flow.websocket {
            websocket.finish();
        }
        addons.each_mut(&mut flow, |addon, flow| addon.websocket_end(flow)).await;
        let host = &self.server_host;
        match (up, down) {
            (Err(e), _) => Err(io_error(Side::Client, e.0, e.1, host)),
            (_, Err(e)) => Err(io_error(Side::Server, e.0, e.1, host)),
            _ => Ok(()),
        }
    }
}

impl Layer for WebsocketLayer {
    fn run(self: Box<Self>, io: ClientIo) -> BoxFuture<'static, Result<(), ProtocolError>> {
        Box::pin(self.relay(io))
    }
}

/// Whether the server's 101 accepted permessage-deflate (RFC 7692): an extension of that name, whatever its
/// parameters (`permessage-deflate; server_no_context_takeover`).
fn accepted_deflate(headers: &Headers) -> bool {
    headers.get_all("sec-websocket-extensions").flat_map(|value| value.split(|&b| b == b',')).any(|extension| {
        let name = extension.split(|&b| b == b';').next().unwrap_or_default();
        name.trim_ascii().eq_ignore_ascii_case(b"permessage-deflate")
    })
}

/// What both directions share: the addons, the flow they record on, and the session's settings.
struct Shared<'a> {
    addons: &'a AddonChain,
    flow: &'a Mutex<HttpFlow>,
    /// An addon may change messages: hold a data message's frames until it is complete.
    hold: bool,
    /// After a close frame passed, how long the direction waits for its sender to end.
    closing_timeout: std::time::Duration,
    /// A close frame passed from the client, from the server.
    closes: [AtomicBool; 2],
    /// Directions that ended, and the news of one ending.
    ended: AtomicUsize,
    ending: Notify,
}

impl Shared<'_> {
    /// Resolves once the close handshake is done (a close passed both ways) and the other direction ended:
    /// a peer that keeps its connection open after that has nothing more to say.
    async fn handshake_done(&self) {
        loop {
            let ending = self.ending.notified();
            tokio::pin!(ending);
            ending.as_mut().enable();
            let closed = self.closes.iter().all(|c| c.load(Ordering::Acquire));
            if closed && self.ended.load(Ordering::Acquire) > 0 {
                return;
            }
            ending.await;
        }
    }

    fn end(&self) {
        self.ended.fetch_add(1, Ordering::AcqRel);
        self.ending.notify_waiters();
    }
}

/// A failed read or write: which side it was on (relative to the pump: `true` for its source).
struct PumpError(bool, std::io::Error);

/// The error of a direction, named by the side it happened on.
fn io_error(source: Side, on_source: bool, e: std::io::Error, host: &str) -> ProtocolError {
    let side = match (source, on_source) {
        (Side::Client, true) | (Side::Server, false) => Side::Client,
        _ => Side::Server,
    };
    match side {
        Side::Client => ProtocolError::ClientIo(e),
        Side::Server => ProtocolError::server_io(host, e),
    }
}

/// A frame's header, as RFC 6455 section 5.2 lays it out.
#[derive(Debug, Clone, Copy)]
struct Header {
    fin: bool,
    /// RSV1 (the compressed bit of permessage-deflate).
    rsv1: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    len: u64,
    /// Bytes the header itself took.
    size: usize,
}

impl Header {
    /// The header at the start of `bytes`, or `None` if more bytes are needed.
    fn parse(bytes: &[u8]) -> Option<Header> {
        let (&first, &second) = (bytes.first()?, bytes.get(1)?);
        let (mut size, short) = (2usize, u64::from(second & 0x7f));
        let len = match short {
            126 => {
                size += 2;
                u64::from(u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?))
            }
            127 => {
                size += 8;
                u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?)
            }
            n => n,
        };
        let mask = match second & 0x80 {
            0 => None,
            _ => {
                size += 4;
                Some(bytes.get(size - 4..size)?.try_into().ok()?)
            }
        };
        Some(Header { fin: first & 0x80 != 0, rsv1: first & 0x40 != 0, opcode: first & 0x0f, mask, len, size })
    }

    fn is_control(&self) -> bool {
        self.opcode & 0x08 != 0
    }
}

/// A data message being reassembled for the record.
struct Assembly {
    kind: &'static str,
    compressed: bool,
    payload: Vec<u8>,
    /// Payload bytes as they came over the wire (compressed, when they were).
    wire_len: u64,
    /// Its frames as they came, while they are held (an addon may change messages).
    held: Vec<u8>,
    /// Longer than `MAX_MESSAGE_BYTES`: the record keeps the first part; nothing is held any more.
    cut: bool,
}

/// One direction of the session.
struct Pump {
    source: Side,
    deflate: bool,
    /// Hold a data message's frames until it is complete (an addon may change it).
    holding: bool,
    /// Inflates this direction's compressed messages for the record. Kept across messages, which is
    /// right whether or not the sender takes its context over (without takeover nothing refers back).
    inflate: Decompress,
    /// The inflater failed on this direction's stream: compressed messages are recorded as they came.
    inflate_failed: bool,
    /// Frames still parsed (false after one that is not understood: bytes then pass as they are).
    parsing: bool,
    buf: Vec<u8>,
    /// The frame whose payload is passing: its header, and how much of the payload is still to come.
    frame: Option<(Header, u64)>,
    /// Bytes of the current frame's payload already passed (for unmasking).
    offset: u64,
    /// The control frame being read whole (they are at most 125 bytes).
    control: Vec<u8>,
    message: Option<Assembly>,
    closing: bool,
}

impl Pump {
    fn new(source: Side, deflate: bool, holding: bool) -> Self {
        Pump {
            source,
            deflate,
            holding,
            inflate: Decompress::new(false),
            inflate_failed: false,
            parsing: true,
            buf: Vec::new(),
            frame: None,
            offset: 0,
            control: Vec::new(),
            message: None,
            closing: false,
        }
    }

    fn reads_client(&self) -> bool {
        self.source == Side::Client
    }

    /// Relays until the source ends (or, after a close frame, stays silent past the closing timeout), then
    /// ends the destination's writing too.
    async fn run<R, W>(
        mut self,
        mut from: ReadHalf<R>,
        mut to: WriteHalf<W>,
        shared: &Shared<'_>,
    ) -> Result<(), PumpError>
    where
        R: AsyncRead,
        W: AsyncWrite,
    {
        let mut chunk = vec![0u8; READ_BYTES];
        let result = loop {
            let read = if self.closing {
                tokio::select! {
                    read = timeout(shared.closing_timeout, from.read(&mut chunk)) => match read {
                        Ok(read) => read,
                        Err(_) => break Ok(()),
                    },
                    () = shared.handshake_done() => break Ok(()),
                }
            } else {
                from.read(&mut chunk).await
            };
            let n = match read {
                Ok(0) => break Ok(()),
                Ok(n) => n,
                Err(e) if crate::error::is_ordinary_io(&e) => break Ok(()),
                Err(e) => break Err(PumpError(true, e)),
            };
            let mut out = Vec::new();
            if self.parsing {
                self.buf.extend_from_slice(&chunk[..n]);
                self.take_frames(&mut out, shared).await;
            } else {
                out.extend_from_slice(&chunk[..n]);
            }
            if !out.is_empty() {
                if let Err(e) = to.write_all(&out).await {
                    break if crate::error::is_ordinary_io(&e) { Ok(()) } else { Err(PumpError(false, e)) };
                }
            }
        };
        // What was held for an addon when the source ended still goes out, as it came.
        if let Some(message) = self.message.take() {
            let _ = to.write_all(&message.held).await;
        }
        let _ = to.shutdown().await;
        shared.end();
        result
    }

    /// Takes every complete piece of frame from `buf`: what is to be sent goes to `out`, what is read goes
    /// to the record.
    async fn take_frames(&mut self, out: &mut Vec<u8>, shared: &Shared<'_>) {
        loop {
            let Some((header, remaining)) = self.frame else {
                let Some(header) = Header::parse(&self.buf) else { return };
                if !self.fits(&header) {
                    // Not a frame strata understands: from here on, bytes pass as they are.
                    tracing::debug!(opcode = header.opcode, "websocket: unexpected frame; relaying bytes as they are");
                    self.parsing = false;
                    out.append(&mut self.held());
                    out.append(&mut self.buf);
                    return;
                }
                let bytes: Vec<u8> = self.buf.drain(..header.size).collect();
                self.start_frame(&header);
                self.pass(&bytes, out, &header);
                self.frame = Some((header, header.len));
                self.offset = 0;
                if header.len == 0 {
                    self.end_frame(header, out, shared).await;
                }
                continue;
            };
            if self.buf.is_empty() {
                return;
            }
            let take = (remaining.min(self.buf.len() as u64)) as usize;
            let mut piece: Vec<u8> = self.buf.drain(..take).collect();
            self.pass(&piece, out, &header);
            if let Some(message) = self.message.as_mut().filter(|_| !header.is_control()) {
                message.wire_len += take as u64;
            }
            // Unmasked and kept only for a reader: a control frame's payload (its record), a data message's
            // when some addon wants messages. Otherwise a message costs its length, not its bytes.
            if header.is_control() || shared.addons.wants_messages() {
                if let Some(mask) = header.mask {
                    for (i, byte) in piece.iter_mut().enumerate() {
                        *byte ^= mask[((self.offset as usize) + i) % 4];
                    }
                }
                self.record(&header, &piece);
            }
            self.offset += take as u64;
            let remaining = remaining - take as u64;
            self.frame = Some((header, remaining));
            if remaining == 0 {
                self.end_frame(header, out, shared).await;
            }
        }
    }

    /// Whether the frame fits the session as strata follows it: a continuation only inside a message, a
    /// new data message only outside one, a control frame short and unfragmented.
    fn fits(&self, header: &Header) -> bool {
        match header.opcode {
            0x0 => self.message.is_some(),
            0x1 | 0x2 => self.message.is_none(),
            0x8..=0xa => header.fin && header.len <= 125,
            _ => false,
        }
    }

    fn start_frame(&mut self, header: &Header) {
        if header.opcode == 0x1 || header.opcode == 0x2 {
            self.message = Some(Assembly {
                kind: if header.opcode == 0x1 { "text" } else { "binary" },
                compressed: self.deflate && header.rsv1,
                payload: Vec::new(),
                wire_len: 0,
                held: Vec::new(),
                cut: false,
            });
        }
        if header.is_control() {
            self.control.clear();
        }
    }

    /// Bytes of a frame: sent on at once, or held with their message (up to `MAX_MESSAGE_BYTES`: a longer
    /// message goes on as it comes, past the addons).
    fn pass(&mut self, bytes: &[u8], out: &mut Vec<u8>, header: &Header) {
        match &mut self.message {
            Some(message) if self.holding && !header.is_control() && !message.cut => {
                if message.held.len() + bytes.len() > MAX_MESSAGE_BYTES {
                    message.cut = true;
                    out.append(&mut message.held);
                    out.extend_from_slice(bytes);
                } else {
                    message.held.extend_from_slice(bytes);
                }
            }
            _ => out.extend_from_slice(bytes),
        }
    }

    /// The frames held so far, taken.
    fn held(&mut self) -> Vec<u8> {
        self.message.as_mut().map(|m| std::mem::take(&mut m.held)).unwrap_or_default()
    }

    /// An unmasked piece of payload, into the record.
    fn record(&mut self, header: &Header, piece: &[u8]) {
        if header.is_control() {
            self.control.extend_from_slice(piece);
            return;
        }
        let Some(message) = &mut self.message else { return };
        if message.compressed && !self.inflate_failed {
            if inflate(&mut self.inflate, piece, &mut message.payload, FlushDecompress::None).is_err() {
                self.inflate_failed = true;
            }
        } else {
            let room = MAX_MESSAGE_BYTES.saturating_sub(message.payload.len());
            message.payload.extend_from_slice(&piece[..piece.len().min(room)]);
        }
    }

    /// A frame ended: a control frame is recorded, and so is a data message at its last frame (after the
    /// addons saw it, when they may change it).
    async fn end_frame(&mut self, header: Header, out: &mut Vec<u8>, shared: &Shared<'_>) {
        self.frame = None;
        let from_client = self.reads_client();
        if header.is_control() {
            let (kind, payload) = match header.opcode {
                0x8 => {
                    self.closing = true;
                    shared.closes[usize::from(!from_client)].store(true, Ordering::Release);
                    ("close", close_text(&self.control))
                }
                0x9 => ("ping", std::mem::take(&mut self.control)),
                _ => ("pong", std::mem::take(&mut self.control)),
            };
            let mut record = WebSocketMessage { from_client, kind, payload, at: SystemTime::now() };
            self.deliver(&mut record, shared).await;
            return;
        }
        if !header.fin {
            return;
        }
        let Some(mut message) = self.message.take() else { return };
        if !shared.addons.wants_messages() {
            // Nobody reads it (and so nobody changes it): counted as it came over the wire.
            out.append(&mut message.held);
            let mut flow = shared.flow.lock().await;
            if let Some(websocket) = &mut flow.websocket {
                websocket.count_bytes(from_client, message.wire_len);
            }
            return;
        }
        if message.compressed && !self.inflate_failed {
            // RFC 7692 section 7.2.2: the sender dropped the empty block's tail; put it back.
            if inflate(&mut self.inflate, &[0, 0, 0xff, 0xff], &mut message.payload, FlushDecompress::Sync).is_err() {
                self.inflate_failed = true;
            }
        }
        let mut record =
            WebSocketMessage { from_client, kind: message.kind, payload: message.payload, at: SystemTime::now() };
        let before = (self.holding && !message.cut).then(|| record.payload.clone());
        self.deliver(&mut record, shared).await;
        match before {
            Some(before) if before != record.payload => out.extend(frame(&record, from_client)),
            _ => out.append(&mut message.held),
        }
    }

    /// Counts the message on the flow and, when some addon wants them, gives it the message.
    async fn deliver(&self, record: &mut WebSocketMessage, shared: &Shared<'_>) {
        let mut flow = shared.flow.lock().await;
        if shared.addons.wants_messages() {
            shared.addons.websocket_message(&mut flow, record).await;
        }
        if let Some(websocket) = &mut flow.websocket {
            websocket.count(record);
        }
    }
}

/// Inflates `input` into `payload`, keeping at most `MAX_MESSAGE_BYTES` of the output; the rest is
/// inflated all the same, so the stream's history stays whole for the messages after it.
fn inflate(
    inflater: &mut Decompress,
    mut input: &[u8],
    payload: &mut Vec<u8>,
    flush: FlushDecompress,
) -> Result<(), flate2::DecompressError> {
    let mut scratch = [0u8; 16 * 1024];
    loop {
        let (read_before, made_before) = (inflater.total_in(), inflater.total_out());
        let status = inflater.decompress(input, &mut scratch, flush)?;
        let read = (inflater.total_in() - read_before) as usize;
        let made = (inflater.total_out() - made_before) as usize;
        input = &input[read..];
        let room = MAX_MESSAGE_BYTES.saturating_sub(payload.len());
        payload.extend_from_slice(&scratch[..made.min(room)]);
        let stalled = read == 0 && made == 0;
        if status == Status::StreamEnd || stalled || (input.is_empty() && made < scratch.len()) {
            return Ok(());
        }
    }
}

/// A close frame's payload as the record shows it: `CODE REASON`, or nothing.
fn close_text(payload: &[u8]) -> Vec<u8> {
    match payload {
        [high, low, reason @ ..] => {
            format!("{} {}", u16::from_be_bytes([*high, *low]), String::from_utf8_lossy(reason)).into_bytes()
        }
        _ => Vec::new(),
    }
}

/// One frame carrying a message an addon changed (uncompressed: a session whose messages may change has
/// no extensions); masked with a fresh key toward the server, as RFC 6455 section 5.3 requires. A text
/// message whose new payload is not UTF-8 goes as binary.
fn frame(message: &WebSocketMessage, to_server: bool) -> Vec<u8> {
    let text = message.kind == "text" && std::str::from_utf8(&message.payload).is_ok();
    let payload = &message.payload;
    let mut out = vec![0x80 | if text { 0x1 } else { 0x2 }];
    let masked = if to_server { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => out.push(masked | n as u8),
        n @ 126..=0xffff => {
            out.push(masked | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(masked | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if !to_server {
        out.extend_from_slice(payload);
        return out;
    }
    let mut mask = [0u8; 4];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut mask).expect("the system's random source");
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, byte)| byte ^ mask[i % 4]));
    out
}
