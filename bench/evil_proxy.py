#!/usr/bin/env python3
"""A deliberately bad proxy: proof that bench/run never reports it as fast.

It passes bench/run's start-up probe, then answers every GET with an instant
503 and flips one byte after the first MiB of every later tunnel. It
announces itself like ringway, so:

    bench/run --quick --only http1k,connect --proxies direct,ringway \
        --ringway-bin bench/evil_proxy.py

must exit 1 with every ringway cell **failed** ("non-2xx/3xx responses",
"corrupted data at stream offset ..."). Loopback only; it runs until
bench/run stops it.
"""
import socket, sys, threading
counter = {"get": 0, "tunnel": 0}
lock = threading.Lock()
def read_head(c):
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = c.recv(4096)
        if not d: return None, b""
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head.decode(), rest
def pump(a, b, corrupt):
    n = 0
    try:
        while True:
            d = a.recv(65536)
            if not d: break
            if corrupt and n <= (1 << 20) < n + len(d):
                i = (1 << 20) - n; d = d[:i] + bytes([d[i] ^ 1]) + d[i+1:]
            n += len(d); b.sendall(d)
    except OSError: pass
    for s in (a, b):
        try: s.shutdown(socket.SHUT_RDWR)
        except OSError: pass
def handle(c):
    while True:
        head, rest = read_head(c)
        if head is None: return c.close()
        method, target = head.split(" ")[:2]
        if method == "CONNECT":
            with lock: counter["tunnel"] += 1; k = counter["tunnel"]
            host, port = target.rsplit(":", 1)
            u = socket.create_connection((host, int(port)))
            c.sendall(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            if rest: u.sendall(rest)
            threading.Thread(target=pump, args=(c, u, k > 1), daemon=True).start()
            return pump(u, c, False)
        with lock: counter["get"] += 1; k = counter["get"]
        if k > 3:
            c.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"); continue
        host = target.split("/")[2]; path = "/" + target.split("/", 3)[3]
        u = socket.create_connection((host.rsplit(":", 1)[0], int(host.rsplit(":", 1)[1])))
        u.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            d = u.recv(65536)
            if not d: break
            data += d
        c.sendall(data.replace(b"Connection: close\r\n", b""))
        if "connection: close" in head.lower(): return c.close()
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(512)
print(f"ringway listening on 127.0.0.1:{l.getsockname()[1]} (evil, 1 thread)", flush=True)
while True:
    c, _ = l.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
