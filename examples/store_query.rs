//! store_query: how fast a big recorded session answers filtered, paged queries (`bench/run.sh`, scenario
//! 10; issue 12: "a UI can ask for flows 1000-1100 matching `~d api & ~c 500` from a million-flow session
//! in milliseconds").
//!
//! It writes a session of `--flows` synthetic HTTP flows through the library's `StoreWriter`, the way
//! strata records (`http(&flow, false)` at the request head, `http(&flow, true)` at its end, with
//! `--open` flows in progress at a time), and reports the write rate and the file's size. Then it opens the
//! session with `SessionReader` (without bodies) and times each query `--runs` times, reporting the median.
//! Every answer is checked against the same flows generated again and tested with `Filter::matches`: the
//! ids returned, in order, must be exactly the expected ones.
//!
//! The flows, made from their number alone (so the same each run): 50 hosts, a fifth of the flows to one of
//! the 10 with "api" in the name, GET / POST / PUT / DELETE / ..., paths by kind of host (`/v1/item/N`
//! among them), statuses with ~1.5 % 500s, request headers with `x-trace-id` on ~1 % of flows, and a
//! `text/plain` or `application/json` response body of 200-600 bytes on a tenth of them, kept whole
//! (`response.body = Some(..)`, stored inline and indexed for `~b`), the rare word `zyzzogeton` in 5 of
//! them. The other responses have no body: a flow whose body is stored but not indexed (binary,
//! compressed) stays a candidate of every body search, which this session does not measure.
//!
//! It prints a markdown table on stdout (progress on stderr) and exits with 1 if an answer was wrong.
//!
//! `--write-only` writes the session, keeps it and stops there (no expected answers, no queries): a session
//! of synthetic flows for something else to read, as scenario 11 of `bench/run.sh` does, showing 100,000 of
//! them in the web UI with `strata --web -w +FILE`.
//!
//! ```sh
//! cargo build --release --example store_query
//! target/release/examples/store_query --path /tmp/q.db --flows 1000000   # the file is deleted at the end
//! target/release/examples/store_query --path /tmp/ui.db --flows 100000 --write-only   # kept, not queried
//! ```

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, UNIX_EPOCH};

use clap::Parser;
use strata::filter::Filter;
use strata::flow::{reason_phrase, FlowId, HttpFlow, Request, Response, Timings};
use strata::http::message::{Headers, Version};
use strata::http::url::Scheme;
use strata::store::{SessionReader, StoreWriter, StoredFlow};

#[derive(Debug, Parser)]
#[command(name = "store_query", about = "Query speed on a big strata session", max_term_width = 100)]
struct Args {
    /// The session file to create (it must not exist); deleted at the end unless --keep or --write-only.
    #[arg(long, default_value = "/tmp/strata-store-query.db")]
    path: PathBuf,

    /// Flows to write.
    #[arg(short = 'n', long, default_value_t = 1_000_000)]
    flows: u64,

    /// Times each query is run (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,

    /// Flows in progress at a time while writing (each written at its request head, then at its end).
    #[arg(long, default_value_t = 64)]
    open: usize,

    /// A query meets the target when its median is under this many milliseconds.
    #[arg(long, default_value_t = 100.0)]
    target_ms: f64,

    /// Keep the session file.
    #[arg(long)]
    keep: bool,

    /// Query the existing session at --path (written by an earlier --keep run with the same --flows)
    /// instead of writing one.
    #[arg(long, conflicts_with = "write_only")]
    reuse: bool,

    /// Only write the session, and keep it: no expected answers, no queries, nothing on stdout.
    #[arg(long)]
    write_only: bool,
}

const RARE_WORD: &str = "zyzzogeton";

const API_HOSTS: [&str; 10] = [
    "api.example.com",
    "api.github.test",
    "payments-api.internal",
    "graphapi.shop.test",
    "api-eu.service.test",
    "mobile-api.news.test",
    "api.weather.test",
    "search-api.corp.test",
    "api2.cdn-origin.test",
    "restapi.bank.test",
];

