//! What the tests of the two example runtimes (`blocking_example.rs`, `tokio_example.rs`)
//! share: the configuration they open up for loopback, and blocking client helpers.

#![allow(dead_code)]

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use ringway_core::{Config, PortRule};

/// `config` opened up for tests: CONNECT to the servers' random ports, and loopback
/// destinations, which the egress policy refuses by default.
pub fn for_loopback(mut config: Config) -> Config {
    config.policy.connect_ports = PortRule::Any;
    config
        .policy
        .egress
        .allow_range("127.0.0.0/8".parse().unwrap());
    config
}

/// A client socket to `addr` with a 10 s read timeout (no test hangs).
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Reads until `want` bytes arrived or EOF.
pub fn read_n(s: &mut TcpStream, want: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < want {
        match s.read(&mut buf).unwrap() {
            0 => break,
            n => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

/// Reads one request head, byte by byte so nothing after it is consumed.
pub fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(s.read(&mut b).unwrap(), 1, "origin got EOF inside the head");
        head.push(b[0]);
    }
    String::from_utf8(head).unwrap()
}
