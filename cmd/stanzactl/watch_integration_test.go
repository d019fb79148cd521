//go:build integration

package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stanzad/stanzad/agent"
	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/devices"
	"github.com/stanzad/stanzad/internal/testserver"
)

// pushed is a device that emits a temperature reading each time the
// test sends a value.
type pushed chan float64

func (p pushed) Name() string { return "greenhouse" }

func (p pushed) Run(ctx context.Context, emit func(devices.Reading)) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case v := <-p:
			emit(devices.Reading{Device: "greenhouse", Time: time.Now().UTC(), Fields: []devices.Field{devices.Number("temperature", v, 1, "°C")}})
		}
	}
}

// syncBuffer is a bytes.Buffer a watch writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// watch -pubsub against what the servers really send when one
// subscribes: Prosody's PEP replays the last item without a delay, its
// pubsub component not at all; ejabberd replays with a delay on both. The
// replay is shown once, marked, and the watch still counts one live
// reading.
func TestIntegrationWatchReplay(t *testing.T) {
	t.Run("prosody", func(t *testing.T) {
		srv := testserver.New(t, testserver.Options{PubSub: true, Admins: []string{"device@iot.test"}})
		testWatchReplay(t, srv, map[string]bool{"pubsub": false, "pep": true})
	})
	t.Run("ejabberd", func(t *testing.T) {
		srv := testserver.NewEjabberd(t, testserver.EjabberdOptions{PubSub: true, C2SShaper: -1})
		testWatchReplay(t, srv, map[string]bool{"pubsub": true, "pep": true})
	})
}

func testWatchReplay(t *testing.T, srv *testserver.Server, replays map[string]bool) {
	testserver.MustRegister(t, srv, "device", "pw-device")
	testserver.MustRegister(t, srv, "operator", "pw-operator")
	dir := t.TempDir()
	cfg := &config.Config{
		XMPP:  config.XMPP{JID: "device@" + srv.Host + "/agent", Password: "pw-device", Server: config.Endpoints{srv.Addr}, CAFile: srv.CAFile},
		Agent: config.Agent{StateDir: filepath.Join(dir, "state")},
		ACL:   config.ACL{Operators: []string{"operator@" + srv.Host}},
		Sinks: []config.Sink{
			{Kind: "pubsub", Service: "pubsub." + srv.Host, Node: "urn:xmpp:iot:sensordata/{device}", MaxItems: 5, Devices: []string{"*"}},
			// open: this test is about replays, not about who may read.
			{Kind: "pep", Node: "urn:xmpp:iot:sensordata/{device}", MaxItems: 5, AccessModel: "open", Devices: []string{"*"}},
		},
	}
	dev := make(pushed)
	a := runAgent(t, agent.Options{Config: cfg, Devices: []devices.Device{dev}})
	op := operatorConfig(t, srv, dir)

	// Two readings published before the watch: item 2 is each node's last.
	dev <- 20
	dev <- 21
	waitPublished(t, a)

	// Each watch sees the last reading before it replayed (if the server
	// replays), then its own live one.
	for _, sink := range []struct {
		kind, service string
		last, live    float64
	}{{"pubsub", "pubsub." + srv.Host, 21, 30}, {"pep", "device@" + srv.Host, 30, 31}} {
		t.Run(sink.kind, func(t *testing.T) {
			var stdout, stderr syncBuffer
			code := make(chan int, 1)
			go func() {
				code <- run([]string{"-config", op, "-count", "1", "-pubsub", sink.service, "watch", "greenhouse"}, &stdout, &stderr)
			}()
			// The replay comes right after the subscribe: once it is shown,
			// the watch is subscribed. Without a replay to tell, give the
			// subscribe a second.
			for deadline := time.Now().Add(10 * time.Second); replays[sink.kind] && !strings.Contains(stdout.String(), "# replayed") && time.Now().Before(deadline); {
				time.Sleep(20 * time.Millisecond)
			}
			if !replays[sink.kind] {
				time.Sleep(time.Second)
			}
			dev <- sink.live
			select {
			case c := <-code:
				if c != 0 {
					t.Fatalf("watch exit %d: %s", c, stderr.String())
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("watch did not end after one live reading; output:\n%s%s", stdout.String(), stderr.String())
			}
			waitPublished(t, a) // the live reading is the next watch's last
			out := stdout.String()
			t.Logf("watch -pubsub %s:\n%s", sink.service, out)
			lines := strings.Split(strings.TrimSpace(out), "\n")
			wantLines := 1
			if replays[sink.kind] {
				wantLines = 2
				if !strings.HasSuffix(lines[0], fmt.Sprintf("temperature=%.1f °C  # replayed", sink.last)) {
					t.Errorf("first line %q, want the last item before the watch, marked replayed", lines[0])
				}
			}
			if len(lines) != wantLines || !strings.HasSuffix(lines[len(lines)-1], fmt.Sprintf("temperature=%.1f °C", sink.live)) {
				t.Errorf("watch printed %q; want %d lines ending with the live reading", lines, wantLines)
			}
		})
	}
}

// waitPublished waits until the sinks of a have no reading waiting
// (the service answered every publish), after giving the readings just
// emitted time to reach the outboxes (the dispatcher gathers for 10 ms).
func waitPublished(t *testing.T, a *agent.Agent) {
	t.Helper()
	time.Sleep(300 * time.Millisecond)
	deadline := time.Now().Add(15 * time.Second)
	for {
		rep, err := a.Status(t.Context(), agent.Caller{Role: agent.RoleOperator, Via: "test"})
		if err != nil {
			t.Fatal(err)
		}
		ok := true
		for _, o := range rep.Outboxes {
			ok = ok && o.Pending == 0
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("readings not published: %+v", rep.Outboxes)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
