// strata's flow browser: a virtualized flow list paged from the server's session, live rows over a
// WebSocket, a filter evaluated by the server, and a detail view. Plain ES module, no dependencies.

const ROW = 22;        // px per row, as in style.css
const PAGE = 100;      // rows per request

const $ = (id) => document.getElementById(id);
const state = {
  filter: "", sort: "", highlight: null, total: 0,
  rows: new Map(),     // index -> row
  index: new Map(),    // id -> index
  pending: new Set(),  // page numbers being fetched
  selected: -1, socket: null, generation: 0,
  paused: new Map(),   // id -> the paused flow, as GET /api/intercept lists it
  chosen: new Set(),   // ids picked with ctrl-click, for "export selection"
};

async function api(path) {
  const response = await fetch(path, { credentials: "same-origin" });
  const body = await response.json();
  if (!response.ok) throw Object.assign(new Error(body.error || response.statusText), body);
  return body;
}

const query = (params) => Object.entries(params).filter(([, v]) => v !== "" && v !== undefined)
  .map(([k, v]) => `${k}=${encodeURIComponent(v)}`).join("&");

// ---- the list ---------------------------------------------------------------------------------------

async function reload() {
  const generation = ++state.generation;
  $("export").href = `/api/export.har?${query({ filter: state.filter })}`;
  state.rows.clear(); state.index.clear(); state.pending.clear(); state.selected = -1;
  try {
    const page = await api(`/api/flows?${query({ filter: state.filter, sort: state.sort, skip: 0, limit: PAGE })}`);
    if (generation !== state.generation) return;
    state.total = page.total;
    page.flows.forEach((row, i) => put(i, row));
    showFilterError(null);
  } catch (e) {
    if (generation !== state.generation) return;
    state.total = 0;
    showFilterError(e);
  }
  render();
  listen();
}

function put(i, row) {
  state.rows.set(i, row);
  state.index.set(row.id, i);
}

async function fetchPage(n) {
  if (state.pending.has(n)) return;
  state.pending.add(n);
  const generation = state.generation;
  try {
    const page = await api(`/api/flows?${query({ filter: state.filter, sort: state.sort, skip: n * PAGE, limit: PAGE })}`);
    if (generation !== state.generation) return;
    page.flows.forEach((row, i) => put(n * PAGE + i, row));
    render();
  } finally {
    state.pending.delete(n);
  }
}

function render() {
  const viewport = $("viewport");
  $("spacer").style.height = `${state.total * ROW}px`;
  const first = Math.max(0, Math.floor(viewport.scrollTop / ROW) - 5);
  const last = Math.min(state.total, first + Math.ceil(viewport.clientHeight / ROW) + 10);
  const rows = $("rows");
  rows.style.top = `${first * ROW}px`;
  rows.replaceChildren();
  for (let i = first; i < last; i++) {
    const row = state.rows.get(i);
    if (!row) { fetchPage(Math.floor(i / PAGE)); }
    rows.append(rowElement(i, row));
  }
  $("count").textContent = `${state.total.toLocaleString()} flows`;
}

function rowElement(i, row) {
  const el = document.createElement("div");
  el.className = "row";
  el.dataset.index = i;
  if (!row) { el.textContent = "…"; return el; }
  el.dataset.id = row.id;
  if (i === state.selected) el.classList.add("selected");
  if (state.chosen.has(row.id)) el.classList.add("chosen");
  if (state.paused.has(row.id)) el.classList.add("intercepted");
  if (row.error) el.classList.add("error");
  if (state.highlight && state.highlight.has(row.id)) el.classList.add("highlight");
  const time = row.started ? new Date(row.started).toLocaleTimeString() : "";
  const cells = [time, row.method || "", row.url, row.error ? "error" : (row.status ?? "…"), row.type,
    size(row.size), row.duration_ms != null ? `${Math.round(row.duration_ms)} ms` : ""];
  const names = ["time", "method", "url", "status", "type", "size", "duration"];
  cells.forEach((text, n) => {
    const cell = document.createElement("span");
    cell.className = names[n];
    cell.textContent = text;
    cell.title = text;
    el.append(cell);
  });
  el.addEventListener("click", (e) => (e.ctrlKey || e.metaKey ? choose(row.id) : select(i)));
  return el;
}

