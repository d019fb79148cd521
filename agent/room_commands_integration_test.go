//go:build integration

package agent_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stanzad/stanzad/agent"
	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/devices"
	"github.com/stanzad/stanzad/internal/testserver"
	"github.com/stanzad/stanzad/xmpp"
)

// Ad-hoc commands through a room (what Gajim's "Execute Command…" on the
// agent's room participant sends): the room relays the IQs from the
// occupant's room JID, and the agent treats them as coming from the
// occupant's real JID — or refuses, saying why, when it cannot see it.
func TestIntegrationRoomCommands(t *testing.T) {
	eachServer(t, testserver.Options{MUC: true}, testserver.EjabberdOptions{MUC: true}, func(t *testing.T, srv *testserver.Server) {
		testserver.MustRegister(t, srv, "device", "pw-device")
		alice := newPeer(t, srv, "alice") // operator
		bob := newPeer(t, srv, "bob")     // viewer
		mallory := newPeer(t, srv, "mallory")
		lab, anon := "lab@conference."+srv.Host, "anon@conference."+srv.Host
		alice.createRoom(t, lab, "alice", "anyone")      // the agent sees real JIDs
		alice.createRoom(t, anon, "alice", "moderators") // the agent, a participant, does not
		bob.join(t, lab, "bob")
		mallory.join(t, lab, "mallory")

		cfg := baseConfig(srv, t.TempDir())
		cfg.Sinks = []config.Sink{
			{Kind: "muc", Room: lab, Nick: "stanzad", Devices: []string{"none"}},
			{Kind: "muc", Room: anon, Nick: "stanzad", Devices: []string{"none"}},
		}
		relay := devices.NewSwitch(devices.SwitchConfig{Name: "relay1"})
		a := runOnline(t, agent.Options{Config: cfg, Logger: testLogger(t), Devices: []devices.Device{relay}})
		waitStatus(t, a, "in both rooms", 15*time.Second, func(rep agent.StatusReport) bool {
			for _, o := range rep.Outboxes {
				if strings.Contains(o.Note, "not in the room") {
					return false
				}
			}
			return true
		})
		agentInLab := lab + "/stanzad"

		commands := func(p *peer) []string {
			t.Helper()
			items, err := p.iq(t, "get", agentInLab, xmpp.NewElement(xmpp.NSDiscoIt, "query", "node", xmpp.NSCommands))
			if err != nil {
				t.Fatalf("commands through the room: %v", err)
			}
			var nodes []string
			for _, it := range items.Children {
				nodes = append(nodes, it.Attr("node"))
			}
			return nodes
		}
		if got := commands(alice); !slices.Contains(got, "set") || !slices.Contains(got, "config") {
			t.Errorf("operator's commands through the room: %v", got)
		}
		if got := commands(bob); !slices.Equal(got, []string{"status", "read", "history", "plot"}) {
			t.Errorf("viewer's commands through the room: %v", got)
		}

		// status, and the two-stage set, bound to the occupant.
		res, err := alice.command(t, agentInLab, "status", "execute", "")
		if err != nil || res.Attr("status") != "completed" || !strings.HasPrefix(resultForm(t, res).Value("session"), "online as device@") {
			t.Fatalf("status through the room: %v, %v", res, err)
		}
		res, err = alice.command(t, agentInLab, "set", "execute", "")
		if err != nil || res.Attr("status") != "executing" {
			t.Fatalf("set, first stage: %v, %v", res, err)
		}
		sid := res.Attr("sessionid")
		res, err = alice.command(t, agentInLab, "set", "execute", sid, "device", "relay1")
		if err != nil || res.Attr("status") != "executing" {
			t.Fatalf("set, second stage: %v, %v", res, err)
		}
		res, err = alice.command(t, agentInLab, "set", "complete", sid, "value", "true")
		if err != nil || res.Attr("status") != "completed" {
			t.Fatalf("set, completed: %v, %v", res, err)
		}
		if got := alice.ask(t, "device@"+srv.Host+"/agent", "read relay1"); got != "relay1: state=true" {
			t.Errorf("after set through the room: %q", got)
		}

		// A viewer may read, not set; a stranger gets a bare forbidden.
		_, err = bob.command(t, agentInLab, "set", "execute", "")
		wantStanzaError(t, "viewer's set through the room", err, "forbidden", "")
		_, err = mallory.command(t, agentInLab, "status", "execute", "")
		wantStanzaError(t, "stranger's status through the room", err, "forbidden", "")
		_, err = mallory.iq(t, "get", agentInLab, xmpp.NewElement(xmpp.NSDiscoIt, "query", "node", xmpp.NSCommands))
		wantStanzaError(t, "stranger's command list through the room", err, "forbidden", "")

		// alice starts a set and leaves; mallory takes her nick and tries
		// to finish it: the session is not hers.
		res, err = alice.command(t, agentInLab, "set", "execute", "")
		if err != nil {
			t.Fatal(err)
		}
		sid = res.Attr("sessionid")
		alice.sess.Send(t.Context(), xmpp.Stanza("presence", "unavailable", lab+"/alice", ""))
		mallory.sess.Send(t.Context(), xmpp.Stanza("presence", "unavailable", lab+"/mallory", ""))
		time.Sleep(500 * time.Millisecond)
		mallory.join(t, lab, "alice")
		time.Sleep(500 * time.Millisecond) // the agent sees the new occupant
		_, err = mallory.command(t, agentInLab, "set", "execute", sid, "device", "relay1", "value", "false")
		wantStanzaError(t, "a taken-over nick finishing the session", err, "forbidden", "")
		if got := bob.ask(t, "device@"+srv.Host+"/agent", "read relay1"); got != "relay1: state=true" {
			t.Errorf("after the takeover attempt: %q", got)
		}

		// A room that hides real JIDs from the agent: refused, with why.
		_, err = alice.command(t, anon+"/stanzad", "status", "execute", "")
		wantStanzaError(t, "command through a room that hides JIDs", err, "forbidden", "this room hides your JID")
	})
}
