//go:build integration

package agent_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stanzad/stanzad/agent"
	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/devices"
	"github.com/stanzad/stanzad/internal/testserver"
	"github.com/stanzad/stanzad/xmpp"
)

// script is a device that emits the readings the test gives it, and fails
// while failing is set.
type script struct {
	name    string
	ch      chan []devices.Field
	failing atomic.Bool
}

func newScript(name string) *script { return &script{name: name, ch: make(chan []devices.Field, 64)} }

func (s *script) Name() string { return s.name }

func (s *script) Run(ctx context.Context, emit func(devices.Reading)) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case fs := <-s.ch:
			r := devices.Reading{Device: s.name, Time: time.Now().UTC(), Fields: fs}
			if s.failing.Load() {
				r.Fields, r.Err = nil, errors.New("sensor unplugged")
			}
			emit(r)
		}
	}
}

// temp emits one temperature reading.
func (s *script) temp(v float64) { s.ch <- []devices.Field{devices.Number("temperature", v, 1, "°C")} }

// values returns the temperature values in a reading stanza, in order.
func values(m *xmpp.Element) []float64 {
	var out []float64
	for _, node := range m.Child(xmpp.NSSensorData, "fields").Children {
		for _, f := range node.Child("", "timestamp").Children {
			if f.Attr("name") == "temperature" {
				v, _ := strconv.ParseFloat(f.Attr("value"), 64)
				out = append(out, v)
			}
		}
	}
	return out
}

func baseConfig(srv *testserver.Server, dir string) *config.Config {
	return &config.Config{
		XMPP: config.XMPP{JID: "device@" + srv.Host + "/agent", Password: config.Secret("pw-device"),
			Server: config.Endpoints{srv.Addr}, TLS: "starttls", CAFile: srv.CAFile},
		Agent: config.Agent{StateDir: dir, OutboxMax: 1 << 20},
		ACL:   config.ACL{Operators: []string{"alice@" + srv.Host}, Viewers: []string{"bob@" + srv.Host}},
	}
}

// --- MUC ----------------------------------------------------------------

const nsRoomConfig = "http://jabber.org/protocol/muc#roomconfig"

// join enters room as nick and returns the self-presence.
func (p *peer) join(t *testing.T, room, nick string) *xmpp.Element {
	t.Helper()
	if err := p.sess.Send(t.Context(), xmpp.MUCJoin(xmpp.MustParseJID(room+"/"+nick), "", "")); err != nil {
		t.Fatal(err)
	}
	return p.presenceFrom(t, room+"/"+nick, func(mp xmpp.MUCPresence) bool { return mp.Self || mp.Err != nil })
}

// presenceFrom waits for a room presence from occupant (any, if empty)
// that keep accepts; others are dropped.
func (p *peer) presenceFrom(t *testing.T, occupant string, keep func(xmpp.MUCPresence) bool) *xmpp.Element {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case st := <-p.pres:
			if occupant != "" && st.Attr("from") != occupant {
				continue
			}
			if mp, ok := xmpp.ParseMUCPresence(st); ok && keep(mp) {
				return st
			}
		case <-deadline:
			t.Fatalf("no matching presence from %s within 20s", occupant)
			return nil
		}
	}
}

// createRoom makes a new room owned by p, non-anonymous if whois is
// "anyone", semi-anonymous with "moderators".
func (p *peer) createRoom(t *testing.T, room, nick, whois string) {
	t.Helper()
	self := p.join(t, room, nick)
	if mp, _ := xmpp.ParseMUCPresence(self); !mp.Has(xmpp.MUCStatusCreated) {
		t.Fatalf("room %s existed already: %s", room, self)
	}
	f := xmpp.Form{Type: xmpp.FormSubmit, Fields: []xmpp.FormField{
		{Var: "FORM_TYPE", Type: xmpp.FieldHidden, Values: []string{nsRoomConfig}},
		{Var: "muc#roomconfig_whois", Values: []string{whois}},
	}}
	q := xmpp.NewElement(xmpp.NSMUCOwner, "query").Add(f.Element())
	p.iqOK(t, xmpp.Stanza("iq", "set", room, "").Add(q))
}

