#!/usr/bin/env python3
"""Writes the tracked seed corpora under fuzz/seeds/<target>/ (run from anywhere).

Seeds are real client and upstream traffic (curl, browsers, wget, nginx-style answers) and
the request-smuggling and malformed-head cases the core must refuse, encoded in each
target's input layout (see `ringway_core::fuzzing`). Re-running rewrites the same files;
seeds are small and few on purpose: the fuzzer's own `corpus/` (gitignored) grows from them.
"""
import hashlib
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")

def crlf(s):
    return s.replace("\n", "\r\n").encode("latin-1")

# ---------------------------------------------------------------- requests
CURL_GET = crlf("GET http://example.com/ HTTP/1.1\nHost: example.com\nUser-Agent: curl/7.88.1\nAccept: */*\nProxy-Connection: Keep-Alive\n\n")
CURL_CONNECT = crlf("CONNECT example.com:443 HTTP/1.1\nHost: example.com:443\nUser-Agent: curl/7.88.1\nProxy-Connection: Keep-Alive\n\n")
FIREFOX_GET = crlf(
    "GET http://neverssl.com/online/ HTTP/1.1\nHost: neverssl.com\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\n"
    "Accept-Language: en-US,en;q=0.5\nAccept-Encoding: gzip, deflate\nConnection: keep-alive\n"
    "Upgrade-Insecure-Requests: 1\nPriority: u=0, i\n\n")
FIREFOX_CONNECT = crlf(
    "CONNECT www.mozilla.org:443 HTTP/1.1\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\n"
    "Proxy-Connection: keep-alive\nConnection: keep-alive\nHost: www.mozilla.org:443\n\n")
CHROME_GET = crlf(
    "GET http://example.org/index.html?q=1&r=%20x HTTP/1.1\nHost: example.org\nProxy-Connection: keep-alive\n"
    "Upgrade-Insecure-Requests: 1\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\n"
    "Accept-Encoding: gzip, deflate\nAccept-Language: en-US,en;q=0.9\nCookie: a=1; b=2\n\n")
CHROME_CONNECT = crlf("CONNECT accounts.google.com:443 HTTP/1.1\nHost: accounts.google.com:443\nProxy-Connection: keep-alive\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36\n\n")
WGET_10 = crlf("GET http://example.com/file.tar.gz HTTP/1.0\nUser-Agent: Wget/1.21.3\nAccept: */*\nAccept-Encoding: identity\nHost: example.com\nConnection: Keep-Alive\nProxy-Connection: Keep-Alive\n\n")
POST_CL = crlf("POST http://api.example.com/v1/items HTTP/1.1\nHost: api.example.com\nUser-Agent: curl/7.88.1\nContent-Type: application/json\nContent-Length: 13\n\n") + b'{"name":"x"}\n'
POST_CHUNKED = crlf("POST http://h/upload HTTP/1.1\nHost: h\nTransfer-Encoding: chunked\n\n") + b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 1\r\n\r\n"
EXPECT = crlf("PUT http://h/big HTTP/1.1\nHost: h\nContent-Length: 5\nExpect: 100-continue\n\n")
WEBSOCKET = crlf("GET http://h/chat HTTP/1.1\nHost: h\nUpgrade: websocket\nConnection: Upgrade\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\nSec-WebSocket-Version: 13\n\n")
HEAD_10 = crlf("HEAD http://h/ HTTP/1.0\n\n")
IPV6 = crlf("GET http://[::1]:8080/a HTTP/1.1\nHost: [::1]:8080\n\n")
PIPELINED = crlf("GET http://h/1 HTTP/1.1\nHost: h\n\nGET http://h/2 HTTP/1.1\nHost: h\nConnection: close\n\n")
BLANK_LINES = b"\r\n\r\n" + crlf("GET http://h/ HTTP/1.1\nHost: h\n\n")
OPTIONS_BARE = crlf("OPTIONS http://h:8080 HTTP/1.1\nHost: h:8080\nMax-Forwards: 12\n\n")
OPTIONS_MF0 = crlf("OPTIONS http://h/ HTTP/1.1\nHost: h\nMax-Forwards: 0\n\n")
TRACE_MF0 = crlf("TRACE http://h/t HTTP/1.1\nHost: h\nMax-Forwards: 0\nCookie: a=1\nAuthorization: Basic eDp5\nX: y\n\n")
HTTP12 = crlf("GET http://h/ HTTP/1.2\nHost: [::1]:8080\n\n")
HOP = crlf("GET http://h/ HTTP/1.1\nHost: h\nConnection: keep-alive, X-Hop\nX-Hop: 1\nKeep-Alive: 300\nTE: trailers\nTrailer: X\nProxy-Authorization: Basic Zm9vOmJhcg==\nVia: 1.0 other\n\n")

