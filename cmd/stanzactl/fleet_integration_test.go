//go:build integration

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stanzad/stanzad/agent"
	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/internal/testserver"
	"github.com/stanzad/stanzad/xmpp"
)

// fleetAgentConfig is the file of fleet agent name: operators as given.
func fleetAgentConfig(srv *testserver.Server, name, password, operator string) string {
	return fmt.Sprintf(`[xmpp]
jid = "%[1]s@%[2]s/agent"
password = %[3]q
server = %[4]q
ca_file = %[5]q

[agent]
state_dir = "state"
rollback_after = "3s"

[acl]
operators = ["%[6]s@%[2]s"]

[[device]]
name = "greenhouse"
kind = "sim"
interval = "1h"

[[device]]
name = "relay1"
kind = "sim-switch"

[[action]]
name = "hello"
argv = ["/bin/echo", "hi"]
`, name, srv.Host, password, srv.Addr, srv.CAFile, operator)
}

// One command to many agents: 5 agents in the operator's roster group
// "site" (gh1–gh3 healthy, gh4 whose ACL does not know the operator, gh5
// never started), and one that never answers; on Prosody and ejabberd.
func TestIntegrationFleet(t *testing.T) {
	t.Run("prosody", func(t *testing.T) {
		t.Parallel()
		testFleet(t, testserver.New(t, testserver.Options{}))
	})
	t.Run("ejabberd", func(t *testing.T) {
		t.Parallel()
		testFleet(t, testserver.NewEjabberd(t, testserver.EjabberdOptions{}))
	})
}

