// A minimal net/http forward proxy used as a peer in Ringway's benchmark:
// absolute-form requests go through httputil.ReverseProxy (which strips the
// hop-by-hop headers), CONNECT is a hijacked byte copy in both directions.
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
	flag.Parse()
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
		if r.Method == http.MethodConnect {
			tunnel(w, r)
		} else {
			forward.ServeHTTP(w, r)
		}
	})))
}
