#!/usr/bin/env bash
# bench/run.sh: strata against the client straight to the origin ("direct"), nginx as a reverse proxy, and
# mitmdump, back to back on this machine, on loopback only. Prints a markdown table of medians (and ratios to
# direct) and writes it to bench/last-run.md.
#
#   bench/run.sh                 # full run: RUNS=3, DURATION=5 (scenarios 1-9 well under 10 minutes on 2 cores,
#                                # scenarios 10 and 11 a few minutes more each)
#   QUICK=1 bench/run.sh         # smoke run: 1 run of 2 s per cell, a 256 MiB "large" file, a 10,000-request soak,
#                                # a 100,000-flow session for the query timings, one pass over the web UI's page
#   SCENARIOS=10 bench/run.sh    # only the recording soak
#   SCENARIOS=11 TARGETS=strata bench/run.sh   # only the web UI (it measures strata and mitmweb whatever TARGETS
#                                              # lists, as long as strata is in it)
#   RUNS=5 DURATION=10 bench/run.sh
#
# Environment: RUNS (repetitions per cell, median reported), DURATION (seconds per load run), CONNS (concurrent
# connections in scenarios 1-3, default 64), HS_CONNS (concurrent connections in scenario 4, default 16),
# IDLE_CONNS (scenario 6, default 2000), H2_CONNS, H2_STREAMS and H2_THREADS (scenario 7: h2load connections,
# concurrent streams per connection and threads, default 16, 16 and 2), BIG_SIZE (size of the large file, default
# 1G), SOAK_REQUESTS (scenario 10's request count, default 100000), SOAK_MITM_SECONDS (scenario 10's time cap for
# mitmdump, default 60), SOAK_MAX_SECONDS (scenario 10's time cap for each strata variant, a safety net, default
# 600), SOAK_QUERY_FLOWS (flows in scenario 10's query-speed session, default 1000000; 0 skips it), UI_FLOWS
# (flows in scenario 11's session shown in the page, default 100000), UI_REPS (scenario 11's page load and steps,
# each repeated with a fresh page, default 3; QUICK: 1), UI_KEYS (ArrowDown presses per repetition, default 40),
# UI_MITM_SECONDS (scenario 11's time cap for each mitmweb wait, default 120), CHROMIUM (default
# /usr/bin/chromium), SCENARIOS (which to run, default "1 2 3 4 5 6 7 8 9 10 11"), TARGETS (default "direct
# nginx mitmdump strata"), KEEP_TMP=1 (keep the temp dir with configs and logs), NO_INSTALL=1 / NO_BUILD=1 (skip
# those steps).
#
# What it does:
#  1. Installs what is missing: nginx-light, wrk and h2load (Debian packages nginx-light, wrk, nghttp2-client;
#     apt-get), nginx's Lua module for scenario 9 (libnginx-mod-http-lua, which pulls libnginx-mod-http-ndk and
#     lua-resty-core; a failed install only makes that column n/a), for scenario 11 Debian's chromium (without
#     recommends), nodejs and npm (apt-get) and playwright-core (`npm ci` in tests/web_ui; it downloads no
#     browser; a failed install makes scenario 11 n/a, with a note), mitmproxy (pip, into the venv bench/.venv,
#     which it creates; mitmweb comes with it), then builds strata, the load client and the session query
#     benchmark (`cargo build --release`, `cargo build --release --example loadgen`, `cargo build --release
#     --example store_query`).
#  2. Makes a temp dir with a self-signed test CA and a leaf for 127.0.0.1 (ECDSA P-256, openssl), a 1 KiB
#     file, a 100 KiB file (scenario 10) and a sparse 1 GiB file, and starts the origin: nginx with a plain, a TLS (HTTP/1.1 only) and a
#     TLS + HTTP/2 server block (`listen ... ssl http2`, its own port, so that the HTTP/1.1 scenarios 3-5 keep
#     an origin that cannot pick h2), keep-alive on, sendfile on, no access log.
#  3. Runs the scenarios, each against the four targets, starting each proxy fresh for each scenario:
#       1. reverse proxy, HTTP, 1 KiB, keep-alive, CONNS connections (wrk -t2);
#       2. explicit proxy, plain HTTP, absolute-form `GET http://127.0.0.1:ORIGIN/1k` with keep-alive (wrk with
#          a Lua script; nginx accepts absolute-form requests too);
#       3. explicit proxy, HTTPS through CONNECT with interception, keep-alive (examples/loadgen.rs);
#       4. TLS handshakes: new TCP + CONNECT + full TLS handshake (no resumption) per request (loadgen);
#       5. the large file through the proxy with curl, plain and intercepted: MB/s (curl's speed_download,
#          10^6 bytes) and the proxy's peak RSS (VmHWM, proxy restarted for each run);
#       6. IDLE_CONNS keep-alive client connections that each sent one request and stay open: (RSS after -
#          RSS before) / IDLE_CONNS, RSS of the proxy's processes (nginx: master and workers), proxy restarted
#          for each run (bench/idle_conns.py is the client; direct has no proxy, so n/a);
#       7. HTTP/2 over TLS toward the client, 1 KiB: h2load with H2_CONNS connections x H2_STREAMS concurrent
#          streams, reverse proxies in front of the origin's h2 block (h2load has no proxy support): req/s,
#          mean request latency (h2load gives min/max/mean/sd, no percentiles) and the proxy's peak RSS over
#          the warm-up and all runs;
#       8. the large file over HTTP/2 (curl --http2, reverse proxies as in 7): MB/s and the proxy's peak RSS,
#          proxy restarted for each run, as in 5; then the same download over HTTP/1.1 (curl --http1.1) through
#          the same reverse proxies, so that the h2/HTTP/1.1 ratio compares one path with itself;
#       9. the cost of a user script: scenario 2's load (explicit proxy, absolute-form, wrk, CONNS connections)
#          through each proxy running a one-line script that adds `x-bench: 1` to every response head while
#          the body streams: strata `-s` with `function responseheaders(flow)
#          flow.response.headers:set("x-bench", "1") end`, mitmdump `-s` with `def responseheaders(flow):
#          flow.response.headers["x-bench"] = "1"`, nginx with the Lua module (`load_module` ndk_http_module.so
#          and ngx_http_lua_module.so, the same proxy server block as scenario 2 plus `header_filter_by_lua_block
#          { ngx.header["x-bench"] = "1" }`), direct n/a; strata without the script is measured in the same
#          rounds, its own baseline (the line under the table). Before measuring, one curl through each proxy
#          checks that the header is there with the script and absent without (a failed check makes the
#          cell n/a, with a note);
#      10. recording soak (issue 12): SOAK_REQUESTS absolute-form `GET http://127.0.0.1:ORIGIN/100k` (100 KiB
#          body) through an explicit proxy, CONNS connections, in four variants one after another, each a
#          freshly started proxy: strata without recording, strata `-w $TMP/s.db` (session), strata
#          `--save-har $TMP/s.har`, and mitmdump `-w $TMP/m.mitm` (without stream_large_bodies, so that it
#          records the bodies; it does a few hundred req/s, so it is capped at SOAK_MITM_SECONDS). The client
#          is loadgen, which has a duration but no request count, so the count is reached in consecutive
#          loadgen runs: the first lasts min(1 s, SOAK_REQUESTS / 50000 s), each next one (requests left) /
#          (rate so far), at most 4x the last one's length and 10 s, until 99 % of SOAK_REQUESTS are done (or
#          less than 20 ms of load is left, or the time cap is hit); the completed count is in the table.
#          req/s = requests / loadgen seconds (`sync` before each variant, so that the last one's writeback
#          does not slow it); RSS at start (1 s after one warm-up request), peak (VmHWM) and end (VmRSS 1 s
#          after the load), MiB. Write ceiling: right before the -w variant, `dd if=/dev/zero of=$TMP/ceiling
#          bs=1M count=...` writes as many bytes as that variant will write (SOAK_REQUESTS x 100 KiB, rounded up
#          to whole MiB) the way strata writes them, buffered through the page cache without fsync (after a
#          `sync`), and the file is deleted; its rate (dd's bytes / dd's seconds) is shown in MB/s and as the
#          req/s of 100 KiB bodies it allows, next to the -w and --save-har req/s: --save-har writes each body
#          once, -w twice (once to SQLite's write-ahead log, once into the database at checkpoints), so the -w
#          ceiling shown is half of it (only when the -w variant runs). Recording proxies are stopped with
#          SIGTERM and given 120 s to finish their file. Then `strata -n -r $TMP/s.db >/dev/null` (default
#          flow detail) is timed: flows/s; the flows are counted with `strata -n -r ... | wc -l` and checked
#          against the requests loadgen completed (+1 warm-up; a loadgen run drops the requests in flight at
#          its deadline, up to CONNS, which strata has usually forwarded and recorded anyway: more flows within
#          that bound are noted as such, anything else as a mismatch). Each file is deleted once measured; if
#          the temp dir's file system has less than 3x the space one variant may write (SOAK_REQUESTS x 100 KiB
#          x 4/3) free, SOAK_REQUESTS is scaled down, with a note. Then, after the variants and the read-back (and a
#          `sync`), the query speed on a big session (issue 12: "flows 1000-1100 matching `~d api & ~c 500` from a
#          million-flow session in milliseconds"): examples/store_query.rs writes a session of SOAK_QUERY_FLOWS
#          synthetic flows to $TMP/q.db through the library's StoreWriter (each flow at its request head and at its
#          end; ~50 hosts, 10 with "api" in the name; ~1.5 % 500s; a few hundred bytes of text or JSON response
#          body, kept inline, on a tenth; a rare word in 5 of them), reports the write rate and the file's size,
#          then times with SessionReader, 5 times each (median, min, max in ms): count(~c 500), query(~d api & ~c
#          500, skip 1000, limit 100), query(~u /item/4, 0, 100), query(~b <the rare word>, 0, 100), query(~h
#          x-trace, 0, 100) and count(None), every answer checked against Filter::matches on the same flows (a wrong
#          one is noted); the file is deleted after (skipped, with a note, if the file system has less than 2 KB per
#          flow free; not run without strata in TARGETS). Scenario 10 always runs once (RUNS does not apply: it is
#          long) and has a table of its own, with the targets from issue 12 next to the numbers, and the query table
#          under it ("milliseconds", read as a median under 100 ms).
#      11. the web UI (issue 13), strata only (and mitmweb), a table of its own, three parts. (a) Its cost to the
#          proxy: scenario 2's load (explicit proxy, absolute-form GET /1k, wrk, CONNS connections) through strata,
#          through `strata --web --web-port PORT --web-token TOKEN` with no page open (without -w it records into
#          a session in its confdir, which the page reads), and through the same with a page open on
#          `http://127.0.0.1:PORT/?token=TOKEN` receiving the live updates during the whole run: headless
#          chromium (Debian's, driven by playwright-core from tests/web_ui/node_modules: tests/web_ui/bench.mjs,
#          `node bench.mjs live URL`), started fresh for each such run, live before wrk starts; after the run it
#          must show more flows in `#count` than before (else the run is not counted, with a note), and it
#          reports its count's growth, the WebSocket messages and "lagged" notices it got, and whether its count,
#          once settled, equals the server's total (a difference is noted). The two stratas run side by side and
#          the three variants are interleaved in each of the RUNS rounds (after a 1 s warm-up each); medians,
#          the ratios to strata without the UI (target: the page-open rate at least 0.80x, reported, not
#          asserted), p99 and peak RSS (VmHWM). (b) UI_FLOWS flows in the page: examples/store_query.rs
#          `--write-only` writes a synthetic session (as in 10; kept), `strata --web -w +ui.db` shows it (`+`
#          appends, so the page lists the flows already in the session), and `node bench.mjs browse URL` times,
#          UI_REPS times on a freshly loaded page (median and max): page load until the rows are drawn and
#          `#count` says UI_FLOWS; scrolling `#viewport` to the middle, the end and back to the top until the
#          rows there are drawn (none a "…" placeholder); UI_KEYS ArrowDown presses on `#list` (each until the
#          row is selected and the detail view names its flow); typing `~d api & ~c 500` and `~bs zyzzogeton`
#          (5 flows) into `#filter` until the count and the rows update (the page debounces input by 250 ms),
#          and clearing it until the UI_FLOWS rows are back; strata's RSS before the page and with it open after
#          these steps (and VmHWM). (c) mitmweb beside it: the session exported as HAR (`strata -n -r ui.db
#          --save-har ui.har`), `mitmweb -r ui.har --no-web-open-browser` (bench/.venv; the page's address as it
#          prints it, with its token on versions that have one), `node bench.mjs mitmweb URL`: from mitmweb's
#          start until its `readfile.reading` command says it is done, its RSS then, then its page: until its
#          flow table shows rows, and `~d api & ~c 500` in its search box until every row drawn is an api host
#          with status 500, its RSS with the page open. Each mitmweb wait is capped at UI_MITM_SECONDS; past it
#          the cell says so (and the RSS at that point is shown) instead of failing. The session and the HAR are
#          deleted after. Needs strata in TARGETS; without chromium, node or playwright-core it is skipped, noted.
#     Every curl call names its HTTP version (--http1.1 in 5, --http2 in 8; curl would otherwise pick h2
#     wherever it is offered) and the negotiated version is checked; loadgen (3, 4) offers no ALPN, so it
#     speaks HTTP/1.1.
#     Targets: "direct" is the client straight to the origin (plain or TLS port); "nginx" is a second nginx
#     instance as reverse proxy (upstream keepalive 128; in 3-5 it terminates TLS with the test leaf and
#     re-encrypts to the origin's TLS port, the closest it comes to interception; in 7-8 it terminates TLS +
#     h2 (`listen ... ssl http2`) and speaks HTTP/1.1 with keep-alive over TLS to the origin's h2 block, since
#     nginx's proxy offers no ALPN); "mitmdump" runs from the venv (`--mode regular` or `--mode reverse:`,
#     `-q`, `--ssl-insecure`, confdir in the temp dir, stream_large_bodies=1m so that the large file is
#     streamed, not buffered (not set in 10); in 7-8 `--mode reverse:https://127.0.0.1:ORIGIN_H2`, h2 on both sides);
#     "strata" is target/release/strata (`-q`, `--confdir` temp, `--upstream-ca` the test CA; in 7-8
#     `-m reverse:https://127.0.0.1:ORIGIN_H2`, its TLS listener with a leaf from its own CA, h2 to the client
#     and, by ALPN, h2 to the origin). A mode strata refuses (exit code 2, "not supported") is shown as n/a.
#  Everything binds 127.0.0.1 and only talks to 127.0.0.1; every process it starts is killed on exit.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD

