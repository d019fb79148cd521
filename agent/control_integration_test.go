//go:build integration

package agent_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stanzad/stanzad/agent"
	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/internal/testserver"
	"github.com/stanzad/stanzad/xmpp"
)

// controlConfig is the TOML of the control-plane test agent; rate and
// burst vary so a reload can tighten the rate limit.
func controlConfig(srv *testserver.Server, dir string, rate float64, burst int, extra string) string {
	return configHead(srv, dir) + fmt.Sprintf(`
[acl]
operators = ["operator@%[1]s"]
viewers = ["viewer@%[1]s"]
command_rate = %[2]g
command_burst = %[3]d

[[device]]
name = "greenhouse"
kind = "sim"
interval = "1h"

[[device]]
name = "relay1"
kind = "sim-switch"

[[action]]
name = "hello"
argv = ["/bin/echo", "hello from", "an action"]

[[action]]
name = "fail"
argv = ["/bin/sh", "-c", "echo oops >&2; exit 3"]

[[action]]
name = "hang"
argv = ["/bin/sleep", "30"]
timeout = "500ms"
%[4]s`, srv.Host, rate, burst, extra)
}

// configHead is the [xmpp] and [agent] sections of a test agent's config
// file: device@host/agent, its password in the file "password" beside
// the config, its state in dir/state.
func configHead(srv *testserver.Server, dir string) string {
	return fmt.Sprintf(`
[xmpp]
jid = "device@%s/agent"
password_file = "password"
server = "%s"
ca_file = "%s"

[agent]
state_dir = "%s"
`, srv.Host, srv.Addr, srv.CAFile, filepath.Join(dir, "state"))
}

// iq sends an IQ from p to the agent and returns the payload of the
// result or the stanza error.
func (p *peer) iq(t *testing.T, typ, to string, payload *xmpp.Element) (*xmpp.Element, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	res, err := p.sess.SendIQ(ctx, xmpp.Stanza("iq", typ, to, p.sess.NewID()).Add(payload))
	if err != nil {
		return nil, err
	}
	return res.FirstChild(), nil
}

// command runs one XEP-0050 stage; fields are var/value pairs of a
// submitted form (none: no form).
func (p *peer) command(t *testing.T, to, node, action, sid string, fields ...string) (*xmpp.Element, error) {
	t.Helper()
	c := xmpp.NewElement(xmpp.NSCommands, "command", "node", node)
	c.SetAttr("action", action)
	c.SetAttr("sessionid", sid)
	if len(fields) > 0 {
		f := &xmpp.Form{Type: xmpp.FormSubmit}
		for i := 0; i+1 < len(fields); i += 2 {
			f.Fields = append(f.Fields, xmpp.FormField{Var: fields[i], Values: []string{fields[i+1]}})
		}
		c.Add(f.Element())
	}
	return p.iq(t, "set", to, c)
}

func resultForm(t *testing.T, res *xmpp.Element) *xmpp.Form {
	t.Helper()
	f, err := xmpp.ParseForm(res.Child(xmpp.NSData, "x"))
	if err != nil {
		t.Fatalf("command answer without a form: %v\n%s", err, res)
	}
	return f
}

func wantStanzaError(t *testing.T, what string, err error, cond, text string) {
	t.Helper()
	var se *xmpp.StanzaError
	if !errors.As(err, &se) || se.Condition != cond || !strings.Contains(se.Text, text) {
		t.Errorf("%s: error %v, want %s with text containing %q", what, err, cond, text)
	}
}

func (p *peer) ask(t *testing.T, to, body string) string {
	t.Helper()
	p.say(t, to, body)
	return p.next(t, 5*time.Second, isText).ChildText(xmpp.NSClient, "body")
}

func TestIntegrationControl(t *testing.T) {
	eachServer(t, testserver.Options{}, testserver.EjabberdOptions{C2SShaper: -1}, testControl)
}

