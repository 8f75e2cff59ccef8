#!/usr/bin/env python3
"""Derives the synthetic ClientHello vectors from the captures next to this script.

- ech.bin: python_sni.bin with an encrypted_client_hello (0xfe0d) extension appended, every
  length fixed up: what an ECH-capable browser sends (no local client here sends ECH).
- fragmented.bin: curl_sni.bin's handshake message split over TLS records of 100 bytes, which
  RFC 8446 5.1 allows and large (post-quantum) hellos need.
Run it from this directory: python3 derive.py
"""
import struct

def message(record):
    assert record[0] == 22
    n = struct.unpack(">H", record[3:5])[0]
    return record[5:5 + n]

def records(msg, size, version=b"\x03\x01"):
    out = b""
    for i in range(0, len(msg), size):
        part = msg[i:i + size]
        out += bytes([22]) + version + struct.pack(">H", len(part)) + part
    return out

def add_extension(msg, ext_type, data):
    # msg = type(1) len(3) body; body ends with extensions<..> (2-byte length) at the end.
    body = msg[4:]
    pos = 2 + 32
    pos += 1 + body[pos]                                   # session id
    pos += 2 + struct.unpack(">H", body[pos:pos + 2])[0]   # cipher suites
    pos += 1 + body[pos]                                   # compression
    exts_len = struct.unpack(">H", body[pos:pos + 2])[0]
    ext = struct.pack(">HH", ext_type, len(data)) + data
    body = body[:pos] + struct.pack(">H", exts_len + len(ext)) + body[pos + 2:] + ext
    return bytes([1]) + len(body).to_bytes(3, "big") + body

py = open("python_sni.bin", "rb").read()
# ECHClientHello outer: type 0, cipher suite (HKDF-SHA256, AES-128-GCM), config id, enc, payload.
ech = b"\x00" + struct.pack(">HH", 1, 1) + b"\x2a" + struct.pack(">H", 32) + b"\x11" * 32 \
    + struct.pack(">H", 64) + b"\x22" * 64
open("ech.bin", "wb").write(records(add_extension(message(py), 0xfe0d, ech), 16384))
curl = open("curl_sni.bin", "rb").read()
open("fragmented.bin", "wb").write(records(message(curl), 100))
