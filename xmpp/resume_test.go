package xmpp

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

// serveConns accepts connections on a loopback listener, each on a peer
// offering stream management: it logs the client in and hands what the
// client asks for then (<resume/> or a bind request) to conn(i, p, asked)
// for the i-th connection (from 1). It returns the listener's address.
func serveConns(t *testing.T, pki testPKI, conn func(i int, p *peer, asked *Element)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for i := 1; ; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(20 * time.Second))
				p := &peer{sm: true, t: t}
				p.reset(c)
				if err := p.login(pki, "secret"); err != nil {
					t.Errorf("conn %d: %v", i, err)
					return
				}
				if asked, _, err := p.element(); err == nil {
					conn(i, p, asked)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// runClient runs a Client of device@iot.test/agent against addr until
// the test ends, with onConnect as its OnConnect.
func runClient(t *testing.T, pki testPKI, addr string, onConnect func(context.Context, *Session) error) {
	t.Helper()
	c := NewClient(Config{
		JID: MustParseJID("device@iot.test/agent"), Password: "secret",
		Servers: []string{addr}, TLS: &tls.Config{RootCAs: pki.roots}, Timeout: 5 * time.Second,
	})
	c.OnConnect = onConnect
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// seen is what OnConnect saw of a session.
type seen struct {
	stream  uint64
	resumed bool
}

// firstSessions runs a client against addr and returns what OnConnect
// saw of its first n sessions; after wait it fails, saying why().
func firstSessions(t *testing.T, pki testPKI, addr string, n int, wait time.Duration, why func() string) []seen {
	t.Helper()
	sessions := make(chan seen, 10)
	runClient(t, pki, addr, func(ctx context.Context, s *Session) error {
		sessions <- seen{s.Stream(), s.Resumed()}
		return nil
	})
	var got []seen
	timeout := time.After(wait)
	for len(got) < n {
		select {
		case s := <-sessions:
			got = append(got, s)
		case <-timeout:
			t.Fatalf("sessions %v: %s", got, why())
		}
	}
	return got
}

// resumeOrBind answers what the client asked for: <resumed/> to a
// <resume/>, else the bind and enable of stream sm-1. It reports which.
func (p *peer) resumeOrBind(asked *Element) (string, error) {
	if asked.Name == "resume" {
		return "resume", p.send("<resumed xmlns='urn:xmpp:sm:3' previd='" + asked.Attr("previd") + "' h='0'/>")
	}
	return "bind", p.bindAndEnable(asked, "sm-1")
}

// resumeLog records what each connection's client asked for after
// logging in: "resume" or "bind".
type resumeLog struct {
	mu    sync.Mutex
	asked []string
}

func (l *resumeLog) add(s string) {
	l.mu.Lock()
	l.asked = append(l.asked, s)
	l.mu.Unlock()
}

func (l *resumeLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.asked...)
}

// TestFailedSetupIsNotResumed: the link drops while OnConnect sets the
// session up (the roster request is never answered), before the client's
// close reaches the server, which keeps the stream resumable. Resuming it
// would skip the setup (initial presence) for good; the client starts a
// new stream instead, and OnConnect sends presence.
func TestFailedSetupIsNotResumed(t *testing.T) {
	pki := newTestPKI(t)
	var log resumeLog
	presence := make(chan int, 10)
	addr := serveConns(t, pki, func(i int, p *peer, asked *Element) {
		what, err := p.resumeOrBind(asked)
		log.add(what)
		if err != nil {
			t.Errorf("conn %d: %v", i, err)
			return
		}
		for {
			el, _, err := p.element()
			if err != nil {
				return
			}
			switch {
			case i == 1 && el.Name == "iq":
				return // the link drops with the roster request unanswered
			case el.Name == "iq" && el.Attr("type") == "get":
				p.send("<iq type='result' id='" + el.Attr("id") + "'><query xmlns='jabber:iq:roster'/></iq>")
			case el.Name == "presence":
				presence <- i
			}
		}
	})
	var mu sync.Mutex
	var resumed []bool
	runClient(t, pki, addr, func(ctx context.Context, s *Session) error {
		mu.Lock()
		resumed = append(resumed, s.Resumed())
		mu.Unlock()
		if s.Resumed() {
			return nil // as the agent does: a resumed stream keeps its presence
		}
		if _, err := s.SendIQ(ctx, Stanza("iq", "get", "", "").Add(NewElement(NSRoster, "query"))); err != nil {
			return err
		}
		return s.Send(ctx, Stanza("presence", "", "", ""))
	})
	select {
	case i := <-presence:
		if i != 2 {
			t.Errorf("presence on connection %d, want 2", i)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no initial presence on any connection")
	}
	mu.Lock()
	defer mu.Unlock()
	if got := log.get(); len(got) < 2 || got[1] != "bind" {
		t.Errorf("after a failed setup the client asked for %v, want a new stream (bind)", got)
	}
	if len(resumed) != 2 || resumed[0] || resumed[1] {
		t.Errorf("OnConnect saw resumed = %v, want [false false]", resumed)
	}
}

// TestUnansweredResumeIsGivenUp: a server that answers every <resume/>
// with a stream error (a cluster node that cannot find the session, a
// buggy server) would hold the agent off its account for good if it asked
// for the same stream again and again; after resumeGiveUp tries it starts
// a new stream. The new session's Stream differs from the old one's.
func TestUnansweredResumeIsGivenUp(t *testing.T) {
	pki := newTestPKI(t)
	var log resumeLog
	addr := serveConns(t, pki, func(i int, p *peer, asked *Element) {
		if asked.Name == "resume" {
			log.add("resume")
			p.send("<stream:error><internal-server-error xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>")
			return
		}
		log.add("bind")
		if err := p.bindAndEnable(asked, "sm-1"); err != nil {
			t.Errorf("conn %d: %v", i, err)
			return
		}
		if i == 1 {
			return // the link drops: the stream is left to resume
		}
		for {
			if _, _, err := p.element(); err != nil {
				return
			}
		}
	})
	got := firstSessions(t, pki, addr, 2, 15*time.Second, func() string {
		return fmt.Sprintf("asked %v; want a second session after %d failed resumptions", log.get(), resumeGiveUp)
	})
	want := []string{"bind"}
	for range resumeGiveUp {
		want = append(want, "resume")
	}
	want = append(want, "bind")
	if asked := log.get(); len(asked) != len(want) || asked[len(asked)-1] != "bind" || asked[1] != "resume" || asked[len(asked)-2] != "resume" {
		t.Errorf("connections asked for %v, want %v", asked, want)
	}
	if got[0].stream == got[1].stream || got[0].stream == 0 || got[1].stream == 0 {
		t.Errorf("streams of the two sessions = %v, want two different, non-zero", got)
	}
}

// TestResumedSessionKeepsStream: a session that resumes a stream has that
// stream's Stream and reports Resumed.
func TestResumedSessionKeepsStream(t *testing.T) {
	pki := newTestPKI(t)
	addr := serveConns(t, pki, func(i int, p *peer, asked *Element) {
		if _, err := p.resumeOrBind(asked); err != nil {
			t.Errorf("conn %d: %v", i, err)
			return
		}
		if i == 1 {
			return // the link drops
		}
		for {
			if _, _, err := p.element(); err != nil {
				return
			}
		}
	})
	got := firstSessions(t, pki, addr, 2, 10*time.Second, func() string { return "want two" })
	if got[0].resumed || !got[1].resumed || got[0].stream != got[1].stream || got[0].stream == 0 {
		t.Errorf("sessions (stream, resumed) = %v, want the second to resume the first's stream", got)
	}
}
