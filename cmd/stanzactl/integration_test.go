//go:build integration

package main

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
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

// stanzactl against a real agent through a private Prosody: every
// command, its output and its exit status.
func TestIntegrationStanzactl(t *testing.T) {
	srv := testserver.New(t, testserver.Options{Upload: true})
	testserver.MustRegister(t, srv, "device", "pw-device")
	testserver.MustRegister(t, srv, "operator", "pw-operator")
	dir := t.TempDir()
	chart := filepath.Join(dir, "chart.png")
	cfg := &config.Config{
		XMPP: config.XMPP{JID: "device@" + srv.Host + "/agent", Password: "pw-device", Server: config.Endpoints{srv.Addr},
			CAFile: srv.CAFile, PresenceStatus: "online"},
		Agent:   config.Agent{StateDir: filepath.Join(dir, "state"), HistoryMax: 1 << 20},
		ACL:     config.ACL{Operators: []string{"operator@" + srv.Host}},
		Devices: []config.Device{{Name: "greenhouse", Kind: "sim", Interval: config.Duration{Duration: 200 * time.Millisecond}}, {Name: "relay1", Kind: "sim-switch"}},
		Sinks:   []config.Sink{{Kind: "chat", To: "operator@" + srv.Host, Devices: []string{"greenhouse"}, Batch: 32}},
		Actions: []config.Action{
			{Name: "hello", Argv: []string{"/bin/echo", "hi"}, Timeout: config.Duration{Duration: 5 * time.Second}},
			{Name: "fail", Argv: []string{"/bin/false"}, Timeout: config.Duration{Duration: 5 * time.Second}},
		},
	}
	runAgent(t, agent.Options{Config: cfg, Version: "test"})
	op := operatorConfig(t, srv, dir)

	tests := []ctlCase{
		{[]string{"ping"}, 0, []string{"pong from device@"}},
		{[]string{"commands"}, 0, []string{"status", "read", "history", "set", "action", "reload"}},
		{[]string{"status"}, 0, []string{"Session: online as device@", "relay1 (writable)", "hello"}},
		{[]string{"read", "greenhouse"}, 0, []string{"greenhouse: temperature=", "humidity="}},
		{[]string{"read", "pump"}, 1, []string{"item-not-found", "pump"}},
		{[]string{"history", "greenhouse", "temperature", "1m"}, 0, []string{"time,field,min,avg,max,readings\n20", ",temperature,"}},
		{[]string{"-json", "history", "greenhouse", "1m"}, 0, []string{`"field": "humidity"`, `"field": "temperature"`, `"readings": 1`}},
		{[]string{"history", "greenhouse", "co2"}, 1, []string{"item-not-found", `greenhouse has no field "co2"; fields: humidity, temperature`}},
		{[]string{"history", "greenhouse", "temperature", "soon"}, 1, []string{`"soon" is not a duration`}},
		{[]string{"history"}, 2, []string{"usage: history"}},
		{[]string{"-o", chart, "plot", "greenhouse", "temperature", "1m"}, 0, []string{"http://127.0.0.1:"}},
		{[]string{"plot"}, 2, []string{"usage: plot"}},
		{[]string{"set", "relay1", "on"}, 0, []string{"ok, relay1 set to true"}},
		{[]string{"read", "relay1"}, 0, []string{"relay1: state=true"}},
		{[]string{"set", "relay1", "7"}, 1, []string{"bad-request", "7"}},
		{[]string{"exec", "set", "device=relay1", "value=off"}, 0, []string{"info: ok, relay1: state=false"}},
		{[]string{"exec", "set"}, 1, []string{"needs more input", "device=<list-single, required>", "(one of: relay1)"}},
		{[]string{"run", "hello"}, 0, []string{"Exit code: 0", "Output: hi"}},
		{[]string{"run", "fail"}, 1, []string{"Exit code: 1", "warn: fail: failed with exit code 1"}},
		{[]string{"reload"}, 1, []string{"feature-not-implemented", "no config file"}},
		{[]string{"-count", "3", "watch", "greenhouse"}, 0, []string{"Z greenhouse: temperature=", "humidity="}},
		{[]string{"fleet", "device@" + srv.Host + "/agent"}, 0, []string{"device@" + srv.Host + "/agent", "test, up", ": ok"}},
		{[]string{"fleet", "-wait", "500ms"}, 1, []string{"no agent online"}},
		{[]string{"fleet", "-canary", "1", "status"}, 2, []string{"-canary is for config push"}},
		{[]string{"set", "relay1"}, 2, []string{"usage: set"}},
		{[]string{"exec", "set", "device"}, 2, []string{"not var=value"}},
	}
	run1 := func(t *testing.T, tt ctlCase) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"-config", op}, tt.args...), &stdout, &stderr)
		out := stdout.String() + stderr.String()
		if code != tt.code {
			t.Fatalf("exit %d, want %d; output:\n%s", code, tt.code, out)
		}
		for _, w := range tt.want {
			if !strings.Contains(out, w) {
				t.Errorf("output lacks %q:\n%s", w, out)
			}
		}
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) { run1(t, tt) })
	}
	if f, err := os.Open(chart); err != nil {
		t.Errorf("plot -o wrote no file: %v", err)
	} else {
		if _, err := png.Decode(f); err != nil {
			t.Errorf("plot -o wrote no PNG: %v", err)
		}
		f.Close()
	}

	// Once the operator has subscribed to the agent (approved by its ACL),
	// fleet finds it by its presence, with the agent's health line.
	tc, _ := xmpp.TLSConfig(xmpp.TLSOptions{CAFile: srv.CAFile})
	s, err := xmpp.Dial(t.Context(), xmpp.Config{JID: xmpp.MustParseJID("operator@" + srv.Host + "/sub"),
		Password: "pw-operator", Servers: []string{srv.Addr}, TLS: tc})
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(t.Context())
	s.Send(t.Context(), xmpp.Stanza("presence", "subscribe", "device@"+srv.Host, ""))
	time.Sleep(500 * time.Millisecond)
	s.Close(t.Context())
	run1(t, ctlCase{[]string{"fleet"}, 0, []string{"device@" + srv.Host + "/agent", "ms ", ": ok"}})
}

// ctlCase is one stanzactl invocation: arguments, exit status, and
// substrings of stdout (exit 0/1) or stderr (exit 2 or an error).
type ctlCase struct {
	args []string
	code int
	want []string
}

// runAgent runs an agent for the rest of the test and returns it once it
// is online.
func runAgent(t *testing.T, opts agent.Options) *agent.Agent {
	t.Helper()
	a, err := agent.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	wctx, wcancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer wcancel()
	if _, err := a.WaitConnected(wctx); err != nil {
		t.Fatal(err)
	}
	return a
}

// operatorConfig writes stanzactl's config for operator@host, aimed at
// device@host/agent, into dir and returns its path.
func operatorConfig(t *testing.T, srv *testserver.Server, dir string) string {
	t.Helper()
	op := filepath.Join(dir, "op.toml")
	err := os.WriteFile(op, []byte(fmt.Sprintf("to = \"device@%s/agent\"\n[xmpp]\njid = \"operator@%s/ctl\"\npassword = \"pw-operator\"\nserver = %q\nca_file = %q\n",
		srv.Host, srv.Host, srv.Addr, srv.CAFile)), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	return op
}
