//go:build integration

package agent_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
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

// tally is the receiving end of the telemetry benchmark: it counts the
// readings (XEP-0323 nodes) in every message, checks that seqnrs go up by
// one with no gap or duplicate, and notes when the last one arrived.
type tally struct {
	mu       sync.Mutex
	readings int
	stanzas  int
	lastSeq  uint64
	bad      string // first sequence error
	last     time.Time
	more     chan struct{}
	jid      string
}

func newTally(tb testing.TB, srv *testserver.Server, user string) *tally {
	tb.Helper()
	y := &tally{more: make(chan struct{}, 1), jid: user + "@" + srv.Host}
	mux := xmpp.NewMux(xmpp.Identity{Category: "client", Type: "pc"}, xmpp.Software{Name: "tally"})
	mux.Message = func(_ context.Context, _ *xmpp.Session, m *xmpp.Element) {
		f := m.Child(xmpp.NSSensorData, "fields")
		if f == nil {
			return
		}
		seq, _ := strconv.ParseUint(f.Attr("seqnr"), 10, 64)
		y.mu.Lock()
		if seq != y.lastSeq+1 && y.bad == "" {
			y.bad = fmt.Sprintf("seqnr %d after %d", seq, y.lastSeq)
		}
		y.lastSeq = seq
		y.stanzas++
		y.readings += len(f.Children)
		y.last = time.Now()
		y.mu.Unlock()
		select {
		case y.more <- struct{}{}:
		default:
		}
	}
	dialTest(tb, srv, user, "tally", mux)
	return y
}

func (y *tally) reset() {
	y.mu.Lock()
	y.readings, y.stanzas, y.lastSeq, y.bad = 0, 0, 0, ""
	y.mu.Unlock()
}

// wait returns once n readings are in, or after timeout with what came.
func (y *tally) wait(n int, timeout time.Duration) (readings, stanzas int, last time.Time, bad string) {
	deadline := time.After(timeout)
	for {
		y.mu.Lock()
		readings, stanzas, last, bad = y.readings, y.stanzas, y.last, y.bad
		y.mu.Unlock()
		if readings >= n {
			return
		}
		select {
		case <-y.more:
		case <-deadline:
			return
		}
	}
}

// telemetryRun is one line of the table.
type telemetryRun struct {
	name              string
	offered           float64 // readings/s the source aimed at (0: as fast as it goes)
	readings, stanzas int
	elapsed           time.Duration
	cpu, prosody      time.Duration
	rss               int64 // peak, KiB
	bad               string
	dropped           int
}

func (r telemetryRun) print(n int) {
	per10k := func(d time.Duration) float64 { return d.Seconds() / float64(r.readings) * 10000 }
	lost := n - r.readings
	rate := float64(r.readings) / r.elapsed.Seconds()
	offered := "max"
	if r.offered > 0 {
		offered = fmt.Sprintf("%.0f/s", r.offered)
	}
	fmt.Printf("%-26s %9s %11.0f %10.0f %5d %9.3f s %9.3f s %8.1f MiB  %s\n", r.name, offered, rate,
		float64(r.stanzas)/r.elapsed.Seconds(), lost+r.dropped, per10k(r.cpu), per10k(r.prosody), float64(r.rss)/1024, r.bad)
}

// BenchmarkIntegrationTelemetry measures sustained telemetry through
// Prosody (DESIGN.md, quality bars): a slixmpp peer sends n reading
// messages as fast as it can; then stanzad, in its own process, is fed n
// readings at 1.25× the peer's delivered rate, batched (the default) and
// one reading per stanza. Each row: delivered readings/s and stanzas/s at
// the receiver, readings lost, sender CPU seconds per 10,000 readings,
// Prosody's, and the sender's peak RSS. Run it with -benchtime 1x.
func BenchmarkIntegrationTelemetry(b *testing.B) {
	const n = 60000
	srv := testserver.New(b, testserver.Options{})
	testserver.MustRegister(b, srv, "device", "pw-device")
	rx := newTally(b, srv, "operator")
	peer := testserver.NewSlixPeer(b, srv, "peer", "pw-peer")

	for b.Loop() {
		var runs []telemetryRun
		// The peer, as fast as it goes.
		rx.reset()
		cpu0, p0, start := procCPU(peer.PID()), procCPU(srv.PID()), time.Now()
		if err := peer.Flood(rx.jid, n, 5*time.Minute); err != nil {
			b.Fatal(err)
		}
		got, stanzas, last, bad := rx.wait(n, 2*time.Minute)
		runs = append(runs, telemetryRun{name: "slixmpp " + slixVersion(), readings: got, stanzas: stanzas,
			elapsed: last.Sub(start), cpu: procCPU(peer.PID()) - cpu0, prosody: procCPU(srv.PID()) - p0,
			rss: peakRSS(peer.PID()), bad: bad})
		peerRate := float64(got) / last.Sub(start).Seconds()

		for _, batch := range []int{32, 1} {
			rx.reset()
			offered := 1.25 * peerRate
			runs = append(runs, runChildAgent(b, srv, rx, n, offered, batch))
		}

		fmt.Printf("\nsustained telemetry, %d readings each, sender → Prosody → receiver (one process each)\n", n)
		fmt.Printf("%-26s %9s %11s %10s %5s %11s %11s %12s\n", "sender", "offered", "readings/s", "stanzas/s", "lost",
			"CPU/10k", "Prosody/10k", "peak RSS")
		for _, r := range runs {
			r.print(n)
		}
		cpuRatio := (runs[1].cpu.Seconds() / float64(runs[1].readings)) / (runs[0].cpu.Seconds() / float64(runs[0].readings))
		fmt.Printf("stanzad (batched) CPU per reading / peer's: %.3f (bar: ≤ 0.2)\n", cpuRatio)
		b.ReportMetric(peerRate, "peer-readings/s")
		b.ReportMetric(float64(runs[1].readings)/runs[1].elapsed.Seconds(), "stanzad-readings/s")
		b.ReportMetric(cpuRatio, "cpu-ratio")
	}
}