if [[ -n "${QUICK:-}" ]]; then
    RUNS=${RUNS:-1} DURATION=${DURATION:-2} BIG_SIZE=${BIG_SIZE:-256M} SOAK_REQUESTS=${SOAK_REQUESTS:-10000}
    SOAK_QUERY_FLOWS=${SOAK_QUERY_FLOWS:-100000} UI_REPS=${UI_REPS:-1}
fi
RUNS=${RUNS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-64}
HS_CONNS=${HS_CONNS:-16}
IDLE_CONNS=${IDLE_CONNS:-2000}
H2_CONNS=${H2_CONNS:-16}
H2_STREAMS=${H2_STREAMS:-16}
H2_THREADS=${H2_THREADS:-2}
BIG_SIZE=${BIG_SIZE:-1G}
SOAK_REQUESTS=${SOAK_REQUESTS:-100000}
SOAK_MITM_SECONDS=${SOAK_MITM_SECONDS:-60}
SOAK_MAX_SECONDS=${SOAK_MAX_SECONDS:-600}
SOAK_QUERY_FLOWS=${SOAK_QUERY_FLOWS:-1000000}
SOAK_BODY=102400   # bytes of scenario 10's /100k
UI_FLOWS=${UI_FLOWS:-100000}
UI_REPS=${UI_REPS:-3}
UI_KEYS=${UI_KEYS:-40}
UI_MITM_SECONDS=${UI_MITM_SECONDS:-120}
SCENARIOS=${SCENARIOS:-1 2 3 4 5 6 7 8 9 10 11}
TARGETS=${TARGETS:-direct nginx mitmdump strata}
NGINX=/usr/sbin/nginx
VENV=$ROOT/bench/.venv
STRATA=$ROOT/target/release/strata
LOADGEN=$ROOT/target/release/examples/loadgen
STORE_QUERY=$ROOT/target/release/examples/store_query
WEB_UI_DIR=$ROOT/tests/web_ui
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
NGX_MODULE_DIRS=${NGX_MODULE_DIRS:-/usr/lib/nginx/modules /usr/share/nginx/modules}

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
fmt() { # number -> human (thousands separators for big numbers)
    [[ $1 == na ]] && { echo "n/a"; return; }
    awk -v v="$1" 'BEGIN {
        if (v >= 1000) { s = sprintf("%.0f", v); o = ""
            while (length(s) > 3) { o = "," substr(s, length(s) - 2) o; s = substr(s, 1, length(s) - 3) }
            print s o }
        else if (v >= 100) printf "%.0f\n", v; else if (v >= 10) printf "%.1f\n", v; else printf "%.2f\n", v }'
}
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------- install
sudo_() { if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi; }

ngx_lua_dir() { # prints the directory holding nginx's Lua module and NDK (Debian: /usr/lib/nginx/modules)
    local d
    for d in $NGX_MODULE_DIRS; do
        [[ -f $d/ngx_http_lua_module.so && -f $d/ndk_http_module.so ]] && { echo "$d"; return 0; }
    done
    return 0
}