func testControl(t *testing.T, srv *testserver.Server) {
	testserver.MustRegister(t, srv, "device", "pw-device")
	op := newPeer(t, srv, "operator")
	viewer := newPeer(t, srv, "viewer")
	stranger := newPeer(t, srv, "stranger")
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "stanzad.toml")
	writeFile(t, filepath.Join(dir, "password"), "pw-device")
	writeFile(t, cfgPath, controlConfig(srv, dir, 1000, 1000, ""))
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	a := runOnline(t, agent.Options{Config: cfg, ConfigPath: cfgPath, Version: "test", Logger: testLogger(t)})
	to := "device@" + srv.Host + "/agent"

	t.Run("disco", func(t *testing.T) {
		info, err := op.iq(t, "get", to, xmpp.NewElement(xmpp.NSDiscoInf, "query"))
		if err != nil {
			t.Fatal(err)
		}
		id := info.Child(xmpp.NSDiscoInf, "identity")
		if id.Attr("category") != "client" || id.Attr("type") != "bot" {
			t.Errorf("identity %v, want client/bot", id)
		}
		var features []string
		for _, f := range info.Children {
			if f.Name == "feature" {
				features = append(features, f.Attr("var"))
			}
		}
		for _, want := range []string{xmpp.NSCommands, xmpp.NSData, xmpp.NSSensorData, xmpp.NSControl,
			xmpp.NSCaps, xmpp.NSPing, xmpp.NSTime, xmpp.NSVersion, xmpp.NSDiscoIt} {
			if !slices.Contains(features, want) {
				t.Errorf("disco#info lacks %s: %v", want, features)
			}
		}
		list := func(p *peer) []string {
			items, err := p.iq(t, "get", to, xmpp.NewElement(xmpp.NSDiscoIt, "query", "node", xmpp.NSCommands))
			if err != nil {
				t.Fatal(err)
			}
			var nodes []string
			for _, it := range items.Children {
				if it.Attr("jid") != to {
					t.Errorf("command item jid %q, want %q", it.Attr("jid"), to)
				}
				nodes = append(nodes, it.Attr("node"))
			}
			return nodes
		}
		if got := list(op); !slices.Equal(got, []string{"status", "read", "history", "plot", "set", "action", "reload", "config"}) {
			t.Errorf("operator's commands: %v", got)
		}
		if got := list(viewer); !slices.Equal(got, []string{"status", "read", "history", "plot"}) {
			t.Errorf("viewer's commands: %v", got)
		}
		ni, err := op.iq(t, "get", to, xmpp.NewElement(xmpp.NSDiscoInf, "query", "node", "set"))
		if err != nil || ni.Child(xmpp.NSDiscoInf, "identity").Attr("type") != "command-node" {
			t.Errorf("disco#info on the set node: %v, %v", ni, err)
		}
	})

	t.Run("status", func(t *testing.T) {
		res, err := op.command(t, to, "status", "execute", "")
		if err != nil {
			t.Fatal(err)
		}
		f := resultForm(t, res)
		if res.Attr("status") != "completed" || f.Type != xmpp.FormResult || f.Value("session") != "online as "+to ||
			!slices.Contains(f.Values("devices"), "relay1 (writable)") {
			t.Errorf("status: %s", res)
		}
	})

	t.Run("read", func(t *testing.T) {
		res, err := op.command(t, to, "read", "execute", "")
		if err != nil {
			t.Fatal(err)
		}
		if res.Attr("status") != "executing" || len(resultForm(t, res).Field("device").Options) != 2 {
			t.Fatalf("read form: %s", res)
		}
		res, err = op.command(t, to, "read", "complete", res.Attr("sessionid"), "device", "greenhouse")
		if err != nil {
			t.Fatal(err)
		}
		vals := resultForm(t, res).Values("greenhouse")
		if res.Attr("status") != "completed" || len(vals) != 2 || !strings.HasPrefix(vals[0], "temperature = ") {
			t.Errorf("read result: %s", res)
		}
		_, err = op.command(t, to, "read", "execute", "", "device", "pump")
		wantStanzaError(t, "read pump", err, "item-not-found", "pump")
	})

	t.Run("set in two stages", func(t *testing.T) {
		res, err := op.command(t, to, "set", "execute", "")
		if err != nil {
			t.Fatal(err)
		}
		sid := res.Attr("sessionid")
		dev := resultForm(t, res).Field("device")
		if dev.Type != xmpp.FieldListSingle || len(dev.Options) != 1 || dev.Options[0].Value != "relay1" {
			t.Fatalf("device choice: %s", res)
		}
		res, err = op.command(t, to, "set", "next", sid, "device", "relay1")
		if err != nil {
			t.Fatal(err)
		}
		val := resultForm(t, res).Field("value")
		if val.Type != xmpp.FieldBool || !slices.Equal(val.Values, []string{"false"}) ||
			res.Child(xmpp.NSCommands, "actions").Attr("execute") != "complete" {
			t.Fatalf("value stage: %s", res)
		}
		_, err = op.command(t, to, "set", "complete", sid, "value", "maybe")
		wantStanzaError(t, "boolean field with maybe", err, "bad-request", "boolean")
		res, err = op.command(t, to, "set", "complete", sid, "value", "1")
		if err != nil {
			t.Fatal(err)
		}
		if res.Attr("status") != "completed" || !strings.Contains(res.ChildText(xmpp.NSCommands, "note"), "relay1: state=true") {
			t.Errorf("set result: %s", res)
		}
		if got := op.ask(t, to, "read relay1"); !strings.Contains(got, "state=true") {
			t.Errorf("relay after set: %q", got)
		}
	})

	t.Run("set cancel and errors", func(t *testing.T) {
		res, err := op.command(t, to, "set", "execute", "")
		if err != nil {
			t.Fatal(err)
		}
		sid := res.Attr("sessionid")
		if _, err := op.command(t, to, "set", "next", sid, "device", "relay1"); err != nil {
			t.Fatal(err)
		}
		res, err = op.command(t, to, "set", "cancel", sid)
		if err != nil || res.Attr("status") != "canceled" {
			t.Fatalf("cancel: %v %v", res, err)
		}
		_, err = op.command(t, to, "set", "complete", sid, "value", "0")
		wantStanzaError(t, "complete after cancel", err, "bad-request", "")
		if got := op.ask(t, to, "read relay1"); !strings.Contains(got, "state=true") {
			t.Errorf("canceled set changed the relay: %q", got)
		}
		// One stage with both fields, as scripts do.
		_, err = op.command(t, to, "set", "execute", "", "device", "relay1", "value", "maybe")
		wantStanzaError(t, "set relay1 maybe", err, "bad-request", "maybe")
		_, err = op.command(t, to, "set", "execute", "", "device", "pump", "value", "on")
		wantStanzaError(t, "set pump", err, "item-not-found", "pump")
	})

	t.Run("xep-0325", func(t *testing.T) {
		set := func(params string) error {
			res, err := op.iq(t, "set", to, mustElement(t, `<set xmlns='urn:xmpp:iot:control'>`+params+`</set>`))
			if err == nil && (res == nil || res.Name != "setResponse") {
				t.Errorf("0325 answer %v, want setResponse", res)
			}
			return err
		}
		if err := set(`<boolean name='relay1' value='false'/>`); err != nil {
			t.Fatal(err)
		}
		if got := op.ask(t, to, "read relay1"); !strings.Contains(got, "state=false") {
			t.Errorf("relay after 0325 false: %q", got)
		}
		if err := set(`<node nodeId='relay1'/><boolean name='state' value='1'/>`); err != nil {
			t.Fatal(err)
		}
		if got := op.ask(t, to, "read relay1"); !strings.Contains(got, "state=true") {
			t.Errorf("relay after 0325 node set: %q", got)
		}
		wantStanzaError(t, "0325 int 7", set(`<int name='relay1' value='7'/>`), "bad-request", "7")
		wantStanzaError(t, "0325 bad boolean", set(`<boolean name='relay1' value='on'/>`), "bad-request", "true, false")
		wantStanzaError(t, "0325 unknown device", set(`<boolean name='pump' value='true'/>`), "item-not-found", "pump")
		wantStanzaError(t, "0325 read-only", set(`<double name='greenhouse' value='1'/>`), "bad-request", "not writable")
		// Nothing is switched when one target of several is wrong.
		wantStanzaError(t, "0325 partly wrong", set(`<boolean name='relay1' value='false'/><boolean name='pump' value='true'/>`), "item-not-found", "pump")
		if got := op.ask(t, to, "read relay1"); !strings.Contains(got, "state=true") {
			t.Errorf("a refused set changed the relay: %q", got)
		}
	})

	t.Run("xep-0323", func(t *testing.T) {
		res, err := op.iq(t, "get", to, mustElement(t, `<req xmlns='urn:xmpp:iot:sensordata' seqnr='77' momentary='true'>`+
			`<node nodeId='greenhouse'/><field name='humidity'/></req>`))
		if err != nil {
			t.Fatal(err)
		}
		if res.Name != "accepted" || res.Attr("seqnr") != "77" {
			t.Fatalf("0323 answer %v, want accepted seqnr 77", res)
		}
		m := op.next(t, 5*time.Second, func(m *xmpp.Element) bool {
			f := m.Child(xmpp.NSSensorData, "fields")
			return f != nil && f.Attr("seqnr") == "77"
		})
		fields := m.Child(xmpp.NSSensorData, "fields")
		node := fields.Child(xmpp.NSSensorData, "node")
		ts := node.Child(xmpp.NSSensorData, "timestamp")
		if fields.Attr("done") != "true" || node.Attr("nodeId") != "greenhouse" || len(ts.Children) != 1 ||
			ts.Children[0].Attr("name") != "humidity" {
			t.Errorf("readout: %s", m)
		}
		_, err = op.iq(t, "get", to, mustElement(t, `<req xmlns='urn:xmpp:iot:sensordata' seqnr='78'><node nodeId='pump'/></req>`))
		wantStanzaError(t, "0323 unknown node", err, "item-not-found", "pump")
		_, err = op.iq(t, "get", to, mustElement(t, `<req xmlns='urn:xmpp:iot:sensordata' seqnr='x'/>`))
		wantStanzaError(t, "0323 bad seqnr", err, "bad-request", "seqnr")
	})

	t.Run("actions", func(t *testing.T) {
		res, err := op.command(t, to, "action", "execute", "")
		if err != nil {
			t.Fatal(err)
		}
		if opts := resultForm(t, res).Field("name").Options; len(opts) != 3 || opts[0].Value != "hello" {
			t.Fatalf("action form: %s", res)
		}
		res, err = op.command(t, to, "action", "complete", res.Attr("sessionid"), "name", "hello")
		if err != nil {
			t.Fatal(err)
		}
		f := resultForm(t, res)
		if f.Value("exit_code") != "0" || !slices.Equal(f.Values("output"), []string{"hello from an action"}) {
			t.Errorf("hello: %s", res)
		}
		res, err = op.command(t, to, "action", "execute", "", "name", "fail")
		if err != nil {
			t.Fatal(err)
		}
		f = resultForm(t, res)
		note := res.Child(xmpp.NSCommands, "note")
		if f.Value("exit_code") != "3" || f.Value("output") != "oops" || note.Attr("type") != "warn" {
			t.Errorf("fail: %s", res)
		}
		if got := op.ask(t, to, "run hello"); got != "hello: ok (exit code 0, "+got[len("hello: ok (exit code 0, "):] || !strings.HasSuffix(got, "output:\nhello from an action") {
			t.Errorf("chat run hello: %q", got)
		}
		// A hung action is killed at its timeout; while it runs, a second
		// run of it is refused.
		var wg sync.WaitGroup
		wg.Go(func() {
			res, err := op.command(t, to, "action", "execute", "", "name", "hang")
			if err != nil {
				t.Errorf("hang: %v", err)
				return
			}
			if f := resultForm(t, res); f.Value("timed_out") != "true" || f.Value("exit_code") != "-1" ||
				res.Child(xmpp.NSCommands, "note").Attr("type") != "error" {
				t.Errorf("hang: %s", res)
			}
		})
		time.Sleep(150 * time.Millisecond)
		_, err = op.command(t, to, "action", "execute", "", "name", "hang")
		wantStanzaError(t, "second hang", err, "resource-constraint", "already running")
		wg.Wait()
		_, err = op.command(t, to, "action", "execute", "", "name", "nope")
		wantStanzaError(t, "unknown action", err, "bad-request", "nope")
	})

	t.Run("viewer", func(t *testing.T) {
		if _, err := viewer.command(t, to, "status", "execute", ""); err != nil {
			t.Errorf("viewer status: %v", err)
		}
		if _, err := viewer.command(t, to, "read", "execute", "", "device", "greenhouse"); err != nil {
			t.Errorf("viewer read: %v", err)
		}
		for _, node := range []string{"set", "action", "reload"} {
			_, err := viewer.command(t, to, node, "execute", "")
			wantStanzaError(t, "viewer "+node, err, "forbidden", "")
		}
		_, err := viewer.iq(t, "set", to, mustElement(t, `<set xmlns='urn:xmpp:iot:control'><boolean name='relay1' value='false'/></set>`))
		wantStanzaError(t, "viewer 0325", err, "forbidden", "")
		if got := viewer.ask(t, to, "set relay1 off"); !strings.Contains(got, "not allowed") {
			t.Errorf("viewer chat set: %q", got)
		}
		if got := viewer.ask(t, to, "help"); strings.Contains(got, "set <device>") {
			t.Errorf("viewer help offers set: %q", got)
		}
	})

	t.Run("stranger", func(t *testing.T) {
		paths := map[string]func() error{
			"command list": func() error {
				_, err := stranger.iq(t, "get", to, xmpp.NewElement(xmpp.NSDiscoIt, "query", "node", xmpp.NSCommands))
				return err
			},
			"execute status": func() error { _, err := stranger.command(t, to, "status", "execute", ""); return err },
			"execute set": func() error {
				_, err := stranger.command(t, to, "set", "execute", "", "device", "relay1", "value", "off")
				return err
			},
			"0325 set": func() error {
				_, err := stranger.iq(t, "set", to, mustElement(t, `<set xmlns='urn:xmpp:iot:control'><boolean name='relay1' value='false'/></set>`))
				return err
			},
			"0323 req": func() error {
				_, err := stranger.iq(t, "get", to, mustElement(t, `<req xmlns='urn:xmpp:iot:sensordata' seqnr='1'/>`))
				return err
			},
		}
		for name, f := range paths {
			err := f()
			var se *xmpp.StanzaError
			if !errors.As(err, &se) || se.Condition != "forbidden" || se.Text != "" {
				t.Errorf("stranger %s: %v, want a bare forbidden", name, err)
			}
		}
		stranger.say(t, to, "run hello")
		if got := op.ask(t, to, "read relay1"); !strings.Contains(got, "state=true") {
			t.Errorf("relay changed: %q", got)
		}
		select {
		case m := <-stranger.msgs:
			t.Errorf("stranger got a message: %v", m)
		default:
		}
	})

	t.Run("reload and rate limit", func(t *testing.T) {
		writeFile(t, cfgPath, controlConfig(srv, dir, 0.01, 3, "\n[[action]]\nname = \"date\"\nargv = [\"/bin/date\"]\n"))
		res, err := op.command(t, to, "reload", "execute", "")
		if err != nil {
			t.Fatal(err)
		}
		if note := res.ChildText(xmpp.NSCommands, "note"); res.Attr("status") != "completed" || !strings.Contains(note, "changed: acl, actions") {
			t.Errorf("reload: %s", res)
		}
		// The new action exists; the operator's bucket now holds 3.
		if got := op.ask(t, to, "run date"); !strings.Contains(got, "date: ok") {
			t.Errorf("run date after reload: %q", got)
		}
		if _, err := op.command(t, to, "status", "execute", ""); err != nil {
			t.Fatal(err)
		}
		if _, err := op.iq(t, "get", to, mustElement(t, `<req xmlns='urn:xmpp:iot:sensordata' seqnr='1'/>`)); err != nil {
			t.Fatal(err)
		}
		_, err = op.command(t, to, "status", "execute", "")
		wantStanzaError(t, "fourth command", err, "resource-constraint", "retry in")
		if got := op.ask(t, to, "status"); !strings.HasPrefix(got, "slow down: too many commands; retry in") {
			t.Errorf("chat over the limit: %q", got)
		}
		// The viewer has a bucket of its own.
		if _, err := viewer.command(t, to, "status", "execute", ""); err != nil {
			t.Errorf("viewer limited by the operator's bucket: %v", err)
		}
		// A broken file changes nothing and says where it is broken.
		writeFile(t, cfgPath, controlConfig(srv, dir, 1000, 1000, "\n[[action]]\nname = \"x\"\nargv = [\"relative\"]\n"))
		_, err = viewer.command(t, to, "reload", "execute", "")
		wantStanzaError(t, "viewer reload", err, "forbidden", "")
		rep, err := a.Reload(t.Context(), agent.Caller{Role: agent.RoleOperator, Via: "test"})
		if !errors.Is(err, agent.ErrBadConfig) || !strings.Contains(err.Error(), "action[3].argv") {
			t.Errorf("reload of a broken file: %v, %v", rep, err)
		}
	})
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

// mustElement parses one element, as it would arrive in a stream.
func mustElement(t *testing.T, s string) *xmpp.Element {
	t.Helper()
	el, err := xmpp.ParseElement(s)
	if err != nil {
		t.Fatalf("parse %q: %v", s, err)
	}
	return el
}
