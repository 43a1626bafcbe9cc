// Scenario 11 of bench/run.sh (issue 13): strata's web UI, and mitmweb's, in Debian's chromium driven by
// playwright-core (no browser download). Times are printed, never asserted. Output: one `KEY VALUE...` line
// per measurement on stdout, for run.sh to parse (a key printed several times: one value per repetition);
// `checkpoint NAME` when it waits for run.sh (see below); `FAILED: why` and exit 1 when it could not measure.
//
//   node bench.mjs live URL       the page open on strata --web (URL with ?token=) while run.sh puts load
//                                 through the proxy: checkpoint `live` once the page is live; after it, waits
//                                 until the page's count settles and prints how many flows it counted
//                                 (live.count_start, live.count_end, live.count_settled, live.server_total),
//                                 the WebSocket messages it got (live.messages) and the lagged notices among
//                                 them (live.lagged, live.missed); fails if the count did not grow
//   node bench.mjs browse URL     strata --web on a session of BENCH_FLOWS flows: BENCH_REPS times, a fresh
//                                 page each time: page load until the rows and the count are shown, scrolling
//                                 the list to the middle, the end and the top, ArrowDown through BENCH_KEYS
//                                 rows, each filter of BENCH_FILTERS (separated by `|`) typed and then
//                                 cleared; then checkpoint `browsed` (run.sh samples strata's RSS, page open)
//   node bench.mjs mitmweb URL    mitmweb (URL as it printed it) reading a file of BENCH_FLOWS flows: waits
//                                 until it has read them (mitmweb.load_ms, from BENCH_T0, ms since the epoch,
//                                 if set; mitmweb's command `readfile.reading`), checkpoint
//                                 `loaded`, then opens its page: until its list shows flows, a filter, then
//                                 checkpoint `browsed`. Each wait is capped at BENCH_CAP seconds; past it the
//                                 key's value is `timeout` and the rest is skipped (exit 0)
//
// Checkpoint NAME: prints `checkpoint NAME`, then waits until the file BENCH_SYNC/NAME exists (run.sh
// creates it once it has measured what it wanted at that point); without BENCH_SYNC it goes on at once.
// Env: CHROMIUM (default /usr/bin/chromium), BENCH_SYNC, BENCH_FLOWS (100000), BENCH_REPS (3), BENCH_KEYS
// (40), BENCH_FILTERS ("~d api & ~c 500|~bs zyzzogeton"), BENCH_CAP (120).

import { existsSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [mode, url] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
const flows = Number(process.env.BENCH_FLOWS || 100000);
const reps = Number(process.env.BENCH_REPS || 3);
const keys = Number(process.env.BENCH_KEYS || 40);
const filters = (process.env.BENCH_FILTERS ?? "~d api & ~c 500|~bs zyzzogeton").split("|").filter((f) => f);
const cap = Number(process.env.BENCH_CAP || 120) * 1000;
const ROW = 22; // px per row in strata's list (web/app.js)

const out = (key, ...values) => console.log([key, ...values].join(" "));
const ms = (t) => (performance.now() - t).toFixed(1);
const sleep = (n) => new Promise((resolve) => setTimeout(resolve, n));

async function checkpoint(name) {
  out("checkpoint", name);
  if (!process.env.BENCH_SYNC) return;
  const file = join(process.env.BENCH_SYNC, name);
  for (let waited = 0; !existsSync(file); waited += 50) {
    if (waited > 30 * 60 * 1000) throw new Error(`nobody created ${file}`);
    await sleep(50);
  }
}

// Counts the page's WebSocket messages and its lagged notices, beside the page's own handler.
function countSocket() {
  const Native = window.WebSocket;
  window.__ws = { messages: 0, lagged: 0, missed: 0 };
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (m) => {
        window.__ws.messages += 1;
        if (typeof m.data === "string" && m.data.startsWith('{"lagged"')) {
          window.__ws.lagged += 1;
          window.__ws.missed += JSON.parse(m.data).lagged;
        }
      });
    }
  };
}

// ---- strata's page: conditions on its DOM (web/index.html, web/app.js) ----------------------------------

// The number #count shows ("100,000 flows"), or -1.
const countOf = () => {
  const text = document.querySelector("#count")?.textContent || "";
  return /\d/.test(text) ? Number(text.replace(/\D/g, "")) : -1;
};