const OTHER_HOSTS: [&str; 40] = [
    "www.example.com",
    "static.example.com",
    "cdn.jsdelivr.test",
    "fonts.gstatic.test",
    "img.news.test",
    "login.corp.test",
    "mail.corp.test",
    "tracker.ads.test",
    "pixel.ads.test",
    "www.shop.test",
    "media.shop.test",
    "accounts.example.com",
    "docs.example.com",
    "blog.example.com",
    "status.service.test",
    "telemetry.os.test",
    "update.os.test",
    "ocsp.ca.test",
    "crl.ca.test",
    "www.news.test",
    "video.news.test",
    "chat.corp.test",
    "wiki.corp.test",
    "git.corp.test",
    "ci.corp.test",
    "registry.npm.test",
    "pypi.files.test",
    "crates.io.test",
    "maps.geo.test",
    "tiles.geo.test",
    "www.bank.test",
    "secure.bank.test",
    "www.weather.test",
    "radar.weather.test",
    "analytics.stats.test",
    "collector.stats.test",
    "edge1.cdn-origin.test",
    "edge2.cdn-origin.test",
    "sso.identity.test",
    "push.notify.test",
];

const WORDS: [&str; 32] = [
    "order",
    "item",
    "price",
    "total",
    "customer",
    "shipping",
    "status",
    "pending",
    "delivered",
    "amount",
    "currency",
    "euro",
    "weather",
    "forecast",
    "cloudy",
    "sunny",
    "account",
    "balance",
    "session",
    "token",
    "refresh",
    "profile",
    "settings",
    "language",
    "english",
    "search",
    "result",
    "page",
    "count",
    "error",
    "retry",
    "message",
];

/// A deterministic pseudo-random stream per flow (splitmix64), so that the flows can be made again.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5354_5241_5441_0012)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// An index into `weights` (per mille, summing to 1000).
    fn pick(&mut self, weights: &[u64]) -> usize {
        let mut r = self.below(1000);
        for (i, w) in weights.iter().enumerate() {
            if r < *w {
                return i;
            }
            r -= w;
        }
        weights.len() - 1
    }
}

/// The flows that get the rare word: five, spread over the session, each one with a body (index % 10 == 0).
fn rare_flows(n: u64) -> Vec<u64> {
    let mut rare: Vec<u64> = (0..5).map(|k| (2 * k + 1) * n / 10 / 10 * 10).filter(|&i| i < n).collect();
    rare.dedup();
    rare
}

/// About `bytes` of common words, with the rare word once in the middle if `rare`.
fn words(rng: &mut Rng, bytes: usize, rare: bool) -> String {
    let mut text = String::with_capacity(bytes + 16);
    let mut rare_at = if rare { bytes / 2 } else { usize::MAX };
    while text.len() < bytes {
        if !text.is_empty() {
            text.push(' ');
        }
        if text.len() >= rare_at {
            text.push_str(RARE_WORD);
            text.push(' ');
            rare_at = usize::MAX;
        }
        text.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
    }
    text
}

