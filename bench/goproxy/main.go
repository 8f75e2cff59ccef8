// A minimal net/http forward proxy used as a peer in Ringway's benchmark:
// absolute-form requests go through httputil.ReverseProxy (which strips the
// hop-by-hop headers), CONNECT is a hijacked byte copy in both directions.
//
// With -mitm (and -ca-cert, -ca-key, -upstream-ca) every CONNECT is intercepted
// instead, as goproxy/hudsucker-style proxies do: a P-256 leaf minted per host
// with crypto/x509 (cached, minted once), tls.Server on the hijacked connection,
// keep-alive HTTP/1.1 read inside it, each request sent with a pooled
// http.Transport (keep-alive upstream) that verifies the origin against
// -upstream-ca. Standard library only.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
)

func tunnel(w http.ResponseWriter, r *http.Request) {
	up, err := net.Dial("tcp", r.Host)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	client, rw, err := w.(http.Hijacker).Hijack()
	if err != nil {
		up.Close()
		return
	}
	client.Write([]byte("HTTP/1.1 200 Connection Established\r\n\r\n"))
	if n := rw.Reader.Buffered(); n > 0 { // bytes the client pipelined after the head
		b, _ := rw.Reader.Peek(n)
		up.Write(b)
	}
	go func() { io.Copy(up, client); up.(*net.TCPConn).CloseWrite() }()
	io.Copy(client, up)
	client.Close()
	up.Close()
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	mitmOn := flag.Bool("mitm", false, "intercept every CONNECT (needs -ca-cert, -ca-key, -upstream-ca)")
	caCert := flag.String("ca-cert", "", "interception CA certificate (PEM)")
	caKey := flag.String("ca-key", "", "interception CA key (PEM, EC or PKCS#8)")
	upstreamCA := flag.String("upstream-ca", "", "trust anchors for the origins (PEM)")
	flag.Parse()
	var interceptor *mitm
	if *mitmOn {
		var err error
		if interceptor, err = newMitm(*caCert, *caKey, *upstreamCA); err != nil {
			log.Fatal(err)
		}
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("goproxy listening on %s\n", ln.Addr())
	os.Stdout.Sync()
	transport := &http.Transport{MaxIdleConns: 4096, MaxIdleConnsPerHost: 4096}
	forward := &httputil.ReverseProxy{Director: func(*http.Request) {}, Transport: transport,
		ErrorLog: log.New(io.Discard, "", 0)}
	log.Fatal(http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodConnect && interceptor != nil {
			interceptor.serve(w, r)
		} else if r.Method == http.MethodConnect {
			tunnel(w, r)
		} else {
			forward.ServeHTTP(w, r)
		}
	})))
}
