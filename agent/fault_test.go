//go:build integration

package agent_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stanzad/stanzad/agent"
	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/devices"
	"github.com/stanzad/stanzad/internal/testserver"
	"github.com/stanzad/stanzad/xmpp"
)

// counter is a test device: n readings, one every `every`, then quiet.
type counter struct {
	n     int
	every time.Duration
	done  chan struct{} // if not nil, closed after the n-th reading
}

func (c counter) Name() string { return "counter" }

func (c counter) Run(ctx context.Context, emit func(devices.Reading)) error {
	t := time.NewTicker(c.every)
	defer t.Stop()
	for i := 1; i <= c.n; i++ {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		emit(devices.Reading{Device: "counter", Time: time.Now().UTC(), Fields: []devices.Field{devices.Number("n", float64(i), 0, "")}})
	}
	if c.done != nil {
		close(c.done)
	}
	<-ctx.Done()
	return nil
}

// receiver is the operator: an xmpp.Client that reconnects by itself and
// records, in arrival order, the seqnr of every reading stanza it gets and
// the counter value of every reading in them (a stanza may carry several).
type receiver struct {
	mu   sync.Mutex
	seqs []uint64
	vals []uint64
	more chan struct{}
	// approved counts the presence subscriptions this receiver approved.
	approved int
}

func newReceiver(t *testing.T, srv *testserver.Server, user string) *receiver {
	t.Helper()
	testserver.MustRegister(t, srv, user, "pw-"+user)
	return newReceiverTB(t, srv, user)
}

// newReceiverTB connects an already registered user.
func newReceiverTB(t testing.TB, srv *testserver.Server, user string) *receiver {
	t.Helper()
	r := &receiver{more: make(chan struct{}, 1)}
	t.Cleanup(r.connect(t, srv, user))
	return r
}

// connect logs the receiver in as user@host/rx until the returned stop is
// called. It approves presence subscription requests, as a person's
// client does for a device they operate.
func (r *receiver) connect(t testing.TB, srv *testserver.Server, user string) (stop func()) {
	t.Helper()
	tc, _ := xmpp.TLSConfig(xmpp.TLSOptions{CAFile: srv.CAFile})
	mux := xmpp.NewMux(xmpp.Identity{Category: "client", Type: "pc"}, xmpp.Software{Name: "test"})
	mux.Message = func(_ context.Context, _ *xmpp.Session, m *xmpp.Element) {
		f := m.Child(xmpp.NSSensorData, "fields")
		if f == nil {
			return
		}
		n, _ := strconv.ParseUint(f.Attr("seqnr"), 10, 64)
		r.mu.Lock()
		r.seqs = append(r.seqs, n)
		for _, node := range f.Children {
			for _, num := range node.Child("", "timestamp").Children {
				v, _ := strconv.ParseUint(num.Attr("value"), 10, 64)
				r.vals = append(r.vals, v)
			}
		}
		r.mu.Unlock()
		select {
		case r.more <- struct{}{}:
		default:
		}
	}
	mux.Presence = func(ctx context.Context, s *xmpp.Session, p *xmpp.Element) {
		if p.Attr("type") == "subscribe" {
			if s.Send(ctx, xmpp.Stanza("presence", "subscribed", p.Attr("from"), "")) == nil {
				r.mu.Lock()
				r.approved++
				r.mu.Unlock()
			}
		}
	}
	c := xmpp.NewClient(xmpp.Config{
		JID: xmpp.MustParseJID(user + "@" + srv.Host + "/rx"), Password: "pw-" + user,
		Servers: []string{srv.Addr}, TLS: tc, Handler: mux, Timeout: 5 * time.Second,
	})
	c.Keepalive = time.Second
	c.OnConnect = func(ctx context.Context, s *xmpp.Session) error {
		if s.Resumed() {
			return nil
		}
		return s.SendRaw(ctx, []byte("<presence/>"))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	if _, err := c.WaitConnected(t.Context()); err != nil {
		cancel()
		<-done
		t.Fatal(err)
	}
	var once sync.Once
	return func() { once.Do(func() { cancel(); <-done }) }
}

// expect waits until n counter readings have arrived and checks that
// they are 1..n, each once, in order, and that the stanzas carrying them
// have the seqnrs first, first+1, ... with no gap and no duplicate.
func (r *receiver) expect(t *testing.T, first uint64, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		r.mu.Lock()
		vals := append([]uint64(nil), r.vals...)
		seqs := append([]uint64(nil), r.seqs...)
		r.mu.Unlock()
		if len(vals) >= n {
			for i, v := range vals {
				if v != uint64(i+1) {
					t.Fatalf("reading %d has value %d, want %d (values %v)", i, v, i+1, summarize(vals))
				}
			}
			if len(vals) > n {
				t.Fatalf("got %d readings, want %d: %v", len(vals), n, summarize(vals))
			}
			for i, s := range seqs {
				if want := first + uint64(i); s != want {
					t.Fatalf("stanza %d has seqnr %d, want %d (sequence %v)", i, s, want, summarize(seqs))
				}
			}
			t.Logf("%d readings in %d stanzas", len(vals), len(seqs))
			return
		}
		select {
		case <-r.more:
		case <-deadline:
			t.Fatalf("got %d of %d readings within %v: %v", len(vals), n, timeout, summarize(vals))
		}
	}
}

