// Drives strata's web UI in Debian's chromium (playwright-core, no browser download) and checks what a
// person sees: rows appear live, a filter narrows them and a bad one says where it is wrong, a JSON body is
// pretty-printed and folds, an image is shown, WebSocket messages are listed with their direction and time,
// ctrl-clicked rows export as a HAR. Traffic goes through strata with curl, and with the `ws` library for
// WebSocket, to an origin this script runs.
// Env: STRATA_UI (the printed URL with its token), STRATA_PROXY (http://127.0.0.1:PORT), CHROMIUM, and
// STRATA_SCREENSHOT (a PNG of the page to write, for the README).
// Prints "ok" and exits 0, or prints what failed and exits 1. Timings are printed, not asserted.

import http from "node:http";
import net from "node:net";
import { execFile } from "node:child_process";
import { chromium } from "playwright-core";
import WebSocket, { WebSocketServer } from "ws";

const ui = process.env.STRATA_UI;
const proxy = process.env.STRATA_PROXY;
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";

// A 1x1 PNG.
const PNG = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==", "base64");

let requests = 0;
const origin = http.createServer((req, res) => {
  requests += 1;
  if (req.url === "/data.json") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ name: "strata", items: [1, 2, { nested: true }] }));
  } else if (req.url === "/pixel.png") {
    res.writeHead(200, { "content-type": "image/png" });
    res.end(PNG);
  } else {
    res.writeHead(200, { "content-type": "text/plain" });
    res.end("hello from the origin\n");
  }
});
// WebSocket on the same port: every message is echoed.
new WebSocketServer({ server: origin }).on("connection", (ws) => ws.on("message", (data, binary) => ws.send(data, { binary })));
await new Promise((resolve) => origin.listen(0, "127.0.0.1", resolve));
const base = `http://127.0.0.1:${origin.address().port}`;
// Not execFileSync: the origin answers from this process's event loop.
const through = (path) => new Promise((resolve, reject) =>
  execFile("curl", ["-sS", "-o", "/dev/null", "--max-time", "10", "-x", proxy, `${base}${path}`],
    (error) => (error ? reject(error) : resolve())));

// curl through strata, its body (it waits while the flow is paused).
const fetchBody = (path) => new Promise((resolve, reject) =>
  execFile("curl", ["-sS", "--max-time", "20", "-x", proxy, `${base}${path}`],
    (error, stdout) => (error ? reject(error) : resolve(stdout))));

// A CONNECT tunnel through strata to `target` (host:port), once strata said 200.
const tunnel = (target) => new Promise((resolve, reject) => {
  const { hostname, port } = new URL(proxy);
  const socket = net.connect(Number(port), hostname);
  let head = "";
  const onData = (data) => {
    head += data.toString("latin1");
    if (!head.includes("\r\n\r\n")) return;
    socket.off("data", onData);
    if (/^HTTP\/1\.[01] 200/.test(head)) resolve(socket);
    else reject(new Error(`CONNECT ${target}: ${head.split("\r\n")[0]}`));
  };
  socket.on("data", onData);
  socket.once("error", reject);
  socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
});

// A WebSocket session through strata: each text sent, and its echo awaited; then a clean close.
async function chat(texts) {
  const socket = await tunnel(`127.0.0.1:${origin.address().port}`);
  const ws = new WebSocket(`ws://127.0.0.1:${origin.address().port}/chat`, { createConnection: () => socket });
  await new Promise((resolve, reject) => { ws.once("open", resolve); ws.once("error", reject); });
  for (const text of texts) {
    const echo = new Promise((resolve) => ws.once("message", (data) => resolve(data.toString())));
    ws.send(text);
    if (await echo !== text) throw new Error(`the echo of ${text} through strata was not ${text}`);
  }
  await new Promise((resolve) => { ws.once("close", resolve); ws.close(1000, "done"); });
}

