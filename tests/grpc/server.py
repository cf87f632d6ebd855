"""The gRPC backend: `server.py PLAIN_PORT [TLS_PORT CERT KEY]`.

Prints `ready` once both ports listen.
"""
import sys
import threading
import time
from concurrent import futures

import grpc

import common

pb, pb_grpc = common.load()
cancelled = 0
lock = threading.Lock()


class Echo(pb_grpc.EchoServicer):
    def Unary(self, request, context):
        return pb.Msg(text=request.text)

    def Chat(self, request_iterator, context):
        for m in request_iterator:
            yield pb.Msg(text=m.text)

    def Fail(self, request, context):
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.text)

    def Slow(self, request, context):
        time.sleep(request.delay_ms / 1000)
        return pb.Msg(text=request.text)

    def Watch(self, request, context):
        global cancelled
        n = 0
        while context.is_active():
            yield pb.Msg(text=f"{request.text} {n}")
            n += 1
            time.sleep(0.05)
        with lock:
            cancelled += 1

    def Cancelled(self, request, context):
        with lock:
            return pb.Msg(text=str(cancelled))


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    pb_grpc.add_EchoServicer_to_server(Echo(), server)
    server.add_insecure_port(f"127.0.0.1:{sys.argv[1]}")
    if len(sys.argv) > 2:
        with open(sys.argv[3], "rb") as c, open(sys.argv[4], "rb") as k:
            creds = grpc.ssl_server_credentials([(k.read(), c.read())])
        server.add_secure_port(f"127.0.0.1:{sys.argv[2]}", creds)
    server.start()
    print("ready", flush=True)
    server.wait_for_termination()


main()