// The rows the list should show for its scroll position are all drawn, none a "…" placeholder, and the
// count is `want` (when given).
function rowsShown(want) {
  const text = document.querySelector("#count")?.textContent || "";
  const count = /\d/.test(text) ? Number(text.replace(/\D/g, "")) : -1;
  if (want != null && count !== want) return false;
  if (count < 0) return false;
  const viewport = document.querySelector("#viewport");
  const rows = [...document.querySelectorAll("#rows .row")];
  if (count === 0) return rows.length === 0;
  const first = Math.max(0, Math.floor(viewport.scrollTop / 22) - 5);
  return rows.length > 0 && Number(rows[0].dataset.index) === first && rows.every((r) => r.dataset.id);
}

async function shown(page, want) {
  await page.waitForFunction(rowsShown, want, { polling: "raf", timeout: cap });
}

async function launch() {
  return chromium.launch({ executablePath, args: ["--no-sandbox"] });
}

async function live() {
  const browser = await launch();
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 720 }, locale: "en-US" });
    await page.addInitScript(countSocket);
    const started = performance.now();
    await page.goto(url);
    await page.waitForSelector("#live.on", { timeout: 20000 });
    await page.waitForFunction(() => /\d/.test(document.querySelector("#count").textContent), null, { timeout: 20000 });
    out("live.ready_ms", ms(started));
    const before = await page.evaluate(countOf);
    out("live.count_start", before);
    await checkpoint("live");
    const after = await page.evaluate(countOf);
    out("live.count_end", after);
    // The page catches up: its count still for a second (at most 30 s).
    let settled = after;
    for (let still = 0, waited = 0; still < 1000 && waited < 30000; waited += 250) {
      await sleep(250);
      const now = await page.evaluate(countOf);
      still = now === settled ? still + 250 : 0;
      settled = now;
    }
    out("live.count_settled", settled);
    const server = await page.evaluate(async () => (await (await fetch("/api/flows?limit=1")).json()).total);
    out("live.server_total", server);
    const ws = await page.evaluate(() => window.__ws);
    out("live.messages", ws.messages);
    out("live.lagged", ws.lagged);
    out("live.missed", ws.missed);
    if (!(after > before)) throw new Error(`the page's count did not grow during the load (${before} -> ${after})`);
  } finally {
    await browser.close();
  }
}

// One timed step on strata's page: `act` starts it, then the rows in view are drawn with `want` counted.
async function step(page, key, act, want) {
  const t = performance.now();
  await act();
  await shown(page, want);
  out(key, ms(t));
}

async function browse() {
  const browser = await launch();
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 720 }, locale: "en-US" });
    // The filters' answers from the API (the page's own requests; also warms nothing the first page load
    // measures, since it runs after it).
    const answers = [];
    for (let rep = 0; rep < reps; rep++) {
      // Page load: navigation until the first rows and the count are shown.
      await step(page, "ui.load_ms", () => page.goto(url, { waitUntil: "commit" }), flows);
      if (rep === 0) {
        for (const filter of filters) {
          answers.push(await page.evaluate(async (f) => {
            const t = performance.now();
            const page = await (await fetch(`/api/flows?filter=${encodeURIComponent(f)}&limit=100`)).json();
            return { total: page.total, ms: performance.now() - t };
          }, filter));
        }
      }
      const middle = Math.floor(flows / 2) * ROW;
      await step(page, "ui.scroll_middle_ms", () => page.evaluate((y) => { document.querySelector("#viewport").scrollTop = y; }, middle), flows);
      await step(page, "ui.scroll_end_ms", () => page.evaluate(() => {
        const v = document.querySelector("#viewport");
        v.scrollTop = v.scrollHeight;
      }), flows);
      const last = await page.evaluate(() => Number([...document.querySelectorAll("#rows .row")].at(-1).dataset.index));
      if (last !== flows - 1) throw new Error(`scrolled to the end, the last row drawn is #${last}, not #${flows - 1}`);
      await step(page, "ui.scroll_top_ms", () => page.evaluate(() => { document.querySelector("#viewport").scrollTop = 0; }), flows);
      // ArrowDown: the next row selected and the detail view's title set to its flow.
      await page.focus("#list");
      for (let k = 0; k < keys; k++) {
        const t = performance.now();
        await page.keyboard.press("ArrowDown");
        await page.waitForFunction((k) => {
          const row = document.querySelector("#rows .row.selected");
          const title = document.querySelector("#detail h3");
          return row && Number(row.dataset.index) === k && title
            && title.textContent === `${row.querySelector(".method").textContent} ${row.querySelector(".url").textContent}`;
        }, k, { polling: "raf", timeout: cap });
        out("ui.key_ms", ms(t));
      }
      for (const [i, filter] of filters.entries()) {
        const key = `ui.filter${i + 1}_ms`;
        await step(page, key, () => page.fill("#filter", filter), answers[i].total);
        await step(page, "ui.unfilter_ms", () => page.fill("#filter", ""), flows);
      }
    }
    filters.forEach((filter, i) => {
      out(`ui.filter${i + 1}`, filter);
      out(`ui.filter${i + 1}_total`, answers[i].total);
      out(`ui.filter${i + 1}_api_ms`, answers[i].ms.toFixed(1));
    });
    const client = await page.context().newCDPSession(page);
    const { metrics } = await client.send("Performance.getMetrics").catch(() => ({ metrics: [] }));
    const heap = metrics.find((m) => m.name === "JSHeapUsedSize");
    if (heap) out("ui.js_heap_mb", (heap.value / 1048576).toFixed(1));
    await checkpoint("browsed");
  } finally {
    await browser.close();
  }
}

