//go:build integration

package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stanzad/stanzad/agent"
	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/internal/testserver"
	"github.com/stanzad/stanzad/xmpp"
)

// pushConfig is the agent's file in the config push test: an inline
// password (so config get has a secret to hide) and a short rollback.
func pushConfig(srv *testserver.Server, dir, password, server, extra string) string {
	return fmt.Sprintf(`# the board in the shed
[xmpp]
jid = "device@%[1]s/agent"
password = %[2]q
server = %[3]q
ca_file = %[4]q

[agent]
state_dir = %[5]q
rollback_after = "4s"

[acl]
operators = ["operator@%[1]s"]
viewers = ["viewer@%[1]s"]

[[device]]
name = "greenhouse"
kind = "sim"
interval = "1h"
%[6]s`, srv.Host, password, server, srv.CAFile, filepath.Join(dir, "state"), extra)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// inbox logs in as user and collects the chat bodies it receives.
func inbox(t *testing.T, srv *testserver.Server, user string) chan string {
	t.Helper()
	bodies := make(chan string, 64)
	mux := xmpp.NewMux(xmpp.Identity{Category: "client", Type: "pc"}, xmpp.Software{Name: "test"})
	mux.Message = func(_ context.Context, _ *xmpp.Session, m *xmpp.Element) {
		if b := m.ChildText(xmpp.NSClient, "body"); b != "" {
			bodies <- b
		}
	}
	tc, _ := xmpp.TLSConfig(xmpp.TLSOptions{CAFile: srv.CAFile})
	s, err := xmpp.Dial(t.Context(), xmpp.Config{JID: xmpp.MustParseJID(user + "@" + srv.Host + "/inbox"),
		Password: "pw-" + user, Servers: []string{srv.Addr}, TLS: tc, Handler: mux})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Serve(ctx) }()
	t.Cleanup(func() { stop(); <-done })
	s.SendRaw(t.Context(), []byte("<presence/>"))
	return bodies
}

