//go:build integration

package testserver

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stanzad/stanzad/xmpp"
)

// ejabberdClient logs user in with the project's xmpp package over
// STARTTLS (direct: over the direct TLS port), serves the session until
// the test ends and returns it with the messages it receives.
func ejabberdClient(t *testing.T, s *Server, user, password string, direct bool) (*xmpp.Session, <-chan *xmpp.Element) {
	t.Helper()
	msgs := make(chan *xmpp.Element, 16)
	mux := xmpp.NewMux(xmpp.Identity{Category: "client", Type: "pc", Name: "test"}, xmpp.Software{Name: "test"})
	mux.Message = func(_ context.Context, _ *xmpp.Session, m *xmpp.Element) {
		select {
		case msgs <- m:
		default:
			t.Errorf("%s: message buffer full", user)
		}
	}
	sess, err := dialEjabberd(t, s, user, password, direct, mux)
	if err != nil {
		t.Fatalf("login %s: %v\n%s", user, err, s.LogTail(20))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sess.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: Serve: %v", user, err)
		}
	})
	return sess, msgs
}

func dialEjabberd(t *testing.T, s *Server, user, password string, direct bool, h xmpp.Handler) (*xmpp.Session, error) {
	t.Helper()
	tc, err := xmpp.TLSConfig(xmpp.TLSOptions{CAFile: s.CAFile})
	if err != nil {
		t.Fatal(err)
	}
	addr := s.Addr
	if direct {
		addr = s.DirectTLSAddr
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	return xmpp.Dial(ctx, xmpp.Config{
		JID:       xmpp.MustParseJID(user + "@" + s.Host + "/test"),
		Password:  password,
		Servers:   []string{addr},
		DirectTLS: direct,
		TLS:       tc,
		Handler:   h,
	})
}

func nextMessage(t *testing.T, msgs <-chan *xmpp.Element, what string) *xmpp.Element {
	t.Helper()
	select {
	case m := <-msgs:
		return m
	case <-time.After(5 * time.Second):
		t.Fatalf("no %s within 5s", what)
		return nil
	}
}

// waitSession waits until node s lists the session jid among its
// connected users (the cluster's, for a node of one).
func waitSession(t *testing.T, s *Server, jid string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := s.eng.(*ejabberdNode).run("connected_users")
		if err == nil && strings.Contains(out, jid) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s does not list %s as connected: %v: %s", s.Node, jid, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func chat(t *testing.T, from *xmpp.Session, to, body string) {
	t.Helper()
	m := xmpp.Stanza("message", "chat", to, from.NewID())
	m.Add(xmpp.NewElement(xmpp.NSClient, "body").SetText(body))
	if err := from.Send(t.Context(), m); err != nil {
		t.Fatal(err)
	}
}

// TestIntegrationEjabberd runs one node with an offline cap of 2 and checks
// what the agent's tests rely on: SCRAM-SHA-256 over STARTTLS and direct
// TLS, chat between two accounts, stream management, and the offline cap.
func TestIntegrationEjabberd(t *testing.T) {
	t0 := time.Now()
	s := NewEjabberd(t, EjabberdOptions{MaxOfflineMessages: 2, C2SShaper: -1, MUC: true, PubSub: true, Admins: []string{"alice@iot.test"}})
	t.Logf("ejabberd node %s ready %v after NewEjabberd was called", s.Node, time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	MustRegister(t, s, "alice", "alice-secret")
	MustRegister(t, s, "bob", "bob secret with spaces")
	MustRegister(t, s, "carol", "carol-secret")
	t.Logf("3 accounts registered in %v", time.Since(t0).Round(time.Millisecond))

	t.Run("features", func(t *testing.T) {
		features := checkStartTLS(t, s)
		if !strings.Contains(features, "<mechanism>SCRAM-SHA-256</mechanism>") {
			t.Errorf("features over TLS lack SCRAM-SHA-256: %q", features)
		}
		if strings.Contains(features, "<mechanism>SCRAM-SHA-1</mechanism>") {
			t.Errorf("features offer SCRAM-SHA-1 too: %q", features)
		}
		for _, f := range []string{"ejabberd.yml", "ejabberdctl.cfg", "ejabberd.pid", "logs/ejabberd.log", "spool", "ca.pem", "server.pem"} {
			if _, err := os.Stat(filepath.Join(s.Dir, f)); err != nil {
				t.Errorf("private dir: %v", err)
			}
		}
		if got := readPID(filepath.Join(s.Dir, "ejabberd.pid")); got != s.PID() || got == 0 {
			t.Errorf("PID() = %d, PID file says %d", s.PID(), got)
		}
	})

	t.Run("chat", func(t *testing.T) {
		alice, _ := ejabberdClient(t, s, "alice", "alice-secret", false)
		bob, bobMsgs := ejabberdClient(t, s, "bob", "bob secret with spaces", true)
		if m := alice.Mechanism(); !strings.HasPrefix(m, "SCRAM-SHA-256") {
			t.Errorf("mechanism %q, want SCRAM-SHA-256[-PLUS]", m)
		}
		if v := alice.TLSState().Version; v < tls.VersionTLS12 {
			t.Errorf("TLS version %x", v)
		}
		if alice.Features().Child(xmpp.NSSM, "sm") == nil {
			t.Errorf("stream management not offered: %v", alice.Features())
		}
		if err := bob.SendRaw(t.Context(), []byte("<presence/>")); err != nil {
			t.Fatal(err)
		}
		// Presence is routed asynchronously; a message sent to the full
		// JID is delivered either way.
		chat(t, alice, bob.JID().String(), "hello bob")
		m := nextMessage(t, bobMsgs, "chat message")
		if got := m.ChildText(xmpp.NSClient, "body"); got != "hello bob" || m.Attr("type") != "chat" {
			t.Errorf("bob got %v, want chat %q", m, "hello bob")
		}
		if from := m.Attr("from"); from != alice.JID().String() {
			t.Errorf("from %q, want %q", from, alice.JID())
		}
	})

	t.Run("stream management", func(t *testing.T) {
		tc, err := xmpp.TLSConfig(xmpp.TLSOptions{CAFile: s.CAFile})
		if err != nil {
			t.Fatal(err)
		}
		c := xmpp.NewClient(xmpp.Config{
			JID: xmpp.MustParseJID("alice@" + s.Host + "/sm"), Password: "alice-secret",
			Servers: []string{s.Addr}, TLS: tc, Timeout: 5 * time.Second,
		})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}()
		wctx, wcancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer wcancel()
		sess, err := c.WaitConnected(wctx)
		if err != nil {
			t.Fatalf("WaitConnected: %v\n%s", err, s.LogTail(20))
		}
		if !sess.StreamManagement() {
			t.Error("stream management not enabled")
		}
	})

	t.Run("offline cap", func(t *testing.T) {
		alice, aliceMsgs := ejabberdClient(t, s, "alice", "alice-secret", false)
		carol := "carol@" + s.Host
		for _, body := range []string{"one", "two", "three"} {
			chat(t, alice, carol, body)
		}
		bounce := nextMessage(t, aliceMsgs, "bounce of the third message")
		t.Logf("bounce: %s", bounce)
		se := xmpp.ParseStanzaError(bounce)
		if bounce.Attr("type") != "error" || se.Type != "wait" || se.Condition != "resource-constraint" {
			t.Errorf("bounce %v: want type error, <error type='wait'><resource-constraint/>", bounce)
		}
		if got := bounce.ChildText(xmpp.NSClient, "body"); got != "three" {
			t.Errorf("bounced body %q, want the third message", got)
		}
		select {
		case m := <-aliceMsgs:
			t.Errorf("second bounce or message: %v", m)
		case <-time.After(300 * time.Millisecond):
		}

		c, carolMsgs := ejabberdClient(t, s, "carol", "carol-secret", false)
		if err := c.SendRaw(t.Context(), []byte("<presence/>")); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"one", "two"} {
			m := nextMessage(t, carolMsgs, "offline message "+want)
			if got := m.ChildText(xmpp.NSClient, "body"); got != want || m.Child(xmpp.NSDelay, "delay") == nil {
				t.Errorf("offline message %v, want %q with <delay/>", m, want)
			}
		}
	})

	t.Run("register again sets the password", func(t *testing.T) {
		MustRegister(t, s, "bob", "bob-new")
		sess, err := dialEjabberd(t, s, "bob", "bob-new", false, nil)
		if err != nil {
			t.Fatalf("login with the new password: %v", err)
		}
		sess.Close(t.Context())
		_, err = dialEjabberd(t, s, "bob", "bob secret with spaces", false, nil)
		var se *xmpp.SASLError
		if !errors.As(err, &se) || se.Condition != "not-authorized" {
			t.Errorf("login with the old password = %v, want not-authorized", err)
		}
	})
}

