//go:build integration

package agent_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stanzad/stanzad/agent"
	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/internal/testserver"
	"github.com/stanzad/stanzad/xmpp"
)

// What real servers do that Prosody's defaults hide (issue 23): ejabberd
// stores at most a few offline messages per person and bounces the
// rest after acknowledging them, and reads each client's socket at 3000
// B/s. These tests run the same scenarios against both servers.

// eachServer runs f against Prosody and against ejabberd, configured by
// p and e, in parallel.
var eachServer = testserver.Each

var operator = agent.Caller{Role: agent.RoleOperator, Via: "test"}

// waitStatus polls the agent's status until ok accepts it.
func waitStatus(t *testing.T, a *agent.Agent, what string, timeout time.Duration, ok func(agent.StatusReport) bool) agent.StatusReport {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		rep, err := a.Status(t.Context(), operator)
		if err != nil {
			t.Fatal(err)
		}
		if ok(rep) {
			return rep
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never showed %s within %v: %+v", what, timeout, rep.Outboxes)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A person the agent sees (presence subscription, as an operator's
// client grants) goes offline for longer than the server stores
// messages: the sink holds, and when they are back they get every
// reading from the first, once, in order.
func TestIntegrationChatHoldWhileOffline(t *testing.T) {
	eachServer(t, testserver.Options{}, testserver.EjabberdOptions{MaxOfflineMessages: 3}, func(t *testing.T, srv *testserver.Server) {
		testserver.MustRegister(t, srv, "device", "pw-device")
		testserver.MustRegister(t, srv, "operator", "pw-operator")
		rx := &receiver{more: make(chan struct{}, 1)}
		stopRx := rx.connect(t, srv, "operator")
		const n = 60
		a, _ := runAgent(t, faultConfig(srv, t.TempDir(), srv.Addr), counter{n: n, every: 100 * time.Millisecond})
		// The agent asks the operator for presence; the receiver grants
		// it. Readings flow before that (nothing is known of the person
		// yet), so wait for the grant itself: a receiver gone before the
		// request reached it leaves the agent blind, not holding. The
		// server routes the grant, then the person's unavailable
		// presence, to the agent in that order.
		waitStatus(t, a, "readings flowing and presence granted", 10*time.Second, func(r agent.StatusReport) bool {
			rx.mu.Lock()
			defer rx.mu.Unlock()
			return len(rx.vals) >= 5 && rx.approved > 0
		})
		stopRx()
		rep := waitStatus(t, a, "the sink held", 10*time.Second, func(r agent.StatusReport) bool {
			return strings.Contains(r.Outboxes[0].Note, "is offline")
		})
		t.Logf("while away: %s", rep.Outboxes[0])
		// 3 s away: 30 readings, ten times what ejabberd stores.
		time.Sleep(3 * time.Second)
		t.Cleanup(rx.connect(t, srv, "operator"))
		rx.expect(t, 1, n, 30*time.Second)
		rep = waitStatus(t, a, "the outbox drained", 10*time.Second, func(r agent.StatusReport) bool {
			return r.Outboxes[0].Pending == 0
		})
		if o := rep.Outboxes[0]; o.Lost != 0 || o.Dropped != 0 {
			t.Errorf("after the person came back: %s", o)
		}
	})
}

// A person the agent cannot see (not in its ACL, no subscription) is
// away while the agent sends: ejabberd stores three readings and
// bounces the rest with resource-constraint; Prosody without offline
// storage bounces them all with service-unavailable. The bounces are
// counted and shown, the readings stay queued, and the person gets
// every reading, once, in order, when the agent sends again.
func TestIntegrationChatBounced(t *testing.T) {
	eachServer(t, testserver.Options{NoOffline: true}, testserver.EjabberdOptions{MaxOfflineMessages: 3}, func(t *testing.T, srv *testserver.Server) {
		testserver.MustRegister(t, srv, "device", "pw-device")
		testserver.MustRegister(t, srv, "watcher", "pw-watcher")
		cfg := faultConfig(srv, t.TempDir(), srv.Addr)
		cfg.Sinks[0].To = "watcher@" + srv.Host
		const n = 40
		a, _ := runAgent(t, cfg, counter{n: n, every: 50 * time.Millisecond})
		rep := waitStatus(t, a, "bounces", 20*time.Second, func(r agent.StatusReport) bool {
			return r.Outboxes[0].Bounced > 0 && strings.Contains(r.Outboxes[0].Note, "held: the server bounced readings")
		})
		t.Logf("while bounced: %s", rep.Outboxes[0])
		time.Sleep(2 * time.Second) // all readings made; most bounced and held
		rx := &receiver{more: make(chan struct{}, 1)}
		t.Cleanup(rx.connect(t, srv, "watcher"))
		// The first hold lasts 10 s; then the bounced readings go out again.
		rx.expect(t, 1, n, 40*time.Second)
		rep = waitStatus(t, a, "the outbox drained", 10*time.Second, func(r agent.StatusReport) bool {
			return r.Outboxes[0].Pending == 0
		})
		if o := rep.Outboxes[0]; o.Lost != 0 || o.Rejected != 0 || o.Bounced == 0 {
			t.Errorf("after delivery: %s; want bounces, none lost or refused", o)
		}
	})
}

// Against a server that reads each client at 3000 B/s (ejabberd's stock
// c2s_shaper; Prosody's mod_limits at 3 kB/s) with many times that much
// telemetry offered, commands are answered promptly: pings and status
// within seconds (the bar: p99 ≤ 3 s; without pacing they took
// 29–42 s), no connection reset, the room sink stays in its room, and
// status says the server sets the pace.
func TestIntegrationCommandsPassTelemetry(t *testing.T) {
	eachServer(t, testserver.Options{MUC: true, C2SRateKB: 3}, testserver.EjabberdOptions{MUC: true}, func(t *testing.T, srv *testserver.Server) {
		testserver.MustRegister(t, srv, "device", "pw-device")
		op := newPeer(t, srv, "operator")
		room := "lab@conference." + srv.Host
		op.createRoom(t, room, "op", "anyone")
		cfg := agentConfig(srv, t.TempDir())
		cfg.Devices = nil
		for _, d := range []string{"a", "b", "c", "d"} {
			cfg.Devices = append(cfg.Devices, config.Device{Name: "sim-" + d, Kind: "sim", Interval: config.Duration{Duration: 40 * time.Millisecond}})
		}
		// Batch 1: one stanza per reading, ~450 bytes each: 4 × 25/s ×
		// 450 B ≈ 45 KB/s into the chat sink alone, 15 times what the
		// server reads.
		cfg.Sinks = []config.Sink{
			{Kind: "chat", To: "operator@" + srv.Host, Devices: []string{"*"}, Batch: 1},
			{Kind: "muc", Room: room, Nick: "device", Devices: []string{"sim-a"}, MinInterval: config.Duration{Duration: 2 * time.Second}},
		}
		a := runOnline(t, agent.Options{Config: cfg, Version: "test", Logger: testLogger(t)})
		first, _ := a.WaitConnected(t.Context())
		agentJID := first.JID().String()
		// Past the shaper's 20 kB burst and long enough for the pacing to
		// settle (an early version drifted after 10 s): the backlog builds.
		time.Sleep(12 * time.Second)
		t.Logf("link before the commands: %+v", first.Link())

		var took []time.Duration
		for i := range 20 {
			start := time.Now()
			var err error
			if i%2 == 0 {
				_, err = op.iq(t, "get", agentJID, xmpp.NewElement(xmpp.NSPing, "ping"))
			} else {
				_, err = op.command(t, agentJID, "status", "execute", "")
			}
			if err != nil {
				t.Fatalf("command %d after %v: %v (link %+v)", i, time.Since(start).Round(time.Millisecond), err, first.Link())
			}
			took = append(took, time.Since(start))
			time.Sleep(200 * time.Millisecond)
		}
		slices.Sort(took)
		p50, p99 := took[len(took)/2], took[len(took)-1]
		t.Logf("ping/status under telemetry: p50 %v, max %v", p50.Round(time.Millisecond), p99.Round(time.Millisecond))
		if p99 > 3*time.Second {
			t.Errorf("slowest answer took %v; telemetry held commands back", p99)
		}
		cur, _ := a.WaitConnected(t.Context())
		if cur != first {
			t.Errorf("the session was replaced under load (reset by the server?)")
		}
		rep, err := a.Status(t.Context(), operator)
		if err != nil {
			t.Fatal(err)
		}
		text := rep.Text()
		t.Logf("status:\n%s", text)
		if !strings.Contains(text, "the server accepts ~") || rep.Link.Rate > 20_000 {
			t.Errorf("status does not show the pace the server sets: %+v", rep.Link)
		}
		if note := rep.Outboxes[1].Note; note != "" {
			t.Errorf("room sink: %q; want it in its room", note)
		}
	})
}