// Ctrl-click (cmd-click) picks rows, or drops them, for the selection's HAR export.
function choose(id) {
  if (!state.chosen.delete(id)) state.chosen.add(id);
  showChosen();
  render();
}

function showChosen() {
  const link = $("export-selection");
  link.hidden = state.chosen.size === 0;
  link.textContent = `export ${state.chosen.size} selected`;
  link.href = `/api/export.har?${query({ ids: [...state.chosen].join(",") })}`;
}

function size(n) {
  if (n == null) return "";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1048576).toFixed(1)} MiB`;
}

function showFilterError(e) {
  const input = $("filter");
  input.classList.toggle("bad", !!e);
  $("filter-error").textContent = e
    ? `${" ".repeat(0)}${e.message}${e.position != null ? ` (at ${e.position})` : ""}` : "";
}

// ---- live rows --------------------------------------------------------------------------------------

function listen() {
  if (state.socket) state.socket.close();
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/api/updates?${query({ filter: state.filter })}`);
  state.socket = socket;
  socket.onopen = () => $("live").classList.add("on");
  socket.onclose = () => { if (state.socket === socket) $("live").classList.remove("on"); };
  socket.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (event.lagged) { reload(); refreshPaused(); return; }
    let paused = false, selected = null;
    for (const row of event.flows) {
      paused ||= row.intercepted || state.paused.has(row.id);
      const known = state.index.get(row.id);
      if (known !== undefined) {
        state.rows.set(known, row);
        if (known === state.selected) selected = row.id;
      } else if (state.sort) {
        // A new flow's place in a sorted list is the server's to say.
        reloadSoon();
      } else {
        put(state.total, row);
        state.total += 1;
      }
    }
    if (paused) refreshPaused();
    renderSoon();
    if (selected) showDetail(selected);
  };
}

// Draws the list once per animation frame, however many rows arrived in between (a busy proxy sends
// many messages a second; drawing after each would fall behind).
let frame = 0;
function renderSoon() {
  if (!frame) frame = requestAnimationFrame(() => { frame = 0; render(); });
}

const reloadSoon = debounce(() => reload(), 300);

// Clicking a column head sorts by it; again, the other way; the time column's ascending order is the
// recording's own.
document.querySelectorAll(".row.head span[data-sort]").forEach((head) => head.addEventListener("click", () => {
  const column = head.dataset.sort;
  state.sort = state.sort === column ? `-${column}` : column;
  if (state.sort === "time") state.sort = "";
  document.querySelectorAll(".row.head span").forEach((h) => h.classList.remove("asc", "desc"));
  if (state.sort) head.classList.add(state.sort.startsWith("-") ? "desc" : "asc");
  reload();
}));

// ---- highlight --------------------------------------------------------------------------------------

async function updateHighlight(text) {
  if (!text.trim()) { state.highlight = null; render(); return; }
  try {
    const expression = state.filter ? `(${state.filter}) & (${text})` : text;
    const page = await api(`/api/flows?${query({ filter: expression, limit: 1000 })}`);
    state.highlight = new Set(page.flows.map((row) => row.id));
    $("highlight").classList.remove("bad");
  } catch (e) {
    state.highlight = null;
    $("highlight").classList.add("bad");
  }
  render();
}

// ---- the detail view --------------------------------------------------------------------------------

function select(i) {
  state.selected = i;
  render();
  const row = state.rows.get(i);
  if (row) showDetail(row.id);
}

