// Package notifytest runs real peers for tests of package notify and its
// users: an SMTP server (emersion/go-smtp) that requires STARTTLS and
// authentication, and an HTTP server that speaks MessageBird's SMS API and
// a JSON webhook. Both listen on 127.0.0.1 and stop with the test.
package notifytest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Mail is a received message.
type Mail struct {
	From string
	To   []string
	Data string
}

// SMTPServer is a running SMTP server.
type SMTPServer struct {
	Host     string
	Port     int
	Username string
	Password string
	// RootCAs trusts the server's self-signed certificate.
	RootCAs *x509.CertPool
	mu      sync.Mutex
	mails   []Mail
}

// Mails returns the messages received so far.
func (s *SMTPServer) Mails() []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Mail(nil), s.mails...)
}

// NewSMTPServer starts a server on 127.0.0.1 that offers STARTTLS and
// accepts PLAIN authentication only over TLS.
func NewSMTPServer(t testing.TB) *SMTPServer {
	t.Helper()
	cert, pool := selfSigned(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &SMTPServer{Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port, Username: "regie", Password: "smtp-secret", RootCAs: pool}
	srv := smtp.NewServer(&backend{s: s})
	srv.Domain = "127.0.0.1"
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	srv.AllowInsecureAuth = false
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

type backend struct{ s *SMTPServer }

func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &session{s: b.s, conn: c}, nil
}

type session struct {
	s    *SMTPServer
	conn *smtp.Conn
	auth bool
	m    Mail
}

func (x *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (x *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if _, ok := x.conn.TLSConnectionState(); !ok {
			return errors.New("notifytest: authentication needs TLS")
		}
		if user != x.s.Username || pass != x.s.Password {
			return errors.New("notifytest: invalid credentials")
		}
		x.auth = true
		return nil
	}), nil
}

func (x *session) Mail(from string, _ *smtp.MailOptions) error {
	if !x.auth {
		return smtp.ErrAuthRequired
	}
	x.m = Mail{From: from}
	return nil
}

func (x *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	x.m.To = append(x.m.To, to)
	return nil
}

func (x *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	x.m.Data = string(b)
	x.s.mu.Lock()
	x.s.mails = append(x.s.mails, x.m)
	x.s.mu.Unlock()
	return nil
}

func (x *session) Reset()        {}
func (x *session) Logout() error { return nil }

func selfSigned(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"127.0.0.1", "localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

// SMS is a received text message.
type SMS struct{ To, Text string }

// Gateway is a running SMS gateway.
type Gateway struct {
	// URL is the base URL; MessageBird's API is at URL+"/messages", the
	// webhook at URL+"/webhook".
	URL         string
	AccessKey   string
	BearerToken string
	mu          sync.Mutex
	sms         []SMS
	// Fail makes the gateway answer 503 (set it before sending).
	Fail bool
}

// Messages returns the messages received so far.
func (g *Gateway) Messages() []SMS {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]SMS(nil), g.sms...)
}

// NewGateway starts the SMS gateway.
func NewGateway(t testing.TB) *Gateway {
	t.Helper()
	g := &Gateway{AccessKey: "live_test_key", BearerToken: "hook-token"}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /messages", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "AccessKey "+g.AccessKey {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"errors":[{"code":2,"description":"Request not allowed (incorrect access_key)"}]}`)
			return
		}
		var req struct {
			Originator string   `json:"originator"`
			Recipients []string `json:"recipients"`
			Body       string   `json:"body"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Originator == "" || len(req.Recipients) == 0 || req.Body == "" {
			w.WriteHeader(http.StatusUnprocessableEntity)
			return
		}
		if g.failing() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		g.mu.Lock()
		for _, rcp := range req.Recipients {
			g.sms = append(g.sms, SMS{To: "+" + strings.TrimPrefix(rcp, "+"), Text: req.Body})
		}
		g.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(map[string]any{"id": "msg-1", "body": req.Body, "recipients": map[string]any{"totalCount": len(req.Recipients)}})
	})
	mux.HandleFunc("POST /webhook", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+g.BearerToken {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var req struct{ To, Text string }
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.To == "" || req.Text == "" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if g.failing() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		g.mu.Lock()
		g.sms = append(g.sms, SMS{To: req.To, Text: req.Text})
		g.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	g.URL = srv.URL
	return g
}

func (g *Gateway) failing() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.Fail
}