const browser = await chromium.launch({ executablePath, args: ["--no-sandbox"] });
let failed = null;
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 640 } });
  const started = Date.now();
  await page.goto(ui);
  await page.waitForSelector("#live.on", { timeout: 10000 });
  console.log(`page loaded and live in ${Date.now() - started} ms`);

  // Rows appear as the traffic passes, without a reload.
  for (const path of ["/hello.txt", "/data.json", "/pixel.png"]) await through(path);
  await page.waitForFunction(() => document.querySelectorAll("#rows .row[data-id]").length === 3, null, { timeout: 10000 });

  // The filter narrows the list; the server evaluates it.
  await page.fill("#filter", "~u json");
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll("#rows .row[data-id]")];
    return rows.length === 1 && rows[0].querySelector(".url").textContent.endsWith("/data.json");
  }, null, { timeout: 10000 });

  // A bad filter says what is wrong and where.
  await page.fill("#filter", "~c abc");
  await page.waitForFunction(() => /number/.test(document.querySelector("#filter-error").textContent)
    && document.querySelector("#filter").classList.contains("bad"), null, { timeout: 10000 });

  // The JSON body is pretty-printed in the detail view.
  await page.fill("#filter", "");
  await page.waitForFunction(() => document.querySelectorAll("#rows .row[data-id]").length === 3, null, { timeout: 10000 });
  await page.click("#rows .row[data-id]:nth-child(2)");
  const json = await page.waitForSelector(".response-body pre.body", { timeout: 10000 });
  const text = await json.innerText();
  if (!text.includes('\n  "name": "strata"')) throw new Error(`the JSON body is not pretty-printed: ${text}`);
  // The request's timings as a time line.
  await page.waitForSelector("table.timeline td:text('first byte')", { timeout: 10000 });
  // The README's picture of the page (STRATA_SCREENSHOT=FILE.png), taken here: rows and a JSON body.
  if (process.env.STRATA_SCREENSHOT) await page.screenshot({ path: process.env.STRATA_SCREENSHOT });
  // The array folds: its elements are hidden, its first line stays.
  await page.click('.response-body pre.json summary:has-text(\'"items": [\')');
  const folded = await json.innerText();
  if (folded.includes("nested") || !folded.includes('"items": [')) throw new Error(`the array did not fold: ${folded}`);

  // The image is shown as an image.
  await page.click("#rows .row[data-id]:nth-child(3)");
  await page.waitForFunction(() => {
    const img = document.querySelector(".response-body img.body");
    return img && img.complete && img.naturalWidth === 1;
  }, null, { timeout: 10000 });

  // Replay makes a new flow, which arrives live, and the origin sees the request again.
  const seen = requests;
  await page.click("#rows .row[data-id]:nth-child(1)");
  await page.click("#replay");
  await page.waitForFunction(() => document.querySelectorAll("#rows .row[data-id]").length === 4, null, { timeout: 10000 });
  if (requests !== seen + 1) throw new Error(`the origin saw ${requests - seen} replayed requests, not 1`);

  // The export link carries the filter.
  await page.fill("#filter", "~u png");
  await page.waitForFunction(() => document.querySelector("#export").href.includes("filter=~u%20png"), null, { timeout: 10000 });

  // Intercept: a matching flow waits at its request, then at its response; the edited body reaches curl.
  await page.fill("#filter", "");
  await page.fill("#intercept", "~u held");
  await page.waitForTimeout(600);
  const held = fetchBody("/held");
  await page.waitForFunction(() => document.querySelector("#paused").textContent === "1 paused", null, { timeout: 10000 });
  await page.locator("#rows .row[data-id]", { hasText: "/held" }).click();
  await page.click("#resume");
  await page.waitForFunction(() => document.querySelector("#paused").textContent === "1 paused", null, { timeout: 10000 });
  await page.locator("#rows .row[data-id]", { hasText: "/held" }).click();
  await page.waitForSelector("h3:text('Paused at its response')", { timeout: 10000 });
  await page.fill(".edit textarea[name=body]", "edited in the page");
  await page.click("#resume");
  const edited = await held;
  if (edited !== "edited in the page") throw new Error(`curl got ${JSON.stringify(edited)} after the edit`);

  // Kill closes curl's connection.
  const killed = fetchBody("/held-too").then(() => "answered", () => "closed");
  await page.waitForFunction(() => document.querySelector("#paused").textContent === "1 paused", null, { timeout: 10000 });
  await page.locator("#rows .row[data-id]", { hasText: "/held-too" }).click();
  await page.click("#kill");
  if (await killed !== "closed") throw new Error("curl got an answer for a killed flow");

  // Edit and send: a new flow with the edited URL; then delete it.
  await page.fill("#intercept", "");
  await page.waitForTimeout(600);
  await page.locator("#rows .row[data-id]", { hasText: "/hello.txt" }).first().click();
  await page.click("#edit");
  await page.fill(".edit input[name=url]", `${base}/hello.txt?sent`);
  await page.click("#send");
  const sent = page.locator("#rows .row[data-id]", { hasText: "?sent" });
  await sent.waitFor({ timeout: 10000 });
  await sent.click();
  await page.click("#delete");
  await sent.waitFor({ state: "detached", timeout: 10000 });

  // Sorting by size, largest first: the image (70 bytes) leads.
  await page.click(".row.head span[data-sort=size]");
  await page.click(".row.head span[data-sort=size]");
  await page.waitForFunction(() => document.querySelector("#rows .row[data-id] .size")?.textContent === "70 B", null, { timeout: 10000 });

  // Ctrl-click picks rows; the selection exports as a HAR of those flows.
  await page.locator("#rows .row[data-id]", { hasText: "/data.json" }).click({ modifiers: ["Control"] });
  await page.locator("#rows .row[data-id]", { hasText: "/pixel.png" }).click({ modifiers: ["Control"] });
  await page.waitForFunction(() => document.querySelector("#export-selection").textContent === "export 2 selected", null, { timeout: 10000 });
  const exported = await page.evaluate(async () => (await fetch(document.querySelector("#export-selection").href)).json());
  const urls = exported.log.entries.map((e) => e.request.url).sort();
  if (urls.join(" ") !== `${base}/data.json ${base}/pixel.png`) throw new Error(`the selection exported ${urls}`);

  // WebSocket messages, both ways, each with its time.
  await chat(["hello over ws", "second"]);
  const ws = page.locator("#rows .row[data-id]", { hasText: "/chat" });
  await ws.waitFor({ timeout: 10000 });
  await ws.click();
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll("table.messages tr")].map((tr) => [...tr.cells].map((c) => c.textContent));
    return rows.length >= 4 && rows.every(([at]) => /^\d\d:\d\d:\d\d\.\d{3}$/.test(at))
      && rows[0][1].startsWith("→") && rows[0][2] === "hello over ws" && rows[1][1].startsWith("←") && rows[1][2] === "hello over ws";
  }, null, { timeout: 10000 });
} catch (e) {
  failed = e;
} finally {
  await browser.close();
  origin.close();
}
if (failed) {
  console.log(`FAILED: ${failed.message}`);
  process.exit(1);
}
console.log("ok");