async function showDetail(id) {
  const flow = state.paused.get(id) || await api(`/api/flows/${id}`);
  const detail = $("detail");
  detail.hidden = false;
  detail.replaceChildren();
  const h = (tag, text) => { const el = document.createElement(tag); el.textContent = text; return el; };
  detail.append(h("h3", `${flow.method || ""} ${flow.url}`));
  if (flow.intercepted) detail.append(interceptEditor(flow));
  else if (flow.request) detail.append(actions(flow));
  if (flow.error) detail.append(h("p", `error: ${flow.error}`));
  if (flow.request) {
    detail.append(h("h3", `Request (${flow.request.version})`), table(flow.request.headers));
    const params = queryPairs(flow.request.url);
    if (params.length) detail.append(h("h3", "Query"), table(params));
    if (flow.request.trailers) detail.append(h("h3", "Request trailers"), table(flow.request.trailers));
    if (flow.request.body_len > 0) detail.append(await body(flow, "request", flow.request));
  }
  if (flow.response) {
    detail.append(h("h3", `Response ${flow.response.status} ${flow.response.reason} (${flow.response.version})`),
      table(flow.response.headers));
    if (flow.response.trailers) detail.append(h("h3", "Response trailers"), table(flow.response.trailers));
    if (flow.response.body_len > 0) detail.append(await body(flow, "response", flow.response));
  }
  if (flow.websocket) {
    detail.append(h("h3", `WebSocket messages (${flow.websocket.messages.length})`), messages(flow.websocket.messages));
  }
  if (flow.type === "tcp") {
    detail.append(h("h3", `TCP: ${size(flow.bytes_to_server)} up, ${size(flow.bytes_to_client)} down`));
    detail.append(h("h3", `Chunks (${flow.messages.length})`), messages(flow.messages));
  }
  if (flow.client_conn) detail.append(h("h3", "Connections"), connections(flow));
  if (flow.timings) detail.append(h("h3", "Timings"), timeline(flow.timings));
}

// The URL's query string as name, value pairs (decoded).
function queryPairs(url) {
  try { return [...new URL(url).searchParams]; } catch (e) { return []; }
}

// WebSocket messages or TCP chunks: time, direction, kind, content (text, else base64).
function messages(list) {
  const t = document.createElement("table");
  t.className = "messages";
  for (const m of list) {
    const tr = t.insertRow();
    tr.className = m.from_client ? "up" : "down";
    tr.insertCell().textContent = clock(m.at);
    tr.insertCell().textContent = `${m.from_client ? "→ to server" : "← to client"} ${m.kind === "tcp" ? "" : m.kind}`;
    tr.insertCell().textContent = m.base64 ? `(base64, ${size(m.len)}) ${m.text}` : m.text;
  }
  return t;
}

// A time of day with milliseconds, from ms since the epoch.
function clock(ms) {
  if (!ms) return "";
  const at = new Date(ms);
  return `${at.toLocaleTimeString([], { hour12: false })}.${String(at.getMilliseconds()).padStart(3, "0")}`;
}

// Client and server side of the flow; the server's certificate as the fields a person checks, and its PEM.
function connections(flow) {
  const wrap = document.createElement("div");
  const conn = (c) => [c.address || "", c.tls ? `${c.tls.version || ""} ALPN ${c.tls.alpn || "-"} SNI ${c.tls.sni || "-"}` : "plain"];
  wrap.append(table([["client", conn(flow.client_conn).join(" ")], ["server", conn(flow.server_conn).join(" ")]]));
  const cert = flow.server_conn.tls?.certificate;
  if (cert) {
    const title = document.createElement("h3");
    title.textContent = "Server certificate";
    const fields = [["subject", cert.subject], ["issuer", cert.issuer], ["names", (cert.alt_names || []).join(", ")],
      ["valid from", cert.not_before], ["valid until", cert.not_after], ["serial", cert.serial], ["SHA-256", cert.sha256]];
    const pem = document.createElement("details");
    const summary = document.createElement("summary");
    summary.textContent = "PEM";
    const text = document.createElement("pre");
    text.className = "body";
    text.textContent = cert.pem;
    pem.append(summary, text);
    wrap.append(title, table(fields.filter(([, v]) => v)), pem);
  }
  return wrap;
}

// The exchange's phases on one time line, each row at its offset from the start: connect (TCP), TLS,
// request sent, first byte, done. A reused connection has no connect or TLS phase.
function timeline(t) {
  const connect = t.connect_ms ?? 0;
  const tls = t.ssl_ms ?? 0;
  const phases = [];
  if (t.connect_ms != null) phases.push(["connect", 0, connect - tls]);
  if (t.ssl_ms != null) phases.push(["TLS", connect - tls, tls]);
  phases.push(["request sent", connect, t.send_ms]);
  phases.push(["first byte", connect + t.send_ms, t.wait_ms]);
  phases.push(["done", connect + t.send_ms + t.wait_ms, t.receive_ms]);
  const total = Math.max(connect + t.send_ms + t.wait_ms + t.receive_ms, 0.001);
  const table = document.createElement("table");
  table.className = "timeline";
  for (const [name, start, took] of phases) {
    const tr = table.insertRow();
    tr.insertCell().textContent = name;
    tr.insertCell().textContent = `+${(start + took).toFixed(1)} ms`;
    tr.insertCell().textContent = `${took.toFixed(1)} ms`;
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.marginLeft = `${(100 * start) / total}%`;
    bar.style.width = `${Math.max((100 * took) / total, 0.5)}%`;
    tr.insertCell().append(bar);
  }
  return table;
}

