#!/usr/bin/env python3
"""An HTTP/2 client (the `h2` package) that sends batches of requests on ONE connection and prints what
happened to each stream.

    h2_client.py [--tls [--cafile PEM] [--sni NAME]] HOST PORT BATCH [BATCH ...]

Without --tls it speaks h2c with prior knowledge; with --tls it offers ALPN `h2` only (and verifies the
server against --cafile when given). Each BATCH is a JSON list of requests,
`{"method": "GET", "path": "/x", "body": "...", "trailers": [["name", "value"]], "cancel": true}` (all
but path optional; `cancel` resets the stream with CANCEL as soon as the response head arrives). The
requests of a batch are sent at once on concurrent streams, and the next batch starts when every stream
of this one has ended. One line per stream, in the order the requests were given:

    RESULT <path> status=<code> body=<JSON string> trailers=<JSON list, no spaces>
    RESULT <path> reset=<error code name>
    RESULT <path> cancelled (by us, after a response head with <code>)
    RESULT <path> unanswered (<why>)

then `DONE`. Exits 0 when every stream ended (answered or reset), 1 otherwise. Bounded by --timeout.
"""

import argparse
import json
import socket
import ssl
import sys

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--cafile")
    parser.add_argument("--sni", default="localhost")
    parser.add_argument("--authority", help="the :authority to send (default HOST:PORT)")
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("batches", nargs="+")
    args = parser.parse_args()

    sock = socket.create_connection((args.host, args.port), timeout=args.timeout)
    scheme = "http"
    if args.tls:
        scheme = "https"
        context = ssl.create_default_context(cafile=args.cafile) if args.cafile else ssl._create_unverified_context()
        context.set_alpn_protocols(["h2"])
        sock = context.wrap_socket(sock, server_hostname=args.sni)
        if sock.selected_alpn_protocol() != "h2":
            print(f"ALPN selected {sock.selected_alpn_protocol()!r}, not h2", flush=True)
            return 1
    authority = args.authority or f"{args.host}:{args.port}"

    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()

    def send():
        """Sends what h2 has queued; the error as text if the connection is gone."""
        try:
            sock.sendall(conn.data_to_send())
            return None
        except OSError as e:
            return f"write error: {e}"

    ok = True
    for batch in args.batches:
        requests = json.loads(batch)
        streams = {}  # stream id -> result dict
        order = []
        for req in requests:
            sid = conn.get_next_available_stream_id()
            method = req.get("method", "GET")
            body = req.get("body", "").encode()
            trailers = [tuple(t) for t in req.get("trailers", [])]
            headers = [(":method", method), (":scheme", scheme), (":authority", authority), (":path", req["path"])]
            if body and not trailers:  # a request with trailers streams its body, as gRPC does
                headers.append(("content-length", str(len(body))))
            if trailers:
                headers.append(("te", "trailers"))
            end_now = not body and not trailers
            conn.send_headers(sid, headers, end_stream=end_now)
            if body:
                conn.send_data(sid, body, end_stream=not trailers)
            if trailers:
                conn.send_headers(sid, trailers, end_stream=True)
            streams[sid] = {"path": req["path"], "status": None, "body": bytearray(), "trailers": [], "end": None,
                            "cancel": req.get("cancel", False)}
            order.append(sid)

        why = send()
        while not why and any(s["end"] is None for s in streams.values()):
            try:
                data = sock.recv(65536)
            except OSError as e:
                why = f"read error: {e}"
                break
            if not data:
                why = "connection closed"
                break
            try:
                events = conn.receive_data(data)
            except h2.exceptions.ProtocolError as e:
                why = f"HTTP/2 protocol error {e!r} on receiving {bytes(data[:60])!r}"
                break
            for ev in events:
                s = streams.get(getattr(ev, "stream_id", None))
                if isinstance(ev, h2.events.ResponseReceived) and s:
                    s["status"] = dict(ev.headers).get(":status")
                    if s["cancel"]:
                        conn.reset_stream(ev.stream_id, error_code=h2.errors.ErrorCodes.CANCEL)
                        s["end"] = f"cancelled (by us, after a response head with {s['status']})"
                elif isinstance(ev, h2.events.DataReceived):
                    if s and not s["cancel"]:
                        s["body"] += ev.data
                    try:
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    except h2.exceptions.StreamClosedError:
                        conn.increment_flow_control_window(ev.flow_controlled_length)
                elif isinstance(ev, h2.events.TrailersReceived) and s:
                    s["trailers"] = [list(h) for h in ev.headers]
                elif isinstance(ev, h2.events.StreamEnded) and s and not s["end"]:
                    s["end"] = "ended"
                elif isinstance(ev, h2.events.StreamReset) and s and not s["end"]:
                    code = ev.error_code
                    s["end"] = "reset=" + (code.name if isinstance(code, h2.errors.ErrorCodes) else str(code))
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    why = f"GOAWAY {ev.error_code!r} last stream {ev.last_stream_id}"
            why = send() or why

        for sid in order:
            s = streams[sid]
            if s["end"] == "ended":
                body = json.dumps(s["body"].decode("utf-8", "replace"))
                trailers = json.dumps(s["trailers"], separators=(",", ":"))
                print(f"RESULT {s['path']} status={s['status']} body={body} trailers={trailers}")
            elif s["end"]:
                print(f"RESULT {s['path']} {s['end']}")
            else:
                print(f"RESULT {s['path']} unanswered ({why})")
                ok = False
        sys.stdout.flush()
        if why:
            print(f"CONNECTION {why}", flush=True)
            ok = False
            break

    print("DONE", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
