import socket, sys, struct
# Records the first TLS record a client sends to a loopback listener: python3 record.py OUT.bin
# prints the port, accepts one connection, writes the bytes up to the end of the first record.
# Records the first TLS record(s) a client sends on loopback, then closes.
out = sys.argv[1]
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(1)
print(s.getsockname()[1], flush=True)
c, _ = s.accept()
buf = b""
while True:
    if len(buf) >= 5:
        n = struct.unpack(">H", buf[3:5])[0]
        if len(buf) >= 5 + n: break
    d = c.recv(65536)
    if not d: break
    buf += d
open(out, "wb").write(buf)
c.close()