// ---- intercept --------------------------------------------------------------------------------------

async function refreshPaused() {
  const intercept = await api("/api/intercept");
  state.paused = new Map(intercept.paused.map((flow) => [flow.id, flow]));
  $("paused").textContent = state.paused.size ? `${state.paused.size} paused` : "";
  if (document.activeElement !== $("intercept")) $("intercept").value = intercept.filter || "";
  render();
}

async function setIntercept(text) {
  const response = await fetch(`/api/intercept?${query({ filter: text })}`, { method: "PUT" });
  $("intercept").classList.toggle("bad", !response.ok);
}

// A message as an editable form: method and URL (request) or status (response), headers, body (when it
// is text). `buttons` are [label, id, handler(edits)].
function editor(flow, phase, bodyText, title, buttons) {
  const form = document.createElement("div");
  form.className = "edit";
  const message = flow[phase];
  const heading = document.createElement("h3");
  heading.textContent = title;
  form.append(heading);
  const field = (label, value) => {
    const wrap = document.createElement("label");
    wrap.textContent = `${label} `;
    const input = document.createElement("input");
    input.value = value ?? "";
    input.name = label;
    wrap.append(input);
    form.append(wrap, document.createElement("br"));
    return input;
  };
  const first = phase === "request" ? [field("method", message.method), field("url", message.url)] : [field("status", message.status)];
  const headers = document.createElement("textarea");
  headers.name = "headers";
  headers.rows = Math.min(12, message.headers.length + 1);
  headers.value = message.headers.map(([n, v]) => `${n}: ${v}`).join("\n");
  const body = document.createElement("textarea");
  body.name = "body";
  body.rows = 8;
  body.value = bodyText ?? "";
  body.disabled = bodyText == null;
  form.append(headers, body);
  const edits = () => {
    const out = {
      headers: headers.value.split("\n").filter((l) => l.includes(":"))
        .map((l) => [l.slice(0, l.indexOf(":")).trim(), l.slice(l.indexOf(":") + 1).trim()]),
    };
    if (!body.disabled) out.body = { text: body.value };
    if (phase === "request") { out.method = first[0].value; out.url = first[1].value; }
    else out.status = Number(first[0].value);
    return out;
  };
  const bar = document.createElement("div");
  bar.className = "actions";
  for (const [label, id, handler] of buttons) {
    const button = document.createElement("button");
    button.textContent = label;
    button.id = id;
    button.addEventListener("click", () => handler(edits()));
    bar.append(button);
  }
  form.append(bar);
  return form;
}

const post = (path, body) => fetch(path, {
  method: "POST", headers: { "content-type": "application/json" }, body: body === undefined ? "" : JSON.stringify(body),
});

function interceptEditor(flow) {
  const phase = flow.intercepted;
  return editor(flow, phase, flow.body.text, `Paused at its ${phase}`, [
    ["resume", "resume", async (edits) => { await post(`/api/flows/${flow.id}/resume`, edits); await refreshPaused(); }],
    ["kill", "kill", async () => { await post(`/api/flows/${flow.id}/kill`); await refreshPaused(); }],
  ]);
}

// "edit & send": the request as a form; sending it makes a new flow.
async function sendEditor(flow) {
  let text = null;
  if (flow.request.body_len > 0) {
    const bytes = await (await fetch(`/api/flows/${flow.id}/request/content`)).arrayBuffer();
    try { text = new TextDecoder("utf-8", { fatal: true }).decode(bytes); } catch (e) { /* kept as it is */ }
  } else {
    text = "";
  }
  const status = document.createElement("span");
  const form = editor(flow, "request", text, "Edit and send (a new flow)", [
    ["send", "send", async (edits) => {
      const response = await post(`/api/flows/${flow.id}/send`, edits);
      const body = await response.json();
      status.textContent = response.ok ? `sent: ${body.answer}` : `failed: ${body.error}`;
    }],
    ["cancel", "cancel", () => showDetail(flow.id)],
  ]);
  form.querySelector(".actions").append(status);
  return form;
}