// stanzactl config get and push against a running agent: secrets stay
// hidden and are kept, a good push applies, bad ones change nothing, a
// push that cannot get the agent online is rolled back and the operator
// is told, and only operators may do any of it.
func TestIntegrationConfigPush(t *testing.T) {
	srv := testserver.New(t, testserver.Options{})
	testserver.MustRegister(t, srv, "device", "pw-device")
	testserver.MustRegister(t, srv, "operator", "pw-operator")
	testserver.MustRegister(t, srv, "viewer", "pw-viewer")
	testserver.MustRegister(t, srv, "stranger", "pw-stranger")
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "stanzad.toml")
	first := pushConfig(srv, dir, "pw-device", srv.Addr, "")
	if err := os.WriteFile(cfgPath, []byte(first), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	a := runAgent(t, agent.Options{Config: cfg, ConfigPath: cfgPath, Version: "test",
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	op := operatorConfig(t, srv, dir)
	told := inbox(t, srv, "operator")
	ctl := func(conf string, args ...string) (int, string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"-config", conf}, args...), &stdout, &stderr)
		return code, stdout.String() + stderr.String()
	}
	push := func(body string) (int, string) {
		t.Helper()
		p := filepath.Join(dir, "new.toml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return ctl(op, "config", "push", p)
	}
	onDisk := func() string {
		b, err := os.ReadFile(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	code, shown := ctl(op, "config", "get")
	if code != 0 || strings.Contains(shown, "pw-device") || !strings.Contains(shown, `password = "<secret>"`) ||
		!strings.Contains(shown, "# the board in the shed") {
		t.Fatalf("config get: exit %d:\n%s", code, shown)
	}

	// A good push, secret left as shown: applied, written, old file kept.
	code, out := push(shown + "\n[[device]]\nname = \"relay1\"\nkind = \"sim-switch\"\n")
	if code != 0 || !strings.Contains(out, "added: device relay1") {
		t.Fatalf("push: exit %d: %s", code, out)
	}
	if code, out := ctl(op, "set", "relay1", "on"); code != 0 {
		t.Errorf("set on the pushed device: exit %d: %s", code, out)
	}
	if d := onDisk(); !strings.Contains(d, `password = "pw-device"`) || !strings.Contains(d, "relay1") {
		t.Errorf("file after push:\n%s", d)
	}
	if prev, _ := os.ReadFile(cfgPath + ".prev"); string(prev) != first {
		t.Errorf("stanzad.toml.prev is not the old file:\n%s", prev)
	}
	running := onDisk()

	// Bad pushes: nothing changes, the answer says why and where.
	for _, tt := range []struct{ name, body, want string }{
		{"unknown key", shown + "\n[[device]]\nname = \"x\"\nkind = \"sim\"\ncolour = \"red\"\n", "bad-request"},
		{"no operators", strings.Replace(shown, `operators = ["operator@`+srv.Host+`"]`, "operators = []", 1), "acl.operators is empty"},
		{"unreadable password file", strings.Replace(shown, `password = "<secret>"`, `password_file = "/nonexistent/password"`, 1), "/nonexistent/password"},
	} {
		code, out := push(tt.body)
		if code != 1 || !strings.Contains(out, tt.want) {
			t.Errorf("%s: exit %d, want 1 and %q: %s", tt.name, code, tt.want, out)
		}
		if onDisk() != running {
			t.Errorf("%s: the file changed", tt.name)
		}
	}
	code, out = push(shown + "\ncolour = \"red\"\n")
	if code != 1 || !strings.Contains(out, "pushed config:") {
		t.Errorf("an error without its line: %s", out)
	}

	// Viewers and strangers may not see or push the config.
	for _, who := range []string{"viewer", "stranger"} {
		conf := filepath.Join(dir, who+".toml")
		os.WriteFile(conf, []byte(fmt.Sprintf("to = \"device@%s/agent\"\n[xmpp]\njid = \"%s@%s/ctl\"\npassword = \"pw-%s\"\nserver = %q\nca_file = %q\n",
			srv.Host, who, srv.Host, who, srv.Addr, srv.CAFile)), 0o600)
		if code, out := ctl(conf, "config", "get"); code != 1 || !strings.Contains(out, "forbidden") {
			t.Errorf("%s: config get: exit %d: %s", who, code, out)
		}
		if code, out := ctl(conf, "config", "push", cfgPath); code != 1 || !strings.Contains(out, "forbidden") {
			t.Errorf("%s: config push: exit %d: %s", who, code, out)
		}
	}

	// A wrong password: the push is applied, the new login fails, the
	// old file comes back and the operator hears about it.
	before, _ := a.WaitConnected(t.Context())
	code, out = push(strings.Replace(running, `password = "pw-device"`, `password = "wrong"`, 1))
	if code != 0 || !strings.Contains(out, "restarted: xmpp session") || !strings.Contains(out, "goes back to the previous config") {
		t.Fatalf("push of a wrong password: exit %d: %s", code, out)
	}
	waitTold := func(want string) {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			select {
			case b := <-told:
				if strings.Contains(b, want) {
					return
				}
			case <-deadline:
				t.Fatalf("the operator was not told %q", want)
			}
		}
	}
	waitTold("was rolled back: the server refused the login")
	if s, _ := a.WaitConnected(t.Context()); s == before {
		t.Error("the session was not replaced")
	}
	if d := onDisk(); d != running {
		t.Errorf("file after the rollback:\n%s", d)
	}
	if code, out := ctl(op, "status"); code != 0 || !strings.Contains(out, "rolled back") {
		t.Errorf("status after the rollback: %s", out)
	}

	// A server that cannot be reached: rolled back after rollback_after.
	start := time.Now()
	code, out = push(strings.Replace(running, `server = "`+srv.Addr+`"`, `server = "127.0.0.1:1"`, 1))
	if code != 0 {
		t.Fatalf("push of an unreachable server: exit %d: %s", code, out)
	}
	waitTold("not online within 4s with it")
	if took := time.Since(start); took < 4*time.Second {
		t.Errorf("rolled back after %v, before rollback_after", took)
	}
	if d := onDisk(); d != running {
		t.Errorf("file after the second rollback:\n%s", d)
	}
	if code, out := ctl(op, "read", "relay1"); code != 0 || !strings.Contains(out, "relay1: state=") {
		t.Errorf("the agent does not answer after the rollback: %s", out)
	}
}
