//go:build integration

package agent_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stanzad/stanzad/agent"
	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/devices"
	"github.com/stanzad/stanzad/internal/testserver"
	"github.com/stanzad/stanzad/xmpp"
)

// refusals are the conditions a server answers a stranger with, as
// "condition" or "condition/application-condition".
type refusals struct {
	subscribe, items, pepItems string
}

// Who reads a sink's nodes (issue 23): the pubsub node is a whitelist of
// the ACL's operators and viewers, kept to the ACL on reload; the PEP node
// is for presence subscribers; a stranger is refused both; a node someone
// else made open is reported, not changed.
func TestIntegrationAccess(t *testing.T) {
	t.Run("prosody", func(t *testing.T) {
		// Only admins may create nodes on Prosody's pubsub component.
		srv := testserver.New(t, testserver.Options{PubSub: true, Admins: []string{"device@iot.test", "owner@iot.test"}})
		testAccess(t, srv, refusals{subscribe: "forbidden", items: "forbidden", pepItems: "forbidden"})
	})
	t.Run("ejabberd", func(t *testing.T) {
		// Its default access model is open: what the issue is about.
		srv := testserver.NewEjabberd(t, testserver.EjabberdOptions{PubSub: true, C2SShaper: -1})
		testAccess(t, srv, refusals{subscribe: "not-allowed/closed-node", items: "not-allowed/closed-node",
			pepItems: "not-authorized/presence-subscription-required"})
	})
}

func accessConfig(srv *testserver.Server, dir, viewer string) string {
	return configHead(srv, dir) + fmt.Sprintf(`
[acl]
operators = ["alice@%[1]s"]
viewers = ["%[2]s@%[1]s"]

[[device]]
name = "greenhouse"
kind = "sim"
interval = "1h"

[[sink]]
kind = "pubsub"
service = "pubsub.%[1]s"
max_items = 5

[[sink]]
kind = "pep"
max_items = 5

[[sink]]
kind = "pubsub"
service = "pubsub.%[1]s"
node = "other/{device}"

[[sink]]
kind = "pubsub"
service = "pubsub.%[1]s"
node = "fresh/{device}"
`, srv.Host, viewer)
}

// condition is err's stanza error as "condition[/app-condition]".
func condition(err error) string {
	var se *xmpp.StanzaError
	if !errors.As(err, &se) {
		return fmt.Sprint(err)
	}
	if se.App != nil {
		return se.Condition + "/" + se.App.Name
	}
	return se.Condition
}

// items retrieves node's items from service as p.
func (p *peer) items(t *testing.T, service, node string) ([]*xmpp.Element, error) {
	t.Helper()
	res, err := p.iq(t, "get", service, xmpp.NewElement(xmpp.NSPubSub, "pubsub").Add(xmpp.NewElement(xmpp.NSPubSub, "items", "node", node)))
	if err != nil {
		return nil, err
	}
	return res.Child(xmpp.NSPubSub, "items").Children, nil
}