install_deps() {
    local missing=()
    [[ -x $NGINX ]] || missing+=(nginx-light)
    command -v wrk >/dev/null || missing+=(wrk)
    command -v h2load >/dev/null || missing+=(nghttp2-client)
    command -v curl >/dev/null || missing+=(curl)
    command -v openssl >/dev/null || missing+=(openssl)
    if ((${#missing[@]})); then
        log "installing ${missing[*]} (apt-get)"
        sudo_ apt-get update -qq
        sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    # on its own: it must match the installed nginx's ABI, and without it only scenario 9's nginx cell is n/a
    if [[ " $SCENARIOS " == *" 9 "* && -z $(ngx_lua_dir) ]]; then
        log "installing libnginx-mod-http-lua (apt-get)"
        { sudo_ apt-get update -qq &&
            sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libnginx-mod-http-lua >/dev/null; } ||
            log "could not install libnginx-mod-http-lua; scenario 9's nginx cell will be n/a"
    fi
    # scenario 11: Debian's chromium (without recommends, as .ci/run) and node, playwright-core from npm; a
    # failed install makes scenario 11 n/a, with a note
    if [[ " $SCENARIOS " == *" 11 "* ]]; then
        missing=()
        [[ -x $CHROMIUM ]] || missing+=(chromium)
        command -v node >/dev/null || missing+=(nodejs)
        command -v npm >/dev/null || missing+=(npm)
        if ((${#missing[@]})); then
            log "installing ${missing[*]} (apt-get)"
            { sudo_ apt-get update -qq && sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
                --no-install-recommends "${missing[@]}" >/dev/null; } || log "could not install ${missing[*]}"
        fi
        if [[ ! -d $WEB_UI_DIR/node_modules/playwright-core ]] && command -v npm >/dev/null; then
            log "installing playwright-core into $WEB_UI_DIR (npm ci)"
            (cd "$WEB_UI_DIR" && npm ci --no-audit --no-fund --silent) || log "npm ci in $WEB_UI_DIR failed"
        fi
    fi
    if [[ ! -x $VENV/bin/mitmdump ]]; then
        log "installing mitmproxy into $VENV (pip)"
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q mitmproxy
    fi
}

build() {
    log "building strata, loadgen and store_query (cargo build --release)"
    cargo build --release --quiet
    cargo build --release --quiet --example loadgen
    cargo build --release --quiet --example store_query
}

[[ -n "${NO_INSTALL:-}" ]] || install_deps
[[ -n "${NO_BUILD:-}" ]] || build
[[ -x $STRATA && -x $LOADGEN ]] || die "missing $STRATA or $LOADGEN (build failed?)"

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
(($(ulimit -n) > IDLE_CONNS * 2 + 100)) || die "open file limit $(ulimit -n) too low for IDLE_CONNS=$IDLE_CONNS"

# ---------------------------------------------------------------------------------------------- processes
TMP=$(mktemp -d /tmp/strata-bench.XXXXXX)
chmod 755 "$TMP"   # nginx workers may run as another user
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    sleep 0.3
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    if [[ -n "${KEEP_TMP:-}" ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Kills one process this script started and waits for it.
stop() {
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

free_ports() { # N: prints N currently free loopback ports
    python3 -c '
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

# Waits until PORT accepts connections while PID lives; returns 2 if the process exited with 2 (refused).
wait_port() {
    local port=$1 pid=$2 rc
    for _ in $(seq 300); do
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid" && rc=0 || rc=$?
            return $((rc == 2 ? 2 : 1))
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

rss_kb() { # PID: VmRSS of it and its children, KiB
    local total=0 p v
    for p in "$1" $(pgrep -P "$1" || true); do
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}
hwm_kb() { # PID: VmHWM (peak RSS) of it and its children, KiB
    local total=0 p v
    for p in "$1" $(pgrep -P "$1" || true); do
        v=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

# ---------------------------------------------------------------------------------------------- origin
read -r ORIGIN ORIGIN_TLS ORIGIN_H2 NGX NGX_TLS NGX_H2 MITM_PORT STRATA_PORT NGX_LUA MITM_SCRIPT_PORT \
    STRATA_SCRIPT_PORT STRATA_WEB_PORT WEB_UI_PORT MITMWEB_PORT MITMWEB_UI_PORT < <(free_ports 15)

log "test CA, leaf and files in $TMP"
(
    cd "$TMP"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
        -days 30 -subj "/CN=strata bench test CA" \
        -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout leaf.key -out leaf.csr \
        -subj "/CN=127.0.0.1" 2>/dev/null
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >leaf.ext
    openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 -extfile leaf.ext \
        -out leaf.pem 2>/dev/null
    cat leaf.pem ca.pem >leaf-chain.pem
    mkdir www
    head -c 1024 /dev/zero | tr '\0' x >www/1k
    head -c "$SOAK_BODY" /dev/zero | tr '\0' x >www/100k
    truncate -s "$BIG_SIZE" www/1g
    cat www/1g >/dev/null   # page the holes in once, or the first download pays for it
)
BIG_BYTES=$(stat -c %s "$TMP/www/1g")

NGINX_USER=""
[[ $(id -u) == 0 ]] && NGINX_USER="user root root;"

nginx_conf() { # NAME SERVERS...: writes $TMP/NAME.conf around the server blocks given (NGX_MAIN: lines on top)
    local name=$1; shift
    mkdir -p "$TMP/$name"
    cat >"$TMP/$name.conf" <<EOF
${NGX_MAIN:-}
$NGINX_USER
daemon off;
worker_processes auto;
worker_rlimit_nofile 20000;
pid $TMP/$name/nginx.pid;
error_log $TMP/$name/error.log warn;
events { worker_connections 10000; }
http {
    access_log off;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 300s;
    keepalive_requests 100000000;
    client_body_temp_path $TMP/$name/body;
    proxy_temp_path $TMP/$name/proxy;
    fastcgi_temp_path $TMP/$name/fastcgi;
    uwsgi_temp_path $TMP/$name/uwsgi;
    scgi_temp_path $TMP/$name/scgi;
    ssl_protocols TLSv1.2 TLSv1.3;
$*
}
EOF
}

nginx_conf origin "
    server {
        listen 127.0.0.1:$ORIGIN;
        root $TMP/www;
    }
    server {
        listen 127.0.0.1:$ORIGIN_TLS ssl;
        ssl_certificate $TMP/leaf-chain.pem;
        ssl_certificate_key $TMP/leaf.key;
        root $TMP/www;
    }
    server {
        listen 127.0.0.1:$ORIGIN_H2 ssl http2;
        ssl_certificate $TMP/leaf-chain.pem;
        ssl_certificate_key $TMP/leaf.key;
        root $TMP/www;
    }"

nginx_conf nginxproxy "
    upstream origin { server 127.0.0.1:$ORIGIN; keepalive 128; }
    upstream origin_tls { server 127.0.0.1:$ORIGIN_TLS; keepalive 128; }
    upstream origin_h2 { server 127.0.0.1:$ORIGIN_H2; keepalive 128; }
    proxy_http_version 1.1;
    proxy_set_header Connection \"\";
    proxy_max_temp_file_size 0;
    server {
        listen 127.0.0.1:$NGX;
        location / { proxy_pass http://origin; }
    }
    server {
        listen 127.0.0.1:$NGX_TLS ssl;
        ssl_certificate $TMP/leaf-chain.pem;
        ssl_certificate_key $TMP/leaf.key;
        location / {
            proxy_pass https://origin_tls;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate $TMP/ca.pem;
            proxy_ssl_name localhost;   # nginx matches DNS names only, not IP SANs
            proxy_ssl_session_reuse on;
        }
    }
    server {
        listen 127.0.0.1:$NGX_H2 ssl http2;   # h2 toward the client, HTTP/1.1 keep-alive toward the origin
        ssl_certificate $TMP/leaf-chain.pem;
        ssl_certificate_key $TMP/leaf.key;
        location / {
            proxy_pass https://origin_h2;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate $TMP/ca.pem;
            proxy_ssl_name localhost;
            proxy_ssl_session_reuse on;
        }
    }"

# Scenario 9: scenario 2's proxy server block (absolute-form requests go to the origin) with a Lua header
# filter; start_target checks this config with `nginx -t` and makes the cell n/a if the module does not load.
NGX_LUA_DIR=$(ngx_lua_dir)
NGX_MAIN="load_module ${NGX_LUA_DIR:-/nonexistent}/ndk_http_module.so;
load_module ${NGX_LUA_DIR:-/nonexistent}/ngx_http_lua_module.so;" nginx_conf nginxlua "
    upstream origin { server 127.0.0.1:$ORIGIN; keepalive 128; }
    proxy_http_version 1.1;
    proxy_set_header Connection \"\";
    proxy_max_temp_file_size 0;
    server {
        listen 127.0.0.1:$NGX_LUA;
        location / {
            proxy_pass http://origin;
            header_filter_by_lua_block { ngx.header[\"x-bench\"] = \"1\" }
        }
    }"

# the one-line header scripts of scenario 9, each adding the header as soon as the response head arrives
echo 'function responseheaders(flow) flow.response.headers:set("x-bench", "1") end' >"$TMP/header.lua"
printf '%s\n' 'def responseheaders(flow): flow.response.headers["x-bench"] = "1"' >"$TMP/header.py"

start_nginx() { # NAME PORT: starts nginx with $TMP/NAME.conf, sets PID
    "$NGINX" -p "$TMP/$1" -c "$TMP/$1.conf" -e "$TMP/$1/error.log" &
    PID=$!
    PIDS+=("$PID")
    wait_port "$2" "$PID" || { cat "$TMP/$1/error.log" >&2; die "nginx $1 did not start"; }
}

log "origin nginx on 127.0.0.1:$ORIGIN (http), :$ORIGIN_TLS (https, HTTP/1.1) and :$ORIGIN_H2 (https, h2)"
start_nginx origin "$ORIGIN"
ORIGIN_PID=$PID
wait_port "$ORIGIN_TLS" "$ORIGIN_PID" || die "origin TLS port"
wait_port "$ORIGIN_H2" "$ORIGIN_PID" || die "origin h2 port"
curl -sf -o /dev/null "http://127.0.0.1:$ORIGIN/1k" || die "origin does not serve /1k"
[[ $(curl -sf -o /dev/null -w '%{size_download}' "http://127.0.0.1:$ORIGIN/100k") == "$SOAK_BODY" ]] ||
    die "origin does not serve /100k"
# the TLS block must refuse h2 even when curl offers it (scenarios 3-5 stay HTTP/1.1), the h2 block must speak it
[[ $(curl -sf -o /dev/null -w '%{http_version}' --http2 --cacert "$TMP/ca.pem" \
    "https://127.0.0.1:$ORIGIN_TLS/1k") == 1.1 ]] || die "origin TLS does not serve /1k over HTTP/1.1"
[[ $(curl -sf -o /dev/null -w '%{http_version}' --http2 --cacert "$TMP/ca.pem" \
    "https://127.0.0.1:$ORIGIN_H2/1k") == 2 ]] || die "origin h2 block does not serve /1k over HTTP/2"

# ---------------------------------------------------------------------------------------------- proxies
# Per target: TPID (0 for direct), TCA (the CA a client must trust for intercepted TLS), and the ports a
# client uses: HTTP_PORT[t] (reverse proxy or origin), TLS_PORT[t] (TLS straight to it: direct, nginx),
# PROXY[t] (explicit proxy port: mitmdump, strata), H2_PORT[t] (TLS + h2: the origin's h2 block, nginx's h2
# server block, or mitmdump and strata in mode reverse-h2). Scenario 9's TARGET+script (nginx with the Lua
# header filter, mitmdump and strata with `-s`) and scenario 11's strata+web (strata with EXTRA_ARGS --web ...)
# have ports of their own, so that they can run next to TARGET.
declare -A TPID TCA HTTP_PORT TLS_PORT PROXY H2_PORT
# Scenario 10 sets these around a start_target: more arguments for mitmdump or strata (its -w or --save-har),
# and mitmdump's stream_large_bodies (empty: not set, bodies are buffered and recorded).
EXTRA_ARGS=()
MITM_STREAM=1m
HTTP_PORT=([direct]=$ORIGIN [nginx]=$NGX [mitmdump]=$MITM_PORT [strata]=$STRATA_PORT [nginx+script]=$NGX_LUA
    [mitmdump+script]=$MITM_SCRIPT_PORT [strata+script]=$STRATA_SCRIPT_PORT [strata+web]=$STRATA_WEB_PORT)
TLS_PORT=([direct]=$ORIGIN_TLS [nginx]=$NGX_TLS)
PROXY=([mitmdump]=$MITM_PORT [strata]=$STRATA_PORT [mitmdump+script]=$MITM_SCRIPT_PORT
    [strata+script]=$STRATA_SCRIPT_PORT [strata+web]=$STRATA_WEB_PORT)
H2_PORT=([direct]=$ORIGIN_H2 [nginx]=$NGX_H2 [mitmdump]=$MITM_PORT [strata]=$STRATA_PORT)

# start_target TARGET MODE (regular|reverse|reverse-h2; reverse-h2: a reverse proxy with TLS toward the client
# in front of the origin's h2 block); returns 2 when the target refuses the mode (n/a). TARGET+script: the
# target with scenario 9's header script (nginx+script: regular mode only; 2, with a note, if the Lua module
# does not load). strata+web: strata with ports of its own, confdir and log $TMP/strata-web (scenario 11 gives
# it --web and the rest in EXTRA_ARGS).
start_target() {
    local target=$1 mode=$2 rc=0 args pid=0 ca=$TMP/ca.pem err dir suffix="" port=${HTTP_PORT[$1]}
    [[ $target == *+* ]] && suffix=-${target#*+}   # $TMP/mitm-script, $TMP/strata-web: confdirs and logs
    case $target in
    direct) ;;
    nginx+script)
        [[ $mode == regular ]] || return 2
        if [[ -z $NGX_LUA_DIR ]]; then
            note "s9 nginx: nginx's Lua module is not installed (no ngx_http_lua_module.so and ndk_http_module.so" \
                "in $NGX_MODULE_DIRS; Debian package libnginx-mod-http-lua)"
            TPID[$target]=0
            return 2
        fi
        if ! err=$("$NGINX" -t -q -p "$TMP/nginxlua" -c "$TMP/nginxlua.conf" -e "$TMP/nginxlua/error.log" 2>&1); then
            note "s9 nginx: the Lua module does not work with this nginx ($("$NGINX" -v 2>&1)):" \
                "$(tr '\n' ' ' <<<"$err" | tail -c 400)"
            TPID[$target]=0
            return 2
        fi
        start_nginx nginxlua "$NGX_LUA"
        pid=$PID
        ;;
    nginx)
        start_nginx nginxproxy "$NGX"
        pid=$PID
        wait_port "$NGX_TLS" "$pid" || die "nginx proxy TLS port"
        wait_port "$NGX_H2" "$pid" || die "nginx proxy h2 port"
        ;;
    mitmdump | mitmdump+script)
        dir=$TMP/mitm$suffix
        rm -rf "$dir" && mkdir -p "$dir"
        args=(--listen-host 127.0.0.1 -p "$port" -q --ssl-insecure --set "confdir=$dir")
        [[ -n $MITM_STREAM ]] && args+=(--set "stream_large_bodies=$MITM_STREAM")
        [[ $target == *+script ]] && args+=(-s "$TMP/header.py")
        args+=("${EXTRA_ARGS[@]}")
        case $mode in
        reverse) args+=(--mode "reverse:http://127.0.0.1:$ORIGIN") ;;
        reverse-h2) args+=(--mode "reverse:https://127.0.0.1:$ORIGIN_H2") ;;
        *) args+=(--mode regular) ;;
        esac
        "$VENV/bin/mitmdump" "${args[@]}" >"$dir.log" 2>&1 &
        pid=$!
        PIDS+=("$pid")
        wait_port "$port" "$pid" || { tail "$dir.log" >&2; die "$target did not start"; }
        ca=$dir/mitmproxy-ca-cert.pem
        ;;
    strata | strata+script | strata+web)
        dir=$TMP/strata$suffix
        rm -rf "$dir" && mkdir -p "$dir"
        args=(--listen-host 127.0.0.1 -p "$port" -q --confdir "$dir" --upstream-ca "$TMP/ca.pem")
        [[ $target == *+script ]] && args+=(-s "$TMP/header.lua")
        args+=("${EXTRA_ARGS[@]}")
        case $mode in
        reverse) args+=(-m "reverse:http://127.0.0.1:$ORIGIN") ;;
        reverse-h2) args+=(-m "reverse:https://127.0.0.1:$ORIGIN_H2") ;;
        esac
        "$STRATA" "${args[@]}" >"$dir.log" 2>&1 &
        pid=$!
        PIDS+=("$pid")
        wait_port "$port" "$pid" || rc=$?
        if ((rc == 2)) && grep -qi 'not supported' "$dir.log"; then
            log "$target refuses mode $mode: $(tail -1 "$dir.log")"
            TPID[$target]=0
            return 2
        fi
        if ((rc != 0)) && [[ $target == *+script ]]; then   # the script's fault, not the bench's: n/a, noted
            note "s9 strata: strata -s $TMP/header.lua did not start: $(tail -3 "$dir.log" | tr '\n' ' ')"
            TPID[$target]=0
            return 2
        fi
        ((rc == 0)) || { tail "$dir.log" >&2; die "$target did not start"; }
        ca=$dir/strata-ca-cert.pem
        ;;
    esac
    TPID[$target]=$pid
    TCA[$target]=$ca
    [[ -s $ca ]] || die "$target: no CA file $ca"
    return 0
}

stop_target() { if ((${TPID[$1]:-0})); then stop "${TPID[$1]}"; fi; TPID[$1]=0; }

# ---------------------------------------------------------------------------------------------- clients
cat >"$TMP/absolute.lua" <<EOF
-- absolute-form requests, as a browser sends them to an explicit proxy
wrk.path = "http://127.0.0.1:$ORIGIN/1k"
wrk.headers["Host"] = "127.0.0.1:$ORIGIN"
EOF

to_ms() { # wrk latency (123.45us, 1.23ms, 1.02s, 2.00m) -> ms
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
        printf "%.3f", n }'
}

NOTES=()
note() { NOTES+=("$*"); log "note: $*"; }

# Result store: VAL[key] holds space-separated values of the runs; key = "row|target".
declare -A VAL

# wrk_run ROW TARGET URL [SCRIPT]: one wrk run, records req/s in ROW and p99 in ROW.p99
wrk_run() {
    local row=$1 target=$2 url=$3 script=${4:-} out rps p99 extra=()
    [[ -n $script ]] && extra=(-s "$script")
    out=$(wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency "${extra[@]}" "$url" 2>&1) || true
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    if [[ -z $rps || -z $p99 ]]; then
        note "$row $target: wrk failed: $(tr '\n' ' ' <<<"$out" | tail -c 300)"
        return
    fi
    grep -q -e 'Non-2xx' -e 'Socket errors' <<<"$out" &&
        note "$row $target: $(grep -e 'Non-2xx' -e 'Socket errors' <<<"$out" | tr '\n' ' ')"
    VAL["$row|$target"]+="$rps "
    VAL["$row.p99|$target"]+="$(to_ms "$p99") "
    log "  $row $target: $rps req/s, p99 $p99"
}

# loadgen_run ROW TARGET ARGS...: one loadgen run
loadgen_run() {
    local row=$1 target=$2 out rps p99 errors bad
    shift 2
    out=$("$LOADGEN" --duration "$DURATION" "$@" 2>&1) || true
    rps=$(grep -o 'rps=[0-9.]*' <<<"$out" | cut -d= -f2)
    p99=$(grep -o 'p99_ms=[0-9.a-zA-Z]*' <<<"$out" | cut -d= -f2)
    errors=$(grep -o 'errors=[0-9]*' <<<"$out" | cut -d= -f2)
    bad=$(grep -o 'bad_status=[0-9]*' <<<"$out" | cut -d= -f2)
    if [[ -z $rps ]]; then
        note "$row $target: loadgen failed: $(tr '\n' ' ' <<<"$out" | tail -c 300)"
        return
    fi
    ((${errors:-0} + ${bad:-0} == 0)) || note "$row $target: $errors errors, $bad non-2xx responses"
    VAL["$row|$target"]+="$rps "
    VAL["$row.p99|$target"]+="$p99 "
    log "  $row $target: $out"
}

# h2load_run ROW TARGET URL: one h2load run (HTTP/2 over TLS, H2_CONNS x H2_STREAMS), records req/s in ROW
# and the mean request time in ROW.lat (h2load prints min/max/mean/sd, no percentiles)
h2load_run() {
    local row=$1 target=$2 url=$3 out rps mean failed non2xx
    out=$(h2load -c"$H2_CONNS" -m"$H2_STREAMS" -t"$H2_THREADS" -D "$DURATION" "$url" 2>&1) || true
    rps=$(awk '/^finished in/ {print $4}' <<<"$out")
    mean=$(awk '/^time for request:/ {print $6}' <<<"$out")
    if [[ -z $rps || -z $mean ]] || grep -q 'No protocol negotiated' <<<"$out"; then
        note "$row $target: h2load failed: $(tr '\n' ' ' <<<"$out" | tail -c 300)"
        return
    fi
    failed=$(awk '/^requests:/ {print $10 + $12 + $14}' <<<"$out")
    non2xx=$(awk '/^status codes:/ {print $5 + $7 + $9}' <<<"$out")
    ((${failed:-0} + ${non2xx:-0} == 0)) ||
        note "$row $target: h2load: $(grep -e '^requests:' -e '^status codes:' <<<"$out" | tr '\n' ' ')"
    VAL["$row|$target"]+="$rps "
    VAL["$row.lat|$target"]+="$(to_ms "$mean") "
    log "  $row $target: $rps req/s, mean request time $mean"
}

# curl_run ROW TARGET VERSION CURL-ARGS...: downloads the large file with HTTP VERSION (1.1 or 2, passed to
# curl and checked against what it negotiated), records MB/s in ROW and peak RSS in ROW.rss
curl_run() {
    local row=$1 target=$2 want=$3 out speed code size version rc=0
    shift 3
    out=$(curl -sS --max-time 300 -o /dev/null --http"$want" \
        -w '%{speed_download} %{http_code} %{size_download} %{http_version}' "$@" 2>&1) || rc=$?
    read -r speed code size version <<<"$(tail -1 <<<"$out")"
    if ((rc != 0)) || [[ $code != 200 || $size != "$BIG_BYTES" ]]; then
        note "$row $target: curl exit $rc, status $code, $size of $BIG_BYTES bytes: $(head -1 <<<"$out")"
        [[ $code == 200 && -n $size ]] || return 0
    fi
    if [[ $version != "$want" ]]; then
        note "$row $target: curl spoke HTTP/$version, not HTTP/$want; not counted"
        return 0
    fi
    VAL["$row|$target"]+="$(awk -v s="$speed" 'BEGIN {printf "%.1f", s / 1e6}') "
    local pid=${TPID[$target]:-0}
    if ((pid)); then VAL["$row.rss|$target"]+="$(awk -v k="$(hwm_kb "$pid")" 'BEGIN {printf "%.1f", k / 1024}') "; fi
    log "  $row $target: $(awk -v s="$speed" 'BEGIN {printf "%.1f", s / 1e6}') MB/s"
}

# ---------------------------------------------------------------------------------------------- scenarios
# One measurement of scenarios 1-4 against one running target; ROW names the result.
measure1() { wrk_run "$2" "$1" "http://127.0.0.1:${HTTP_PORT[$1]}/1k"; }
measure2() {
    case $1 in
    direct) wrk_run "$2" "$1" "http://127.0.0.1:$ORIGIN/1k" ;;
    *) wrk_run "$2" "$1" "http://127.0.0.1:${HTTP_PORT[$1]}/" "$TMP/absolute.lua" ;;
    esac
}
tls_client_args() { # TARGET: loadgen arguments to reach the TLS origin through TARGET
    case $1 in
    direct | nginx) echo "--target 127.0.0.1:${TLS_PORT[$1]} --tls --cacert ${TCA[$1]}" ;;
    *) echo "--proxy 127.0.0.1:${PROXY[$1]} --target 127.0.0.1:$ORIGIN_TLS --tls --cacert ${TCA[$1]}" ;;
    esac
}
# shellcheck disable=SC2046
measure3() { loadgen_run "$2" "$1" $(tls_client_args "$1") --connections "$CONNS"; }
# shellcheck disable=SC2046
measure4() { loadgen_run "$2" "$1" $(tls_client_args "$1") --connections "$HS_CONNS" --new-connection-per-request; }
measure7() { h2load_run "$2" "$1" "https://127.0.0.1:${H2_PORT[$1]}/1k"; }

# load_scenario N MODE: starts every target, warms each up for 1 s, then runs RUNS rounds, each measuring
# every target once in turn (so that a disturbance on the machine spreads over all of them).
load_scenario() {
    local n=$1 mode=$2 t up=()
    for t in $TARGETS; do
        if start_target "$t" "$mode"; then up+=("$t"); else VAL["s$n|$t"]=na; fi
    done
    for t in "${up[@]}"; do (DURATION=1 "measure$n" "$t" warmup >/dev/null 2>&1) || true; done
    for _ in $(seq "$RUNS"); do
        for t in "${up[@]}"; do "measure$n" "$t" "s$n"; done
    done
    for t in "${up[@]}"; do
        # the proxy's peak RSS over the warm-up and all runs (reported for scenario 7)
        if ((${TPID[$t]:-0})); then
            VAL["s$n.rss|$t"]=$(awk -v k="$(hwm_kb "${TPID[$t]}")" 'BEGIN {printf "%.1f", k / 1024}')
        fi
        stop_target "$t"
    done
}
scenario1() { load_scenario 1 reverse; }
scenario2() { load_scenario 2 regular; }
scenario3() { load_scenario 3 regular; }
scenario4() { load_scenario 4 regular; }
scenario7() { load_scenario 7 reverse-h2; }

# Scenario 5: each download with a freshly started proxy, so that VmHWM is this download's peak.
scenario5() {
    local t kind
    declare -A refused=()
    for _ in $(seq "$RUNS"); do
        for kind in plain tls; do
            for t in $TARGETS; do
                [[ -n ${refused[$t]:-} ]] && continue
                start_target "$t" regular || { refused[$t]=1 VAL["s5plain|$t"]=na VAL["s5tls|$t"]=na; continue; }
                case $t:$kind in
                direct:plain | nginx:plain) curl_run s5plain "$t" 1.1 "http://127.0.0.1:${HTTP_PORT[$t]}/1g" ;;
                direct:tls | nginx:tls)
                    curl_run s5tls "$t" 1.1 --cacert "${TCA[$t]}" "https://127.0.0.1:${TLS_PORT[$t]}/1g"
                    ;;
                *:plain) curl_run s5plain "$t" 1.1 -x "http://127.0.0.1:${PROXY[$t]}" "http://127.0.0.1:$ORIGIN/1g" ;;
                *:tls)
                    curl_run s5tls "$t" 1.1 -x "http://127.0.0.1:${PROXY[$t]}" --cacert "${TCA[$t]}" \
                        "https://127.0.0.1:$ORIGIN_TLS/1g"
                    ;;
                esac
                stop_target "$t"
            done
        done
    done
}