# Smuggling and malformed heads (the core issue's list): each must be refused.
ATTACKS = {
    "cl-te": "POST http://h/ HTTP/1.1\nHost: h\nContent-Length: 6\nTransfer-Encoding: chunked\n\n0\n\nG",
    "te-cl": "POST http://h/ HTTP/1.1\nHost: h\nTransfer-Encoding: chunked\nContent-Length: 4\n\n5c\nGPOST / HTTP/1.1\n\n0\n\n",
    "cl-cl": "POST http://h/ HTTP/1.1\nHost: h\nContent-Length: 5\nContent-Length: 6\n\nhello!",
    "cl-list": "POST http://h/ HTTP/1.1\nHost: h\nContent-Length: 5, 5\n\nhello",
    "cl-plus": "POST http://h/ HTTP/1.1\nHost: h\nContent-Length: +5\n\nhello",
    "cl-huge": "POST http://h/ HTTP/1.1\nHost: h\nContent-Length: 99999999999999999999\n\n",
    "te-tab": "POST http://h/ HTTP/1.1\nHost: h\nTransfer-Encoding: chunked\t\n\n0\n\n",
    "te-space-name": "POST http://h/ HTTP/1.1\nHost: h\nTransfer-Encoding : chunked\n\n0\n\n",
    "te-leading-space": "POST http://h/ HTTP/1.1\nHost: h\n Transfer-Encoding: chunked\n\n0\n\n",
    "te-xchunked": "POST http://h/ HTTP/1.1\nHost: h\nTransfer-Encoding: xchunked\n\n0\n\n",
    "te-list": "POST http://h/ HTTP/1.1\nHost: h\nTransfer-Encoding: chunked, identity\n\n0\n\n",
    "te-twice": "POST http://h/ HTTP/1.1\nHost: h\nTransfer-Encoding: chunked\nTransfer-Encoding: chunked\n\n0\n\n",
    "te-http10": "POST http://h/ HTTP/1.0\nTransfer-Encoding: chunked\n\n0\n\n",
    "obs-fold": "GET http://h/ HTTP/1.1\nHost: h\nX: a\n b\n\n",
    "dup-host": "GET http://h/ HTTP/1.1\nHost: h\nHost: evil\n\n",
    "no-host": "GET http://h/ HTTP/1.1\n\n",
    "http2": "GET http://h/ HTTP/2.0\nHost: h\n\n",
    "origin-form": "GET / HTTP/1.1\nHost: h\n\n",
    "asterisk": "OPTIONS * HTTP/1.1\nHost: h\n\n",
    "userinfo": "GET http://user:pw@h/ HTTP/1.1\nHost: h\n\n",
    "fragment": "GET http://h/#frag HTTP/1.1\nHost: h\n\n",
    "https-scheme": "GET https://h/ HTTP/1.1\nHost: h\n\n",
    "connect-no-port": "CONNECT h HTTP/1.1\nHost: h\n\n",
    "connect-port0": "CONNECT h:0 HTTP/1.1\nHost: h\n\n",
    "connect-body": "CONNECT h:443 HTTP/1.1\nHost: h\nContent-Length: 5\n\nhello",
    "via-loop": "GET http://h/ HTTP/1.1\nHost: h\nVia: 1.1 ringway\n\n",
    "double-space": "GET  http://h/ HTTP/1.1\nHost: h\n\n",
    "conn-tokens": "GET http://h/ HTTP/1.1\nHost: h\nConnection: a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q\n\n",
    # Issue 15: a Host that is not uri-host[:port]; Max-Forwards that cannot be decremented.
    "host-userinfo": "GET http://h/ HTTP/1.1\nHost: user@h:80\n\n",
    "host-space": "GET http://h/ HTTP/1.1\nHost: exa mple.invalid\n\n",
    "max-forwards-sign": "TRACE http://h/ HTTP/1.1\nHost: h\nMax-Forwards: -1\n\n",
    "max-forwards-twice": "OPTIONS http://h/ HTTP/1.1\nHost: h\nMax-Forwards: 1\nMax-Forwards: 1\n\n",
}
RAW_ATTACKS = {
    "bare-lf": b"GET http://h/ HTTP/1.1\nHost: h\n\n",
    "bare-cr": b"GET http://h/ HTTP/1.1\rHost: h\r\n\r\n",
    "nul": b"GET http://h/ HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n",
    "lf-in-chunked-ext": b"POST http://h/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;a\nb\r\nhello\r\n0\r\n\r\n",
    "too-many-headers": b"GET http://h/ HTTP/1.1\r\nHost: h\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(70)) + b"\r\n",
    "too-large": b"GET http://h/ HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 2100 + b"\r\n\r\n",
}

