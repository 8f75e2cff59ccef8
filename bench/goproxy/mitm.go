package main

// The -mitm mode: TLS interception with the standard library only.

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

type leafSlot struct {
	once sync.Once
	cert *tls.Certificate
	err  error
}

type mitm struct {
	ca        *x509.Certificate
	caKey     any
	mu        sync.Mutex
	leaves    map[string]*leafSlot
	transport *http.Transport
}

func readPEM(path, kind string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, fmt.Errorf("%s: no PEM %s block", path, kind)
		}
		if strings.HasSuffix(block.Type, kind) {
			return block.Bytes, nil
		}
	}
}

func newMitm(certPath, keyPath, upstreamCA string) (*mitm, error) {
	if certPath == "" || keyPath == "" || upstreamCA == "" {
		return nil, errors.New("-mitm needs -ca-cert, -ca-key and -upstream-ca")
	}
	der, err := readPEM(certPath, "CERTIFICATE")
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyDer, err := readPEM(keyPath, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	var key any
	if key, err = x509.ParsePKCS8PrivateKey(keyDer); err != nil {
		if key, err = x509.ParseECPrivateKey(keyDer); err != nil {
			return nil, fmt.Errorf("%s: %v", keyPath, err)
		}
	}
	pool := x509.NewCertPool()
	pemData, err := os.ReadFile(upstreamCA)
	if err != nil {
		return nil, err
	}
	if !pool.AppendCertsFromPEM(pemData) {
		return nil, fmt.Errorf("%s: no certificate", upstreamCA)
	}
	return &mitm{
		ca: ca, caKey: key, leaves: map[string]*leafSlot{},
		transport: &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: pool},
			MaxIdleConns:        4096,
			MaxIdleConnsPerHost: 4096,
			IdleConnTimeout:     300 * time.Second,
		},
	}, nil
}

// leaf returns the cached leaf for host, minting it once however many ask together.
func (m *mitm) leaf(host string) (*tls.Certificate, error) {
	m.mu.Lock()
	slot := m.leaves[host]
	if slot == nil {
		slot = &leafSlot{}
		m.leaves[host] = slot
	}
	m.mu.Unlock()
	slot.once.Do(func() { slot.cert, slot.err = m.mint(host) })
	return slot.cert, slot.err
}

func (m *mitm) mint(host string) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: host, Organization: []string{"goproxy interception"}},
		NotBefore:    now.Add(-24 * time.Hour),
		NotAfter:     now.Add(30 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, m.ca, &key.PublicKey, m.caKey)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// prefixConn replays bytes the HTTP server had already buffered after the CONNECT head.
type prefixConn struct {
	net.Conn
	r io.Reader
}

func (c *prefixConn) Read(p []byte) (int, error) { return c.r.Read(p) }

var hopByHop = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

func (m *mitm) serve(w http.ResponseWriter, r *http.Request) {
	authority := r.Host
	connectHost, _, err := net.SplitHostPort(authority)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	client, rw, err := w.(http.Hijacker).Hijack()
	if err != nil {
		return
	}
	defer client.Close()
	client.Write([]byte("HTTP/1.1 200 Connection Established\r\n\r\n"))
	var raw net.Conn = client
	if rw.Reader.Buffered() > 0 {
		raw = &prefixConn{Conn: client, r: io.MultiReader(rw.Reader, client)}
	}
	conn := tls.Server(raw, &tls.Config{
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			name := strings.ToLower(hello.ServerName)
			if name == "" {
				name = connectHost
			}
			return m.leaf(name)
		},
	})
	if err := conn.Handshake(); err != nil {
		return
	}
	br := bufio.NewReader(conn)
	bw := bufio.NewWriter(conn)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		clientClose := req.Close
		req.Close = false
		req.RequestURI = ""
		req.URL.Scheme = "https"
		req.URL.Host = authority
		for _, h := range hopByHop {
			req.Header.Del(h)
		}
		resp, err := m.transport.RoundTrip(req)
		if err != nil {
			log.Printf("mitm %s: %v", authority, err)
			fmt.Fprintf(bw, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
			bw.Flush()
			return
		}
		for _, h := range hopByHop {
			if h != "Transfer-Encoding" {
				resp.Header.Del(h)
			}
		}
		resp.Close = clientClose
		err = resp.Write(bw)
		resp.Body.Close()
		if err != nil || bw.Flush() != nil || clientClose {
			return
		}
	}
}