# Scenario 8: the large file over HTTP/2 (TLS, h2 toward the client), a freshly started proxy per download, as 5.
scenario8() {
    local t
    declare -A refused=()
    for _ in $(seq "$RUNS"); do
        for t in $TARGETS; do
            [[ -n ${refused[$t]:-} ]] && continue
            start_target "$t" reverse-h2 || { refused[$t]=1 VAL["s8|$t"]=na VAL["s8h1|$t"]=na; continue; }
            curl_run s8 "$t" 2 --cacert "${TCA[$t]}" "https://127.0.0.1:${H2_PORT[$t]}/1g"
            stop_target "$t"
            start_target "$t" reverse-h2 || continue
            curl_run s8h1 "$t" 1.1 --cacert "${TCA[$t]}" "https://127.0.0.1:${H2_PORT[$t]}/1g"
            stop_target "$t"
        done
    done
}

# Scenario 9: the cost of a one-line header script, scenario 2's load. Cells: nginx+script, mitmdump+script
# and strata+script (row s9, in the nginx, mitmdump and strata columns) and strata without a script (s9.noscript,
# the baseline under the table), all up at once and measured in turn in each round, as in load_scenario.
# nginx and mitmdump without a script are started only to check that the header is not there without one.
measure9() { # CELL ROW
    local row=$2
    [[ $1 == *+script || $row == warmup ]] || row+=.noscript
    wrk_run "$row" "${1%+script}" "http://127.0.0.1:${HTTP_PORT[$1]}/" "$TMP/absolute.lua"
}
# header_check CELL yes|no: one absolute-form GET through CELL; true if it answers 200 and carries
# `x-bench: 1` (yes) or no x-bench header at all (no); a note otherwise
header_check() {
    local cell=$1 want=$2 out rc=0 status got=no
    out=$(curl -sS --max-time 10 --noproxy "" -x "http://127.0.0.1:${HTTP_PORT[$cell]}" -o /dev/null -D - \
        "http://127.0.0.1:$ORIGIN/1k" 2>&1) || rc=$?
    status=$(awk '/^HTTP\// {s = $2} END {print s}' <<<"$out")
    grep -qi '^x-bench:' <<<"$out" && got=other
    grep -qiE '^x-bench: *1'$'\r''?$' <<<"$out" && got=yes
    if ((rc == 0)) && [[ $status == 200 && $got == "$want" ]]; then return 0; fi
    note "s9 $cell: curl -x through it: exit $rc, status ${status:-none}, x-bench $got (wanted $want):" \
        "$(tr '\r\n' '  ' <<<"$out" | head -c 300)"
    return 1
}
scenario9() {
    local t cell cells=()
    VAL["s9|direct"]=na
    for t in nginx mitmdump strata; do
        [[ " $TARGETS " == *" $t "* ]] || continue
        VAL["s9|$t"]=""
        if start_target "$t" regular; then
            header_check "$t" no || true   # noted; the scripted cell still says what the script costs
            if [[ $t == strata ]]; then cells+=("$t"); else stop_target "$t"; fi
        fi
        if ! start_target "$t+script" regular; then
            VAL["s9|$t"]=na
        elif header_check "$t+script" yes; then
            cells+=("$t+script")
        else
            VAL["s9|$t"]=na
            stop_target "$t+script"
        fi
    done
    for cell in "${cells[@]}"; do (DURATION=1 measure9 "$cell" warmup >/dev/null 2>&1) || true; done
    for _ in $(seq "$RUNS"); do
        for cell in "${cells[@]}"; do measure9 "$cell" s9; done
    done
    for cell in "${cells[@]}"; do
        # header once more after the load: a script that stopped running (error, time budget) would show here
        [[ $cell != *+script ]] || header_check "$cell" yes || true
        stop_target "$cell"
    done
}

# Scenario 10: the recording soak (issue 12). Cells: strata (no recording), strata+w (-w session),
# strata+har (--save-har) and mitmdump+w (-w flow file, bodies buffered and recorded), one after another, each
# freshly started; always one run. Results: s10 (req/s), s10.n (requests completed), s10.rss0 / s10.hwm /
# s10.rss1 (RSS at start, peak, end, MiB), s10.size (file written, bytes), s10.read and s10.flows (strata+w:
# reading the session back); SOAK_WRITE_* (the write ceiling, soak_write_ceiling) and SOAK_QUERY_* (the query
# benchmark, soak_query).
SOAK_N=$SOAK_REQUESTS
SOAK_CELLS="strata strata+w strata+har mitmdump+w"
SOAK_CEILING=""
SOAK_WRITE_MBS="" SOAK_WRITE_RPS="" SOAK_WRITE_BYTES="" SOAK_WRITE_SECS=""
SOAK_QUERY_TABLE="" SOAK_QUERY_SECS=""
declare -A SOAK_CAPPED SOAK_CHECK

# soak_load PORT CAP: loadgen runs (absolute-form GET /100k through the explicit proxy on PORT, CONNS
# connections) until 99 % of SOAK_N requests are done, or less than 20 ms of load is left to do, or CAP seconds
# of load have passed. loadgen has no request count: the first run lasts min(1 s, SOAK_N / 50000 s), each next
# one (requests left) / (rate so far), but at most 4x as long as the last (a proxy warming up gets faster) and
# at most 10 s (a recording proxy's rate swings with the disk's writeback; long runs sized by a stale rate
# overshoot); a run that completes nothing is retried 4x longer (a slow proxy's first responses take longer
# than a short run). Sets SOAK_DONE, SOAK_SECS, SOAK_RUNS, SOAK_ERRORS
# (errors + non-2xx) and SOAK_HIT_CAP.
soak_load() {
    local port=$1 cap=$2 d out n s e b
    SOAK_DONE=0 SOAK_SECS=0 SOAK_RUNS=0 SOAK_ERRORS=0 SOAK_HIT_CAP=""
    d=$(awk -v n="$SOAK_N" 'BEGIN {d = n / 50000; printf "%.3f", (d > 1 ? 1 : d)}')
    while :; do
        d=$(awk -v d="$d" -v c="$cap" -v s="$SOAK_SECS" 'BEGIN {if (d > c - s) d = c - s; printf "%.3f", (d < 0.02 ? 0.02 : d)}')
        out=$("$LOADGEN" --proxy "127.0.0.1:$port" --target "127.0.0.1:$ORIGIN" --path /100k \
            --connections "$CONNS" --duration "$d" 2>&1) || true
        n=$(grep -o 'requests=[0-9]*' <<<"$out" | cut -d= -f2)
        s=$(grep -o 'seconds=[0-9.]*' <<<"$out" | cut -d= -f2)
        e=$(grep -o 'errors=[0-9]*' <<<"$out" | cut -d= -f2)
        b=$(grep -o 'bad_status=[0-9]*' <<<"$out" | cut -d= -f2)
        if [[ -z $n || -z $s ]]; then
            note "s10: loadgen failed: $(tr '\n' ' ' <<<"$out" | tail -c 300)"
            return 1
        fi
        SOAK_RUNS=$((SOAK_RUNS + 1)) SOAK_DONE=$((SOAK_DONE + n)) SOAK_ERRORS=$((SOAK_ERRORS + ${e:-0} + ${b:-0}))
        SOAK_SECS=$(awk -v a="$SOAK_SECS" -v b="$s" 'BEGIN {printf "%.3f", a + b}')
        log "    loadgen run $SOAK_RUNS (${d}s): $out"
        ((SOAK_DONE * 100 < SOAK_N * 99)) || break
        if awk -v s="$SOAK_SECS" -v c="$cap" 'BEGIN {exit !(s >= c - 0.05)}'; then SOAK_HIT_CAP=1; break; fi
        if ((SOAK_RUNS >= 50)) || { ((n == 0)) && awk -v d="$d" 'BEGIN {exit !(d >= 10)}'; }; then
            note "s10: loadgen stalled: $SOAK_DONE requests in $SOAK_RUNS runs, the last: $out"
            return 1
        fi
        if ((n == 0)); then
            d=$(awk -v d="$d" 'BEGIN {printf "%.3f", d * 4}')
            continue
        fi
        d=$(awk -v l="$((SOAK_N - SOAK_DONE))" -v n="$SOAK_DONE" -v s="$SOAK_SECS" -v d="$d" \
            'BEGIN {e = l / (n / s); if (e > 4 * d) e = 4 * d; printf "%.3f", (e > 10 ? 10 : e)}')
        if awk -v d="$d" 'BEGIN {exit !(d < 0.02)}'; then break; fi
    done
}

# stop_graceful PID SECONDS: SIGTERM, then up to SECONDS for it to exit (a recording proxy finishes its file);
# returns 1 if it had to be killed
stop_graceful() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < $2 * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    return 1
}