// expectResent is expect for a server that dies: it may have routed the
// last readings before it acknowledged them, and those are sent again on
// the new session (DESIGN.md: duplicates only for stanzas the server
// never acked). The values must be 1..k, then a resend run j..n with
// k-j < max(ackWindow) — never a gap, never a reading out of order.
func (r *receiver) expectResent(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	const window = 32 // more than the readings a sink has unacknowledged at once
	deadline := time.After(timeout)
	for {
		r.mu.Lock()
		vals := append([]uint64(nil), r.vals...)
		r.mu.Unlock()
		if len(vals) > 0 && vals[len(vals)-1] == uint64(n) {
			resent := 0
			for i := 1; i < len(vals); i++ {
				prev, v := vals[i-1], vals[i]
				switch {
				case v == prev+1:
				case v >= 1 && v <= prev && resent == 0 && prev-v < window: // 1..prev came before, in order
					resent = int(prev - v + 1)
				default:
					t.Fatalf("reading %d has value %d after %d (values %v)", i, v, prev, summarize(vals))
				}
			}
			if vals[0] != 1 {
				t.Fatalf("first reading %d (values %v)", vals[0], summarize(vals))
			}
			t.Logf("%d readings, %d sent again after the server died unacknowledging them", n, resent)
			return
		}
		select {
		case <-r.more:
		case <-deadline:
			t.Fatalf("got %d readings within %v, want 1..%d: %v", len(vals), timeout, n, summarize(vals))
		}
	}
}

// summarize shows a sequence as runs, e.g. "1-57 59-200".
func summarize(s []uint64) string {
	out := ""
	for i := 0; i < len(s); {
		j := i
		for j+1 < len(s) && s[j+1] == s[j]+1 {
			j++
		}
		out += fmt.Sprintf(" %d-%d", s[i], s[j])
		i = j + 1
	}
	return out
}

// faultEjabberd is ejabberd for the fault tests: no shaper, and room
// for every reading in offline storage (the caps are tested apart, in
// realities_integration_test.go).
var faultEjabberd = testserver.EjabberdOptions{C2SShaper: -1, MaxOfflineMessages: 10000}

func faultConfig(srv *testserver.Server, state, server string) *config.Config {
	cfg := agentConfig(srv, state)
	cfg.XMPP.Server = config.Endpoints{server}
	cfg.XMPP.Keepalive = config.Duration{Duration: time.Second}
	cfg.Devices = nil
	cfg.Sinks = []config.Sink{{Kind: "chat", To: "operator@" + srv.Host, Devices: []string{"*"}}}
	return cfg
}