// runChildAgent runs stanzad in a child process (this test binary,
// re-executed as TestTelemetryChild) so its CPU time is its own, and
// feeds it n readings at offered readings/s.
func runChildAgent(b *testing.B, srv *testserver.Server, rx *tally, n int, offered float64, batch int) telemetryRun {
	b.Helper()
	child := exec.Command(os.Args[0], "-test.run=^TestTelemetryChild$")
	child.Env = append(os.Environ(), "STANZAD_TCHILD_STATE="+b.TempDir(), "STANZAD_TCHILD_SERVER="+srv.Addr,
		"STANZAD_TCHILD_CA="+srv.CAFile, "STANZAD_TCHILD_TO="+rx.jid, fmt.Sprintf("STANZAD_TCHILD_N=%d", n),
		fmt.Sprintf("STANZAD_TCHILD_RATE=%f", offered), fmt.Sprintf("STANZAD_TCHILD_BATCH=%d", batch))
	child.Stderr = os.Stderr
	in, _ := child.StdinPipe()
	out, _ := child.StdoutPipe()
	if err := child.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { in.Close(); child.Wait() }()
	lines := bufio.NewScanner(out)
	expect := func(prefix string) string {
		for lines.Scan() {
			if strings.HasPrefix(lines.Text(), prefix) {
				return lines.Text()
			}
		}
		b.Fatalf("child ended before %q", prefix)
		return ""
	}
	expect("ready")
	pid := child.Process.Pid
	cpu0, p0, start := procCPU(pid), procCPU(srv.PID()), time.Now()
	io.WriteString(in, "go\n")
	got, stanzas, last, bad := rx.wait(n, 3*time.Minute)
	run := telemetryRun{name: fmt.Sprintf("stanzad, batch %d", batch), offered: offered, readings: got, stanzas: stanzas,
		elapsed: last.Sub(start), cpu: procCPU(pid) - cpu0, prosody: procCPU(srv.PID()) - p0, rss: peakRSS(pid), bad: bad}
	io.WriteString(in, "dropped?\n")
	run.dropped, _ = strconv.Atoi(strings.TrimPrefix(expect("dropped "), "dropped "))
	return run
}

// peakRSS is a process's peak resident set size (VmHWM) in KiB.
func peakRSS(pid int) int64 {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kib, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kib
		}
	}
	return 0
}

// source emits n two-field readings, paced at rate per second, once
// started; the bus never sees more than the rate allows.
type source struct {
	n     int
	rate  float64
	start chan struct{}
}

func (s *source) Name() string { return "greenhouse" }

func (s *source) Run(ctx context.Context, emit func(devices.Reading)) error {
	select {
	case <-s.start:
	case <-ctx.Done():
		return nil
	}
	t0 := time.Now()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for sent := 0; sent < s.n; {
		due := min(s.n, int(time.Since(t0).Seconds()*s.rate)+1)
		for ; sent < due; sent++ {
			emit(devices.Reading{Device: "greenhouse", Time: time.Now().UTC(), Fields: []devices.Field{
				devices.Number("temperature", 21.5, 1, "°C"), devices.Number("humidity", 40.2, 1, "%")}})
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
	<-ctx.Done()
	return nil
}

// TestTelemetryChild is the agent process of BenchmarkIntegrationTelemetry.
func TestTelemetryChild(t *testing.T) {
	state := os.Getenv("STANZAD_TCHILD_STATE")
	if state == "" {
		t.Skip("runs only as the child of BenchmarkIntegrationTelemetry")
	}
	n, _ := strconv.Atoi(os.Getenv("STANZAD_TCHILD_N"))
	rate, _ := strconv.ParseFloat(os.Getenv("STANZAD_TCHILD_RATE"), 64)
	batch, _ := strconv.Atoi(os.Getenv("STANZAD_TCHILD_BATCH"))
	cfg := &config.Config{
		XMPP: config.XMPP{JID: "device@iot.test/agent", Password: config.Secret("pw-device"),
			Server: config.Endpoints{os.Getenv("STANZAD_TCHILD_SERVER")}, TLS: "starttls", CAFile: os.Getenv("STANZAD_TCHILD_CA")},
		Agent: config.Agent{StateDir: state, OutboxMax: 64 << 20},
		Sinks: []config.Sink{{Kind: "chat", To: os.Getenv("STANZAD_TCHILD_TO"), Devices: []string{"*"}, Batch: batch}},
	}
	if prof := os.Getenv("STANZAD_TCHILD_CPUPROFILE"); prof != "" {
		f, err := os.Create(fmt.Sprintf("%s.batch%d", prof, batch))
		if err != nil {
			t.Fatal(err)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	src := &source{n: n, rate: rate, start: make(chan struct{})}
	a, err := agent.New(agent.Options{Config: cfg, Devices: []devices.Device{src}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.Run(ctx)
	if _, err := a.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "go":
			close(src.start)
		case "dropped?":
			rep, _ := a.Status(ctx, agent.Caller{Role: agent.RoleOperator, Via: "bench"})
			fmt.Printf("dropped %d\n", rep.Dropped)
		}
	}
}
