//go:build integration

package agent_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stanzad/stanzad/agent"
	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/devices"
	"github.com/stanzad/stanzad/internal/testserver"
	"github.com/stanzad/stanzad/xmpp"
)

// TestIntegrationClusterFailover runs four agents on a 2-node ejabberd
// cluster, two on each node, each sending readings to a person (chat) and
// to a room, both on node b. Node a is SIGKILLed while readings flow and
// while the operator has a command in flight to every agent. The agents
// of node a must be back on node b, in the room again, with every
// reading delivered to both sinks (a reading the dead node had not
// acknowledged may arrive twice; none may be missing), and every command
// either answered or failed with an error, none hanging.
func TestIntegrationClusterFailover(t *testing.T) {
	opts := testserver.EjabberdOptions{C2SShaper: -1, MUC: true, MaxOfflineMessages: 10000}
	a := testserver.NewEjabberd(t, opts)
	opts.Cluster = a
	b := testserver.NewEjabberd(t, opts)
	host := a.Host
	room := "fleet@conference." + host

	collector := newPeer(t, b, "collector") // the person, on node b
	collector.createRoom(t, room, "collector", "anyone")
	op := newPeer(t, b, "operator")

	const agents, readings = 4, 60
	type board struct {
		name  string
		a     *agent.Agent
		dev   *script
		first string // the endpoint listed first
	}
	boards := make([]*board, agents)
	for i := range boards {
		bd := &board{name: fmt.Sprintf("dev%d", i), dev: newScript("greenhouse")}
		testserver.MustRegister(t, a, bd.name, "pw-"+bd.name)
		servers := config.Endpoints{a.Addr, b.Addr}
		if i%2 == 1 {
			servers = config.Endpoints{b.Addr, a.Addr}
		}
		bd.first = servers[0]
		cfg := &config.Config{
			XMPP: config.XMPP{JID: bd.name + "@" + host + "/agent", Password: config.Secret("pw-" + bd.name),
				Server: servers, TLS: "starttls", CAFile: a.CAFile, Keepalive: config.Duration{Duration: 5 * time.Second}},
			Agent: config.Agent{StateDir: t.TempDir()},
			ACL:   config.ACL{Operators: []string{"operator@" + host, "collector@" + host}},
			Sinks: []config.Sink{
				{Kind: "chat", To: "collector@" + host, Batch: 1},
				{Kind: "muc", Room: room, Nick: bd.name, Batch: 1},
			},
		}
		bd.a = runOnline(t, agent.Options{Config: cfg, Logger: testLogger(t), Devices: []devices.Device{bd.dev}})
		boards[i] = bd
	}
	for _, bd := range boards {
		rep := waitStatus(t, bd.a, "online", 10*time.Second, func(r agent.StatusReport) bool { return r.Online })
		if rep.Server != bd.first {
			t.Fatalf("%s is on %s, want its first endpoint %s", bd.name, rep.Server, bd.first)
		}
	}
	// Every board is in the room before readings start.
	inRoom := map[string]bool{}
	collector.presenceFrom(t, "", func(mp xmpp.MUCPresence) bool {
		if mp.Room.String() == room && strings.HasPrefix(mp.Nick, "dev") && !mp.Unavailable {
			inRoom[mp.Nick] = true
		}
		return len(inRoom) == agents
	})

	// Collect what arrives: per board and sink, how often each value came.
	type key struct{ board, sink string }
	var mu sync.Mutex
	got := map[key]map[float64]int{}
	collectorDone := make(chan struct{})
	go func() {
		defer close(collectorDone)
		deadline := time.After(90 * time.Second)
		for {
			mu.Lock()
			complete := 0
			for _, m := range got {
				if len(m) == readings {
					complete++
				}
			}
			mu.Unlock()
			if complete == 2*agents {
				return
			}
			select {
			case m := <-collector.msgs:
				if !isReading(m) {
					continue
				}
				from := xmpp.MustParseJID(m.Attr("from"))
				k := key{from.Local, "chat"}
				if m.Attr("type") == "groupchat" {
					k = key{from.Resource, "muc"}
				}
				mu.Lock()
				if got[k] == nil {
					got[k] = map[float64]int{}
				}
				for _, v := range values(m) {
					got[k][v]++
				}
				mu.Unlock()
			case <-deadline:
				return
			}
		}
	}()

	// Readings 1..60, 50 ms apart; node a dies after the 20th, with a
	// command in flight to every board.
	type outcome struct {
		board string
		res   *xmpp.Element
		err   error
	}
	outcomes := make(chan outcome, agents)
	back := make(chan string, agents)
	// ejabberd keeps an acknowledged write in memory for up to 4 s; let
	// the accounts reach its disk so that the kill below is immediate
	// (testserver's Kill would wait for it otherwise).
	time.Sleep(4 * time.Second)
	for i := 1; i <= readings; i++ {
		for _, bd := range boards {
			bd.dev.temp(float64(i))
		}
		if i == 20 {
			for _, bd := range boards {
				go func() {
					res, err := op.command(t, bd.name+"@"+host+"/agent", "status", "execute", "")
					outcomes <- outcome{bd.name, res, err}
				}()
			}
			if err := a.Kill(); err != nil {
				t.Fatal(err)
			}
			killed := time.Now()
			t.Logf("node a killed after reading %d", i)
			for _, bd := range boards {
				go func() {
					for time.Since(killed) < 30*time.Second {
						if rep, err := bd.a.Status(t.Context(), operator); err == nil && rep.Online && rep.Server == b.Addr {
							back <- fmt.Sprintf("%s on node b %v after the kill", bd.name, time.Since(killed).Round(time.Millisecond))
							return
						}
						time.Sleep(10 * time.Millisecond)
					}
					back <- bd.name + " not on node b 30s after the kill"
				}()
			}
		}
		time.Sleep(50 * time.Millisecond)
	}

	for range agents {
		o := <-outcomes
		switch {
		case o.err != nil:
			t.Logf("%s: command in flight failed cleanly: %v", o.board, o.err)
		case o.res.Attr("status") != "completed":
			t.Errorf("%s: command in flight answered with %s", o.board, o.res)
		default:
			t.Logf("%s: command in flight answered", o.board)
		}
	}
	for range boards {
		if msg := <-back; strings.Contains(msg, "not on node b") {
			t.Error(msg)
		} else {
			t.Log(msg)
		}
	}
	<-collectorDone

	mu.Lock()
	defer mu.Unlock()
	dups := 0
	for _, bd := range boards {
		for _, sink := range []string{"chat", "muc"} {
			m := got[key{bd.name, sink}]
			var missing []int
			for i := 1; i <= readings; i++ {
				switch n := m[float64(i)]; {
				case n == 0:
					missing = append(missing, i)
				case n > 1:
					dups += n - 1
				}
			}
			if len(missing) > 0 {
				t.Errorf("%s %s: %d of %d readings missing: %v", bd.name, sink, len(missing), readings, missing)
			}
		}
	}
	t.Logf("%d boards x %d readings x 2 sinks delivered through the failover; %d duplicates (unacknowledged by the dead node)", agents, readings, dups)

	// After the failover every board answers commands on node b.
	for _, bd := range boards {
		res, err := op.command(t, bd.name+"@"+host+"/agent", "status", "execute", "")
		if err != nil {
			t.Fatalf("%s after failover: %v", bd.name, err)
		}
		if f := resultForm(t, res); f.Value("server") != b.Addr {
			t.Errorf("%s status says server %q, want %s", bd.name, f.Value("server"), b.Addr)
		}
	}
}