// TestIntegrationEjabberdLifecycle checks registration before Start, Kill,
// Restart with the accounts kept, Stop of a SIGSTOPped node, and that the
// harness leaves no epmd behind that it started.
func TestIntegrationEjabberdLifecycle(t *testing.T) {
	epmdBefore := epmdRunning()
	s, err := ConfigureEjabberd(EjabberdOptions{Dir: t.TempDir(), PasswordHash: "SHA-1", C2SShaper: 100000, Log: tbWriter{t}})
	if err != nil {
		notInstalled(t, err)
		t.Fatalf("ConfigureEjabberd: %v", err)
	}
	t.Cleanup(func() { s.Stop() })
	if err := s.Register("early", "pw-early"); err != nil {
		t.Fatalf("Register before Start: %v", err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	login := func(user, pw string) {
		t.Helper()
		sess, err := dialEjabberd(t, s, user, pw, false, nil)
		if err != nil {
			t.Fatalf("login %s: %v\n%s", user, err, s.LogTail(20))
		}
		if m := sess.Mechanism(); !strings.HasPrefix(m, "SCRAM-SHA-1") {
			t.Errorf("mechanism %q, want SCRAM-SHA-1[-PLUS]", m)
		}
		sess.Close(t.Context())
	}
	login("early", "pw-early")
	if err := s.Register("bad\nname", "pw"); err == nil {
		t.Error("Register with a newline in the user name succeeded, want error")
	}

	pid := s.PID()
	if err := s.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if !exited(pid) {
		t.Fatalf("beam pid %d alive after Kill", pid)
	}
	if c, err := net.DialTimeout("tcp", s.Addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("%s accepts after Kill", s.Addr)
	}
	if err := s.Signal(syscall.SIGTERM); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Signal after Kill = %v, want ErrNotRunning", err)
	}
	if err := s.Register("late", "pw-late"); err != nil {
		t.Fatalf("Register while stopped: %v", err)
	}
	t0 := time.Now()
	if err := s.Restart(t.Context()); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	t.Logf("restart after SIGKILL took %v", time.Since(t0).Round(time.Millisecond))
	if s.PID() == 0 || s.PID() == pid {
		t.Errorf("PID after Restart = %d, want a new one (old %d)", s.PID(), pid)
	}
	login("early", "pw-early") // kept in the spool across the kill
	login("late", "pw-late")

	// A stopped (SIGSTOP) node still stops promptly: Stop sends SIGCONT.
	if err := s.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("Signal(SIGSTOP): %v", err)
	}
	pid = s.PID()
	t0 = time.Now()
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	t.Logf("stop took %v", time.Since(t0).Round(time.Millisecond))
	if !exited(pid) {
		t.Errorf("beam pid %d alive after Stop", pid)
	}
	if got := s.PID(); got != 0 {
		t.Errorf("PID after Stop = %d, want 0", got)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if tail := s.LogTail(5); !strings.Contains(tail, "is stopped") {
		t.Errorf("LogTail(5) = %q, want the clean stop", tail)
	}
	// Another test process may have started a node meanwhile, which keeps
	// epmd (it refuses -kill while nodes are registered).
	if out, _ := exec.Command("/usr/bin/epmd", "-names").CombinedOutput(); !epmdBefore && epmdRunning() && !strings.Contains(string(out), "name ") {
		t.Errorf("epmd still runs after Stop, with no nodes, though it did not before the test: %s", out)
	}
}

// TestIntegrationEjabberdCluster: a second node joins the first; accounts
// and routing are the cluster's; when the first node is killed the
// second serves on, and the killed node rejoins when started again.
func TestIntegrationEjabberdCluster(t *testing.T) {
	a := NewEjabberd(t, EjabberdOptions{C2SShaper: -1})
	b := NewEjabberd(t, EjabberdOptions{C2SShaper: -1, Cluster: a})
	if a.Addr == b.Addr || a.Node == b.Node || a.Dir == b.Dir {
		t.Fatalf("nodes share an address, name or directory: %s %s, %s %s", a.Addr, b.Addr, a.Node, b.Node)
	}
	MustRegister(t, a, "alice", "pw-alice") // on one node, for the cluster
	MustRegister(t, b, "bob", "pw-bob")

	alice, err := dialEjabberd(t, a, "alice", "pw-alice", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	go alice.Serve(t.Context()) // ends with an error when node a is killed
	_, bobMsgs := ejabberdClient(t, b, "bob", "pw-bob", false)
	// Node a routes to bob once the cluster's session table has his
	// session from node b; on a loaded machine that takes a moment, and a
	// chat sent before it goes to bob's offline storage.
	waitSession(t, a, "bob@"+a.Host+"/test")
	chat(t, alice, "bob@"+a.Host+"/test", "across the cluster")
	if m := nextMessage(t, bobMsgs, "message routed from node a to node b"); m.ChildText("", "body") != "across the cluster" {
		t.Fatalf("bob got %s", m)
	}

	if err := a.Kill(); err != nil {
		t.Fatal(err)
	}
	// The account created through node a logs in on node b.
	alice2, _ := ejabberdClient(t, b, "alice", "pw-alice", true)
	chat(t, alice2, "bob@"+a.Host+"/test", "after the kill")
	if m := nextMessage(t, bobMsgs, "message on the surviving node"); m.ChildText("", "body") != "after the kill" {
		t.Fatalf("bob got %s", m)
	}

	if err := a.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	var out string
	out, err = a.eng.(*ejabberdNode).run("list_cluster")
	if err != nil || !strings.Contains(out, a.Node) || !strings.Contains(out, b.Node) {
		t.Fatalf("list_cluster after restart: %v: %s", err, out)
	}
	carol := "carol"
	MustRegister(t, b, carol, "pw-carol")
	if _, err := dialEjabberd(t, a, carol, "pw-carol", false, nil); err != nil {
		t.Fatalf("account made on node b while a was down, logging in on a: %v", err)
	}
}
