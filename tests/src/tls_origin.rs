//! The origin side of the TLS end-to-end tests: a local origin in Python's `http.server`
//! ([`PythonTlsOrigin`]), serving TLS with a leaf from [`crate::tls_pki::origin_pki`] or
//! plain HTTP, whose request handler each test file writes for what it checks (or takes
//! [`ECHO_HANDLER_PY`]). The proxy is told to trust the origin's CA with `--upstream-ca`.
//!
//! # Error handling
//! Panics when python3 cannot start or the script prints no port; the origin is killed on
//! drop.

use crate::tls_proxy::spawn_first_line;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A request handler class `H` for [`PythonTlsOrigin`]: every GET is answered with the path
/// and the request headers received (so a test sees what the proxy sent); `GET /big/N`
/// sends N bytes of the repeating pattern 0, 1, ..., 255 (a download checkable byte for
/// byte); a PUT is read to its end and answered `received=N`.
pub const ECHO_HANDLER_PY: &str = r#"
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path.startswith("/big/"):
            n = int(self.path[5:])
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            chunk = bytes(range(256)) * 256
            while n > 0:
                self.wfile.write(chunk[:min(n, 65536)])
                n -= 65536
            return
        body = ("path=%s\n%s" % (self.path, "".join("%s: %s\n" % kv for kv in self.headers.items()))).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_PUT(self):
        n = int(self.headers["Content-Length"])
        got = 0
        while got < n:
            chunk = self.rfile.read(min(65536, n - got))
            if not chunk:
                break
            got += len(chunk)
        body = ("received=%d\n" % got).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
"#;

/// What comes before a handler: the modules it and [`SERVE_PY`] use.
const IMPORTS_PY: &str = "import http.server, ssl, sys\n";

/// What comes after a handler: a threading server for `H` on 127.0.0.1 port 0, TLS when
/// given a certificate and key (argv 1 and 2), printing its port as the first stdout line.
const SERVE_PY: &str = r#"
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
if len(sys.argv) > 2:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[1], sys.argv[2])
    s.socket = ctx.wrap_socket(s.socket, server_side=True)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

/// An origin on 127.0.0.1 running a request handler class `H` (Python, e.g.
/// [`ECHO_HANDLER_PY`]) in a threading `http.server` on port 0: TLS with `DIR/leaf.pem` and
/// `DIR/leaf-key.pem` (from [`crate::tls_pki::origin_pki`]) when started with
/// [`PythonTlsOrigin::start`], plain HTTP with [`PythonTlsOrigin::plain`]. Killed on drop.
pub struct PythonTlsOrigin {
    child: Child,
    /// The port the server bound.
    pub port: u16,
}

impl PythonTlsOrigin {
    /// Starts HANDLER serving TLS with the leaf in `dir` and waits for its port line.
    pub fn start(handler: &str, dir: &Path) -> PythonTlsOrigin {
        Self::spawn(handler, Some(dir))
    }

    /// Starts HANDLER serving plain HTTP (a forwarded `http://` target next to the TLS
    /// one) and waits for its port line.
    pub fn plain(handler: &str) -> PythonTlsOrigin {
        Self::spawn(handler, None)
    }

    fn spawn(handler: &str, tls: Option<&Path>) -> PythonTlsOrigin {
        let mut cmd = Command::new("python3");
        cmd.args(["-c", &format!("{IMPORTS_PY}{handler}{SERVE_PY}")]);
        if let Some(dir) = tls {
            cmd.arg(dir.join("leaf.pem")).arg(dir.join("leaf-key.pem"));
        }
        let (child, line) = spawn_first_line(cmd.stderr(Stdio::inherit()));
        let port = line.trim().parse().expect("origin port");
        PythonTlsOrigin { child, port }
    }
}

impl Drop for PythonTlsOrigin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