REQUESTS = {
    "curl-get": CURL_GET, "curl-connect": CURL_CONNECT, "firefox-get": FIREFOX_GET,
    "firefox-connect": FIREFOX_CONNECT, "chrome-get": CHROME_GET, "chrome-connect": CHROME_CONNECT,
    "wget-http10": WGET_10, "post-cl": POST_CL, "post-chunked": POST_CHUNKED, "expect-100": EXPECT,
    "websocket": WEBSOCKET, "head-http10": HEAD_10, "ipv6": IPV6, "pipelined": PIPELINED,
    "blank-lines": BLANK_LINES, "hop-by-hop": HOP,
    "options-asterisk": OPTIONS_BARE, "options-max-forwards-0": OPTIONS_MF0,
    "trace-max-forwards-0": TRACE_MF0, "http12": HTTP12,
}
for k, v in ATTACKS.items():
    REQUESTS["attack-" + k] = crlf(v)
for k, v in RAW_ATTACKS.items():
    REQUESTS["attack-" + k] = v

# ---------------------------------------------------------------- responses
RESPONSES = {
    "nginx-200": crlf("HTTP/1.1 200 OK\nServer: nginx/1.22.1\nDate: Thu, 27 Nov 2025 03:00:00 GMT\nContent-Type: text/html\nContent-Length: 5\nLast-Modified: Tue, 01 Jul 2025 10:00:00 GMT\nConnection: keep-alive\nETag: \"6863b1e0-5\"\nAccept-Ranges: bytes\n\n") + b"hello",
    "chunked": crlf("HTTP/1.1 200 OK\nContent-Type: text/plain\nTransfer-Encoding: chunked\n\n") + b"5\r\nhello\r\n0\r\n\r\n",
    "not-modified": crlf("HTTP/1.1 304 Not Modified\nETag: \"x\"\nContent-Length: 99\n\n"),
    "no-content": crlf("HTTP/1.1 204 No Content\n\n"),
    "switching": crlf("HTTP/1.1 101 Switching Protocols\nUpgrade: websocket\nConnection: Upgrade\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\n\n"),
    "continue": crlf("HTTP/1.1 100 Continue\n\n"),
    "early-hints": crlf("HTTP/1.1 103 Early Hints\nLink: </style.css>; rel=preload\n\n"),
    "http10-close": crlf("HTTP/1.0 200 OK\nContent-Type: text/plain\n\n") + b"until close",
    "http10-keepalive": crlf("HTTP/1.0 200 OK\nConnection: keep-alive\nContent-Length: 2\n\n") + b"ok",
    "close": crlf("HTTP/1.1 404 Not Found\nConnection: close, X-Hop\nX-Hop: 1\nContent-Length: 0\n\n"),
    "reason-bytes": b"HTTP/1.1 299 Quite  Fine \xe9\r\nContent-Length: 0\r\n\r\n",
    "attack-cl-te": crlf("HTTP/1.1 200 OK\nContent-Length: 10\nTransfer-Encoding: chunked\n\n") + b"0\r\n\r\n",
    "attack-cl-differ": crlf("HTTP/1.1 200 OK\nContent-Length: 5\nContent-Length: 6\n\n"),
    "cl-list-same": crlf("HTTP/1.1 200 OK\nContent-Length: 5, 5\n\nhello"),
    "te-gzip": crlf("HTTP/1.1 200 OK\nTransfer-Encoding: gzip\n\n"),
    "te-gzip-chunked": crlf("HTTP/1.1 200 OK\nTransfer-Encoding: gzip, chunked\n\n"),
    "attack-obs-fold": crlf("HTTP/1.1 200 OK\nX: a\n b\nContent-Length: 0\n\n"),
    "attack-bare-lf": b"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
    "attack-status-2000": crlf("HTTP/1.1 2000 OK\n\n"),
    "attack-http2": crlf("HTTP/2 200 OK\n\n"),
    "no-reason": crlf("HTTP/1.1 200\nContent-Length: 0\n\n"),
    "http12": crlf("HTTP/1.2 200 OK\nContent-Length: 2\n\nok"),
}