func (p *peer) iqOK(t *testing.T, iq *xmpp.Element) *xmpp.Element {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	res, err := p.sess.SendIQ(ctx, iq)
	if err != nil {
		t.Fatalf("%s: %v", iq, err)
	}
	return res
}

func (p *peer) groupchat(t *testing.T, room, body string) {
	t.Helper()
	m := xmpp.Stanza("message", "groupchat", room, p.sess.NewID())
	if err := p.sess.Send(t.Context(), m.Add(xmpp.NewElement(xmpp.NSClient, "body").SetText(body))); err != nil {
		t.Fatal(err)
	}
}

// roomText waits for a groupchat text (no readings) from occupant whose
// body starts with prefix, and returns the body; texts from others are
// collected in seen.
func (p *peer) roomText(t *testing.T, occupant, prefix string, seen *[]string) string {
	t.Helper()
	m := p.next(t, 15*time.Second, func(m *xmpp.Element) bool {
		if m.Attr("type") != "groupchat" || isReading(m) {
			return false
		}
		body := m.ChildText(xmpp.NSClient, "body")
		if seen != nil {
			*seen = append(*seen, m.Attr("from")+": "+body)
		}
		return m.Attr("from") == occupant && strings.HasPrefix(body, prefix)
	})
	return m.ChildText(xmpp.NSClient, "body")
}

// roomReading waits for the next reading stanza sent to the room.
func (p *peer) roomReading(t *testing.T, occupant string) *xmpp.Element {
	t.Helper()
	return p.next(t, 15*time.Second, func(m *xmpp.Element) bool {
		return m.Attr("type") == "groupchat" && m.Attr("from") == occupant && isReading(m)
	})
}

func TestIntegrationMUC(t *testing.T) {
	eachServer(t, testserver.Options{MUC: true}, testserver.EjabberdOptions{MUC: true, C2SShaper: -1}, testMUC)
}

