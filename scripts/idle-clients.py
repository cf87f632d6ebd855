"""Holds N idle keep-alive TLS connections to a proxy and reports what they
cost it: each connection completes its handshake and one GET, then waits.
The proxy's RSS (summed over the PIDs given) is read before and after.

    python3 scripts/idle-clients.py PORT N HOST PID [PID...]

Prints one line: "N BEFORE_KIB AFTER_KIB BYTES_PER_CONNECTION".
"""
import socket
import ssl
import sys
import time


def rss_kib(pids):
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS"):
                    total += int(line.split()[1])
    return total


def main():
    port, n, host = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    pids = [int(p) for p in sys.argv[4:]]
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    request = f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()

    def one():
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname=host)
        s.sendall(request)
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = s.recv(65536)
            if not chunk:
                raise SystemExit(f"the proxy closed a connection after {len(got)} bytes")
            got += chunk
        if not got.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"unexpected answer: {got[:80]!r}")
        return s

    # Warm up the proxy's allocator and pools, then measure.
    for _ in range(50):
        one().close()
    time.sleep(0.5)
    before = rss_kib(pids)
    held = [one() for _ in range(n)]
    time.sleep(2)
    after = rss_kib(pids)
    print(n, before, after, round((after - before) * 1024 / n))
    for s in held:
        s.close()


main()