/// Flow number `i` of the session, finished (with its response).
fn make_flow(i: u64, rare: &[u64]) -> HttpFlow {
    let mut rng = Rng::new(i);
    let api = rng.below(5) == 0;
    let host = if api {
        API_HOSTS[rng.below(API_HOSTS.len() as u64) as usize]
    } else {
        OTHER_HOSTS[rng.below(OTHER_HOSTS.len() as u64) as usize]
    };
    let method =
        ["GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD", "PATCH"][rng.pick(&[700, 180, 40, 30, 20, 20, 10])];
    let id = rng.below(100_000);
    let path = if api {
        match rng.below(4) {
            0 | 1 => format!("/v1/item/{id}"),
            2 => format!("/v1/users/{}/orders?page={}", id % 5000, rng.below(20)),
            _ => format!("/v2/search?q={}&limit=50", WORDS[rng.below(WORDS.len() as u64) as usize]),
        }
    } else {
        match rng.below(6) {
            0 => "/".to_string(),
            1 => format!("/static/js/app.{:08x}.js", rng.next() as u32),
            2 => format!("/img/{id}.png"),
            3 => format!("/news/{}/{}", 2020 + id % 6, id),
            4 => format!("/shop/item/{id}?ref=home"),
            _ => format!("/collect?v=1&cid={:x}", rng.next()),
        }
    };
    let mut headers = Headers::default();
    headers.append("host", host);
    headers.append(
        "user-agent",
        [
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15",
            "okhttp/4.12.0",
            "curl/8.5.0",
        ][rng.below(4) as usize],
    );
    headers.append("accept", if api { "application/json" } else { "*/*" });
    headers.append("accept-encoding", "gzip, deflate, br");
    if rng.below(3) == 0 {
        headers.append("cookie", format!("session={:016x}; lang=en", rng.next()));
    }
    if api {
        headers
            .append("authorization", format!("Bearer {:032x}", u128::from(rng.next()) << 64 | u128::from(rng.next())));
    }
    if rng.below(100) == 0 {
        headers.append("x-trace-id", format!("{:032x}", u128::from(rng.next()) << 64 | u128::from(rng.next())));
    }
    let request = Request {
        method: method.to_string(),
        scheme: Scheme::Https,
        host: host.to_string(),
        port: 443,
        path,
        version: Version::Http11,
        headers,
        body: None,
        body_len: 0,
        stream: true,
        trailers: None,
    };
    let client: SocketAddr = ([127, 0, 0, 1], 40_000 + (i % 20_000) as u16).into();
    let mut flow = HttpFlow::new(client, false, request);
    flow.id = FlowId::parse(&format!("{:016x}{:016x}", 0x5354_5241_5441_5151u64, i)).expect("a valid id");
    flow.started_at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + i * 3);
    flow.server_addr = Some(([10, 0, (i % 50) as u8, 1 + (i % 200) as u8], 443).into());

    let status =
        [200u16, 201, 204, 301, 304, 401, 403, 404, 500, 502][rng.pick(&[760, 30, 20, 20, 50, 10, 20, 60, 15, 15])];
    let mut headers = Headers::default();
    headers.append("date", "Tue, 14 Nov 2023 22:13:20 GMT");
    headers.append("server", if api { "envoy" } else { "nginx" });
    let rare = i % 10 == 0 && rare.contains(&i);
    let body = if rare || (i % 10 == 0 && status != 204 && status != 304 && method != "HEAD") {
        let size = 200 + rng.below(400) as usize;
        if rng.below(2) == 0 {
            headers.append("content-type", "text/plain; charset=utf-8");
            Some(words(&mut rng, size, rare).into_bytes())
        } else {
            headers.append("content-type", "application/json");
            let note = words(&mut rng, size.saturating_sub(60), rare);
            Some(
                format!(
                    "{{\"id\":{id},\"status\":\"{}\",\"total\":{},\"note\":\"{note}\"}}",
                    status,
                    rng.below(10_000)
                )
                .into_bytes(),
            )
        }
    } else {
        headers.append("content-type", if api { "application/json" } else { "text/html; charset=utf-8" });
        None
    };
    let body_len = body.as_ref().map_or(0, |b| b.len() as u64);
    headers.append("content-length", body_len.to_string());
    headers.append("cache-control", if api { "no-store" } else { "max-age=3600" });
    if rng.below(20) == 0 {
        headers.append("set-cookie", format!("session={:016x}; Path=/; HttpOnly; Secure", rng.next()));
    }
    flow.response = Some(Response {
        status,
        reason: reason_phrase(status).to_string(),
        version: Version::Http11,
        headers,
        body,
        body_len,
        stream: false,
        trailers: None,
    });
    flow.timings = Timings {
        connect_ms: if i % 8 == 0 { 1.0 + rng.below(50) as f64 } else { -1.0 },
        send_ms: 0.1,
        wait_ms: 5.0 + rng.below(300) as f64,
        receive_ms: 0.5 + rng.below(20) as f64,
        ..Timings::default()
    };
    flow
}

/// One timed query: its name (the filter, skip and limit) and what it returns.
struct Query {
    name: String,
    filter: Option<Filter>,
    /// None: `count`; Some((skip, limit)): `query`.
    page: Option<(usize, usize)>,
    /// The expected answer: the count, or the ids in order.
    want_count: u64,
    want_ids: Vec<FlowId>,
}