func testMUC(t *testing.T, srv *testserver.Server) {
	testserver.MustRegister(t, srv, "device", "pw-device")
	alice := newPeer(t, srv, "alice") // operator
	bob := newPeer(t, srv, "bob")     // viewer
	mallory := newPeer(t, srv, "mallory")
	lab, anon := "lab@conference."+srv.Host, "anon@conference."+srv.Host
	alice.createRoom(t, lab, "alice", "anyone")      // everyone sees real JIDs
	alice.createRoom(t, anon, "alice", "moderators") // the agent, a participant, does not
	bob.join(t, lab, "bob")
	mallory.join(t, lab, "mallory")

	green, probe := newScript("greenhouse"), newScript("probe")
	cfg := baseConfig(srv, t.TempDir())
	cfg.Sinks = []config.Sink{
		{Kind: "muc", Room: lab, Nick: "stanzad", Devices: []string{"greenhouse"}},
		{Kind: "muc", Room: anon, Nick: "stanzad", Devices: []string{"greenhouse"}},
	}
	relay := devices.NewSwitch(devices.SwitchConfig{Name: "relay1"})
	runOnline(t, agent.Options{Config: cfg, Logger: testLogger(t), Devices: []devices.Device{green, relay, probe}})
	// The agent joins both rooms; alice sees it arrive in each.
	in := map[string]bool{}
	alice.presenceFrom(t, "", func(mp xmpp.MUCPresence) bool {
		if mp.Nick == "stanzad" && !mp.Unavailable {
			in[mp.Room.String()] = true
		}
		return len(in) == 2
	})

	t.Run("readings reach every occupant", func(t *testing.T) {
		green.temp(21.5)
		check := func(m *xmpp.Element) {
			if body := m.ChildText(xmpp.NSClient, "body"); body != "greenhouse: temperature=21.5 °C" {
				t.Errorf("body %q", body)
			}
			if v := values(m); len(v) != 1 || v[0] != 21.5 {
				t.Errorf("fields %v", v)
			}
		}
		check(bob.roomReading(t, lab+"/stanzad"))
		rooms := map[string]bool{} // alice is in both rooms
		for len(rooms) < 2 {
			m := alice.next(t, 15*time.Second, func(m *xmpp.Element) bool { return m.Attr("type") == "groupchat" && isReading(m) })
			check(m)
			rooms[m.Attr("from")] = true
		}
		if !rooms[lab+"/stanzad"] || !rooms[anon+"/stanzad"] {
			t.Errorf("readings from %v", rooms)
		}
	})

	t.Run("commands by nickname, checked on the real JID", func(t *testing.T) {
		alice.groupchat(t, lab, "stanzad: set relay1 on")
		if got := alice.roomText(t, lab+"/stanzad", "alice:", nil); got != "alice: ok, relay1: state=true" {
			t.Errorf("operator set: %q", got)
		}
		bob.groupchat(t, lab, "stanzad, set relay1 off")
		if got := bob.roomText(t, lab+"/stanzad", "bob:", nil); !strings.Contains(got, "not allowed") {
			t.Errorf("viewer set: %q", got)
		}
		mallory.groupchat(t, lab, "stanzad: set relay1 off")
		alice.groupchat(t, lab, "@stanzad read relay1")
		var seen []string
		if got := alice.roomText(t, lab+"/stanzad", "alice:", &seen); !strings.Contains(got, "relay1: state=true") {
			t.Errorf("after a stranger's set: %q", got)
		}
		for _, s := range seen {
			if strings.Contains(s, "mallory:") && strings.HasPrefix(s, lab+"/stanzad") {
				t.Errorf("the agent answered a stranger: %q", s)
			}
		}
		alice.groupchat(t, lab, "stanza: status") // not addressed to the agent
		alice.groupchat(t, lab, "stanzad: help")
		if got := alice.roomText(t, lab+"/stanzad", "alice:", nil); !strings.Contains(got, "set <device> <value>") {
			t.Errorf("help: %q", got)
		}
	})

	t.Run("anonymous room: refused, and said so", func(t *testing.T) {
		alice.groupchat(t, anon, "stanzad: set relay1 off")
		if got := alice.roomText(t, anon+"/stanzad", "alice:", nil); !strings.Contains(got, "can't see your real JID") {
			t.Errorf("anonymous room: %q", got)
		}
		alice.groupchat(t, lab, "stanzad: read relay1")
		if got := alice.roomText(t, lab+"/stanzad", "alice:", nil); !strings.Contains(got, "state=true") {
			t.Errorf("a command from an anonymous room ran: %q", got)
		}
	})

	t.Run("presence shows health", func(t *testing.T) {
		probe.failing.Store(true)
		probe.temp(0)
		st := alice.presenceFrom(t, lab+"/stanzad", func(mp xmpp.MUCPresence) bool { return !mp.Unavailable })
		for !strings.Contains(st.ChildText(xmpp.NSClient, "status"), "failing") {
			st = alice.presenceFrom(t, lab+"/stanzad", func(mp xmpp.MUCPresence) bool { return !mp.Unavailable })
		}
		if got := st.ChildText(xmpp.NSClient, "status"); got != "1 of 3 devices failing: probe" || st.ChildText(xmpp.NSClient, "show") != "away" {
			t.Errorf("health presence: %s", st)
		}
		probe.failing.Store(false)
		probe.temp(1)
		st = alice.presenceFrom(t, lab+"/stanzad", func(mp xmpp.MUCPresence) bool { return !mp.Unavailable })
		for st.ChildText(xmpp.NSClient, "status") != "ok" {
			st = alice.presenceFrom(t, lab+"/stanzad", func(mp xmpp.MUCPresence) bool { return !mp.Unavailable })
		}
	})

	t.Run("kicked: rejoins, and what came meanwhile arrives", func(t *testing.T) {
		first := seqnr(t, func() *xmpp.Element { green.temp(22); return alice.roomReading(t, lab+"/stanzad") }())
		admin := xmpp.NewElement("http://jabber.org/protocol/muc#admin", "query").Add(
			xmpp.NewElement("http://jabber.org/protocol/muc#admin", "item", "nick", "stanzad", "role", "none"))
		alice.iqOK(t, xmpp.Stanza("iq", "set", lab, "").Add(admin))
		alice.presenceFrom(t, lab+"/stanzad", func(mp xmpp.MUCPresence) bool { return mp.Unavailable && mp.Has(xmpp.MUCStatusKicked) })
		green.temp(23) // while out of the room
		alice.presenceFrom(t, lab+"/stanzad", func(mp xmpp.MUCPresence) bool { return !mp.Unavailable })
		m := alice.roomReading(t, lab+"/stanzad")
		if v := values(m); len(v) != 1 || v[0] != 23 || seqnr(t, m) != first+1 {
			t.Errorf("after rejoin: seqnr %d values %v, want %d [23]", seqnr(t, m), v, first+1)
		}
	})
}