// Replay (a new flow, which arrives live) and copy as curl.
function actions(flow) {
  const bar = document.createElement("div");
  bar.className = "actions";
  const button = (label, onclick) => {
    const b = document.createElement("button");
    b.textContent = label;
    b.addEventListener("click", onclick);
    bar.append(b);
    return b;
  };
  const status = document.createElement("span");
  button("replay", async () => {
    status.textContent = "replaying…";
    const response = await fetch(`/api/flows/${flow.id}/replay`, { method: "POST" });
    const body = await response.json();
    status.textContent = response.ok ? `replayed: ${body.answer}` : `replay failed: ${body.error}`;
  }).id = "replay";
  button("copy as curl", async () => {
    await navigator.clipboard.writeText(curlCommand(flow)).catch(() => {});
    status.textContent = "copied";
  });
  button("edit & send", async () => bar.replaceWith(await sendEditor(flow))).id = "edit";
  button("delete", async () => {
    await fetch(`/api/flows/${flow.id}`, { method: "DELETE" });
    state.chosen.delete(flow.id);
    showChosen();
    $("detail").hidden = true;
    reload();
  }).id = "delete";
  bar.append(status);
  return bar;
}

function curlCommand(flow) {
  const quote = (s) => `'${String(s).replaceAll("'", "'\\''")}'`;
  const parts = ["curl", "-X", flow.request.method, quote(flow.request.url)];
  for (const [name, value] of flow.request.headers) {
    if (!["host", "content-length", "connection"].includes(name.toLowerCase())) parts.push("-H", quote(`${name}: ${value}`));
  }
  if (flow.request.body_len > 0) parts.push("--data-binary", quote(`@${flow.id}-request-body`));
  return parts.join(" ");
}

function table(pairs) {
  const t = document.createElement("table");
  for (const [name, value] of pairs) {
    const tr = t.insertRow();
    tr.insertCell().textContent = name;
    tr.insertCell().textContent = value;
  }
  return t;
}

function header(message, name) {
  const found = message.headers.find(([n]) => n.toLowerCase() === name);
  return found ? found[1] : "";
}

// A body as the server's view shows it: JSON pretty-printed, gRPC and protobuf decoded without a schema,
// forms and multipart parts as tables, images as images, text, or a hex dump; the stored bytes one click
// away.
async function body(flow, side, message) {
  const url = `/api/flows/${flow.id}/${side}/content`;
  const wrap = document.createElement("div");
  wrap.className = `body ${side}-body`;
  const link = document.createElement("a");
  link.href = `${url}?download`;
  link.textContent = `download ${side} body (${size(message.body_len)}, as stored)`;
  wrap.append(link);
  if (message.body_stored == null) return wrap;
  const raw = document.createElement("button");
  raw.textContent = "raw";
  raw.className = "raw";
  raw.title = "the bytes as stored (still content-encoded), as text or a hex dump";
  raw.addEventListener("click", async () => {
    const bytes = new Uint8Array(await (await fetch(url)).arrayBuffer());
    const pre = document.createElement("pre");
    pre.className = "body raw";
    try { pre.textContent = new TextDecoder("utf-8", { fatal: true }).decode(bytes); } catch (e) { pre.textContent = hexDump(bytes); }
    wrap.replaceChildren(link, pre);
  });
  wrap.append(" ", raw);
  const shown = await api(`/api/flows/${flow.id}/${side}/view`);
  const note = (text) => { const p = document.createElement("p"); p.textContent = text; wrap.append(p); };
  if (shown.decoded) note(`decoded from ${shown.decoded}`);
  if (shown.note) note(shown.note);
  if (shown.truncated) note(`stored: the first ${size(shown.truncated.stored)} of ${size(shown.truncated.len)}`);
  const pre = (text) => { const el = document.createElement("pre"); el.className = "body"; el.textContent = text; wrap.append(el); };
  switch (shown.view) {
    case "image": {
      const img = document.createElement("img");
      img.className = "body";
      img.src = url;
      wrap.append(img);
      break;
    }
    case "json": wrap.append(foldableJson(shown.text)); break;
    case "protobuf": pre(fieldsText(shown.fields, "")); break;
    case "grpc": pre(shown.messages.map((m, i) => `message ${i + 1}${m.compressed ? " (compressed)" : ""}\n`
      + (m.fields ? fieldsText(m.fields, "  ") : "")).join("\n")); break;
    case "form": wrap.append(table(shown.pairs)); break;
    case "multipart":
      for (const part of shown.parts) {
        wrap.append(table(part.headers.map((line) => [line.slice(0, line.indexOf(":")), line.slice(line.indexOf(":") + 1).trim()])));
        pre(part.content.text ?? `(base64) ${part.content.base64}`);
      }
      break;
    default: pre(shown.text);
  }
  return wrap;
}

