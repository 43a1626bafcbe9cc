#!/usr/bin/env python3
"""Scenario 6 of bench/run.sh: open N keep-alive connections to a proxy on 127.0.0.1, send one request on
each (absolute-form `GET http://ORIGIN/1k`, as to an explicit proxy), read each response completely, then
keep all of them open and idle for --hold seconds (or until killed). Touches --ready-file once every
connection has its response, and prints `connections=N errors=E`."""

import argparse
import socket
import sys
import time


def read_response(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response head")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed in the body")
        body += chunk
    return status


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True, help="proxy port on 127.0.0.1")
    p.add_argument("--origin", required=True, help="HOST:PORT of the origin")
    p.add_argument("--path", default="/1k")
    p.add_argument("--mode", choices=["absolute", "origin"], default="absolute")
    p.add_argument("--connections", type=int, default=2000)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--hold", type=float, default=120)
    p.add_argument("--ready-file")
    a = p.parse_args()

    target = f"http://{a.origin}{a.path}" if a.mode == "absolute" else a.path
    request = f"GET {target} HTTP/1.1\r\nHost: {a.origin}\r\n\r\n".encode()
    socks, errors = [], 0
    for start in range(0, a.connections, a.batch):
        batch = []
        for _ in range(min(a.batch, a.connections - start)):
            try:
                s = socket.create_connection(("127.0.0.1", a.port), timeout=30)
                s.sendall(request)
                batch.append(s)
            except OSError as e:
                errors += 1
                print(f"connect: {e}", file=sys.stderr)
        for s in batch:
            try:
                if read_response(s) != 200:
                    errors += 1
                socks.append(s)
            except (OSError, ValueError, IndexError) as e:
                errors += 1
                print(f"response: {e}", file=sys.stderr)
                s.close()
    print(f"connections={len(socks)} errors={errors}", flush=True)
    if a.ready_file:
        open(a.ready_file, "w").close()
    time.sleep(a.hold)


if __name__ == "__main__":
    main()