// A new stream (agent restarted) joins again; the room sequence goes on.
func TestIntegrationMUCRestart(t *testing.T) {
	eachServer(t, testserver.Options{MUC: true}, testserver.EjabberdOptions{MUC: true, C2SShaper: -1}, testMUCRestart)
}

func testMUCRestart(t *testing.T, srv *testserver.Server) {
	testserver.MustRegister(t, srv, "device", "pw-device")
	alice := newPeer(t, srv, "alice")
	lab := "lab@conference." + srv.Host
	alice.createRoom(t, lab, "alice", "anyone")
	cfg := baseConfig(srv, t.TempDir())
	cfg.Sinks = []config.Sink{{Kind: "muc", Room: lab, Nick: "stanzad", Devices: []string{"*"}}}

	green := newScript("greenhouse")
	stop := startAgentWith(t, cfg, green)
	alice.presenceFrom(t, lab+"/stanzad", func(mp xmpp.MUCPresence) bool { return !mp.Unavailable })
	green.temp(20)
	first := seqnr(t, alice.roomReading(t, lab+"/stanzad"))
	stop()
	alice.presenceFrom(t, lab+"/stanzad", func(mp xmpp.MUCPresence) bool { return mp.Unavailable })

	green = newScript("greenhouse")
	startAgentWith(t, cfg, green)
	alice.presenceFrom(t, lab+"/stanzad", func(mp xmpp.MUCPresence) bool { return !mp.Unavailable })
	green.temp(21)
	if n := seqnr(t, alice.roomReading(t, lab+"/stanzad")); n != first+1 {
		t.Errorf("after restart seqnr %d, want %d", n, first+1)
	}
}

// startAgentWith runs an agent with the given devices until stop, and
// returns once its XMPP session is up.
func startAgentWith(t *testing.T, cfg *config.Config, devs ...devices.Device) (stop func()) {
	t.Helper()
	a, err := agent.New(agent.Options{Config: cfg, Logger: testLogger(t), Devices: devs})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	wctx, wcancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer wcancel()
	if _, err := a.WaitConnected(wctx); err != nil {
		t.Fatal(err)
	}
	return stop
}

// --- pubsub and PEP ------------------------------------------------------

const sensorNode = "urn:xmpp:iot:sensordata/greenhouse"

func TestIntegrationPubSub(t *testing.T) {
	eachServer(t, testserver.Options{PubSub: true, Admins: []string{"device@iot.test"}}, testserver.EjabberdOptions{PubSub: true, Admins: []string{"device@iot.test"}, C2SShaper: -1}, testPubSub)
}