# soak_read: times `strata -n -r $TMP/s.db >/dev/null` (default flow detail), counts its flow lines, checks
# the count against the requests the client completed (+1 warm-up)
soak_read() {
    local db=$TMP/s.db rc=0 t0 t1 secs flows want
    mkdir -p "$TMP/strata-read"
    t0=$EPOCHREALTIME
    "$STRATA" --confdir "$TMP/strata-read" -n -r "$db" >/dev/null 2>"$TMP/read.err" || rc=$?
    t1=$EPOCHREALTIME
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')
    if ((rc != 0)); then
        note "s10 strata -n -r: exit $rc: $(tail -3 "$TMP/read.err" | tr '\n' ' ')"
        VAL["s10.read|strata+w"]=na
        return
    fi
    [[ -s $TMP/read.err ]] && note "s10 strata -n -r said on stderr: $(head -3 "$TMP/read.err" | tr '\n' ' ')"
    flows=$("$STRATA" --confdir "$TMP/strata-read" -n -r "$db" 2>/dev/null | wc -l)
    VAL["s10.flows|strata+w"]=$flows
    VAL["s10.read|strata+w"]=$(awk -v f="$flows" -v s="$secs" 'BEGIN {printf "%.1f", f / s}')
    VAL["s10.readsecs|strata+w"]=$secs
    log "  s10 strata -n -r: $flows flows in ${secs}s"
    want=$((SOAK_DONE + 1))
    if ((flows == want)); then
        SOAK_CHECK[strata+w]="equals the $SOAK_DONE requests loadgen completed + 1 warm-up"
    elif ((flows > want && flows <= want + CONNS * SOAK_RUNS)); then
        SOAK_CHECK[strata+w]="is $((flows - want)) more than the $SOAK_DONE requests loadgen completed + 1 warm-up"
        note "s10 strata -w: $flows flows read back, $((flows - want)) more than the $SOAK_DONE requests loadgen" \
            "completed + 1 warm-up: requests in flight when a loadgen run hit its deadline (it drops them" \
            "uncounted, strata had forwarded them; at most CONNS=$CONNS per run, $SOAK_RUNS runs)"
    else
        SOAK_CHECK[strata+w]="MISMATCH: the client completed $SOAK_DONE requests + 1 warm-up"
        note "s10 strata -w: MISMATCH: $flows flows read back, but loadgen completed $SOAK_DONE requests" \
            "+ 1 warm-up (in-flight requests dropped at loadgen's deadlines explain at most $((CONNS * SOAK_RUNS)) more)"
    fi
}

soak_cell() { # CELL
    local cell=$1 t=${1%+*} file="" cap=$SOAK_MAX_SECONDS pid port out rss0 hwm rss1 size=0 killed=""
    EXTRA_ARGS=()
    case $cell in
    strata+w) file=$TMP/s.db; EXTRA_ARGS=(-w "$file") ;;
    strata+har) file=$TMP/s.har; EXTRA_ARGS=(--save-har "$file") ;;
    mitmdump+w) file=$TMP/m.mitm cap=$SOAK_MITM_SECONDS; EXTRA_ARGS=(-w "$file") ;;
    esac
    [[ -z $file ]] || rm -f "$file" "$file-wal" "$file-shm"
    # the last variant's writes (GBs) out of the page cache first, so that their writeback does not slow this one
    sync -f "$TMP" 2>/dev/null || sync
    MITM_STREAM=""
    start_target "$t" regular || { VAL["s10|$cell"]=na; EXTRA_ARGS=() MITM_STREAM=1m; return; }
    EXTRA_ARGS=() MITM_STREAM=1m
    pid=${TPID[$t]} port=${PROXY[$t]}
    out=$(curl -sS --max-time 10 --noproxy "" -x "http://127.0.0.1:$port" -o /dev/null \
        -w '%{http_code} %{size_download}' "http://127.0.0.1:$ORIGIN/100k" 2>&1) || true
    if [[ $out != "200 $SOAK_BODY" ]]; then
        note "s10 $cell: warm-up request through it failed: $out"
        VAL["s10|$cell"]=na
        stop_target "$t"
        [[ -z $file ]] || rm -f "$file" "$file-wal" "$file-shm"
        return
    fi
    sleep 1
    rss0=$(rss_kb "$pid")
    if ! soak_load "$port" "$cap"; then
        VAL["s10|$cell"]=na
        stop_target "$t"
        [[ -z $file ]] || rm -f "$file" "$file-wal" "$file-shm"
        return
    fi
    sleep 1
    hwm=$(hwm_kb "$pid") rss1=$(rss_kb "$pid")
    kill -0 "$pid" 2>/dev/null || note "s10 $cell: the proxy died during the load: $(tail -3 "$TMP/${t/mitmdump/mitm}.log" | tr '\n' ' ')"
    stop_graceful "$pid" 120 || killed=1
    TPID[$t]=0
    [[ -z $killed ]] || note "s10 $cell: did not exit within 120 s of SIGTERM; killed (its file may be incomplete)"
    [[ -n $SOAK_HIT_CAP && $cell == mitmdump* ]] && SOAK_CAPPED[$cell]=1
    [[ -n $SOAK_HIT_CAP && $cell != mitmdump* ]] &&
        note "s10 $cell: stopped at the SOAK_MAX_SECONDS=$SOAK_MAX_SECONDS cap: $SOAK_DONE of $SOAK_N requests"
    ((SOAK_ERRORS == 0)) || note "s10 $cell: $SOAK_ERRORS loadgen errors or non-2xx responses"
    if [[ $t == strata ]] && grep -qiE 'error|warn|panic' "$TMP/strata.log"; then
        note "s10 $cell: strata logged: $(grep -iE 'error|warn|panic' "$TMP/strata.log" | head -3 | tr '\n' ' ')"
    fi
    VAL["s10|$cell"]=$(awk -v n="$SOAK_DONE" -v s="$SOAK_SECS" 'BEGIN {printf "%.1f", n / s}')
    VAL["s10.n|$cell"]=$SOAK_DONE
    VAL["s10.rss0|$cell"]=$(awk -v k="$rss0" 'BEGIN {printf "%.1f", k / 1024}')
    VAL["s10.hwm|$cell"]=$(awk -v k="$hwm" 'BEGIN {printf "%.1f", k / 1024}')
    VAL["s10.rss1|$cell"]=$(awk -v k="$rss1" 'BEGIN {printf "%.1f", k / 1024}')
    log "  s10 $cell: $SOAK_DONE requests in ${SOAK_SECS}s (${VAL["s10|$cell"]} req/s, $SOAK_RUNS loadgen runs)," \
        "RSS ${VAL["s10.rss0|$cell"]} / ${VAL["s10.hwm|$cell"]} / ${VAL["s10.rss1|$cell"]} MiB"
    if [[ -n $file ]]; then
        size=$({ stat -c %s "$file" "$file-wal" 2>/dev/null || true; } | awk '{s += $1} END {printf "%.0f", s}')
        VAL["s10.size|$cell"]=$(awk -v b="$size" 'BEGIN {printf "%.1f", b / 1e6}')
        log "  s10 $cell: $file is $size bytes"
        [[ $cell == strata+w ]] && soak_read
        rm -f "$file" "$file-wal" "$file-shm"
    fi
}

# soak_write_ceiling: what the disk takes through the page cache, the way the recording variants write: as many
# bytes as the -w variant will write (SOAK_N x 100 KiB, in whole MiB), buffered, no fsync, the file deleted
# after. Sets SOAK_WRITE_BYTES, SOAK_WRITE_SECS, SOAK_WRITE_MBS (10^6 bytes/s) and SOAK_WRITE_RPS (100 KiB
# bodies per second it allows).
soak_write_ceiling() {
    local count out bytes secs
    count=$(((SOAK_N * SOAK_BODY + 1048575) / 1048576))
    sync -f "$TMP" 2>/dev/null || sync
    out=$(LC_ALL=C dd if=/dev/zero of="$TMP/ceiling" bs=1M count="$count" 2>&1) || {
        note "s10 write ceiling: dd failed: $(tail -1 <<<"$out")"
        rm -f "$TMP/ceiling"
        return
    }
    rm -f "$TMP/ceiling"
    # "2097152000 bytes (2.1 GB, 2.0 GiB) copied, 1.04 s, 2.0 GB/s"
    bytes=$(tail -1 <<<"$out" | awk '{print $1}')
    secs=$(tail -1 <<<"$out" | sed -nE 's/.*copied, ([0-9.e+-]+) s,.*/\1/p')
    if [[ -z $bytes || -z $secs ]] || ! awk -v s="$secs" 'BEGIN {exit !(s > 0)}'; then
        note "s10 write ceiling: could not read dd's output: $(tail -1 <<<"$out")"
        return
    fi
    SOAK_WRITE_BYTES=$bytes SOAK_WRITE_SECS=$(awk -v s="$secs" 'BEGIN {printf "%.2f", s}')
    SOAK_WRITE_MBS=$(awk -v b="$bytes" -v s="$secs" 'BEGIN {printf "%.1f", b / s / 1e6}')
    SOAK_WRITE_RPS=$(awk -v b="$bytes" -v s="$secs" -v r="$SOAK_BODY" 'BEGIN {printf "%.1f", b / s / r}')
    log "  s10 write ceiling: dd bs=1M count=$count: $(tail -1 <<<"$out") = $SOAK_WRITE_RPS req/s of 100 KiB"
}

# soak_query: examples/store_query.rs on a session of SOAK_QUERY_FLOWS flows in $TMP (see the header); sets
# SOAK_QUERY_TABLE (its markdown table and the line under it) and SOAK_QUERY_SECS.
soak_query() {
    local free rc=0 t0
    [[ " $TARGETS " == *" strata "* ]] || return 0
    if [[ ! -x $STORE_QUERY ]]; then
        note "s10 query: $STORE_QUERY is missing (build failed?); skipped"
        return
    fi
    free=$(df -B1 --output=avail "$TMP" | tail -1 | tr -d ' ')
    if ((free < SOAK_QUERY_FLOWS * 2000)); then
        note "s10 query: $((free / 1000000)) MB free in $TMP's file system, less than the 2 KB per flow a" \
            "session of SOAK_QUERY_FLOWS=$SOAK_QUERY_FLOWS flows may need; skipped"
        return
    fi
    sync -f "$TMP" 2>/dev/null || sync
    log "  s10 query: store_query, a session of $SOAK_QUERY_FLOWS flows"
    t0=$SECONDS
    "$STORE_QUERY" --path "$TMP/q.db" --flows "$SOAK_QUERY_FLOWS" >"$TMP/query.out" 2>"$TMP/query.err" || rc=$?
    rm -f "$TMP/q.db" "$TMP/q.db-wal" "$TMP/q.db-shm"
    SOAK_QUERY_SECS=$((SECONDS - t0))
    { grep -E '^store_query: (wrote|count|query)' "$TMP/query.err" || true; } | while read -r line; do log "    $line"; done
    case $rc in
    0) ;;
    1) note "s10 query: store_query got WRONG answers (see the query table)" ;;
    *)
        note "s10 query: store_query failed (exit $rc): $(tail -3 "$TMP/query.err" | tr '\n' ' ')"
        return
        ;;
    esac
    SOAK_QUERY_TABLE=$(cat "$TMP/query.out")
}

scenario10() {
    local free per cell out
    # one variant's file at most at a time (each is deleted once measured): N x 100 KiB, x 4/3 in case a
    # HAR writer base64-encodes the bodies
    per=$((SOAK_BODY * 4 / 3))
    free=$(df -B1 --output=avail "$TMP" | tail -1 | tr -d ' ')
    SOAK_N=$SOAK_REQUESTS
    if ((free < 3 * SOAK_N * per)); then
        SOAK_N=$((free / (3 * per) / 1000 * 1000))
        note "s10: $((free / 1000000000)) GB free in $TMP's file system, less than 3x the" \
            "$((SOAK_REQUESTS * per / 1000000000)) GB a variant may write for SOAK_REQUESTS=$SOAK_REQUESTS;" \
            "scaled down to $SOAK_N requests"
        if ((SOAK_N < 1000)); then
            note "s10: too little disk space for a soak; skipped"
            for cell in $SOAK_CELLS; do VAL["s10|$cell"]=na; done
            ((SOAK_QUERY_FLOWS > 0)) && soak_query
            return 0
        fi
    fi
    log "  s10: $SOAK_N requests of 100 KiB per variant; $((free / 1000000000)) GB free in $TMP's file system"
    # the client's own ceiling for this load: loadgen straight to the origin
    out=$("$LOADGEN" --duration 2 --target "127.0.0.1:$ORIGIN" --path /100k --connections "$CONNS" 2>&1) || true
    SOAK_CEILING=$(grep -o 'rps=[0-9.]*' <<<"$out" | cut -d= -f2)
    log "  s10 loadgen ceiling, /100k direct to nginx: $out"
    for cell in $SOAK_CELLS; do
        if [[ " $TARGETS " != *" ${cell%+*} "* ]]; then VAL["s10|$cell"]=na; continue; fi
        [[ $cell == strata+w ]] && soak_write_ceiling
        soak_cell "$cell"
    done
    ((SOAK_QUERY_FLOWS > 0)) && soak_query
    return 0
}

# Scenario 11: the web UI (issue 13), in three parts: s11_live (scenario 2's load through strata without the UI,
# with --web and no page, and with --web and a page receiving the live updates, interleaved in each round),
# s11_browse (a session of UI_FLOWS synthetic flows shown in the page: page load, filters, scrolling, keys) and
# s11_mitmweb (the same flows, exported as HAR, read by mitmweb). The page is driven by tests/web_ui/bench.mjs
# (playwright-core, Debian's chromium), which prints `KEY VALUE` lines; kept in VAL["s11.KEY|strata"] or
# VAL["s11.KEY|mitmweb"], one value per repetition. s11a / s11c / s11b (and .p99, .rss): req/s of the three
# variants of the live part.
WEB_TOKEN=$(openssl rand -hex 16)
UI_URL=http://127.0.0.1:$WEB_UI_PORT/?token=$WEB_TOKEN
S11_SESSION="" S11_HAR="" S11_MITM="" S11_MITM_TIMEOUT="" S11_FILTERS=()
NODE_PID=0