// The server's indented JSON (one member per line) as nested <details>: each object or array folds to its
// first line, with its closing bracket shown after a "…".
function foldableJson(text) {
  const root = document.createElement("pre");
  root.className = "body json";
  const stack = [root];
  for (const line of text.split("\n")) {
    const top = stack[stack.length - 1];
    const trimmed = line.trim();
    if (/[{[]$/.test(trimmed)) {
      const details = document.createElement("details");
      details.open = true;
      const summary = document.createElement("summary");
      summary.textContent = line;
      details.append(summary);
      top.append(details);
      stack.push(details);
    } else if (/^[}\]],?$/.test(trimmed) && stack.length > 1) {
      top.append(line);
      top.querySelector(":scope > summary").dataset.close = trimmed;
      stack.pop();
    } else {
      top.append(`${line}\n`);
    }
  }
  return root;
}

// Up to 64 KiB as a hex dump: offset, 16 bytes in hex, the printable ones as text.
function hexDump(bytes) {
  const lines = [];
  for (let at = 0; at < Math.min(bytes.length, 65536); at += 16) {
    const row = bytes.subarray(at, at + 16);
    const hex = [...row].map((b) => b.toString(16).padStart(2, "0")).join(" ").padEnd(48);
    const text = [...row].map((b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : ".")).join("");
    lines.push(`${at.toString(16).padStart(8, "0")}  ${hex}  ${text}`);
  }
  if (bytes.length > 65536) lines.push(`… ${bytes.length - 65536} more bytes`);
  return lines.join("\n");
}

// Protobuf fields as an indented tree: `NUMBER TYPE: VALUE`.
function fieldsText(fields, indent) {
  return fields.map((f) => f.type === "message"
    ? `${indent}${f.field} message:\n${fieldsText(f.value, indent + "  ")}`
    : `${indent}${f.field} ${f.type}: ${typeof f.value === "string" ? JSON.stringify(f.value) : f.value}`).join("\n");
}

// ---- wiring -----------------------------------------------------------------------------------------

function debounce(f, ms) {
  let timer;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => f(...args), ms); };
}

$("filter").addEventListener("input", debounce((e) => { state.filter = e.target.value.trim(); reload(); }, 250));
$("highlight").addEventListener("input", debounce((e) => updateHighlight(e.target.value), 250));
$("clear").addEventListener("click", async () => {
  if (!confirm("Delete every flow of this session?")) return;
  await fetch("/api/flows", { method: "DELETE" });
  state.chosen.clear();
  showChosen();
  $("detail").hidden = true;
  reload();
});
$("intercept").addEventListener("input", debounce((e) => setIntercept(e.target.value.trim()), 250));
$("viewport").addEventListener("scroll", () => render());
window.addEventListener("resize", () => render());
$("list").addEventListener("keydown", (e) => {
  const moves = { ArrowDown: 1, j: 1, ArrowUp: -1, k: -1 };
  if (!(e.key in moves) || state.total === 0) return;
  e.preventDefault();
  const next = Math.min(state.total - 1, Math.max(0, state.selected + moves[e.key]));
  const viewport = $("viewport");
  if (next * ROW < viewport.scrollTop) viewport.scrollTop = next * ROW;
  if ((next + 1) * ROW > viewport.scrollTop + viewport.clientHeight) viewport.scrollTop = (next + 1) * ROW - viewport.clientHeight;
  select(next);
});
// The token has set the cookie; keep it out of the address bar (and of screenshots and history).
if (location.search.includes("token=")) history.replaceState(null, "", "/");
reload();
refreshPaused();