func testPubSub(t *testing.T, srv *testserver.Server) {
	testserver.MustRegister(t, srv, "device", "pw-device")
	sub := newPeer(t, srv, "bob")
	alice := newPeer(t, srv, "alice")
	service := "pubsub." + srv.Host
	cfg := baseConfig(srv, t.TempDir())
	cfg.Sinks = []config.Sink{
		{Kind: "pubsub", Service: service, Node: "urn:xmpp:iot:sensordata/{device}", MaxItems: 5, Devices: []string{"*"}},
		{Kind: "pep", Node: "urn:xmpp:iot:sensordata/{device}", MaxItems: 5, Devices: []string{"*"}},
	}
	green := newScript("greenhouse")
	a := runOnline(t, agent.Options{Config: cfg, Logger: testLogger(t), Devices: []devices.Device{green}})

	// The first reading makes the agent create the node; then subscribe.
	green.temp(20)
	// Status names the nodes readings go to, not the template.
	waitStatus(t, a, "the pubsub node", 10*time.Second, func(rep agent.StatusReport) bool {
		return len(rep.Outboxes) == 2 && rep.Outboxes[0].Sink == "pubsub "+service+" "+sensorNode &&
			rep.Outboxes[1].Sink == "pep "+sensorNode
	})
	subscribe := xmpp.PubSubSubscribe(service, sensorNode, "bob@"+srv.Host+"/test")
	for deadline := time.Now().Add(15 * time.Second); ; {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		_, err := sub.sess.SendIQ(ctx, subscribe)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("subscribe to %s: %v", sensorNode, err)
		}
		subscribe.SetAttr("id", "")
		time.Sleep(100 * time.Millisecond)
	}
	green.temp(21.5)
	m := sub.next(t, 15*time.Second, func(m *xmpp.Element) bool {
		node, items, ok := xmpp.ParsePubSubEvent(m)
		return ok && node == sensorNode && len(items) == 1 && items[0].ID == "2"
	})
	_, items, _ := xmpp.ParsePubSubEvent(m)
	f := items[0].Payload
	if f.Space != xmpp.NSSensorData || f.Name != "fields" || f.Attr("seqnr") != "2" ||
		f.Child("", "node").Attr("nodeId") != "greenhouse" ||
		f.Child("", "node").Child("", "timestamp").Child("", "numeric").Attr("value") != "21.5" {
		t.Errorf("item payload: %s", f)
	}

	// The node keeps what the sink configured (persist_items, max_items).
	for i := range 6 {
		green.temp(30 + float64(i))
	}
	sub.next(t, 15*time.Second, func(m *xmpp.Element) bool {
		_, items, ok := xmpp.ParsePubSubEvent(m)
		return ok && len(items) == 1 && items[0].ID == "8"
	})
	res := sub.iqOK(t, xmpp.Stanza("iq", "get", service, "").Add(
		xmpp.NewElement(xmpp.NSPubSub, "pubsub").Add(xmpp.NewElement(xmpp.NSPubSub, "items", "node", sensorNode))))
	if n := len(res.Child(xmpp.NSPubSub, "pubsub").Child("", "items").Children); n != 5 {
		t.Errorf("node keeps %d items, want max_items 5", n)
	}

	// PEP: a contact with a presence subscription reads the agent's own node.
	alice.sess.Send(t.Context(), xmpp.Stanza("presence", "subscribe", "device@"+srv.Host, ""))
	pep := xmpp.Stanza("iq", "get", "device@"+srv.Host, "").Add(
		xmpp.NewElement(xmpp.NSPubSub, "pubsub").Add(xmpp.NewElement(xmpp.NSPubSub, "items", "node", sensorNode)))
	for deadline := time.Now().Add(15 * time.Second); ; {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		res, err := alice.sess.SendIQ(ctx, pep)
		cancel()
		if err == nil {
			its := res.Child(xmpp.NSPubSub, "pubsub").Child("", "items").Children
			if len(its) == 5 && its[len(its)-1].Child(xmpp.NSSensorData, "fields") != nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("PEP items: %v %v", res, err)
		}
		pep.SetAttr("id", "")
		time.Sleep(200 * time.Millisecond)
	}
}