func runAgent(t *testing.T, cfg *config.Config, devs ...devices.Device) (*agent.Agent, func() error) {
	t.Helper()
	a, err := agent.New(agent.Options{Config: cfg, Devices: devs, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	var err2 error
	stop := func() error {
		once.Do(func() { cancel(); err2 = <-done })
		return err2
	}
	t.Cleanup(func() { stop() })
	return a, stop
}

// Scenario 1: the server (Prosody, ejabberd) SIGKILLed while readings
// flow every 50 ms, back 2 s later: every seqnr arrives exactly once, in
// order.
func TestIntegrationFaultServerKilled(t *testing.T) {
	eachServer(t, testserver.Options{}, faultEjabberd, testFaultServerKilled)
}

func testFaultServerKilled(t *testing.T, srv *testserver.Server) {
	testserver.MustRegister(t, srv, "device", "pw-device")
	rx := newReceiver(t, srv, "operator")
	const n = 200 // 10 s at 50 ms
	a, _ := runAgent(t, faultConfig(srv, t.TempDir(), srv.Addr), counter{n: n, every: 50 * time.Millisecond})

	time.Sleep(3 * time.Second)
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if err := srv.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	if _, err := a.WaitConnected(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Logf("session back %v after the server accepted again", time.Since(back).Round(time.Millisecond))
	rx.expectResent(t, n, 30*time.Second)
}

// Scenario 2: The server frozen (SIGSTOP) for 3 keepalives: the agent
// declares the connection dead while the server is still frozen, and
// recovers once it thaws.
func TestIntegrationFaultServerFrozen(t *testing.T) {
	eachServer(t, testserver.Options{}, faultEjabberd, testFaultServerFrozen)
}

func testFaultServerFrozen(t *testing.T, srv *testserver.Server) {
	testserver.MustRegister(t, srv, "device", "pw-device")
	rx := newReceiver(t, srv, "operator")
	const n = 100
	a, _ := runAgent(t, faultConfig(srv, t.TempDir(), srv.Addr), counter{n: n, every: 50 * time.Millisecond})
	first, err := a.WaitConnected(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if err := srv.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	select {
	case <-first.Done():
		t.Logf("dead connection detected after %v (keepalive 1s)", time.Since(stopped).Round(time.Millisecond))
	case <-time.After(3 * time.Second):
		srv.Signal(syscall.SIGCONT)
		t.Fatal("connection to a frozen server not declared dead within 3 keepalives")
	}
	time.Sleep(3*time.Second - time.Since(stopped))
	if err := srv.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	rx.expect(t, 1, n, 30*time.Second)
}

// Scenario 5: the TCP connection is cut while the server stays up: the stream
// is resumed (same full JID), nothing lost, nothing twice.
func TestIntegrationFaultResume(t *testing.T) {
	eachServer(t, testserver.Options{}, faultEjabberd, testFaultResume)
}

func testFaultResume(t *testing.T, srv *testserver.Server) {
	testserver.MustRegister(t, srv, "device", "pw-device")
	proxy := testserver.NewProxy(t, srv.Addr)
	rx := newReceiver(t, srv, "operator")
	const n = 100
	a, _ := runAgent(t, faultConfig(srv, t.TempDir(), proxy.Addr), counter{n: n, every: 20 * time.Millisecond})
	first, err := a.WaitConnected(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	proxy.Cut()
	<-first.Done()
	var second *xmpp.Session
	for second == nil || second == first {
		if second, err = a.WaitConnected(t.Context()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !second.Resumed() || second.JID() != first.JID() {
		t.Errorf("after the cut: resumed=%v as %s, want resumed as %s", second.Resumed(), second.JID(), first.JID())
	}
	rx.expect(t, 1, n, 30*time.Second)
}

// Scenario 4: the outbox log is cut in the middle of its last record (a
// power loss during a write): the agent starts, logs the loss and delivers
// everything before it.
func TestIntegrationFaultTornOutbox(t *testing.T) {
	eachServer(t, testserver.Options{}, faultEjabberd, testFaultTornOutbox)
}

func testFaultTornOutbox(t *testing.T, srv *testserver.Server) {
	testserver.MustRegister(t, srv, "device", "pw-device")
	state := t.TempDir()
	srv.Stop() // offline: readings pile up in the outbox
	// One reading per record (batch 1), so the torn record costs exactly
	// one reading.
	cfg := faultConfig(srv, state, srv.Addr)
	cfg.Sinks[0].Batch = 1
	a, stop := runAgent(t, cfg, counter{n: 50, every: time.Millisecond})
	for a.Queued() < 50 {
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	log := filepath.Join(state, "outbox", "chat-operator@"+srv.Host, "log")
	fi, err := os.Stat(log)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(log, fi.Size()-5); err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	rx := newReceiver(t, srv, "operator")
	runAgent(t, cfg)
	rx.expect(t, 1, 49, 30*time.Second)
}

// Scenario 3: stanzad SIGKILLed while offline with 1,000 readings queued;
// restarted with the server up, it delivers all 1,000. The agent runs in a
// child process (this test binary, re-executed) so it can really be killed.
func TestIntegrationFaultAgentKilled(t *testing.T) {
	eachServer(t, testserver.Options{}, faultEjabberd, testFaultAgentKilled)
}

func testFaultAgentKilled(t *testing.T, srv *testserver.Server) {
	testserver.MustRegister(t, srv, "device", "pw-device")
	state := t.TempDir()
	srv.Stop()
	child := exec.Command(os.Args[0], "-test.run=^TestChildAgent$")
	child.Env = append(os.Environ(), "STANZAD_CHILD_STATE="+state, "STANZAD_CHILD_SERVER="+srv.Addr,
		"STANZAD_CHILD_CA="+srv.CAFile, "STANZAD_CHILD_READINGS=1000")
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	if n, _ := out.Read(buf); string(buf[:n]) != "queued\n" {
		child.Process.Kill()
		t.Fatalf("child said %q", buf[:n])
	}
	child.Process.Signal(syscall.SIGKILL)
	child.Wait()

	if err := srv.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	rx := newReceiver(t, srv, "operator")
	runAgent(t, faultConfig(srv, state, srv.Addr))
	rx.expect(t, 1, 1000, 30*time.Second)
}

// TestChildAgent is the agent process of TestIntegrationFaultAgentKilled.
// It queues its readings while the server is down, says "queued", and
// waits to be killed.
func TestChildAgent(t *testing.T) {
	state := os.Getenv("STANZAD_CHILD_STATE")
	if state == "" {
		t.Skip("runs only as the child of TestIntegrationFaultAgentKilled")
	}
	n, _ := strconv.Atoi(os.Getenv("STANZAD_CHILD_READINGS"))
	cfg := &config.Config{
		XMPP: config.XMPP{JID: "device@iot.test/agent", Password: config.Secret("pw-device"),
			Server: config.Endpoints{os.Getenv("STANZAD_CHILD_SERVER")}, TLS: "starttls", CAFile: os.Getenv("STANZAD_CHILD_CA")},
		Agent: config.Agent{StateDir: state},
		ACL:   config.ACL{Operators: []string{"operator@iot.test"}},
		Sinks: []config.Sink{{Kind: "chat", To: "operator@iot.test", Devices: []string{"*"}}},
	}
	emitted := make(chan struct{})
	a, err := agent.New(agent.Options{Config: cfg, Devices: []devices.Device{counter{n: n, every: 100 * time.Microsecond, done: emitted}}})
	if err != nil {
		t.Fatal(err)
	}
	go a.Run(context.Background())
	<-emitted
	// The dispatcher queues a reading within microseconds of its emit;
	// wait until the outbox stops growing.
	for last := -1; a.Queued() != last; {
		last = a.Queued()
		time.Sleep(200 * time.Millisecond)
	}
	fmt.Println("queued")
	select {}
}

// BenchmarkIntegrationReconnect measures, per Prosody SIGKILL and restart
// while a reading is taken every 20 ms, the time from Prosody accepting
// connections again to the agent's session being back, and counts
// readings lost over the whole run (target: 0).
func BenchmarkIntegrationReconnect(b *testing.B) {
	srv := testserver.New(b, testserver.Options{})
	testserver.MustRegister(b, srv, "device", "pw-device")
	testserver.MustRegister(b, srv, "operator", "pw-operator")
	rx := newReceiverTB(b, srv, "operator")
	cfg := faultConfig(srv, b.TempDir(), srv.Addr)
	a, err := agent.New(agent.Options{Config: cfg, Devices: []devices.Device{counter{n: 1 << 30, every: 20 * time.Millisecond}}})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	if _, err := a.WaitConnected(b.Context()); err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	b.ResetTimer()
	for b.Loop() {
		old, _ := a.WaitConnected(b.Context())
		srv.Kill()
		time.Sleep(500 * time.Millisecond)
		if err := srv.Start(b.Context()); err != nil {
			b.Fatal(err)
		}
		back := time.Now()
		for {
			s, err := a.WaitConnected(b.Context())
			if err != nil {
				b.Fatal(err)
			}
			if s != old {
				break
			}
			time.Sleep(time.Millisecond)
		}
		total += time.Since(back)
		// Outlive the client's "stable session" threshold, so each round
		// starts from the first backoff step as a lone outage would.
		time.Sleep(11 * time.Second)
	}
	b.StopTimer()
	cancel()
	<-done
	// Everything the agent took must have reached the operator.
	sent := 0
	deadline := time.Now().Add(20 * time.Second)
	for {
		rx.mu.Lock()
		got := append([]uint64(nil), rx.vals...) // counter values: one per reading
		rx.mu.Unlock()
		if len(got) > 0 {
			sent = int(got[len(got)-1])
		}
		seen := make(map[uint64]bool)
		for _, s := range got {
			seen[s] = true
		}
		lost := 0
		for s := 1; s <= sent; s++ {
			if !seen[uint64(s)] {
				lost++
			}
		}
		if lost == 0 || time.Now().After(deadline) {
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms-to-session")
			b.ReportMetric(float64(lost), "lost")
			b.ReportMetric(float64(len(got)-len(seen)), "duplicates")
			b.ReportMetric(float64(sent), "readings")
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}
