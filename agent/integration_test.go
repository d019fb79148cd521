//go:build integration

package agent_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stanzad/stanzad/agent"
	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/internal/testserver"
	"github.com/stanzad/stanzad/xmpp"
)

// peer is a second XMPP client written for the test: the operator (or a
// stranger) talking to the agent through Prosody.
type peer struct {
	sess *xmpp.Session
	msgs chan *xmpp.Element
	pres chan *xmpp.Element // presence stanzas; dropped when nobody reads them
}

func newPeer(t testing.TB, srv *testserver.Server, user string) *peer {
	t.Helper()
	p := &peer{msgs: make(chan *xmpp.Element, 1024), pres: make(chan *xmpp.Element, 256)}
	mux := xmpp.NewMux(xmpp.Identity{Category: "client", Type: "pc", Name: "test"}, xmpp.Software{Name: "test"})
	mux.Message = func(_ context.Context, _ *xmpp.Session, m *xmpp.Element) {
		select {
		case p.msgs <- m:
		default:
			t.Errorf("%s: message buffer full", user)
		}
	}
	mux.Presence = func(_ context.Context, _ *xmpp.Session, st *xmpp.Element) {
		select {
		case p.pres <- st:
		default:
		}
	}
	p.sess = dialTest(t, srv, user, "test", mux)
	return p
}

// dialTest registers user, logs in as user@host/resource with mux as the
// handler, serves the session until the test ends, and sends available
// presence, which makes the full JID routable for the agent's messages.
func dialTest(t testing.TB, srv *testserver.Server, user, resource string, mux *xmpp.Mux) *xmpp.Session {
	t.Helper()
	testserver.MustRegister(t, srv, user, "pw-"+user)
	tc, err := xmpp.TLSConfig(xmpp.TLSOptions{CAFile: srv.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	s, err := xmpp.Dial(ctx, xmpp.Config{
		JID: xmpp.MustParseJID(user + "@" + srv.Host + "/" + resource), Password: "pw-" + user,
		Servers: []string{srv.Addr}, TLS: tc, Handler: mux,
	})
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(sctx) }()
	t.Cleanup(func() { stop(); <-done })
	if err := s.SendRaw(ctx, []byte("<presence/>")); err != nil {
		t.Fatal(err)
	}
	return s
}

func (p *peer) say(t *testing.T, to, body string) {
	t.Helper()
	m := xmpp.Stanza("message", "chat", to, p.sess.NewID())
	m.Add(xmpp.NewElement(xmpp.NSClient, "body").SetText(body))
	if err := p.sess.Send(t.Context(), m); err != nil {
		t.Fatal(err)
	}
}

// next returns the next message accepted by keep, or fails after timeout.
func (p *peer) next(t *testing.T, timeout time.Duration, keep func(*xmpp.Element) bool) *xmpp.Element {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case m := <-p.msgs:
			if keep(m) {
				return m
			}
		case <-deadline:
			t.Fatalf("no matching message within %v", timeout)
			return nil
		}
	}
}

func isReading(m *xmpp.Element) bool { return m.Child(xmpp.NSSensorData, "fields") != nil }
func isText(m *xmpp.Element) bool    { return !isReading(m) && m.ChildText(xmpp.NSClient, "body") != "" }

func seqnr(t *testing.T, m *xmpp.Element) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(m.Child(xmpp.NSSensorData, "fields").Attr("seqnr"), 10, 64)
	if err != nil {
		t.Fatalf("reading without seqnr: %v", m)
	}
	return n
}

func agentConfig(srv *testserver.Server, stateDir string) *config.Config {
	cfg := &config.Config{
		XMPP: config.XMPP{
			JID: "device@" + srv.Host + "/agent", Password: config.Secret("pw-device"),
			Server: config.Endpoints{srv.Addr}, TLS: "starttls", CAFile: srv.CAFile, PresenceStatus: "online",
		},
		Agent: config.Agent{StateDir: stateDir},
		ACL:   config.ACL{Operators: []string{"operator@" + srv.Host}},
		Devices: []config.Device{
			{Name: "greenhouse", Kind: "sim", Interval: config.Duration{Duration: 100 * time.Millisecond}},
			{Name: "relay1", Kind: "sim-switch"},
		},
		Sinks: []config.Sink{{Kind: "chat", To: "operator@" + srv.Host, Devices: []string{"greenhouse"}}},
	}
	return cfg
}

// startAgent runs an agent until the returned stop is called; stop returns
// Run's error.
func startAgent(t *testing.T, cfg *config.Config) (stop func() error) {
	t.Helper()
	a, err := agent.New(agent.Options{Config: cfg, Version: "test", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var stopped bool
	var result error
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case result = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("agent did not stop within 10s")
			}
		}
		return result
	}
	t.Cleanup(func() { stop() })
	return stop
}

// runOnline runs an agent for the rest of the test and returns it once
// its session is up.
func runOnline(tb testing.TB, opts agent.Options) *agent.Agent {
	tb.Helper()
	a, err := agent.New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	tb.Cleanup(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(tb.Context(), 15*time.Second)
	defer wcancel()
	if _, err := a.WaitConnected(wctx); err != nil {
		tb.Fatal(err)
	}
	return a
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, nil))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func TestIntegrationAgent(t *testing.T) {
	eachServer(t, testserver.Options{}, testserver.EjabberdOptions{C2SShaper: -1}, testAgent)
}

