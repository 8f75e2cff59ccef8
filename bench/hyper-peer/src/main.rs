//! A forward proxy written the usual Rust way, as a peer for Ringway's benchmark.
//!
//! hyper 1.x on tokio's multi-threaded runtime limited to one worker thread (the benchmark pins
//! it to one CPU): absolute-form requests are forwarded through hyper-util's pooled client
//! (keep-alive on both sides), CONNECT follows hyper's own `http_proxy` example —
//! `hyper::upgrade::on` and `tokio::io::copy_bidirectional`. No logging. It prints
//! `hyper-peer listening on ADDR` once bound, which is how bench/run learns the port.
//!
//! It is a peer, not a product: errors become a 502 (upstream) or are dropped with the
//! connection (client side), and there is no access control — it listens on loopback only in
//! the benchmark.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

type Body = BoxBody<Bytes, hyper::Error>;
type Pool = Client<HttpConnector, Incoming>;

/// Hop-by-hop headers (RFC 9110 §7.6.1) and the legacy `Proxy-Connection`: a proxy must not
/// forward them, as Go's `httputil.ReverseProxy` does not either.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut hyper::HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

fn text(status: StatusCode, msg: &'static str) -> Response<Body> {
    let mut resp = Response::new(
        Full::new(Bytes::from_static(msg.as_bytes()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp
}

async fn proxy(pool: Pool, mut req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    if req.method() == Method::CONNECT {
        let Some(addr) = req.uri().authority().map(|a| a.to_string()) else {
            return Ok(text(StatusCode::BAD_REQUEST, "CONNECT needs host:port\n"));
        };
        // Dial before answering 200, so a refused dial is a 502 as with the other proxies.
        let upstream = match TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(_) => return Ok(text(StatusCode::BAD_GATEWAY, "dial failed\n")),
        };
        let _ = upstream.set_nodelay(true);
        tokio::spawn(async move {
            if let Ok(upgraded) = hyper::upgrade::on(req).await {
                let mut client = TokioIo::new(upgraded);
                let mut upstream = upstream;
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
        });
        return Ok(Response::new(empty()));
    }
    if req.uri().authority().is_none() {
        return Ok(text(
            StatusCode::BAD_REQUEST,
            "absolute-form request target expected\n",
        ));
    }
    strip_hop_by_hop(req.headers_mut());
    match pool.request(req).await {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Ok(Response::from_parts(parts, body.boxed()))
        }
        Err(_) => Ok(text(StatusCode::BAD_GATEWAY, "upstream request failed\n")),
    }
}

async fn serve(listener: TcpListener, pool: Pool) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            // EMFILE and friends: back off instead of spinning or exiting
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let pool = pool.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| proxy(pool.clone(), req));
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => {
                listen = args
                    .next()
                    .and_then(|a| a.parse().ok())
                    .expect("--listen ADDR:PORT")
            }
            other => panic!("unknown argument {other:?} (only --listen ADDR:PORT)"),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen).await.expect("bind");
        println!("hyper-peer listening on {}", listener.local_addr().unwrap());
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let pool: Pool = Client::builder(TokioExecutor::new()).build(connector);
        // The accept loop runs on the worker, not on this (blocked) main thread.
        tokio::spawn(serve(listener, pool))
            .await
            .expect("accept loop");
    });
}
