#!/usr/bin/env python3
"""WebSocket conformance through strata: Autobahn's cases (run by kosoku) against an echo server.

    autobahn.py echo [--tls-cert CHAIN --tls-key KEY]
        A conforming echo server (the `websockets` library, permessage-deflate offered) on 127.0.0.1:
        prints `listening PORT`, then serves until its standard input closes.

    autobahn.py run ADDRESS [ADDRESS...] [-i CASE]... [-x CASE]... [--report DIR]
        Runs the cases (`-i`/`-x` globs as kosoku takes them; default: all) against each ADDRESS
        (host:port of a WebSocket server: the echo server itself, or strata in front of it) and prints one
        line per address and case that is not the same as against the first address:
          DIFF CASE ADDRESS BEHAVIOR/CLOSE (first: BEHAVIOR/CLOSE)
        then per address `SUMMARY ADDRESS passed=N failed=M`, and `RESULT same` when every case that passed
        against the first address passed against every other one (exit 0), else `RESULT differs` (exit 1). --report writes kosoku's reports.
"""

import argparse
import asyncio
import os
import sys
import threading


def echo(args):
    import ssl

    import websockets
    from websockets.asyncio.server import serve

    async def handler(ws):
        try:
            async for message in ws:
                await ws.send(message)
        except websockets.ConnectionClosed:
            pass

    async def main():
        context = None
        if args.tls_cert:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(args.tls_cert, args.tls_key)
        # Autobahn sends messages up to 16 MiB (case 9.*); no size limit, as a test echo server.
        async with serve(handler, "127.0.0.1", 0, ssl=context, max_size=None, ping_interval=None,
                         compression="deflate") as server:
            port = server.sockets[0].getsockname()[1]
            print(f"listening {port}", flush=True)
            stop = asyncio.get_running_loop().create_future()
            threading.Thread(target=lambda: (sys.stdin.read(), stop.get_loop().call_soon_threadsafe(
                stop.set_result, None)), daemon=True).start()
            await stop

    asyncio.run(main())


def verdict(result):
    return f"{result.behavior.value}/{result.behavior_close.value}"


def run(args):
    from kosoku import FailureError, run_fuzzingclient

    async def cases(address):
        try:
            results = await run_fuzzingclient(address, args.include, args.exclude, concurrency=args.parallelism)
        except FailureError as failure:
            results = failure.results
        return results

    async def main():
        by_address = []
        for address in args.addresses:
            results = await cases(address)
            by_address.append({r.case_id: r for r in results})
            if args.report:
                from kosoku._report import write_reports
                write_reports(results, f"{args.report}/{address.replace(':', '_')}")
        first = by_address[0]
        ok = True
        for address, results in zip(args.addresses, by_address):
            passed = sum(1 for r in results.values() if r.passed)
            for case_id, base in first.items():
                result = results.get(case_id)
                if result is None:
                    print(f"DIFF {case_id} {address} missing (first: {verdict(base)})")
                    ok = ok and not base.passed
                elif verdict(result) != verdict(base) or result.passed != base.passed:
                    print(f"DIFF {case_id} {address} {verdict(result)} (first: {verdict(base)})")
                    if base.passed and not result.passed:
                        ok = False
            print(f"SUMMARY {address} passed={passed} failed={len(results) - passed}", flush=True)
        return ok

    ok = asyncio.run(main())
    print("RESULT same" if ok else "RESULT differs", flush=True)
    # Straight out: the native runner's threads have been seen to crash the interpreter's teardown.
    os._exit(0 if ok else 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    e = commands.add_parser("echo")
    e.add_argument("--tls-cert")
    e.add_argument("--tls-key")
    r = commands.add_parser("run")
    r.add_argument("addresses", nargs="+")
    r.add_argument("-i", "--include", action="append")
    r.add_argument("-x", "--exclude", action="append")
    r.add_argument("-p", "--parallelism", type=int, default=4)
    r.add_argument("--report")
    args = parser.parse_args()
    {"echo": echo, "run": run}[args.command](args)


if __name__ == "__main__":
    main()
