#!/usr/bin/env python3
"""An origin server for the HTTP/2 tests: HTTP/2 (the `h2` package) and HTTP/1.1 on one port.

Over TLS (--cert/--key) the protocol is the one ALPN picks from --alpn (the server's order wins); a client
that offers no ALPN gets HTTP/1.1. Without TLS, a connection that starts with the HTTP/2 preface
(prior knowledge, h2c) gets HTTP/2, anything else HTTP/1.1.

Prints `listening PORT` once it accepts connections; exits when its standard input closes.

Routes (both protocols):
  /hello            200 `hello from the python origin\\n`
  /proto            200 the protocol this request came in on: `HTTP/2` or `HTTP/1.1`, then `\\n`
  /echo             200 the request body; `x-method` and `x-body-length` headers
  /headers          200 with `x-custom: custom value` and two `set-cookie` fields (a=1, b=2)
  /cookies          200 the request's cookie fields as one `; `-joined line
  /size/N           200 N bytes (`a`..`z` repeated)
  /trailers         200 `with trailers\\n` then the trailer `x-trailer: yes`
  /trailers-seen    200 the request's trailer fields, one `name=value` line each (the request body is read)
  /reset            HTTP/2: the stream is reset (RST_STREAM INTERNAL_ERROR); HTTP/1.1: the connection is closed
  anything else     404 `not found\\n`
"""

import argparse
import socket
import ssl
import sys
import threading

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
PATTERN = bytes(ord("a") + i % 26 for i in range(65536))


def route(method, path, headers, body, trailers, version):
    """Returns (status, headers, body, trailers) or None to reset the stream / drop the connection."""
    path = path.split("?", 1)[0]
    text = [("content-type", "text/plain")]
    if path == "/hello":
        return 200, text, b"hello from the python origin\n", []
    if path == "/proto":
        return 200, text, (version + "\n").encode(), []
    if path == "/echo":
        extra = [("x-method", method), ("x-body-length", str(len(body)))]
        return 200, [("content-type", "application/octet-stream")] + extra, bytes(body), []
    if path == "/headers":
        extra = [("x-custom", "custom value"), ("set-cookie", "a=1; Path=/"), ("set-cookie", "b=2; Path=/")]
        return 200, text + extra, b"headers\n", []
    if path == "/cookies":
        cookies = "; ".join(v for n, v in headers if n == "cookie")
        return 200, text, (cookies + "\n").encode(), []
    if path.startswith("/size/"):
        n = int(path[len("/size/"):])
        data = (PATTERN * (n // len(PATTERN) + 1))[:n]
        return 200, [("content-type", "application/octet-stream")], data, []
    if path == "/trailers":
        return 200, text, b"with trailers\n", [("x-trailer", "yes")]
    if path == "/trailers-seen":
        lines = "".join(f"{n}={v}\n" for n, v in trailers)
        return 200, text, lines.encode(), []
    if path == "/reset":
        return None
    return 404, text, b"not found\n", []


# ---- HTTP/2 ----

def serve_h2(sock, initial):
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    requests = {}  # stream id -> dict(headers, body, trailers)
    pending = {}  # stream id -> [body left, trailers]

    def flush():
        for sid in list(pending):
            body, trailers = pending[sid]
            try:
                while body:
                    size = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size, len(body))
                    if size <= 0:
                        break
                    conn.send_data(sid, body[:size])
                    body = body[size:]
                pending[sid][0] = body
                if not body:
                    del pending[sid]
                    if trailers:
                        conn.send_headers(sid, trailers, end_stream=True)
                    else:
                        conn.end_stream(sid)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError):
                pending.pop(sid, None)

    def respond(sid):
        req = requests.pop(sid)
        pseudo = dict((n, v) for n, v in req["headers"] if n.startswith(":"))
        fields = [(n, v) for n, v in req["headers"] if not n.startswith(":")]
        answer = route(pseudo.get(":method", ""), pseudo.get(":path", ""), fields, req["body"], req["trailers"],
                       "HTTP/2")
        if answer is None:
            conn.reset_stream(sid, error_code=h2.errors.ErrorCodes.INTERNAL_ERROR)
            return
        status, headers, body, trailers = answer
        conn.send_headers(sid, [(":status", str(status)), ("content-length", str(len(body)))] + headers)
        pending[sid] = [body, trailers]

    data = initial
    while True:
        if not data:
            try:
                data = sock.recv(65536)
            except OSError:
                return
            if not data:
                return
        try:
            events = conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            sock.sendall(conn.data_to_send())
            return
        data = b""
        for ev in events:
            if isinstance(ev, h2.events.RequestReceived):
                requests[ev.stream_id] = {"headers": ev.headers, "body": bytearray(), "trailers": []}
            elif isinstance(ev, h2.events.DataReceived):
                if ev.stream_id in requests:
                    requests[ev.stream_id]["body"] += ev.data
                try:
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                    pass
            elif isinstance(ev, h2.events.TrailersReceived):
                if ev.stream_id in requests:
                    requests[ev.stream_id]["trailers"] = list(ev.headers)
            elif isinstance(ev, h2.events.StreamEnded):
                if ev.stream_id in requests:
                    respond(ev.stream_id)
            elif isinstance(ev, h2.events.StreamReset):
                requests.pop(ev.stream_id, None)
                pending.pop(ev.stream_id, None)
            elif isinstance(ev, h2.events.ConnectionTerminated):
                sock.sendall(conn.data_to_send())
                return
        flush()
        out = conn.data_to_send()
        if out:
            sock.sendall(out)