# bench_node NAME MODE URL [VAR=VALUE...]: starts `node bench.mjs MODE URL` in the background with those
# variables (its output in $TMP/NAME.out, its checkpoints in $TMP/NAME.sync, HOME in the temp dir, no proxy
# variables, so that chromium talks to 127.0.0.1 itself); sets NODE_PID
bench_node() {
    local name=$1 mode=$2 url=$3
    shift 3
    rm -rf "$TMP/$name.sync" && mkdir -p "$TMP/$name.sync" "$TMP/home"
    (cd "$WEB_UI_DIR" && exec env -u http_proxy -u HTTP_PROXY -u https_proxy -u HTTPS_PROXY -u all_proxy \
        -u ALL_PROXY -u no_proxy -u NO_PROXY HOME="$TMP/home" CHROMIUM="$CHROMIUM" \
        BENCH_SYNC="$TMP/$name.sync" "$@" node bench.mjs "$mode" "$url") >"$TMP/$name.out" 2>&1 &
    NODE_PID=$!
    PIDS+=("$NODE_PID")
}
bench_failure() { # NAME: why the browser script failed, in one line
    { grep -m1 '^FAILED' "$TMP/$1.out" || tail -3 "$TMP/$1.out"; } | tr '\n' ' ' | tail -c 300
}
# bench_at NAME CHECKPOINT SECONDS: waits until the script printed `checkpoint CHECKPOINT` (it then waits for
# bench_go); 1, with a note, if it exited first or SECONDS passed
bench_at() {
    local name=$1 at=$2 i
    for ((i = 0; i < $3 * 10; i++)); do
        grep -qx "checkpoint $at" "$TMP/$name.out" && return 0
        kill -0 "$NODE_PID" 2>/dev/null || break
        sleep 0.1
    done
    grep -qx "checkpoint $at" "$TMP/$name.out" && return 0
    # a step past its time cap (mitmweb) is said by the caller
    grep -q ' timeout$' "$TMP/$name.out" || note "s11 $name: the browser script did not get to $at: $(bench_failure "$name")"
    return 1
}
bench_go() { touch "$TMP/$1.sync/$2"; } # NAME CHECKPOINT: lets the script go on
# bench_end NAME SECONDS: waits up to SECONDS for the script to exit (then kills it, noted); its exit code
bench_end() {
    local i rc=0
    for ((i = 0; i < $2 * 10; i++)); do kill -0 "$NODE_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$NODE_PID" 2>/dev/null; then
        note "s11 $1: the browser script did not end within $2 s; killed"
        stop "$NODE_PID"
        return 1
    fi
    wait "$NODE_PID" || rc=$?
    return "$rc"
}
bench_get() { awk -v k="$2" '$1 == k {print $2}' "$TMP/$1.out"; } # NAME KEY: the values printed for KEY
# bench_keep NAME TARGET PREFIX: every numeric value of the keys starting with PREFIX into VAL["s11.KEY|TARGET"];
# a key whose value is `timeout` is listed in S11_MITM_TIMEOUT
bench_keep() {
    local key value
    while read -r key value; do
        if [[ $value =~ ^[0-9.]+$ ]]; then
            VAL["s11.$key|$2"]+="$value "
        elif [[ $value == timeout ]]; then
            S11_MITM_TIMEOUT+=" $key"
        fi
    done < <(awk -v p="$3" 'index($1, p) == 1 {print $1, $2}' "$TMP/$1.out")
}
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; } # KiB -> MiB
secs_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.2f", b - a}'; } # EPOCHREALTIME -> s

# s11_live: strata (no UI) and strata+web (--web; no -w, so it records into a session in its confdir) up at once;
# each round measures strata, strata+web with no page open, then strata+web with a page open (a fresh chromium,
# opened before the load and checked after it: its count must have grown), as in load_scenario.
s11_live() {
    local web=http://127.0.0.1:$STRATA_WEB_PORT/ round start end settled server
    start_target strata regular || { VAL["s11a|strata"]=na; return 0; }
    EXTRA_ARGS=(--web --web-host 127.0.0.1 --web-port "$WEB_UI_PORT" --web-token "$WEB_TOKEN")
    if ! start_target strata+web regular; then
        EXTRA_ARGS=()
        VAL["s11b|strata"]=na
        stop_target strata
        return 0
    fi
    EXTRA_ARGS=()
    wait_port "$WEB_UI_PORT" "${TPID[strata+web]}" || die "strata --web: no web UI on 127.0.0.1:$WEB_UI_PORT"
    (DURATION=1 wrk_run warmup strata "http://127.0.0.1:$STRATA_PORT/" "$TMP/absolute.lua" >/dev/null 2>&1) || true
    (DURATION=1 wrk_run warmup strata "$web" "$TMP/absolute.lua" >/dev/null 2>&1) || true
    for round in $(seq "$RUNS"); do
        wrk_run s11a strata "http://127.0.0.1:$STRATA_PORT/" "$TMP/absolute.lua"
        wrk_run s11c strata "$web" "$TMP/absolute.lua"
        bench_node live live "$UI_URL"
        if ! bench_at live live 60; then
            bench_end live 10 || true
            continue
        fi
        VAL["s11b.run|strata"]="" VAL["s11b.run.p99|strata"]=""
        wrk_run s11b.run strata "$web" "$TMP/absolute.lua"
        bench_go live live
        if ! bench_end live 60; then
            note "s11 round $round: the page open during the load failed, the run is not counted: $(bench_failure live)"
            continue
        fi
        VAL["s11b|strata"]+=${VAL["s11b.run|strata"]} VAL["s11b.p99|strata"]+=${VAL["s11b.run.p99|strata"]}
        bench_keep live strata live.
        start=$(bench_get live live.count_start) end=$(bench_get live live.count_end)
        settled=$(bench_get live live.count_settled) server=$(bench_get live live.server_total)
        VAL["s11.live.grew|strata"]+="$((end - start)) "
        log "  s11 page: its count went $start -> $end during the load, $settled once settled (the server:" \
            "$server); $(bench_get live live.messages) messages, $(bench_get live live.lagged) lagged notices" \
            "($(bench_get live live.missed) events missed)"
        [[ $settled == "$server" ]] || note "s11 round $round: the page settled on $settled flows, the server" \
            "had $server"
    done
    VAL["s11a.rss|strata"]=$(mib "$(hwm_kb "${TPID[strata]}")")
    VAL["s11b.rss|strata"]=$(mib "$(hwm_kb "${TPID[strata+web]}")")
    stop_target strata
    stop_target strata+web
}

# s11_browse: store_query --write-only makes $TMP/ui.db (UI_FLOWS flows), strata --web -w +$TMP/ui.db shows it
# (appending: the page lists the flows already in the session), bench.mjs browses it; strata's RSS before the
# page and with the page open after the steps. Keeps $TMP/ui.db for s11_mitmweb.
s11_browse() {
    local db=$TMP/ui.db free rc=0 t0 pid rss0 key
    if [[ ! -x $STORE_QUERY ]]; then note "s11: $STORE_QUERY is missing (build failed?); 100,000 flows skipped"; return 1; fi
    free=$(df -B1 --output=avail "$TMP" | tail -1 | tr -d ' ')
    if ((free < UI_FLOWS * 2000)); then
        note "s11: $((free / 1000000)) MB free in $TMP's file system, less than 2 KB per flow; session skipped"
        return 1
    fi
    rm -f "$db" "$db-wal" "$db-shm"
    t0=$EPOCHREALTIME
    "$STORE_QUERY" --path "$db" --flows "$UI_FLOWS" --write-only 2>"$TMP/ui-write.err" || rc=$?
    if ((rc != 0)); then
        note "s11: store_query --write-only failed (exit $rc): $(tail -3 "$TMP/ui-write.err" | tr '\n' ' ')"
        return 1
    fi
    S11_SESSION="$(fmt "$UI_FLOWS") synthetic flows (examples/store_query.rs --write-only) written in $(secs_since "$t0") s,"
    S11_SESSION+=" $({ stat -c %s "$db" "$db-wal" 2>/dev/null || true; } | awk '{s += $1} END {printf "%.0f", s / 1e6}') MB"
    EXTRA_ARGS=(--web --web-host 127.0.0.1 --web-port "$WEB_UI_PORT" --web-token "$WEB_TOKEN" -w "+$db")
    t0=$EPOCHREALTIME
    if ! start_target strata+web regular; then EXTRA_ARGS=(); return 1; fi
    EXTRA_ARGS=()
    pid=${TPID[strata+web]}
    wait_port "$WEB_UI_PORT" "$pid" || die "strata --web -w +$db: no web UI on 127.0.0.1:$WEB_UI_PORT"
    VAL["s11.start|strata"]=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", (b - a) * 1000}')
    sleep 1
    rss0=$(rss_kb "$pid")
    VAL["s11.rss0|strata"]=$(mib "$rss0")
    bench_node browse browse "$UI_URL" BENCH_FLOWS="$UI_FLOWS" BENCH_REPS="$UI_REPS" BENCH_KEYS="$UI_KEYS"
    if bench_at browse browsed 600; then
        VAL["s11.rss1|strata"]=$(mib "$(rss_kb "$pid")") VAL["s11.hwm|strata"]=$(mib "$(hwm_kb "$pid")")
        bench_go browse browsed
    fi
    bench_end browse 30 || note "s11 browse: $(bench_failure browse)"
    bench_keep browse strata ui.
    for key in 1 2 3; do
        [[ -n $(bench_get browse "ui.filter$key") ]] || continue
        S11_FILTERS[$key]=$(sed -n "s/^ui\.filter$key //p" "$TMP/browse.out")
    done
    log "  s11 browse: $(grep -c . "$TMP/browse.out") lines from the page; RSS $(mib "$rss0") MiB before it," \
        "${VAL["s11.rss1|strata"]:-?} MiB with it"
    grep -qiE 'error|warn|panic' "$TMP/strata-web.log" &&
        note "s11 strata --web logged: $(grep -iE 'error|warn|panic' "$TMP/strata-web.log" | head -3 | tr '\n' ' ')"
    stop_target strata+web
    return 0
}

