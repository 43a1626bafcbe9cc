#!/usr/bin/env python3
"""A gRPC server and client (grpcio, no .proto: generic handlers with raw-bytes messages).

    grpc_peer.py server [--cert CHAIN --key KEY]
        Serves on 127.0.0.1 (TLS with the given certificate, else insecure h2c), prints `listening PORT`,
        exits when its standard input closes. Methods:
          /strata.test.Echo/Unary     replies `echo:` + request; trailing metadata x-echo-trailer: unary-done
          /strata.test.Echo/Bidi      replies `echo:` + each request as it comes; trailing metadata
                                      x-echo-trailer: bidi-done
          /strata.test.Echo/Missing   fails with NOT_FOUND, details `no such record: <request>`

    grpc_peer.py client TARGET [--ca PEM] [--proxy URL] [--authority NAME]
        Calls the three methods over one channel (TLS trusting --ca when given, else insecure) and prints:
          UNARY reply=<reply> code=<status> trailer=<x-echo-trailer>
          BIDI replies=<r1>|<r2>|<r3> code=<status> trailer=<x-echo-trailer>
          MISSING code=<status> details=<details>
        Exits 0 if all three calls completed (whatever their status), 1 otherwise.
"""

import argparse
import sys
import threading

import grpc

SERVICE = "strata.test.Echo"
IDENTITY = None  # raw bytes in, raw bytes out


def serve(args):
    def unary(request, context):
        context.set_trailing_metadata((("x-echo-trailer", "unary-done"),))
        return b"echo:" + request

    def bidi(requests, context):
        for request in requests:
            yield b"echo:" + request
        context.set_trailing_metadata((("x-echo-trailer", "bidi-done"),))

    def missing(request, context):
        context.abort(grpc.StatusCode.NOT_FOUND, "no such record: " + request.decode())

    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        "Missing": grpc.unary_unary_rpc_method_handler(missing),
    }
    from concurrent import futures

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    if args.cert:
        with open(args.cert, "rb") as f:
            chain = f.read()
        with open(args.key, "rb") as f:
            key = f.read()
        port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials(((key, chain),)))
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"listening {port}", flush=True)
    sys.stdin.read()  # until the test closes our stdin (or dies)
    server.stop(0)


def client(args):
    options = [("grpc.enable_retries", 0)]
    if args.proxy:
        options.append(("grpc.http_proxy", args.proxy))
    if args.authority:
        options.append(("grpc.default_authority", args.authority))
    if args.ca:
        with open(args.ca, "rb") as f:
            credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
        channel = grpc.secure_channel(args.target, credentials, options=options)
    else:
        channel = grpc.insecure_channel(args.target, options=options)
    timeout = args.timeout
    done = 0

    unary = channel.unary_unary(f"/{SERVICE}/Unary", request_serializer=IDENTITY, response_deserializer=IDENTITY)
    try:
        reply, call = unary.with_call(b"ping", timeout=timeout)
        trailer = dict(call.trailing_metadata() or ()).get("x-echo-trailer")
        print(f"UNARY reply={reply.decode()} code={call.code().name} trailer={trailer}", flush=True)
        done += 1
    except grpc.RpcError as e:
        print(f"UNARY error code={e.code().name} details={e.details()}", flush=True)

    bidi = channel.stream_stream(f"/{SERVICE}/Bidi", request_serializer=IDENTITY, response_deserializer=IDENTITY)
    try:
        # Each message is sent only after the reply to the one before it arrived: the stream really is
        # bidirectional through whatever is in between, not a buffered request then a buffered response.
        outbox = []
        ready = threading.Condition()

        def requests():
            for i, word in enumerate((b"one", b"two", b"three")):
                with ready:
                    if not ready.wait_for(lambda: len(outbox) >= i, timeout=timeout):
                        return
                yield word

        call = bidi(requests(), timeout=timeout)
        for reply in call:
            with ready:
                outbox.append(reply.decode())
                ready.notify_all()
        trailer = dict(call.trailing_metadata() or ()).get("x-echo-trailer")
        print(f"BIDI replies={'|'.join(outbox)} code={call.code().name} trailer={trailer}", flush=True)
        done += 1
    except grpc.RpcError as e:
        print(f"BIDI error code={e.code().name} details={e.details()}", flush=True)

    missing = channel.unary_unary(f"/{SERVICE}/Missing", request_serializer=IDENTITY,
                                  response_deserializer=IDENTITY)
    try:
        missing(b"42", timeout=timeout)
        print("MISSING code=OK details=", flush=True)
    except grpc.RpcError as e:
        print(f"MISSING code={e.code().name} details={e.details()}", flush=True)
    done += 1
    channel.close()
    return 0 if done == 3 else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="role", required=True)
    s = sub.add_parser("server")
    s.add_argument("--cert")
    s.add_argument("--key")
    c = sub.add_parser("client")
    c.add_argument("target")
    c.add_argument("--ca")
    c.add_argument("--proxy")
    c.add_argument("--authority")
    c.add_argument("--timeout", type=float, default=15.0)
    args = parser.parse_args()
    if args.role == "server":
        serve(args)
        return 0
    return client(args)


if __name__ == "__main__":
    sys.exit(main())