impl Query {
    fn new(filter: Option<&str>, page: Option<(usize, usize)>) -> Query {
        let filter = filter.map(|f| Filter::parse(f).expect("a valid filter"));
        let shown = filter.as_ref().map_or("None".to_string(), |f| format!("`{f}`"));
        let name = match page {
            None => format!("count({shown})"),
            Some((skip, limit)) => format!("query({shown}, skip {skip}, limit {limit})"),
        };
        Query { name, filter, page, want_count: 0, want_ids: Vec::new() }
    }

    /// Counts `flow` into the expected answer if it matches.
    fn expect(&mut self, flow: &HttpFlow) {
        if self.filter.as_ref().is_some_and(|f| !f.matches(flow.into())) {
            return;
        }
        self.want_count += 1;
        if let Some((skip, limit)) = self.page {
            if self.want_count > skip as u64 && self.want_ids.len() < limit {
                self.want_ids.push(flow.id);
            }
        }
    }

    /// Runs it once: its answer (count, ids) and how long it took.
    fn run(&self, reader: &mut SessionReader) -> Result<(u64, Vec<FlowId>, Duration), String> {
        let start = Instant::now();
        let answer = match self.page {
            None => (reader.count(self.filter.as_ref())? as u64, Vec::new()),
            Some((skip, limit)) => {
                let flows = reader.query(self.filter.as_ref(), skip, limit)?;
                let ids: Vec<FlowId> = flows
                    .iter()
                    .map(|f| match f {
                        StoredFlow::Http(f) => f.id,
                        StoredFlow::Tcp(f) => f.id,
                    })
                    .collect();
                (ids.len() as u64, ids)
            }
        };
        Ok((answer.0, answer.1, start.elapsed()))
    }

    /// A wrong answer, said in words; None if it is right.
    fn check(&self, count: u64, ids: &[FlowId]) -> Option<String> {
        match self.page {
            None if count != self.want_count => Some(format!("counted {count}, expected {}", self.want_count)),
            None => None,
            Some(_) if ids != self.want_ids.as_slice() => {
                let wrong = ids.iter().zip(&self.want_ids).take_while(|(a, b)| a == b).count();
                Some(format!(
                    "{} flows returned, {} expected; the first difference at #{wrong}",
                    ids.len(),
                    self.want_ids.len()
                ))
            }
            Some(_) => None,
        }
    }
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else if ms >= 10.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.2}")
    }
}

fn median(sorted: &[Duration]) -> Duration {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    }
}

fn file_size(path: &Path) -> u64 {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    [path.to_path_buf(), PathBuf::from(wal)].iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum()
}