func testFleet(t *testing.T, srv *testserver.Server) {
	testserver.MustRegister(t, srv, "operator", "pw-operator")
	dir := t.TempDir()
	for i := 1; i <= 5; i++ {
		name := fmt.Sprintf("gh%d", i)
		testserver.MustRegister(t, srv, name, "pw-"+name)
		if i == 5 {
			continue // offline
		}
		operator := "operator"
		if i == 4 {
			operator = "boss"
		}
		adir := filepath.Join(dir, name)
		os.MkdirAll(adir, 0o700)
		path := filepath.Join(adir, "stanzad.toml")
		if err := os.WriteFile(path, []byte(fleetAgentConfig(srv, name, "pw-"+name, operator)), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		runAgent(t, agent.Options{Config: cfg, ConfigPath: path, Version: "test"})
	}
	// An agent that takes every command and never answers.
	testserver.MustRegister(t, srv, "hang", "pw-hang")
	tc, _ := xmpp.TLSConfig(xmpp.TLSOptions{CAFile: srv.CAFile})
	mux := xmpp.NewMux(xmpp.Identity{Category: "client", Type: "bot"}, xmpp.Software{Name: "hang"})
	mux.HandleIQ("set", xmpp.NSCommands, "command", func(context.Context, *xmpp.Session, *xmpp.Element) (*xmpp.Element, error) {
		return nil, xmpp.ErrHandled
	})
	hang, err := xmpp.Dial(t.Context(), xmpp.Config{JID: xmpp.MustParseJID("hang@" + srv.Host + "/agent"), Password: "pw-hang",
		Servers: []string{srv.Addr}, TLS: tc, Handler: mux})
	if err != nil {
		t.Fatal(err)
	}
	go hang.Serve(t.Context())
	hang.SendRaw(t.Context(), []byte("<presence/>"))

	// The operator puts the five in roster group "site" and subscribes.
	op, err := xmpp.Dial(t.Context(), xmpp.Config{JID: xmpp.MustParseJID("operator@" + srv.Host + "/setup"), Password: "pw-operator",
		Servers: []string{srv.Addr}, TLS: tc})
	if err != nil {
		t.Fatal(err)
	}
	go op.Serve(t.Context())
	for i := 1; i <= 5; i++ {
		bare := fmt.Sprintf("gh%d@%s", i, srv.Host)
		item := xmpp.NewElement(xmpp.NSRoster, "item", "jid", bare).Add(xmpp.NewElement(xmpp.NSRoster, "group").SetText("site"))
		if _, err := op.SendIQ(t.Context(), xmpp.Stanza("iq", "set", "", "").Add(xmpp.NewElement(xmpp.NSRoster, "query").Add(item))); err != nil {
			t.Fatal(err)
		}
		op.Send(t.Context(), xmpp.Stanza("presence", "subscribe", bare, ""))
	}
	time.Sleep(time.Second)
	op.Close(t.Context())

	conf := operatorConfig(t, srv, dir)
	fleet := func(args ...string) (int, string, string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		code := run(append([]string{"-config", conf, "fleet"}, args...), &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}
	rows := func(out string) map[string]fleetRow {
		t.Helper()
		m := map[string]fleetRow{}
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			var r fleetRow
			if err := json.Unmarshal([]byte(l), &r); err != nil {
				t.Fatalf("-json printed a line that is not JSON: %q (%v)", l, err)
			}
			m[strings.SplitN(r.Agent, "@", 2)[0]] = r
		}
		return m
	}

	// status of the group: the offline one is a row, exit 1.
	code, out, errOut := fleet("-group", "site", "status")
	t.Logf("fleet -group site status (exit %d):\n%s", code, out)
	if code != exitFailed || !regexp.MustCompile(`(?m)^gh5@`+srv.Host+` +offline`).MatchString(out) {
		t.Errorf("status: exit %d\n%s%s", code, out, errOut)
	}
	for _, n := range []string{"gh1", "gh2", "gh3"} {
		if !regexp.MustCompile(`(?m)^` + n + `@` + srv.Host + `/agent +ok +[0-9]+ms +test, up`).MatchString(out) {
			t.Errorf("status lacks %s ok:\n%s", n, out)
		}
	}

	// read, as JSON lines: one object per agent, nothing else.
	code, out, _ = fleet("-json", "-group", "site", "read", "greenhouse")
	got := rows(out)
	if code != exitFailed || len(got) != 5 || got["gh5"].Condition != "offline" {
		t.Errorf("read -json: exit %d, %v", code, got)
	}
	for _, n := range []string{"gh1", "gh2", "gh3"} {
		if r := got[n]; !r.OK || !strings.Contains(r.Result, "temperature") {
			t.Errorf("read %s: %+v", n, r)
		}
	}

	// Narrowed by -match: set, run, exec all succeed (exit 0).
	for _, args := range [][]string{
		{"set", "relay1", "on"},
		{"run", "hello"},
		{"exec", "set", "device=relay1", "value=off"},
	} {
		code, out, errOut := fleet(append([]string{"-group", "site", "-match", "gh[12]@*"}, args...)...)
		if code != 0 || len(regexp.MustCompile(`(?m)^gh[12]@\S+ +ok `).FindAllString(out, -1)) != 2 || strings.Contains(out, "gh3") {
			t.Errorf("%v: exit %d\n%s%s", args, code, out, errOut)
		}
	}

	// An agent whose ACL does not know the operator says so; one that
	// never answers times out: exit 3.
	code, out, _ = fleet("-json", "-timeout", "2s", "gh4@"+srv.Host+"/agent", "hang@"+srv.Host+"/agent", "gh1@"+srv.Host+"/agent", "status")
	got = rows(out)
	if code != exitTimedOut || got["gh4"].Condition != "forbidden" || got["hang"].Condition != "timeout" || !got["gh1"].OK {
		t.Errorf("forbidden and timeout: exit %d, %+v", code, got)
	}

	// A config the canaries roll back reaches nobody else.
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte(fleetAgentConfig(srv, "gh1", "wrong", "operator")), 0o600)
	code, out, errOut = fleet("-json", "-match", "gh[123]@*", "-canary", "2", "config", "push", bad)
	t.Logf("fleet -json -match 'gh[123]@*' -canary 2 config push bad.toml (exit %d):\n%s", code, out)
	got = rows(out)
	if code != exitFailed || got["gh1"].Condition != "rolled-back" || got["gh2"].Condition != "rolled-back" || got["gh3"].Condition != "not-pushed" {
		t.Errorf("canary push: exit %d, %+v %s", code, got, errOut)
	}
	prev, _ := os.ReadFile(filepath.Join(dir, "gh3", "stanzad.toml.prev"))
	if len(prev) != 0 {
		t.Error("gh3 got the config the canaries rolled back")
	}

	// A good config that changes [xmpp], pushed to one agent by name as a
	// canary: confirmed once the agent is online with it.
	good := filepath.Join(dir, "good.toml")
	os.WriteFile(good, []byte(strings.Replace(fleetAgentConfig(srv, "gh3", "pw-gh3", "operator"), "[agent]", "keepalive = \"20s\"\n\n[agent]", 1)+
		"\n[[device]]\nname = \"shed\"\nkind = \"sim\"\n"), 0o600)
	code, out, errOut = fleet("-json", "-canary", "1", "gh3@"+srv.Host+"/agent", "config", "push", good)
	got = rows(out)
	if r := got["gh3"]; code != 0 || !r.OK || !strings.Contains(r.Result, "added: device shed") || !strings.Contains(r.Result, "is applied and online") {
		t.Errorf("good push: exit %d, %+v %s", code, r, errOut)
	}
	t.Logf("a fleet read:\n%s", func() string { _, out, _ := fleet("-group", "site", "read", "greenhouse"); return out }())
}
