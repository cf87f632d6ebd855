"""Generates the echo service's Python modules into a temporary folder."""
import os
import sys
import tempfile

from grpc_tools import protoc

HERE = os.path.dirname(os.path.abspath(__file__))


def load():
    out = tempfile.mkdtemp(prefix="postern-grpc-")
    rc = protoc.main([
        "protoc", f"-I{HERE}", f"--python_out={out}", f"--grpc_python_out={out}",
        os.path.join(HERE, "echo.proto"),
    ])
    if rc != 0:
        sys.exit(f"protoc failed ({rc})")
    sys.path.insert(0, out)
    import echo_pb2
    import echo_pb2_grpc
    return echo_pb2, echo_pb2_grpc
