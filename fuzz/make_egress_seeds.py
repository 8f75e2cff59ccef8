#!/usr/bin/env python3
"""Writes the seeds of the `egress` fuzz target under fuzz/seeds/egress/ (run from anywhere).

Layout (see `ringway_core::fuzzing::egress`): flags; ranges (kind, address, prefix); own
listeners (kind, address, port); local addresses; resolved addresses (address, port); then
text: the target host, then one pattern a line (`+` = allow-domain, else deny-domain).
Addresses: a flag byte (bit 0 IPv6, bit 1 IPv4 written IPv4-mapped) then 4 or 16 bytes.
"""
import ipaddress
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds", "egress")

def ip(s, mapped=False):
    a = ipaddress.ip_address(s)
    if a.version == 6:
        return b"\x01" + a.packed
    return (b"\x02" if mapped else b"\x00") + a.packed

def seed(flags=0, ranges=(), listeners=(), locals_=(), addrs=(), host="", patterns=()):
    out = bytes([flags, len(ranges)])
    for allow, net in ranges:
        n = ipaddress.ip_network(net, strict=False)
        out += bytes([1 if allow else 0]) + ip(str(n.network_address)) + bytes([n.prefixlen])
    out += bytes([len(listeners)])
    for proxy, a, port in listeners:
        out += bytes([1 if proxy else 0]) + ip(a) + struct.pack("<H", port)
    out += bytes([len(locals_)])
    for a in locals_:
        out += ip(a)
    out += bytes([len(addrs)])
    for a, port, *m in addrs:
        out += ip(a, bool(m)) + struct.pack("<H", port)
    out += "\n".join([host, *patterns]).encode()
    return out

SEEDS = {
    "default-guard": seed(addrs=[("127.0.0.1", 80), ("10.0.0.1", 80), ("169.254.169.254", 80),
                                 ("8.8.8.8", 443), ("::1", 80), ("127.0.0.1", 80, "mapped"),
                                 ("64:ff9b::7f00:1", 80), ("2002:7f00:1::", 80), ("fd00::1", 80)],
                          host="example.com"),
    "allow-loopback-deny-one": seed(ranges=[(True, "127.0.0.0/8"), (False, "127.0.0.2/32"), (True, "::1/128")],
                                    addrs=[("127.0.0.1", 8080), ("127.0.0.2", 8080), ("::1", 8080)],
                                    host="127.1"),
    "tie-and-private": seed(flags=1, ranges=[(True, "10.0.0.0/8"), (False, "10.0.0.0/8"), (True, "10.1.0.0/16")],
                            addrs=[("10.0.0.1", 80), ("10.1.2.3", 80), ("192.168.1.1", 80), ("100.64.0.1", 80)],
                            host="0x7f000001"),
    "own-listeners": seed(ranges=[(True, "0.0.0.0/0"), (True, "::/0")],
                          listeners=[(True, "127.0.0.1", 3128), (False, "0.0.0.0", 9090)],
                          locals_=["192.168.1.20"],
                          addrs=[("127.0.0.1", 3128), ("127.0.0.2", 3128), ("0.0.0.0", 3128),
                                 ("192.168.1.20", 9090), ("::1", 9090)],
                          host="localhost"),
    "domain-lists": seed(addrs=[("8.8.8.8", 443), ("1.1.1.1", 443)],
                         host="Www.Example.COM.",
                         patterns=["+*.example.com", "+example.org", "+1.1.1.1", "secret.example.com",
                                   "*.ads.example", "10.0.0.0/8", "# not a pattern", "*", "bad..name"]),
    "legacy-literals": seed(host="0177.0.0.1", patterns=["+2130706433", "127.0.0.0/8", "*.b.c"]),
    "invalid-literal": seed(host="1.2.3.4.5", patterns=["example.1", "+256.0.0.1"]),
}

os.makedirs(ROOT, exist_ok=True)
for name, data in SEEDS.items():
    with open(os.path.join(ROOT, name), "wb") as f:
        f.write(data)
print(f"wrote {len(SEEDS)} seeds to {ROOT}")