# ---------------------------------------------------------------- chunked bodies
CHUNKED = {
    "simple": b"5\r\nhello\r\n0\r\n\r\n",
    "ext-trailers": b"5;ext=1\r\nhello\r\nA\r\n, world!!!\r\n0\r\nX-Sum: 1\r\n\r\nNEXT",
    "upper-hex": b"1A\r\n" + b"x" * 26 + b"\r\n0\r\n\r\n",
    "space-ext": b"3 ;a=b\r\nabc\r\n0\r\n\r\n",
    "incomplete": b"5\r\nhel",
    "bad-lf": b"5\nhello\r\n0\r\n\r\n",
    "bad-data-end": b"5\r\nhelloX\r\n0\r\n\r\n",
    "overflow": b"10000000000000000\r\n",
    "negative": b"-1\r\n",
    "hex-prefix": b"0x5\r\n",
    "obs-fold-trailer": b"0\r\n folded\r\n\r\n",
    "nul-ext": b"5;a\x00b\r\n",
    "zero-leading": b"0005\r\nhello\r\n0\r\n\r\n",
    # Issue 15: whitespace after a size only before `;`.
    "attack-size-trailing-space": b"5 \r\nhello\r\n0\r\n\r\n",
    "size-tab-ext": b"5\t ;a\r\nhello\r\n0 ;b\r\n\r\n",
}

def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

def split_seed(flags, client, upstream, csteps=b"", usteps=b""):
    return (bytes([flags]) + struct.pack("<H", len(client)) + bytes([len(csteps)]) + csteps
            + bytes([len(usteps)]) + usteps + client + upstream)

# connection ops (see `ringway_core::fuzzing::connection`)
def c_tpl(i): return bytes([1, i])          # client template
def c_raw(b): return bytes([0, len(b)]) + b  # raw client bytes (<= 255)
C_EOF = bytes([2]); C_ERR = bytes([3])
def dial_ok(reused=False): return bytes([4, 1 if reused else 0])
def dial_err(kind): return bytes([5, kind])
def u_tpl(i): return bytes([7, i])
def u_raw(b): return bytes([6, len(b)]) + b
U_EOF = bytes([8]); U_ERR = bytes([9])
def relay(up, n): return bytes([10 if up else 11]) + struct.pack("<H", n)
def wait(b): return bytes([12, b])
FIRE = bytes([14]); EARLY = bytes([15])