fn remove_session(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

/// Writes flows 0..n as strata records them: each at its request head (no response yet), then, `open`
/// flows later, finished; returns how long it took, up to the last commit.
async fn write_session(args: &Args, rare: &[u64]) -> Result<Duration, String> {
    let start = Instant::now();
    let writer = StoreWriter::create(&args.path, false, None, 32 << 20)?;
    let mut open: VecDeque<HttpFlow> = VecDeque::with_capacity(args.open + 1);
    let step = (args.flows / 10).max(1);
    for i in 0..args.flows {
        let flow = make_flow(i, rare);
        let mut head = flow.clone();
        head.response = None;
        head.timings = Timings::default();
        writer.http(&head, false).await;
        open.push_back(flow);
        if open.len() > args.open {
            let done = open.pop_front().expect("not empty");
            writer.http(&done, true).await;
        }
        if (i + 1) % step == 0 {
            eprintln!("store_query: {} flows sent in {:.1} s", thousands(i + 1), start.elapsed().as_secs_f64());
        }
    }
    for done in open {
        writer.http(&done, true).await;
    }
    writer.flush().await?;
    Ok(start.elapsed())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("store_query: {e}");
            if !args.keep && !args.reuse && !args.write_only {
                remove_session(&args.path);
            }
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> Result<bool, String> {
    for host in OTHER_HOSTS {
        assert!(!host.contains("api"), "{host} must not match ~d api");
    }
    let n = args.flows;
    let rare = rare_flows(n);
    if args.write_only {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        let took = runtime.block_on(write_session(args, &rare))?;
        eprintln!(
            "store_query: wrote {} flows in {:.1} s ({:.0} flows/s), {:.0} MB, kept at {}",
            thousands(n),
            took.as_secs_f64(),
            n as f64 / took.as_secs_f64(),
            file_size(&args.path) as f64 / 1e6,
            args.path.display()
        );
        return Ok(true);
    }
    let mut queries = vec![
        Query::new(Some("~c 500"), None),
        Query::new(Some("~d api & ~c 500"), Some((1000, 100))),
        Query::new(Some("~u /item/4"), Some((0, 100))),
        Query::new(Some(&format!("~b {RARE_WORD}")), Some((0, 100))),
        Query::new(Some("~h x-trace"), Some((0, 100))),
        Query::new(None, None),
    ];

    // The expected answers, from the same flows made again and Filter::matches (not timed).
    let start = Instant::now();
    for i in 0..n {
        let flow = make_flow(i, &rare);
        for query in &mut queries {
            query.expect(&flow);
        }
    }
    eprintln!("store_query: expected answers worked out in {:.1} s", start.elapsed().as_secs_f64());

    let write = if args.reuse {
        None
    } else {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        let took = runtime.block_on(write_session(args, &rare))?;
        eprintln!(
            "store_query: wrote {} flows in {:.1} s ({:.0} flows/s)",
            thousands(n),
            took.as_secs_f64(),
            n as f64 / took.as_secs_f64()
        );
        Some(took)
    };
    let size = file_size(&args.path);

    let start = Instant::now();
    let mut reader = SessionReader::open(&args.path, false)?;
    let opened = start.elapsed();
    let mut rows = Vec::new();
    let mut all_right = true;
    for query in &queries {
        let mut times = Vec::with_capacity(args.runs);
        let mut result = String::new();
        for _ in 0..args.runs.max(1) {
            let (count, ids, took) = query.run(&mut reader)?;
            times.push(took);
            if let Some(wrong) = query.check(count, &ids) {
                all_right = false;
                result = format!("WRONG: {wrong}");
            } else if result.is_empty() {
                result = match query.page {
                    None => thousands(count),
                    Some(_) => format!("{} flows, as expected", ids.len()),
                };
            }
        }
        times.sort();
        let median = median(&times);
        eprintln!("store_query: {}: {} ms median ({result})", query.name, ms(median));
        rows.push((query, result, median, times[0], times[times.len() - 1]));
    }
    drop(reader);
    if !args.keep && !args.reuse {
        remove_session(&args.path);
    }

    println!(
        "| session query, {} flows, {:.0} MB | answer | median ms | min / max ms | target (issue 12) |",
        thousands(n),
        size as f64 / 1e6
    );
    println!("|---|---|---|---|---|");
    for (query, result, median, min, max) in &rows {
        let met = median.as_secs_f64() * 1000.0 < args.target_ms;
        println!(
            "| {} | {result} | {} | {} / {} | milliseconds (under {} ms): {} |",
            query.name,
            ms(*median),
            ms(*min),
            ms(*max),
            args.target_ms,
            if met { "met" } else { "MISSED" }
        );
    }
    println!();
    match write {
        Some(took) => print!(
            "Written through StoreWriter (each flow at its request head and at its end, {} in progress at a time, \
             inline bodies on a tenth): {} flows in {:.1} s = {} flows/s, {:.0} MB. ",
            args.open,
            thousands(n),
            took.as_secs_f64(),
            thousands((n as f64 / took.as_secs_f64()) as u64),
            size as f64 / 1e6
        ),
        None => print!("An existing session ({:.0} MB). ", size as f64 / 1e6),
    }
    println!(
        "SessionReader::open (without bodies) took {} ms; each query ran {} times on that reader, page cache \
         warm. Answers checked against Filter::matches on the same flows: {}.",
        ms(opened),
        args.runs.max(1),
        if all_right { "all right" } else { "SOME WRONG" }
    );
    Ok(all_right)
}