// An account that may neither create the node nor publish to it gets
// clear errors; its readings are counted as refused and do not block the
// sink (the outbox drains).
func TestIntegrationPubSubRefused(t *testing.T) {
	eachServer(t, testserver.Options{PubSub: true, Admins: []string{"owner@iot.test"}}, testserver.EjabberdOptions{PubSub: true, PubSubAdminsCreate: true, Admins: []string{"owner@iot.test"}, C2SShaper: -1}, testPubSubRefused)
}

func testPubSubRefused(t *testing.T, srv *testserver.Server) {
	testserver.MustRegister(t, srv, "device", "pw-device")
	owner := newPeer(t, srv, "owner")
	service := "pubsub." + srv.Host
	owner.iqOK(t, xmpp.PubSubCreate(service, sensorNode, xmpp.NodeConfig{PersistItems: true, MaxItems: 1}))

	cfg := baseConfig(srv, t.TempDir())
	cfg.Sinks = []config.Sink{
		{Kind: "pubsub", Service: service, Node: "urn:xmpp:iot:sensordata/{device}", MaxItems: 5, Devices: []string{"*"}}, // exists: forbidden
		{Kind: "pubsub", Service: service, Node: "other/{device}", MaxItems: 5, Devices: []string{"*"}},                   // missing: item-not-found
	}
	green := newScript("greenhouse")
	a := runOnline(t, agent.Options{Config: cfg, Logger: testLogger(t), Devices: []devices.Device{green}})
	green.temp(20)
	green.temp(21)
	deadline := time.Now().Add(15 * time.Second)
	for {
		rep, err := a.Status(t.Context(), agent.Caller{Role: agent.RoleOperator, Via: "test"})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Outboxes[0].Rejected == 2 && rep.Outboxes[1].Rejected == 2 &&
			rep.Outboxes[0].Pending == 0 && rep.Outboxes[1].Pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sinks: %+v", rep.Outboxes)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// --- filters and alerts --------------------------------------------------

// deadband and min_interval drop what they should and nothing else.
func TestIntegrationFilters(t *testing.T) {
	srv := testserver.New(t, testserver.Options{})
	testserver.MustRegister(t, srv, "device", "pw-device")
	alice := newPeer(t, srv, "alice")
	cfg := baseConfig(srv, t.TempDir())
	cfg.Sinks = []config.Sink{{Kind: "chat", To: "alice@" + srv.Host, Devices: []string{"*"},
		Deadband: 0.5, MinInterval: config.Duration{Duration: time.Second}}}
	green := newScript("greenhouse")
	a := runOnline(t, agent.Options{Config: cfg, Logger: testLogger(t), Devices: []devices.Device{green}})
	start := time.Now()
	at := func(d time.Duration, v float64) {
		time.Sleep(time.Until(start.Add(d)))
		green.temp(v)
	}
	at(0, 20.0)                     // sent
	at(50*time.Millisecond, 20.2)   // within the deadband: dropped
	at(100*time.Millisecond, 21.0)  // too soon: held
	at(150*time.Millisecond, 21.4)  // replaces it; sent when the second is over
	at(1500*time.Millisecond, 21.6) // within the deadband of 21.4: dropped
	at(2600*time.Millisecond, 23.0) // sent
	var got []float64
	for len(got) < 3 {
		got = append(got, values(alice.next(t, 10*time.Second, isReading))...)
	}
	select {
	case m := <-alice.msgs:
		if isReading(m) {
			got = append(got, values(m)...)
		}
	case <-time.After(1500 * time.Millisecond):
	}
	if want := []float64{20, 21.4, 23}; !equalFloats(got, want) {
		t.Errorf("received %v, want %v", got, want)
	}
	rep, _ := a.Status(t.Context(), agent.Caller{Role: agent.RoleOperator, Via: "test"})
	if rep.Outboxes[0].Filtered != 3 {
		t.Errorf("filtered %d, want 3", rep.Outboxes[0].Filtered)
	}
}

func equalFloats(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// An alert fires once and clears once on a noisy value.
func TestIntegrationAlert(t *testing.T) {
	srv := testserver.New(t, testserver.Options{})
	testserver.MustRegister(t, srv, "device", "pw-device")
	alice := newPeer(t, srv, "alice")
	cfg := baseConfig(srv, t.TempDir())
	cfg.Sinks = []config.Sink{{Kind: "chat", To: "alice@" + srv.Host, Devices: []string{"*"}}}
	above := 30.0
	cfg.Alerts = []config.Alert{{Device: "greenhouse", Field: "temperature", Above: &above, Hysteresis: 1, Sinks: []string{"chat"}}}
	green := newScript("greenhouse")
	runOnline(t, agent.Options{Config: cfg, Logger: testLogger(t), Devices: []devices.Device{green}})
	series := []float64{25, 31, 30.5, 31.2, 29.5, 30.4, 28.5, 28.7, 29.9, 28}
	for _, v := range series {
		green.temp(v)
		time.Sleep(20 * time.Millisecond)
	}
	var alerts []string
	readings := 0
	for readings < len(series) {
		m := alice.next(t, 10*time.Second, isReading)
		body := m.ChildText(xmpp.NSClient, "body")
		if strings.HasPrefix(body, "ALERT") || strings.HasPrefix(body, "CLEARED") {
			alerts = append(alerts, body)
			continue
		}
		readings += len(values(m))
	}
	for len(alerts) < 2 {
		alerts = append(alerts, alice.next(t, 10*time.Second, isReading).ChildText(xmpp.NSClient, "body"))
	}
	want := []string{
		"ALERT greenhouse: temperature 31.0 °C is above 30.0 °C",
		"CLEARED greenhouse: temperature 28.5 °C is back below 30.0 °C",
	}
	if strings.Join(alerts, "|") != strings.Join(want, "|") {
		t.Errorf("alerts:\n%q\nwant\n%q", alerts, want)
	}
	select {
	case m := <-alice.msgs:
		t.Errorf("more after the clear: %s", m)
	case <-time.After(500 * time.Millisecond):
	}
}

// A pubsub service that is not there now (a component restarting, a
// server not reachable): readings stay queued, none is counted refused.
func TestIntegrationPubSubServiceAway(t *testing.T) {
	srv := testserver.New(t, testserver.Options{PubSubAway: true})
	testserver.MustRegister(t, srv, "device", "pw-device")
	cfg := baseConfig(srv, t.TempDir())
	cfg.Sinks = []config.Sink{{Kind: "pubsub", Service: "pubsub." + srv.Host, Node: "urn:xmpp:iot:sensordata/{device}", MaxItems: 5, Devices: []string{"*"}}}
	green := newScript("greenhouse")
	a := runOnline(t, agent.Options{Config: cfg, Logger: testLogger(t), Devices: []devices.Device{green}})
	green.temp(20)
	green.temp(21)
	time.Sleep(8 * time.Second) // three wait retries and a pause would have passed
	rep, err := a.Status(t.Context(), agent.Caller{Role: agent.RoleOperator, Via: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if ob := rep.Outboxes[0]; ob.Rejected != 0 || ob.Pending != 2 {
		t.Errorf("sink with its service away: %d refused, %d pending; want 0 and 2", ob.Rejected, ob.Pending)
	}
}