func testAgent(t *testing.T, srv *testserver.Server) {
	testserver.MustRegister(t, srv, "device", "pw-device")
	op := newPeer(t, srv, "operator")
	stranger := newPeer(t, srv, "stranger")
	state := t.TempDir()
	agentJID := "device@" + srv.Host + "/agent"

	stop := startAgent(t, agentConfig(srv, state))

	// Readings arrive at the operator with a contiguous seqnr.
	first := op.next(t, 10*time.Second, isReading)
	if got := first.Attr("from"); got != agentJID {
		t.Errorf("reading from %q, want %q", got, agentJID)
	}
	if b := first.ChildText(xmpp.NSClient, "body"); !strings.HasPrefix(b, "greenhouse: temperature=") || !strings.Contains(b, "°C") {
		t.Errorf("reading body %q", b)
	}
	node := first.Child(xmpp.NSSensorData, "fields").Child(xmpp.NSSensorData, "node")
	if node == nil || node.Attr("nodeId") != "greenhouse" {
		t.Fatalf("reading has no greenhouse node: %v", first)
	}
	last := seqnr(t, first)
	for range 5 {
		n := seqnr(t, op.next(t, 5*time.Second, isReading))
		if n != last+1 {
			t.Fatalf("seqnr %d after %d", n, last)
		}
		last = n
	}

	t.Run("operator read", func(t *testing.T) {
		op.say(t, agentJID, "read greenhouse")
		reply := op.next(t, 5*time.Second, isText).ChildText(xmpp.NSClient, "body")
		if !strings.HasPrefix(reply, "greenhouse: temperature=") || !strings.Contains(reply, "humidity=") {
			t.Fatalf("reply to read: %q", reply)
		}
	})
	t.Run("operator set", func(t *testing.T) {
		op.say(t, agentJID, "set relay1 on")
		if reply := op.next(t, 5*time.Second, isText).ChildText(xmpp.NSClient, "body"); !strings.Contains(reply, "relay1: state=true") {
			t.Fatalf("reply to set: %q", reply)
		}
		op.say(t, agentJID, "read relay1")
		if reply := op.next(t, 5*time.Second, isText).ChildText(xmpp.NSClient, "body"); !strings.Contains(reply, "state=true") {
			t.Fatalf("relay1 after set: %q", reply)
		}
		op.say(t, agentJID, "set relay1 maybe")
		if reply := op.next(t, 5*time.Second, isText).ChildText(xmpp.NSClient, "body"); !strings.Contains(reply, "maybe") {
			t.Fatalf("reply to a bad value: %q", reply)
		}
		op.say(t, agentJID, "set pump on")
		if reply := op.next(t, 5*time.Second, isText).ChildText(xmpp.NSClient, "body"); !strings.Contains(reply, "unknown device") {
			t.Fatalf("reply to unknown device: %q", reply)
		}
	})
	t.Run("stranger", func(t *testing.T) {
		// IQ: forbidden, even for ping, and nothing else.
		for _, ns := range []string{"urn:xmpp:ping", "jabber:iq:version", "urn:example:unknown"} {
			iq := xmpp.Stanza("iq", "get", agentJID, stranger.sess.NewID())
			iq.Add(xmpp.NewElement(ns, "query"))
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			_, err := stranger.sess.SendIQ(ctx, iq)
			cancel()
			var se *xmpp.StanzaError
			if !errors.As(err, &se) || se.Condition != "forbidden" {
				t.Errorf("stranger IQ %s: %v, want forbidden", ns, err)
			}
		}
		// Chat: ignored. The operator's question, sent after the
		// stranger's, is answered; the stranger has still heard nothing.
		stranger.say(t, agentJID, "set relay1 off")
		op.say(t, agentJID, "read relay1")
		if reply := op.next(t, 5*time.Second, isText).ChildText(xmpp.NSClient, "body"); !strings.Contains(reply, "state=true") {
			t.Fatalf("stranger switched the relay: %q", reply)
		}
		select {
		case m := <-stranger.msgs:
			t.Fatalf("stranger got a message: %v", m)
		default:
		}
	})
	t.Run("operator IQ", func(t *testing.T) {
		iq := xmpp.Stanza("iq", "set", agentJID, op.sess.NewID())
		iq.Add(xmpp.NewElement("urn:example:unknown", "thing"))
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		_, err := op.sess.SendIQ(ctx, iq)
		var se *xmpp.StanzaError
		if !errors.As(err, &se) || se.Condition != "service-unavailable" {
			t.Errorf("unhandled IQ: %v, want service-unavailable", err)
		}
		ping := xmpp.Stanza("iq", "get", agentJID, op.sess.NewID())
		ping.Add(xmpp.NewElement("urn:xmpp:ping", "ping"))
		if _, err := op.sess.SendIQ(ctx, ping); err != nil {
			t.Errorf("ping: %v", err)
		}
	})

	// The sequence survives a restart of the agent.
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	for {
		select {
		case m := <-op.msgs:
			if isReading(m) {
				last = seqnr(t, m)
			}
			continue
		case <-time.After(300 * time.Millisecond):
		}
		break
	}
	startAgent(t, agentConfig(srv, state))
	if n := seqnr(t, op.next(t, 10*time.Second, isReading)); n != last+1 {
		t.Fatalf("after restart seqnr %d, want %d", n, last+1)
	}
}

func TestIntegrationAgentWrongPassword(t *testing.T) {
	srv := testserver.New(t, testserver.Options{})
	testserver.MustRegister(t, srv, "device", "right")
	cfg := agentConfig(srv, t.TempDir())
	cfg.XMPP.Password = config.Secret("wrong")
	a, err := agent.New(agent.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	// Run returns on its own: failing the first login is a config error.
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	err = a.Run(ctx)
	var se *xmpp.SASLError
	if !errors.As(err, &se) || se.Condition != "not-authorized" {
		t.Fatalf("Run with wrong password = %v, want not-authorized", err)
	}
	if strings.Contains(fmt.Sprint(err), "wrong") {
		t.Errorf("error %q shows the password", err)
	}
}
