//go:build integration

package xmpp_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stanzad/stanzad/internal/testserver"
	"github.com/stanzad/stanzad/xmpp"
)

var resources atomic.Int32

func dial(t *testing.T, srv *testserver.Server, user, password string, direct bool, h xmpp.Handler) (*xmpp.Session, error) {
	t.Helper()
	addr := srv.Addr
	if direct {
		addr = srv.DirectTLSAddr
	}
	tc, err := xmpp.TLSConfig(xmpp.TLSOptions{CAFile: srv.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	return xmpp.Dial(ctx, xmpp.Config{
		JID:       xmpp.MustParseJID(fmt.Sprintf("%s@%s/test%d", user, srv.Host, resources.Add(1))),
		Password:  password,
		Servers:   []string{addr},
		DirectTLS: direct,
		TLS:       tc,
		Handler:   h,
	})
}

// serve runs s.Serve until the test ends and then closes the stream.
func serve(t *testing.T, s *xmpp.Session) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
}

func TestIntegrationLogin(t *testing.T) {
	for _, hash := range []string{"SHA-256", "SHA-1"} {
		t.Run(hash, func(t *testing.T) {
			testserver.Each(t, testserver.Options{PasswordHash: hash, DirectTLS: hash == "SHA-256"},
				testserver.EjabberdOptions{PasswordHash: hash, C2SShaper: -1}, func(t *testing.T, srv *testserver.Server) {
					testLogin(t, srv, hash)
				})
		})
	}
}

func testLogin(t *testing.T, srv *testserver.Server, hash string) {
	testserver.MustRegister(t, srv, "device", "s3cret")

	s, err := dial(t, srv, "device", "s3cret", false, nil)
	if err != nil {
		t.Fatalf("login over STARTTLS: %v\n%s", err, srv.LogTail(20))
	}
	if want := "SCRAM-" + hash; !strings.HasPrefix(s.Mechanism(), want) {
		t.Errorf("mechanism %q, want %s[-PLUS]", s.Mechanism(), want)
	}
	if got := s.JID(); got.Bare().String() != "device@iot.test" || got.Resource == "" {
		t.Errorf("bound JID %q", got)
	}
	if v := s.TLSState().Version; v < tls.VersionTLS12 {
		t.Errorf("TLS version %x", v)
	}
	serve(t, s)
	if hash != "SHA-256" {
		return
	}

	t.Run("direct TLS", func(t *testing.T) {
		s, err := dial(t, srv, "device", "s3cret", true, nil)
		if err != nil {
			t.Fatalf("login over direct TLS: %v\n%s", err, srv.LogTail(20))
		}
		if !s.TLSState().HandshakeComplete {
			t.Fatal("no TLS")
		}
		serve(t, s)
	})
	t.Run("wrong password", func(t *testing.T) {
		_, err := dial(t, srv, "device", "wrong", false, nil)
		var se *xmpp.SASLError
		if !errors.As(err, &se) || se.Condition != "not-authorized" || !xmpp.IsAuthError(err) {
			t.Fatalf("Dial with wrong password = %v, want SASLError not-authorized", err)
		}
		if strings.Contains(err.Error(), "wrong") {
			t.Errorf("error %q contains the password", err)
		}
	})
	t.Run("untrusted certificate", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		_, err := xmpp.Dial(ctx, xmpp.Config{
			JID: xmpp.MustParseJID("device@iot.test"), Password: "s3cret", Servers: []string{srv.Addr},
			TLS: &tls.Config{RootCAs: x509.NewCertPool()},
		})
		var uerr x509.UnknownAuthorityError
		if !errors.As(err, &uerr) {
			t.Fatalf("Dial trusting nothing = %v, want x509.UnknownAuthorityError", err)
		}
	})
	t.Run("wrong server name", func(t *testing.T) {
		tc, _ := xmpp.TLSConfig(xmpp.TLSOptions{CAFile: srv.CAFile, ServerName: "evil.test"})
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		_, err := xmpp.Dial(ctx, xmpp.Config{
			JID: xmpp.MustParseJID("device@iot.test"), Password: "s3cret", Servers: []string{srv.Addr}, TLS: tc,
		})
		var herr x509.HostnameError
		if !errors.As(err, &herr) {
			t.Fatalf("Dial with server_name evil.test = %v, want x509.HostnameError", err)
		}
	})
}

// TestIntegrationIQ drives the agent-side mux through the server from a second
// client: ping and version are answered, an IQ nobody handles gets
// service-unavailable, and the answers go back to the asking full JID.
func TestIntegrationIQ(t *testing.T) {
	testserver.Each(t, testserver.Options{}, testserver.EjabberdOptions{C2SShaper: -1}, testIQ)
}

