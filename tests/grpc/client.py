"""Runs the gRPC scenarios through the edge and prints one line each.

`client.py ADDRESS AUTHORITY (plain | CA_FILE)`: over h2c with prior
knowledge, or over TLS verified against CA_FILE for AUTHORITY. Each line is
`name ok` or `name FAILED: why`; the exit status is 1 if any failed.
"""
import sys
import time

import grpc

import common

pb, pb_grpc = common.load()
address, authority, mode = sys.argv[1], sys.argv[2], sys.argv[3]
options = [("grpc.default_authority", authority)]
if mode == "plain":
    channel = grpc.insecure_channel(address, options=options)
else:
    with open(mode, "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    options.append(("grpc.ssl_target_name_override", authority))
    channel = grpc.secure_channel(address, creds, options=options)
stub = pb_grpc.EchoStub(channel)


def unary():
    r = stub.Unary(pb.Msg(text="hello"), timeout=10)
    assert r.text == "hello", r.text


def bidi():
    # Each answer is read before the next message is sent: the call only
    # completes if both directions stream at once.
    import queue
    q = queue.Queue()

    def requests():
        for i in range(5):
            yield pb.Msg(text=f"m{i}")
            got = q.get(timeout=10)
            assert got == f"m{i}", got

    for r in stub.Chat(requests(), timeout=20):
        q.put(r.text)


def error_trailers():
    try:
        stub.Fail(pb.Msg(text="bad input"), timeout=10)
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.code()
        assert e.details() == "bad input", e.details()
        return
    raise AssertionError("the call succeeded")


def deadline():
    started = time.monotonic()
    try:
        stub.Slow(pb.Msg(text="late", delay_ms=3000), timeout=0.5)
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED, e.code()
        took = time.monotonic() - started
        assert took < 2.5, f"took {took:.1f} s"
        return
    raise AssertionError("the call succeeded")


def cancel():
    before = int(stub.Cancelled(pb.Msg(), timeout=10).text)
    call = stub.Watch(pb.Msg(text="tick"), timeout=30)
    got = [next(call).text for _ in range(3)]
    assert got == ["tick 0", "tick 1", "tick 2"], got
    call.cancel()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if int(stub.Cancelled(pb.Msg(), timeout=10).text) > before:
            return
        time.sleep(0.1)
    raise AssertionError("the backend never saw the cancel")


failed = False
for name, f in [("unary", unary), ("bidi", bidi), ("error_trailers", error_trailers),
                ("deadline", deadline), ("cancel", cancel)]:
    try:
        f()
        print(f"{name} ok", flush=True)
    except Exception as e:  # noqa: BLE001 - every failure is reported
        failed = True
        print(f"{name} FAILED: {type(e).__name__}: {e}", flush=True)
sys.exit(1 if failed else 0)