// eventually retries f every 100 ms for up to 15 s until it returns nil,
// and fails with its last error.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func testAccess(t *testing.T, srv *testserver.Server, want refusals) {
	older := newPeer(t, srv, "device")                             // the agent's account, as an older stanzad used it
	alice, bob := newPeer(t, srv, "alice"), newPeer(t, srv, "bob") // operator, viewer
	carol, mallory := newPeer(t, srv, "carol"), newPeer(t, srv, "mallory")
	owner := newPeer(t, srv, "owner")
	service, self := "pubsub."+srv.Host, "device@"+srv.Host
	const otherNode, freshNode = "other/greenhouse", "fresh/greenhouse"

	// An older stanzad made the sink's node without an access model: on
	// ejabberd (and Prosody) open. The agent owns it, so it tightens it.
	older.iqOK(t, xmpp.PubSubCreate(service, sensorNode, xmpp.NodeConfig{PersistItems: true, MaxItems: 5, AccessModel: xmpp.AccessOpen}))

	// Someone else's node, open to all: the agent publishes there but
	// must not take it over.
	owner.iqOK(t, xmpp.PubSubCreate(service, otherNode, xmpp.NodeConfig{PersistItems: true, MaxItems: 5, AccessModel: xmpp.AccessOpen}))

	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "stanzad.toml")
	writeFile(t, filepath.Join(dir, "password"), "pw-device")
	writeFile(t, cfgPath, accessConfig(srv, dir, "bob"))
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Sinks[0].AccessModel != "whitelist" || cfg.Sinks[1].AccessModel != "presence" {
		t.Fatalf("default access models: %+v", cfg.Sinks)
	}
	green := newScript("greenhouse")
	a := runOnline(t, agent.Options{Config: cfg, ConfigPath: cfgPath, Logger: testLogger(t), Devices: []devices.Device{green}})
	green.temp(20)

	// The operator reads the whitelist node (once the agent made it and
	// its members) and gets what is published after subscribing.
	eventually(t, "operator retrieves the items", func() error {
		its, err := alice.items(t, service, sensorNode)
		if err == nil && len(its) == 0 {
			err = errors.New("no items yet")
		}
		return err
	})
	if _, err := alice.iq(t, "set", service, xmpp.PubSubSubscribe(service, sensorNode, "alice@"+srv.Host+"/test").FirstChild()); err != nil {
		t.Fatalf("operator subscribes: %v", err)
	}
	green.temp(21)
	alice.next(t, 15*time.Second, func(m *xmpp.Element) bool {
		node, items, ok := xmpp.ParsePubSubEvent(m)
		return ok && node == sensorNode && len(items) == 1 && items[0].Payload != nil
	})

	eventually(t, "operator retrieves the items of the node the agent made", func() error {
		_, err := alice.items(t, service, freshNode)
		return err
	})

	// A stranger is refused both, on the tightened node and on the new one.
	for _, node := range []string{sensorNode, freshNode} {
		_, err = mallory.iq(t, "set", service, xmpp.PubSubSubscribe(service, node, "mallory@"+srv.Host+"/test").FirstChild())
		t.Logf("stranger subscribes to %s: %s (%v)", node, condition(err), err)
		if got := condition(err); got != want.subscribe {
			t.Errorf("stranger subscribes to %s: %s (%v), want %s", node, got, err, want.subscribe)
		}
		_, err = mallory.items(t, service, node)
		t.Logf("stranger retrieves items of %s: %s (%v)", node, condition(err), err)
		if got := condition(err); got != want.items {
			t.Errorf("stranger retrieves items of %s: %s (%v), want %s", node, got, err, want.items)
		}
	}
	if c, err := xmpp.ParseNodeConfig(older.iqOK(t, xmpp.PubSubConfigureGet(service, sensorNode))); err != nil || c.AccessModel != xmpp.AccessWhitelist {
		t.Errorf("the agent's own open node: %+v, %v; want it tightened to whitelist", c, err)
	}

	// PEP: presence subscribers read, a stranger does not — even after
	// asking for a subscription (the agent refuses strangers).
	alice.sess.Send(t.Context(), xmpp.Stanza("presence", "subscribe", self, ""))
	mallory.sess.Send(t.Context(), xmpp.Stanza("presence", "subscribe", self, ""))
	eventually(t, "operator retrieves PEP items", func() error {
		its, err := alice.items(t, self, sensorNode)
		if err == nil && (len(its) == 0 || its[len(its)-1].Child(xmpp.NSSensorData, "fields") == nil) {
			err = errors.New("no items yet")
		}
		return err
	})
	_, err = mallory.items(t, self, sensorNode)
	t.Logf("stranger retrieves PEP items: %s (%v)", condition(err), err)
	if got := condition(err); got != want.pepItems {
		t.Errorf("stranger retrieves PEP items: %s (%v), want %s", got, err, want.pepItems)
	}

	// The open node someone else owns: reported in status, left open.
	var note string
	eventually(t, "status reports the open node", func() error {
		rep, err := a.Status(t.Context(), agent.Caller{Role: agent.RoleOperator, Via: "test"})
		if err != nil {
			return err
		}
		if n := rep.Outboxes[0].Note + rep.Outboxes[1].Note + rep.Outboxes[3].Note; n != "" {
			t.Errorf("status notes on the agent's own nodes: %q", n)
		}
		note = rep.Outboxes[2].Note
		if !strings.Contains(note, "node "+otherNode+" is open to anyone on the server; configured whitelist") {
			return fmt.Errorf("note %q", note)
		}
		return nil
	})
	t.Logf("status: %s", note)
	res := owner.iqOK(t, xmpp.PubSubConfigureGet(service, otherNode))
	if c, err := xmpp.ParseNodeConfig(res); err != nil || c.AccessModel != xmpp.AccessOpen {
		t.Errorf("someone else's node after the agent saw it: %+v, %v; want it left open", c, err)
	}

	// Reload with carol instead of bob as viewer: the members follow.
	if _, err := bob.items(t, service, sensorNode); err != nil {
		t.Fatalf("viewer before the reload: %v", err)
	}
	if _, err := carol.items(t, service, sensorNode); condition(err) != want.items {
		t.Fatalf("carol before the reload: %v", err)
	}
	writeFile(t, cfgPath, accessConfig(srv, dir, "carol"))
	if _, err := a.Reload(t.Context(), agent.Caller{Role: agent.RoleOperator, Via: "test"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "carol reads after the reload", func() error {
		_, err := carol.items(t, service, sensorNode)
		return err
	})
	eventually(t, "bob is refused after the reload", func() error {
		if _, err := bob.items(t, service, sensorNode); condition(err) != want.items {
			return fmt.Errorf("bob: %v", err)
		}
		return nil
	})
	if _, err := alice.items(t, service, sensorNode); err != nil {
		t.Errorf("operator after the reload: %v", err)
	}
}