// ---- mitmweb ----------------------------------------------------------------------------------------

// POST /commands/NAME through the context's request client (its cookies: tornado's XSRF cookie, set by
// mitmweb's index page, echoed in a header, as mitmweb's own page does), without running mitmweb's page.
async function command(context, name) {
  const xsrf = (await context.cookies()).find((c) => c.name === "_xsrf")?.value;
  const response = await context.request.post(new URL(`commands/${name}`, url).href, {
    headers: xsrf ? { "x-xsrftoken": decodeURIComponent(xsrf) } : {},
    data: { arguments: [] },
    timeout: cap,
  });
  if (!response.ok()) return { error: `${response.status()} ${(await response.text()).slice(0, 200)}` };
  return response.json();
}

// The flow table's rows drawn (mitmweb's list is virtualized too), optionally every one matching `test`.
function mitmRows(test) {
  const rows = [...document.querySelectorAll(".flow-table tbody tr")]
    .filter((tr) => tr.querySelector("td.col-path"));
  if (rows.length === 0) return false;
  if (!test) return true;
  return rows.every((tr) => {
    const path = tr.querySelector("td.col-path")?.textContent || "";
    const status = tr.querySelector("td.col-status")?.textContent || "";
    return new RegExp(test.path).test(path) && status.trim() === test.status;
  });
}

async function mitmweb() {
  const browser = await launch();
  try {
    // Whether it is still reading, asked without its page (which would take every flow live as it is
    // read); the page comes after, and fetches the whole list at once, as a person opening it after the
    // load would see it.
    const context = await browser.newContext({ viewport: { width: 1280, height: 720 }, locale: "en-US" });
    // From mitmweb's start (BENCH_T0, ms since the epoch), else from now.
    const t = performance.now() - (process.env.BENCH_T0 ? Date.now() - Number(process.env.BENCH_T0) : 0);
    // mitmweb answers nothing while it reads: wait as long as the cap allows.
    const index = await context.request.get(url, { timeout: cap }).catch(() => null);
    if (!index) {
      out("mitmweb.load_ms", "timeout");
      return;
    }
    if (!index.ok()) throw new Error(`mitmweb's page: ${index.status()}`);
    let reading = true;
    while (reading && performance.now() - t < cap) {
      const answer = await command(context, "readfile.reading");
      if (answer.error) throw new Error(`mitmweb's readfile.reading: ${answer.error}`);
      reading = answer.value === true || answer.value === "true";
      if (reading) await sleep(250);
    }
    if (reading) {
      out("mitmweb.load_ms", "timeout");
      return;
    }
    out("mitmweb.load_ms", ms(t));
    await checkpoint("loaded");

    const page = await context.newPage();
    const started = performance.now();
    await page.goto(url, { waitUntil: "commit" });
    try {
      await page.waitForFunction(mitmRows, null, { polling: "raf", timeout: cap });
    } catch (e) {
      out("mitmweb.ui.load_ms", "timeout");
      return;
    }
    out("mitmweb.ui.load_ms", ms(started));
    // The same filter as strata's first one: rows with an "api" host and status 500 (filter1 only; a body
    // search is evaluated in the browser by mitmweb, on flows without their bodies).
    if (filters[0] === "~d api & ~c 500") {
      const search = page.locator(".filter-input input").first();
      const s = performance.now();
      await search.fill(filters[0]);
      try {
        await page.waitForFunction(mitmRows, { path: "api", status: "500" }, { polling: "raf", timeout: cap });
        out("mitmweb.ui.filter1_ms", ms(s));
      } catch (e) {
        out("mitmweb.ui.filter1_ms", "timeout");
      }
    }
    await checkpoint("browsed");
  } finally {
    await browser.close();
  }
}

const modes = { live, browse, mitmweb };
if (!modes[mode] || !url) {
  console.log("FAILED: usage: node bench.mjs live|browse|mitmweb URL");
  process.exit(2);
}
try {
  await modes[mode]();
} catch (e) {
  console.log(`FAILED: ${e.message.split("\n")[0]}`);
  process.exit(1);
}