# s11_mitmweb: the session as HAR (`strata -n -r ui.db --save-har ui.har`), read by mitmweb (-r), timed from its
# start until it has read every flow (capped at UI_MITM_SECONDS), its RSS then, its page (until the list shows
# flows, a filter) and its RSS with the page open.
s11_mitmweb() {
    local db=$TMP/ui.db har=$TMP/ui.har rc=0 t0 pid url i
    mkdir -p "$TMP/strata-read"
    t0=$EPOCHREALTIME
    "$STRATA" --confdir "$TMP/strata-read" -n -r "$db" --save-har "$har" >/dev/null 2>"$TMP/har.err" || rc=$?
    rm -f "$db" "$db-wal" "$db-shm"
    if ((rc != 0)); then
        note "s11: strata -n -r ui.db --save-har failed (exit $rc): $(tail -3 "$TMP/har.err" | tr '\n' ' ')"
        return
    fi
    S11_HAR="exported as HAR (\`strata -n -r ui.db --save-har\`) in $(secs_since "$t0") s,"
    S11_HAR+=" $(stat -c %s "$har" | awk '{printf "%.0f", $1 / 1e6}') MB"
    if [[ ! -x $VENV/bin/mitmweb ]]; then note "s11: $VENV/bin/mitmweb is missing; mitmweb skipped"; return; fi
    rm -rf "$TMP/mitmweb" && mkdir -p "$TMP/mitmweb"
    t0=$(date +%s%3N)
    "$VENV/bin/mitmweb" --no-web-open-browser --web-host 127.0.0.1 --web-port "$MITMWEB_UI_PORT" \
        --listen-host 127.0.0.1 -p "$MITMWEB_PORT" --set "confdir=$TMP/mitmweb" -r "$har" >"$TMP/mitmweb.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    if ! wait_port "$MITMWEB_UI_PORT" "$pid"; then
        note "s11: mitmweb did not start: $(tail -3 "$TMP/mitmweb.log" | tr '\n' ' ')"
        stop "$pid"
        return
    fi
    # the page's address as it prints it (with ?token= from mitmproxy 11.1 on)
    for i in $(seq 50); do
        url=$(grep -oE 'listening at https?://[^ ]+' "$TMP/mitmweb.log" | head -1 | cut -d' ' -f3 || true)
        [[ -z $url && $i -lt 50 ]] || break
        sleep 0.1
    done
    url=${url:-http://127.0.0.1:$MITMWEB_UI_PORT/}
    S11_MITM="$("$VENV/bin/mitmweb" --version 2>/dev/null | head -1 | tr -s ' ')"
    bench_node mitmweb mitmweb "$url" BENCH_T0="$t0" BENCH_CAP="$UI_MITM_SECONDS" BENCH_FLOWS="$UI_FLOWS"
    if bench_at mitmweb loaded $((UI_MITM_SECONDS + 60)); then
        VAL["s11.mrss0|mitmweb"]=$(mib "$(rss_kb "$pid")")
        bench_go mitmweb loaded
        if bench_at mitmweb browsed $((3 * UI_MITM_SECONDS + 60)); then
            VAL["s11.mrss1|mitmweb"]=$(mib "$(rss_kb "$pid")")
            bench_go mitmweb browsed
        elif [[ $(bench_get mitmweb mitmweb.ui.load_ms) == timeout ]]; then
            VAL["s11.mrss1|mitmweb"]=$(mib "$(rss_kb "$pid")")
        fi
    elif [[ $(bench_get mitmweb mitmweb.load_ms) == timeout ]]; then
        VAL["s11.mrss0|mitmweb"]=$(mib "$(rss_kb "$pid")")
        note "s11: mitmweb had not read the $(fmt "$UI_FLOWS") flows within UI_MITM_SECONDS=$UI_MITM_SECONDS s" \
            "(its RSS then: ${VAL["s11.mrss0|mitmweb"]} MiB); its page was not tried"
    fi
    bench_end mitmweb 30 || note "s11 mitmweb: $(bench_failure mitmweb)"
    bench_keep mitmweb mitmweb mitmweb.
    kill -0 "$pid" 2>/dev/null || note "s11: mitmweb died: $(tail -3 "$TMP/mitmweb.log" | tr '\n' ' ')"
    stop "$pid"
    rm -f "$har"
}

scenario11() {
    if [[ " $TARGETS " != *" strata "* ]]; then note "s11: strata is not in TARGETS; skipped"; return 0; fi
    if [[ ! -x $CHROMIUM ]] || ! command -v node >/dev/null || [[ ! -d $WEB_UI_DIR/node_modules/playwright-core ]]; then
        note "s11: needs $CHROMIUM, node and playwright-core in $WEB_UI_DIR/node_modules (npm ci); skipped"
        return 0
    fi
    s11_live
    s11_browse && s11_mitmweb
    return 0
}

# Scenario 6: RSS per idle keep-alive connection (no proxy, so nothing to measure, for direct).
scenario6() {
    local t before after client pid
    for t in $TARGETS; do
        [[ $t == direct ]] && { VAL["s6|$t"]=na; continue; }
        for _ in $(seq "$RUNS"); do
            # a fresh proxy each round: memory freed by the last round's connections may not go back to the OS
            start_target "$t" regular || { VAL["s6|$t"]=na; break; }
            pid=${TPID[$t]}
            # a warm-up request first, so that state made on first use (pools, buffers) is not counted
            python3 "$ROOT/bench/idle_conns.py" --port "${HTTP_PORT[$t]}" --origin "127.0.0.1:$ORIGIN" \
                --connections 1 --hold 0 >/dev/null 2>&1 || true
            sleep 0.5
            before=$(rss_kb "$pid")
            rm -f "$TMP/idle.ready"
            python3 "$ROOT/bench/idle_conns.py" --port "${HTTP_PORT[$t]}" --origin "127.0.0.1:$ORIGIN" \
                --connections "$IDLE_CONNS" --hold 300 --ready-file "$TMP/idle.ready" >"$TMP/idle.out" 2>&1 &
            client=$!
            PIDS+=("$client")
            for _ in $(seq 1200); do
                if [[ -e $TMP/idle.ready ]] || ! kill -0 "$client" 2>/dev/null; then break; fi
                sleep 0.1
            done
            if [[ ! -e $TMP/idle.ready ]]; then
                note "s6 $t: idle client failed: $(tail -1 "$TMP/idle.out")"
                stop "$client"
                stop_target "$t"
                continue
            fi
            sleep 1
            after=$(rss_kb "$pid")
            stop "$client"
            grep -q 'errors=0' "$TMP/idle.out" || note "s6 $t: $(head -1 "$TMP/idle.out")"
            VAL["s6|$t"]+="$(awk -v a="$after" -v b="$before" -v n="$IDLE_CONNS" 'BEGIN {printf "%.2f", (a - b) / n}') "
            log "  s6 $t: RSS $before KiB -> $after KiB with $IDLE_CONNS idle connections"
            stop_target "$t"
        done
    done
}

# The load client's own ceiling: loadgen against the origin, plain HTTP (wrk's direct numbers compare).
ceiling() {
    local out
    out=$("$LOADGEN" --duration "$DURATION" --target "127.0.0.1:$ORIGIN" --connections "$CONNS" 2>&1)
    CEILING_PLAIN=$(grep -o 'rps=[0-9.]*' <<<"$out" | cut -d= -f2)
    log "loadgen ceiling, plain HTTP direct to nginx: $out"
}

busy_note() { # notes other CPU-heavy processes (builds, tests) that make the numbers noisy
    local others
    others=$(ps -eo pid=,pcpu=,comm= --sort=-pcpu | awk -v me=$$ '$2 > 20 && $3 !~ /^(nginx|mitmdump|strata|loadgen|wrk|h2load|curl|python3|ps)$/ {print $3 "(" $2 "%)"}' | head -5 | tr '\n' ' ')
    [[ -z $others ]] || note "$1: other busy processes on the machine: $others(results are noisy)"
}

START=$SECONDS
log "runs=$RUNS duration=${DURATION}s conns=$CONNS hs_conns=$HS_CONNS idle=$IDLE_CONNS big=$BIG_SIZE" \
    "h2=${H2_CONNS}x$H2_STREAMS"
log "targets: $TARGETS; scenarios: $SCENARIOS"
CEILING_PLAIN=""
[[ $TARGETS == *direct* ]] && ceiling
for s in $SCENARIOS; do
    log "scenario $s"
    "scenario$s"
    busy_note "after scenario $s"
done

# ---------------------------------------------------------------------------------------------- report
median() { # values... -> median, or n/a
    local vals=("$@")
    [[ ${#vals[@]} -gt 0 && ${vals[0]} != na ]] || { echo na; return; }
    printf '%s\n' "${vals[@]}" | sort -g | awk '{a[NR] = $1} END {
        if (NR % 2) m = a[(NR + 1) / 2]; else m = (a[NR / 2] + a[NR / 2 + 1]) / 2
        printf "%.6g", m }'
}
med() { # key
    # shellcheck disable=SC2086
    median ${VAL[$1]:-}
}
# row LABEL KEY RATIO(yes|no)
row() {
    local label=$1 key=$2 ratio=$3 line d t m cell
    d=$(med "$key|direct")
    line="| $label |"
    for t in direct nginx mitmdump strata; do
        m=$(med "$key|$t")
        cell=$(fmt "$m")
        if [[ $ratio == yes && $m != na && $d != na && $t != direct ]]; then
            cell+=" ($(awk -v a="$m" -v b="$d" 'BEGIN {printf "%.2fx", a / b}'))"
        fi
        line+=" $cell |"
    done
    echo "$line"
}

has() { [[ " $SCENARIOS " == *" $1 "* ]]; }

# Scenario 10's table: one column per variant, the targets from issue 12 in the last one.
s10v() { med "$1|$2"; } # KEY CELL: the value or na
s10row() { # LABEL KEY TARGET [RATIO: yes]
    local label=$1 key=$2 target=$3 ratio=${4:-} base cell m line
    base=$(s10v s10 strata)
    line="| $label |"
    for cell in $SOAK_CELLS; do
        m=$(s10v "$key" "$cell")
        line+=" $(fmt "$m")"
        if [[ $ratio == yes && $cell == strata+* && $m != na && $base != na ]]; then
            line+=" ($(awk -v a="$m" -v b="$base" 'BEGIN {printf "%.2fx", a / b}'))"
        fi
        [[ $key == s10.n && -n ${SOAK_CAPPED[$cell]:-} ]] && line+=" (${SOAK_MITM_SECONDS} s cap)"
        line+=" |"
    done
    echo "$line $target |"
}
s10rss() {
    local cell line="| 10. RSS start / peak / end, MiB |" a b c
    for cell in $SOAK_CELLS; do
        a=$(s10v s10.rss0 "$cell") b=$(s10v s10.hwm "$cell") c=$(s10v s10.rss1 "$cell")
        if [[ $a == na ]]; then line+=" n/a |"; else line+=" $a / $b / $c |"; fi
    done
    echo "$line peak and end within 16 MiB of start |"
}
s10ceilrow() { # the write ceiling, under the req/s row: in the -w and --save-har columns
    [[ -n $SOAK_WRITE_RPS ]] || return 0
    echo "| 10. write ceiling, dd of the same bytes through the page cache ($(fmt "$SOAK_WRITE_MBS") MB/s):" \
        "req/s of 100 KiB |  | $(fmt "$(awk -v r="$SOAK_WRITE_RPS" 'BEGIN {printf "%.1f", r / 2}')") (half:" \
        "each body written twice) | $(fmt "$SOAK_WRITE_RPS") |  | what the page cache and disk take; not a target |"
}
verdict() { # OK(0|1) -> met / MISSED
    if (($1)); then echo met; else echo MISSED; fi
}
s10name() { # CELL -> the column's name
    case $1 in
    strata) echo "strata" ;;
    strata+w) echo "strata -w" ;;
    strata+har) echo "strata --save-har" ;;
    mitmdump+w) echo "mitmdump -w" ;;
    esac
}
s10lines() {
    local base cell m grow ok out=""
    base=$(s10v s10 strata)
    for cell in strata+w strata+har; do
        m=$(s10v s10 "$cell")
        [[ $m != na && $base != na ]] || continue
        ok=$(awk -v a="$m" -v b="$base" 'BEGIN {print ((a / b >= 0.8) ? 1 : 0)}')
        echo "recording with $(s10name "$cell" | cut -d' ' -f2) runs at $(awk -v a="$m" -v b="$base" 'BEGIN {printf "%.2fx", a / b}') the rate" \
            "without (same run): $(fmt "$m") vs $(fmt "$base") req/s; target at least 0.80x: $(verdict "$ok")."
    done
    if [[ -n $SOAK_WRITE_RPS ]]; then
        local har w half har_share="" w_share=""
        har=$(s10v s10 strata+har) w=$(s10v s10 strata+w)
        half=$(awk -v r="$SOAK_WRITE_RPS" 'BEGIN {printf "%.1f", r / 2}')
        [[ $har == na ]] || har_share=": its $(fmt "$har") req/s are $(awk -v a="$har" -v b="$SOAK_WRITE_RPS" 'BEGIN {printf "%.0f", 100 * a / b}') % of it"
        [[ $w == na ]] || w_share=": its $(fmt "$w") req/s are $(awk -v a="$w" -v b="$half" 'BEGIN {printf "%.0f", 100 * a / b}') % of that"
        if [[ $w != na ]] && awk -v a="$w" -v b="$half" 'BEGIN {exit !(a > b)}'; then
            w_share+=" (above it: SQLite writes the log from its start again after each checkpoint, into pages the page"
            w_share+=" cache already holds, which cost less than the new pages dd and the database file take)"
        fi
        echo "Write ceiling: right before the -w variant, \`dd if=/dev/zero bs=1M\` wrote" \
            "$(awk -v b="$SOAK_WRITE_BYTES" 'BEGIN {printf "%.2f", b / 1e9}') GB (the -w variant's $(fmt "$SOAK_N") x" \
            "100 KiB, in whole MiB) buffered through the page cache, no fsync, as strata writes, in $SOAK_WRITE_SECS s" \
            "= $(fmt "$SOAK_WRITE_MBS") MB/s, the pace of $(fmt "$SOAK_WRITE_RPS") req/s of 100 KiB bodies (a writer" \
            "waits for the disk only past the kernel's dirty limit, now $(awk -v p="$(getconf PAGESIZE)" '$1 == "nr_dirty_threshold" {printf "%.1f", $2 * p / 1e9}' /proc/vmstat) GB" \
            "(nr_dirty_threshold); below it this is the page cache's pace, not the disk's)." \
            "--save-har writes each body once$har_share. -w writes each body twice, once to the write-ahead log and" \
            "once into the database at checkpoints, so its ceiling is half, $(fmt "$half") req/s$w_share."
    fi
    for cell in $SOAK_CELLS; do
        [[ $(s10v s10.rss0 "$cell") != na ]] || continue
        grow=$(awk -v a="$(s10v s10.rss0 "$cell")" -v b="$(s10v s10.hwm "$cell")" -v c="$(s10v s10.rss1 "$cell")" \
            'BEGIN {printf "+%.1f / +%.1f", b - a, c - a}')
        ok=$(awk -v a="$(s10v s10.rss0 "$cell")" -v b="$(s10v s10.hwm "$cell")" -v c="$(s10v s10.rss1 "$cell")" \
            'BEGIN {print ((b - a <= 16 && c - a <= 16) ? 1 : 0)}')
        out+="${out:+; }$(s10name "$cell") $grow ($(verdict "$ok"))"
    done
    [[ -z $out ]] || echo "RSS growth over start (peak / end), MiB, target within 16 MiB: $out."
    m=$(s10v s10.read strata+w)
    if [[ $m != na ]]; then
        echo "reading the session back (\`strata -n -r s.db >/dev/null\`, default flow detail):" \
            "$(s10v s10.flows strata+w) flows in $(s10v s10.readsecs strata+w) s = $(fmt "$m") flows/s; target" \
            "50,000 flows/s or more: $(verdict "$(awk -v m="$m" 'BEGIN {print ((m >= 50000) ? 1 : 0)}')"). The count" \
            "(\`strata -n -r s.db | wc -l\`) ${SOAK_CHECK[strata+w]:-was not checked}."
    fi
    echo "Scenario 10 runs once (RUNS does not apply: it is long). Each column is a freshly started proxy: one" \
        "warm-up request, RSS at start 1 s later, then loadgen (absolute-form GET /100k, $CONNS conns) in" \
        "consecutive runs, each sized by the rate so far (at most 4x the last one's length and 10 s), until 99 % of $(fmt "$SOAK_N") requests are done" \
        "(or less than 20 ms of load is left);" \
        "req/s = requests / loadgen seconds; peak = VmHWM, end = VmRSS 1 s after the load. mitmdump records" \
        "bodies (no stream_large_bodies) and is capped at SOAK_MITM_SECONDS=$SOAK_MITM_SECONDS s." \
        "${SOAK_CEILING:+loadgen ceiling (/100k straight to the origin, $CONNS conns): $(fmt "$SOAK_CEILING") req/s.}" \
        "$(nproc) cores, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)."
    if [[ -n $SOAK_QUERY_TABLE ]]; then
        echo
        echo "$SOAK_QUERY_TABLE"
        echo "Query speed on a big session (examples/store_query.rs, SOAK_QUERY_FLOWS=$SOAK_QUERY_FLOWS, run after" \
            "the soak variants: a synthetic session written, queried and deleted in $SOAK_QUERY_SECS s). Issue 12's" \
            "target: \"a UI can ask for flows 1000-1100 matching \`~d api & ~c 500\` from a million-flow session in" \
            "milliseconds\", read here as a median under 100 ms, for each query."
    fi
}
# Scenario 11's table: a strata and a mitmweb column, issue 13's target in the last.
s11v() { med "$1|${2:-strata}"; } # KEY [TARGET]: the median or na
s11ratio() { # KEY BASE-KEY: " (0.85x)", or nothing
    local a b
    a=$(s11v "$1") b=$(s11v "$2")
    [[ $a != na && $b != na ]] || return 0
    awk -v a="$a" -v b="$b" 'BEGIN {printf " (%.2fx)", a / b}'
}
s11ms() { # KEY [TARGET]: the median, with the largest value when there are several; "> N s (cap)" past the cap
    local target=${2:-strata} vals
    if [[ " $S11_MITM_TIMEOUT " == *" ${1#s11.} "* ]]; then echo "> $UI_MITM_SECONDS s (cap)"; return; fi
    read -ra vals <<<"${VAL["$1|$target"]:-}"
    echo -n "$(fmt "$(s11v "$1" "$target")")"
    ((${#vals[@]} < 2)) || echo -n " (max $(fmt "$(printf '%s\n' "${vals[@]}" | sort -g | tail -1)"))"
    echo
}
s11table() {
    local a b n ok verdict_="" f total
    a=$(s11v s11a) b=$(s11v s11b)
    if [[ $a != na && $b != na ]]; then
        ok=$(awk -v a="$a" -v b="$b" 'BEGIN {print ((b / a >= 0.8) ? 1 : 0)}')
        verdict_=": $(verdict "$ok")"
    fi
    n=$(fmt "$UI_FLOWS")
    echo "| scenario 11: web UI | strata | mitmweb | target (issue 13) |"
    echo "|---|---|---|---|"
    echo "| 11. scenario 2's load (explicit proxy, HTTP 1 KiB, absolute-form, $CONNS conns), no UI: req/s |" \
        "$(fmt "$a") |  |  |"
    echo "| 11. the same through \`strata --web\`, no page open: req/s | $(fmt "$(s11v s11c)")$(s11ratio s11c s11a) |  |  |"
    echo "| 11. the same, a page open receiving the live updates: req/s | $(fmt "$b")$(s11ratio s11b s11a) |  |" \
        "at least 0.80x the rate without the UI$verdict_ |"
    echo "| 11. p99 latency, ms: no UI / \`--web\` / page open | $(fmt "$(s11v s11a.p99)") /" \
        "$(fmt "$(s11v s11c.p99)") / $(fmt "$(s11v s11b.p99)") |  |  |"
    echo "| 11. flows the page counted during a run (its count's growth) | $(fmt "$(s11v s11.live.grew)") |  |" \
        "rows arrive live |"
    echo "| 11. peak RSS, MiB: no UI / \`--web\`, page open | $(s11v s11a.rss) / $(s11v s11b.rss) |  |  |"
    echo "| 11. $n flows: \`strata --web -w +ui.db\` listening / mitmweb \`-r ui.har\` done reading, ms |" \
        "$(s11ms s11.start) | $(s11ms s11.mitmweb.load_ms mitmweb) |  |"
    echo "| 11. $n flows: page load until its rows are drawn (strata: and its count says $n), ms |" \
        "$(s11ms s11.ui.load_ms) | $(s11ms s11.mitmweb.ui.load_ms mitmweb) | printed, not asserted |"
    for f in 1 2 3; do
        [[ -n ${S11_FILTERS[$f]:-} ]] || continue
        total=$(s11v "s11.ui.filter${f}_total")   # a count: no decimals
        echo "| 11. filter \`${S11_FILTERS[$f]}\` typed ($total flows) until the count and the rows update, ms |" \
            "$(s11ms "s11.ui.filter${f}_ms") | $( ((f == 1)) && s11ms s11.mitmweb.ui.filter1_ms mitmweb) |  |"
    done
    echo "| 11. filter cleared until the $n rows are back, ms | $(s11ms s11.ui.unfilter_ms) |  |  |"
    echo "| 11. scroll to the middle until its rows are drawn, ms | $(s11ms s11.ui.scroll_middle_ms) |  |  |"
    echo "| 11. scroll to the end until its rows are drawn, ms | $(s11ms s11.ui.scroll_end_ms) |  |  |"
    echo "| 11. scroll back to the top, ms | $(s11ms s11.ui.scroll_top_ms) |  |  |"
    echo "| 11. ArrowDown: the next row selected and its detail shown, ms | $(s11ms s11.ui.key_ms) |  |  |"
    echo "| 11. RSS, MiB: before the page / page open after these steps (peak) |" \
        "$(s11v s11.rss0) / $(s11v s11.rss1) ($(s11v s11.hwm)) | $(s11v s11.mrss0 mitmweb) /" \
        "$(s11v s11.mrss1 mitmweb) |  |"
}
s11lines() {
    local a b f
    a=$(s11v s11a) b=$(s11v s11b)
    if [[ $a != na && $b != na ]]; then
        echo "With a page open receiving the live updates strata runs at $(awk -v a="$b" -v b="$a" 'BEGIN {printf "%.2fx", a / b}')" \
            "its rate without the UI (same rounds): $(fmt "$b") vs $(fmt "$a") req/s; target at least 0.80x:" \
            "$(verdict "$(awk -v a="$a" -v b="$b" 'BEGIN {print ((b / a >= 0.8) ? 1 : 0)}')"). \`--web\` without" \
            "\`-w\` records every flow into a session in its confdir, which the UI pages from: the row without a" \
            "page is that cost alone. Each round: strata, \`strata --web\`, then \`strata --web\` with a fresh" \
            "headless chromium on its page (tests/web_ui/bench.mjs, playwright-core), opened before the load and" \
            "checked after it; a round whose page did not count new flows is not counted. Per run, the page got" \
            "$(fmt "$(s11v s11.live.messages)") WebSocket messages, $(fmt "$(s11v s11.live.lagged)") of them" \
            "\"lagged\" notices ($(fmt "$(s11v s11.live.missed)") events missed; the page reloads its list on each)."
    fi
    if [[ -n $S11_SESSION ]]; then
        echo "The $(fmt "$UI_FLOWS") flows: $S11_SESSION${S11_HAR:+; $S11_HAR}. Page timings: $UI_REPS repetition(s), a" \
            "fresh page load each, median (max); chromium headless, 1280x720, 2 cores shared with strata. A" \
            "timing runs from the action (navigation, scrollTop set, key press, the filter's text filled in) until" \
            "the DOM shows the result (rows for the scroll position drawn, none a \"…\" placeholder); the filter" \
            "times include the page's 250 ms input debounce. ArrowDown: $(wc -w <<<"${VAL["s11.ui.key_ms|strata"]:-}") presses in all," \
            "$UI_KEYS a page, down from the first row, each until the row is selected and the detail view's title names its flow."
        for f in 1 2 3; do
            [[ -n ${S11_FILTERS[$f]:-} ]] || continue
            echo "The API alone (\`GET /api/flows?filter=...&limit=100\`, from the page, once) answered" \
                "\`${S11_FILTERS[$f]}\` in $(fmt "$(s11v "s11.ui.filter${f}_api_ms")") ms."
        done
        [[ $(s11v s11.ui.js_heap_mb) == na ]] || echo "The page's JS heap after the steps: $(s11v s11.ui.js_heap_mb) MiB."
    fi
    if [[ -n $S11_MITM ]]; then
        echo "mitmweb ($S11_MITM, from bench/.venv) read the HAR with \`-r\`, timed from its start until" \
            "\`readfile.reading\` said it was done (capped at UI_MITM_SECONDS=$UI_MITM_SECONDS s); its page" \
            "opened after that: until its flow table shows rows, then \`${S11_FILTERS[1]:-~d api & ~c 500}\` in its" \
            "search box until every row drawn has an api host and status 500 (mitmweb filters in the page)."
    fi
}
has_1to9() { local n; for n in 1 2 3 4 5 6 7 8 9; do has $n && return 0; done; return 1; }

{
    if has_1to9; then
        echo "| scenario | direct | nginx | mitmdump | strata |"
        echo "|---|---|---|---|---|"
    fi
    if has 1; then
        row "1. reverse proxy, HTTP 1 KiB, $CONNS conns: req/s" s1 yes
        row "1. p99 latency, ms" s1.p99 no
    fi
    if has 2; then
        row "2. explicit proxy, HTTP 1 KiB, absolute-form: req/s" s2 yes
        row "2. p99 latency, ms" s2.p99 no
    fi
    if has 3; then
        row "3. HTTPS via CONNECT, intercepted, keep-alive, $CONNS conns: req/s" s3 yes
        row "3. p99 latency, ms" s3.p99 no
    fi
    if has 4; then
        row "4. new CONNECT + TLS handshake per request, $HS_CONNS conns: req/s" s4 yes
    fi
    if has 5; then
        row "5. $BIG_SIZE download, plain: MB/s" s5plain yes
        row "5. plain: proxy peak RSS, MiB" s5plain.rss no
        row "5. $BIG_SIZE download, intercepted TLS: MB/s" s5tls yes
        row "5. intercepted: proxy peak RSS, MiB" s5tls.rss no
    fi
    if has 6; then
        row "6. $IDLE_CONNS idle keep-alive conns: KiB RSS per conn" s6 no
    fi
    if has 7; then
        row "7. HTTP/2 over TLS, 1 KiB, $H2_CONNS conns x $H2_STREAMS streams (h2load): req/s" s7 yes
        row "7. mean request time, ms" s7.lat no
        row "7. proxy peak RSS, MiB" s7.rss no
    fi
    if has 8; then
        row "8. $BIG_SIZE download over HTTP/2 (TLS): MB/s" s8 yes
        row "8. proxy peak RSS, MiB" s8.rss no
        row "8. same download over HTTP/1.1, same proxies: MB/s" s8h1 yes
    fi
    if has 9; then
        row "9. explicit proxy + one-line header script, 1 KiB: req/s" s9 no
        row "9. p99 latency, ms" s9.p99 no
    fi
    if has_1to9; then
        echo
        echo "Medians of $RUNS run(s) of ${DURATION}s; ratios to direct in parentheses. $(nproc) cores," \
            "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)."
    fi
    has_1to9 && [[ -n $CEILING_PLAIN ]] && echo "loadgen ceiling (plain HTTP 1 KiB straight to the origin, $CONNS conns):" \
        "$(fmt "$CEILING_PLAIN") req/s; its TLS ceiling is the direct column of rows 3 and 4."
    if has 8 && [[ $(med "s8|strata") != na && $(med "s8h1|strata") != na ]]; then
        echo "strata's HTTP/2 download runs at" \
            "$(awk -v a="$(med "s8|strata")" -v b="$(med "s8h1|strata")" 'BEGIN {printf "%.2fx", a / b}')" \
            "its HTTP/1.1 rate on the same path (row 8)."
    fi
    if has 9; then
        echo "Row 9 is scenario 2's load with a script adding \`x-bench: 1\` to each response head: nginx with" \
            "header_filter_by_lua_block (lua-nginx-module), mitmdump and strata with \`-s\` (responseheaders);" \
            "direct has no proxy to script."
        if [[ $(med "s9|strata") != na && $(med "s9.noscript|strata") != na ]]; then
            echo "strata with the script runs at" \
                "$(awk -v a="$(med "s9|strata")" -v b="$(med "s9.noscript|strata")" 'BEGIN {printf "%.2fx", a / b}')" \
                "its rate without (same run): $(fmt "$(med "s9|strata")") vs $(fmt "$(med "s9.noscript|strata")")" \
                "req/s without the script (p99 $(fmt "$(med "s9.noscript.p99|strata")") ms without)."
        fi
    fi
    if has 10; then
        has_1to9 && echo
        echo "| scenario 10: recording soak | strata, no recording | strata -w | strata --save-har | mitmdump -w |" \
            "target (issue 12) |"
        echo "|---|---|---|---|---|---|"
        s10row "10. recording soak, 100 KiB x $(fmt "$SOAK_N"): req/s" s10 \
            "recording costs at most 20 % of req/s (0.80x or more)" yes
        s10ceilrow
        s10row "10. requests completed (loadgen)" s10.n ""
        s10rss
        s10row "10. file written, MB" s10.size ""
        s10row "10. reading the session back (-n -r): flows/s" s10.read "50,000 flows/s or more"
        echo
        s10lines
    fi
    if has 11; then
        { has_1to9 || has 10; } && echo
        s11table
        echo
        s11lines
    fi
    if ((${#NOTES[@]})); then
        echo
        echo "Notes:"
        printf -- '- %s\n' "${NOTES[@]}"
    fi
} | tee "$ROOT/bench/last-run.md"
log "done in $((SECONDS - START)) s"