func testIQ(t *testing.T, srv *testserver.Server) {
	testserver.MustRegister(t, srv, "device", "pw1")
	testserver.MustRegister(t, srv, "operator", "pw2")

	mux := xmpp.NewMux(xmpp.Identity{Category: "client", Type: "bot", Name: "stanzad"}, xmpp.Software{Name: "stanzad", Version: "test"})
	dev, err := dial(t, srv, "device", "pw1", false, mux)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, dev)
	op, err := dial(t, srv, "operator", "pw2", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, op)

	ask := func(typ, ns, name string) (*xmpp.Element, error) {
		iq := xmpp.Stanza("iq", typ, dev.JID().String(), op.NewID())
		iq.Add(xmpp.NewElement(ns, name))
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		return op.SendIQ(ctx, iq)
	}
	if _, err := ask("get", "urn:xmpp:ping", "ping"); err != nil {
		t.Errorf("ping: %v", err)
	}
	res, err := ask("get", "jabber:iq:version", "query")
	if err != nil || res.Child("jabber:iq:version", "query").ChildText("jabber:iq:version", "name") != "stanzad" {
		t.Errorf("version: %v %v", res, err)
	}
	if res != nil && res.Attr("to") != op.JID().String() {
		t.Errorf("version answer to %q, want %q", res.Attr("to"), op.JID())
	}
	_, err = ask("set", "urn:example:unknown", "thing")
	var se *xmpp.StanzaError
	if !errors.As(err, &se) || se.Condition != "service-unavailable" {
		t.Errorf("unhandled IQ: %v, want service-unavailable", err)
	}
}

// TestIntegrationResume cuts the TCP connection under a live stream while
// the server stays up: the client resumes the stream (same full JID), resends
// what the server had not acknowledged, and the receiver gets every
// message exactly once, in order.
func TestIntegrationResume(t *testing.T) {
	testserver.Each(t, testserver.Options{}, testserver.EjabberdOptions{C2SShaper: -1}, testResume)
}

func testResume(t *testing.T, srv *testserver.Server) {
	testserver.MustRegister(t, srv, "device", "pw1")
	testserver.MustRegister(t, srv, "operator", "pw2")
	proxy := testserver.NewProxy(t, srv.Addr)

	got := make(chan string, 1000)
	opMux := xmpp.NewMux(xmpp.Identity{Category: "client", Type: "pc"}, xmpp.Software{Name: "test"})
	opMux.Message = func(_ context.Context, _ *xmpp.Session, m *xmpp.Element) {
		got <- m.ChildText(xmpp.NSClient, "body")
	}
	op, err := dial(t, srv, "operator", "pw2", false, opMux)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, op)
	op.SendRaw(t.Context(), []byte("<presence/>"))

	tc, _ := xmpp.TLSConfig(xmpp.TLSOptions{CAFile: srv.CAFile})
	c := xmpp.NewClient(xmpp.Config{
		JID: xmpp.MustParseJID("device@iot.test/resume"), Password: "pw1",
		Servers: []string{proxy.Addr}, TLS: tc, Timeout: 5 * time.Second,
	})
	acked := make(chan uint64, 1000)
	c.OnAck = func(tags []uint64) {
		for _, tag := range tags {
			acked <- tag
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- c.Run(ctx) }()
	defer func() { cancel(); <-runDone }()

	first, err := c.WaitConnected(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !first.StreamManagement() {
		t.Fatal("stream management not enabled")
	}
	send := func(s *xmpp.Session, from, to int) {
		for i := from; i <= to; i++ {
			b := fmt.Appendf(nil, "<message to='operator@iot.test' type='chat'><body>%d</body></message>", i)
			if err := s.SendTracked(t.Context(), b, uint64(i)); err != nil {
				t.Fatalf("send %d: %v", i, err)
			}
		}
	}
	send(first, 1, 100)
	proxy.Cut() // some of 1..100 are surely not acknowledged yet

	var second *xmpp.Session
	deadline := time.Now().Add(10 * time.Second)
	for second == nil || second == first {
		if time.Now().After(deadline) {
			t.Fatal("no new session within 10s")
		}
		time.Sleep(20 * time.Millisecond)
		second = c.Session()
	}
	if !second.Resumed() || second.JID() != first.JID() {
		t.Fatalf("new session resumed=%v jid=%s, want resumed as %s", second.Resumed(), second.JID(), first.JID())
	}
	send(second, 101, 200)

	for want := uint64(1); want <= 200; want++ {
		select {
		case tag := <-acked:
			if tag != want {
				t.Fatalf("ack for %d, want %d", tag, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no ack for %d", want)
		}
	}
	for want := 1; want <= 200; want++ {
		select {
		case b := <-got:
			if b != fmt.Sprint(want) {
				t.Fatalf("operator got %q, want %d (duplicate or loss)", b, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("operator never got %d", want)
		}
	}
	select {
	case b := <-got:
		t.Fatalf("extra message %q", b)
	case <-time.After(300 * time.Millisecond):
	}
}