# ---- HTTP/1.1 ----

def read_fields(reader):
    """Header (or trailer) lines up to the empty line; None at end of stream."""
    fields = []
    while True:
        line = reader.readline(65537)
        if not line:
            return None
        line = line.rstrip(b"\r\n")
        if not line:
            return fields
        name, _, value = line.decode("latin-1").partition(":")
        fields.append((name.strip().lower(), value.strip()))


def serve_h1(sock, initial):
    raw = sock.makefile("rb")

    class Reader:
        """`initial` bytes (already read while looking for the HTTP/2 preface), then the socket."""

        def __init__(self):
            self.buf = initial

        def readline(self, limit):
            if self.buf:
                if b"\n" in self.buf:
                    line, _, self.buf = self.buf.partition(b"\n")
                    return line + b"\n"
                line, self.buf = self.buf, b""
                return line + raw.readline(limit)
            return raw.readline(limit)

        def read(self, n):
            head, self.buf = self.buf[:n], self.buf[n:]
            return head + (raw.read(n - len(head)) if n > len(head) else b"")

    reader = Reader()
    while True:
        line = reader.readline(65537)
        if not line:
            return
        parts = line.decode("latin-1").split()
        if len(parts) != 3:
            return
        method, target, version = parts
        headers = read_fields(reader)
        if headers is None:
            return
        lookup = dict(headers)
        body, trailers = bytearray(), []
        if "chunked" in lookup.get("transfer-encoding", "").lower():
            while True:
                size = int(reader.readline(1024).split(b";")[0].strip(), 16)
                if size == 0:
                    trailers = read_fields(reader) or []
                    break
                body += reader.read(size)
                reader.read(2)
        elif "content-length" in lookup:
            body += reader.read(int(lookup["content-length"]))
        answer = route(method, target, headers, body, trailers, "HTTP/1.1")
        if answer is None:
            return
        status, fields, data, resp_trailers = answer
        close = lookup.get("connection", "").lower() == "close"
        head = [f"HTTP/1.1 {status} {'OK' if status == 200 else 'Not Found'}"]
        head += [f"{n}: {v}" for n, v in fields]
        if resp_trailers:
            head += ["transfer-encoding: chunked", "trailer: " + ", ".join(n for n, _ in resp_trailers)]
        else:
            head.append(f"content-length: {len(data)}")
        if close:
            head.append("connection: close")
        out = ("\r\n".join(head) + "\r\n\r\n").encode()
        if resp_trailers:
            out += f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n"
            out += "".join(f"{n}: {v}\r\n" for n, v in resp_trailers).encode() + b"\r\n"
        else:
            out += data
        sock.sendall(out)
        if close:
            return


# ---- connections ----

def handle(sock, tls_context):
    try:
        sock.settimeout(60)
        if tls_context is not None:
            sock = tls_context.wrap_socket(sock, server_side=True)
            if sock.selected_alpn_protocol() == "h2":
                serve_h2(sock, b"")
            else:
                serve_h1(sock, b"")
            return
        initial = b""
        while len(initial) < len(PREFACE) and PREFACE.startswith(initial):
            more = sock.recv(len(PREFACE) - len(initial))
            if not more:
                return
            initial += more
        if initial == PREFACE:
            serve_h2(sock, initial)
        else:
            serve_h1(sock, initial)
    except OSError:
        pass  # the peer went away (ssl.SSLError is an OSError too)
    except Exception as e:  # a protocol error: say so on stderr, which the tests show when they fail
        print(f"connection ended by {e!r}", file=sys.stderr, flush=True)
    finally:
        # shutdown first: a file object from makefile() would keep the connection open past close().
        for end in (lambda: sock.shutdown(socket.SHUT_RDWR), sock.close):
            try:
                end()
            except OSError:
                pass


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cert", help="PEM certificate chain (enables TLS)")
    parser.add_argument("--key", help="PEM private key")
    parser.add_argument("--alpn", default="h2,http/1.1", help="ALPN protocols in the server's order of preference")
    args = parser.parse_args()

    tls_context = None
    if args.cert:
        tls_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls_context.load_cert_chain(args.cert, args.key)
        tls_context.set_alpn_protocols(args.alpn.split(","))

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)

    def accept_forever():
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=handle, args=(conn, tls_context), daemon=True).start()

    threading.Thread(target=accept_forever, daemon=True).start()
    print(f"listening {listener.getsockname()[1]}", flush=True)
    sys.stdin.read()  # the test closes our stdin (or dies) when it is done with us


if __name__ == "__main__":
    main()