def main():
    for name, data in REQUESTS.items():
        write("request_head", name, data)
    for name, data in RESPONSES.items():
        write("response_head", name, b"\x00" + data)
    write("response_head", "head-request-200", b"\x01" + RESPONSES["nginx-200"])
    write("response_head", "http10-client-chunked", b"\x02" + RESPONSES["chunked"])
    for name, data in CHUNKED.items():
        write("chunked", name, b"\x03" + data)

    ok5 = RESPONSES["nginx-200"]
    chunked = RESPONSES["chunked"]
    hello = bytes(range(0x16, 0x16 + 40))  # stands in for a TLS ClientHello
    s = {
        "curl-get": split_seed(6, CURL_GET, ok5, b"\x05\x11", b"\x10\x03"),
        "post-chunked": split_seed(6, POST_CHUNKED, chunked, b"\x40\x02\x07", b"\x20\x01"),
        "post-cl": split_seed(4, POST_CL, ok5, b"\x7f\x01"),
        "connect-hello": split_seed(6, CURL_CONNECT + hello, b"\x16\x03\x03server-hello", b"\x30\x20", b"\x02"),
        "http10-dechunk": split_seed(6, WGET_10, chunked, b"", b"\x33\x04\x01"),
        "head": split_seed(6, HEAD_10, ok5, b"\x01", b"\x02"),
        "websocket": split_seed(6, WEBSOCKET + b"\x81\x05hello", RESPONSES["switching"] + b"\x81\x02hi", b"\x09", b"\x40"),
        "pipelined": split_seed(6, PIPELINED, ok5 + ok5, b"\x20", b"\x30"),
        "expect-100": split_seed(6, EXPECT + b"hello", RESPONSES["continue"] + ok5, b"\x50", b"\x19"),
        "extra-upstream-bytes": split_seed(6, CURL_GET, ok5 + b"junk", b"", b"\x05"),
        "stale-pool-retry": split_seed(3, CURL_GET, b""),
        "attack-cl-te": split_seed(6, crlf(ATTACKS["cl-te"]), b"", b"\x10"),
        "attack-bare-lf": split_seed(6, RAW_ATTACKS["bare-lf"], b"", b"\x03"),
        "too-large": split_seed(6, RAW_ATTACKS["too-large"], b"", b"\xff\xff\xff\xff\xff\xff\xff\xff\xff"),
        "bad-response": split_seed(6, CURL_GET, RESPONSES["attack-cl-differ"], b"", b"\x07"),
        "close-delimited": split_seed(6, CURL_GET, RESPONSES["http10-close"], b"", b"\x13"),
    }
    for name, data in s.items():
        write("split_invariance", name, data)

    conn = {
        "keep-alive-twice": b"\x01" + c_tpl(0) + dial_ok() + u_tpl(0) + c_tpl(0) + dial_ok(True) + u_tpl(1) + C_EOF,
        "connect-relay-half-close": b"\x01" + c_tpl(1) + dial_ok() + relay(True, 517) + relay(False, 3000) + C_EOF + relay(False, 21) + U_EOF,
        "connect-dial-refused": b"\x01" + c_tpl(1) + dial_err(1),
        "dial-timeout": b"\x01" + c_tpl(0) + wait(0xff) + FIRE,
        "header-timeout": b"\x01" + c_raw(b"GET http://h/ HT") + EARLY + wait(0xc1) + FIRE,
        "idle-keep-alive": b"\x01" + c_tpl(0) + dial_ok() + u_tpl(0) + wait(0xc2) + FIRE,
        "expect-continue": b"\x01" + c_tpl(3) + dial_ok() + u_tpl(3) + c_raw(b"hello") + u_tpl(0) + C_EOF,
        "post-chunked": b"\x01" + c_tpl(2) + dial_ok() + u_tpl(1) + C_EOF,
        "upgrade": b"\x01" + c_tpl(5) + dial_ok() + u_tpl(2) + relay(True, 10) + relay(False, 20) + U_EOF + C_EOF,
        "stale-pool": b"\x01" + c_tpl(0) + dial_ok(True) + U_EOF + dial_ok() + u_tpl(0),
        "http10-dechunk": b"\x01" + c_tpl(6) + dial_ok() + u_tpl(1),
        "close-delimited": b"\x01" + c_tpl(0) + dial_ok() + u_tpl(4) + u_raw(b" more") + U_EOF,
        "truncated": b"\x01" + c_tpl(0) + dial_ok() + u_tpl(6) + u_raw(b"hel") + U_EOF,
        "upstream-silent": b"\x01" + c_tpl(0) + dial_ok() + wait(0xc5) + wait(0xff) + FIRE,
        "tunnel-idle": b"\x01" + c_tpl(1) + dial_ok() + relay(True, 5) + wait(0xff) + FIRE,
        "bad-request": b"\x01" + c_raw(crlf(ATTACKS["cl-te"])),
        "client-error-mid": b"\x01" + c_tpl(2) + dial_ok() + C_ERR,
        "upstream-error": b"\x01" + c_tpl(0) + dial_ok() + U_ERR,
        "pipelined": b"\x01" + c_raw(PIPELINED) + dial_ok() + u_tpl(0) + dial_ok(True) + u_tpl(0),
        "max-forwards-0-then-get": b"\x01" + c_raw(OPTIONS_MF0 + TRACE_MF0) + c_tpl(0) + dial_ok(True) + u_tpl(0),
        "post-stale-pool": b"\x01" + c_tpl(2) + dial_ok(True) + U_EOF,
        "http12-both-ways": b"\x01" + c_raw(HTTP12) + dial_ok() + u_raw(RESPONSES["http12"]) + C_EOF,
    }
    for name, data in conn.items():
        write("connection", name, data)

    # tunnel ops: low 3 bits = kind, 0x10 = upstream-to-client / upstream side
    def t_relay(up, n): return bytes([0x20 | (0 if up else 0x10)]) + struct.pack("<H", n)
    T_END_C = bytes([3]); T_END_U = bytes([3 | 0x10]); T_ERR = bytes([5]); T_ERR_U = bytes([5 | 0x10])
    def t_wait(b): return bytes([6, b])
    T_TIMEOUT = bytes([7])
    tun = {
        "half-close-both": bytes([10]) + hello[:10] + t_relay(True, 517) + t_relay(False, 3000) + T_END_C + t_relay(False, 21) + T_END_U,
        "upstream-first": bytes([0]) + t_relay(False, 100) + T_END_U + t_relay(True, 7) + T_END_C + T_END_C,
        "error": bytes([3]) + b"abc" + t_relay(True, 1) + T_ERR_U + t_relay(True, 1),
        "idle": bytes([0]) + t_relay(True, 1) + t_wait(0xff) + t_wait(0xff) + T_TIMEOUT,
        "huge-counts": bytes([0]) + bytes([0xe0, 3]) + bytes([0xe0, 3]) + T_END_C + T_ERR,
        "eof-after-relay-after-eof": bytes([0]) + T_END_C + t_relay(True, 5) + T_END_U,
    }
    for name, data in tun.items():
        write("tunnel_accounting", name, data)

if __name__ == "__main__":
    main()
