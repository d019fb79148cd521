//go:build integration

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stanzad/stanzad/internal/ptytest"
	"github.com/stanzad/stanzad/internal/testserver"
	"github.com/stanzad/stanzad/xmpp"
)

// BenchmarkIntegrationIdleMemory runs the shipped build (bin/stanzad, from
// make build) against a private Prosody, idle for a minute with four
// simulated devices and a chat sink, as DESIGN.md's footprint bar says,
// and reports its memory: VmRSS, RssAnon, RssFile and PSS in kB. "full"
// adds a pubsub, a PEP and a room sink and the MQTT bridge; "full-long"
// idles six minutes (STANZAD_IDLE_LONG); "demo-nohistory" is the demo
// without the reading history, to show what it costs.
//
// The bar's two configs, demo and full, run three agents side by side
// (STANZAD_IDLE_RUNS), each against its own Prosody: one run's anonymous
// memory moves by ±150 kB with when the collector happened to run
// during start-up (docs/benchmarks.md), too much to judge a 3 MiB bar
// on. Their figures are the median of the runs, and RssAnon and VmRSS
// also report the lowest and highest run (_lo_kB, _hi_kB).
func BenchmarkIntegrationIdleMemory(b *testing.B) {
	bin := shippedBinary(b)
	idle := 60 * time.Second
	if d, err := time.ParseDuration(os.Getenv("STANZAD_IDLE")); err == nil {
		idle = d
	}
	report := func(b *testing.B, m map[string]int) {
		for _, k := range []string{"VmRSS", "RssAnon", "RssFile", "Pss"} {
			b.ReportMetric(float64(m[k]), k+"_kB")
			b.ReportMetric(float64(m[k+"_max"]), k+"_max_kB")
		}
		b.ReportMetric(float64(m["Threads"]), "threads")
	}
	// The peer: slixmpp logged in with ad-hoc commands and ping, no
	// devices, measured the same way (python3 shares little with others).
	b.Run("slixmpp-peer", func(b *testing.B) {
		for b.Loop() {
			srv := testserver.New(b, testserver.Options{})
			peer := testserver.NewSlixPeer(b, srv, "peer", "pw-peer")
			report(b, sampleIdle(b, peer.PID(), idle))
		}
	})
	runs := 3
	if n, err := strconv.Atoi(os.Getenv("STANZAD_IDLE_RUNS")); err == nil && n > 0 {
		runs = n
	}
	for _, full := range []bool{false, true} {
		name := "demo"
		if full {
			name = "full"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				// Started one after the other on this goroutine (setup
				// may fail the benchmark), each sampled from its own
				// start, side by side.
				agents := make([]idleAgent, runs)
				ms := make([]map[string]int, runs)
				errs := make([]error, runs)
				var wg sync.WaitGroup
				for i := range agents {
					agents[i] = startIdle(b, bin, full, "", "")
					wg.Go(func() { ms[i], errs[i] = sampleProc(agents[i].cmd.Process.Pid, idle) })
				}
				wg.Wait()
				for i, a := range agents {
					if errs[i] != nil {
						b.Fatal(errs[i])
					}
					a.finish(b)
				}
				m := medianRun(ms)
				report(b, m)
				for _, k := range []string{"RssAnon", "VmRSS"} {
					b.ReportMetric(float64(m[k+"_lo"]), k+"_lo_kB")
					b.ReportMetric(float64(m[k+"_hi"]), k+"_hi_kB")
				}
				b.ReportMetric(float64(runs), "runs")
			}
		})
	}
	// What the reading history (on by default) costs at idle.
	b.Run("demo-nohistory", func(b *testing.B) {
		for b.Loop() {
			report(b, idleMemory(b, bin, false, idle, "history_max = 0", ""))
		}
	})
	// Three file devices (fsnotify) beside the config watch: they share
	// one watcher (devices.WatchDir).
	b.Run("demo-files", func(b *testing.B) {
		for b.Loop() {
			var devs strings.Builder
			for i := range 3 {
				dir := filepath.Join(b.TempDir(), fmt.Sprint("in", i))
				if err := os.Mkdir(dir, 0o755); err != nil {
					b.Fatal(err)
				}
				fmt.Fprintf(&devs, "\n[[device]]\nname = \"file%d\"\nkind = \"file\"\npath = %q\n", i, filepath.Join(dir, "value"))
			}
			report(b, idleMemory(b, bin, false, idle, "", devs.String()))
		}
	})
	// The bar is taken a minute after start; a board idles for months.
	// Six minutes covers three of the runtime's forced collections and
	// several rounds of the daemon's give-back (maxima over minutes 3-6).
	long := 6 * time.Minute
	if d, err := time.ParseDuration(os.Getenv("STANZAD_IDLE_LONG")); err == nil {
		long = d
	}
	b.Run("full-long", func(b *testing.B) {
		for b.Loop() {
			report(b, idleMemory(b, bin, true, long, "", ""))
		}
	})
}

// medianRun is the median of each figure over the runs, and for every
// figure k also k_lo and k_hi, the lowest and highest run.
func medianRun(ms []map[string]int) map[string]int {
	out := map[string]int{}
	for k := range ms[0] {
		vs := make([]int, 0, len(ms))
		for _, m := range ms {
			vs = append(vs, m[k])
		}
		slices.Sort(vs)
		out[k] = vs[len(vs)/2]
		if len(vs)%2 == 0 {
			out[k] = (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2
		}
		out[k+"_lo"], out[k+"_hi"] = vs[0], vs[len(vs)-1]
	}
	return out
}

// shippedBinary is bin/stanzad from make build, or STANZAD_BIN (e.g. the
// make memdebug build).
func shippedBinary(b *testing.B) string {
	bin, _ := filepath.Abs("../../bin/stanzad")
	if p := os.Getenv("STANZAD_BIN"); p != "" {
		bin, _ = filepath.Abs(filepath.Join("../..", p))
		if filepath.IsAbs(p) {
			bin = p
		}
	}
	if _, err := os.Stat(bin); err != nil {
		b.Skipf("%s: run make build (make bench does)", bin)
	}
	return bin
}

// idleMemory runs an agent and returns its memory after idle.
func idleMemory(b *testing.B, bin string, full bool, idle time.Duration, agentExtra, extra string) map[string]int {
	a := startIdle(b, bin, full, agentExtra, extra)
	m := sampleIdle(b, a.cmd.Process.Pid, idle)
	a.finish(b)
	return m
}

// idleAgent is an agent process started for an idle measurement.
type idleAgent struct {
	cmd *exec.Cmd
	dir string // its state directory, with its log
}

// startIdle starts the demo config plus extra ("full" adds the sinks and
// the bridge) against a private Prosody.
func startIdle(b *testing.B, bin string, full bool, agentExtra, extra string) idleAgent {
	srv := testserver.New(b, testserver.Options{MUC: full, PubSub: full, Admins: []string{"device@iot.test"}})
	testserver.MustRegister(b, srv, "device", "pw-device")
	testserver.MustRegister(b, srv, "operator", "pw-operator")
	dir := b.TempDir()
	if full {
		broker := testserver.NewMosquitto(b, testserver.MosquittoOptions{})
		extra += fmt.Sprintf(`
[[sink]]
kind = "pubsub"
service = "pubsub.%[1]s"

[[sink]]
kind = "pep"

[[sink]]
kind = "muc"
room = "lab@conference.%[1]s"

[mqtt]
broker = "tcp://%[2]s"
`, srv.Host, broker.Addr)
	}
	return idleAgent{cmd: startAgentProcess(b, bin, srv, dir, agentExtra, extra), dir: dir}
}

// finish writes what STANZAD_GOROUTINES and STANZAD_SHOWLOG ask for.
func (a idleAgent) finish(b *testing.B) {
	cmd, dir := a.cmd, a.dir
	if out := os.Getenv("STANZAD_GOROUTINES"); out != "" {
		if strings.HasSuffix(out, "/") {
			out += strconv.Itoa(cmd.Process.Pid) + ".log"
		}
		// The goroutines' stacks, for "where the memory goes": the
		// runtime prints them on SIGQUIT and exits; the log goes to out,
		// the mappings (smaps) to out.smaps.
		smaps, _ := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", cmd.Process.Pid))
		if err := os.WriteFile(out+".smaps", smaps, 0o644); err != nil {
			b.Error(err)
		}
		cmd.Process.Signal(syscall.SIGQUIT)
		cmd.Wait()
		logData, _ := os.ReadFile(filepath.Join(dir, "stanzad.log"))
		if err := os.WriteFile(out, logData, 0o644); err != nil {
			b.Error(err)
		}
	}
	if os.Getenv("STANZAD_SHOWLOG") != "" {
		logData, _ := os.ReadFile(filepath.Join(dir, "stanzad.log"))
		b.Log(string(logData))
	}
}

// sampleIdle waits idle and returns pid's memory figures: the last
// sample, and the maxima over the second half of the idle time, sampled
// every second, so a figure taken just after a process trimmed its heap
// cannot pass for its idle size.
func sampleIdle(b *testing.B, pid int, idle time.Duration) map[string]int {
	m, err := sampleProc(pid, idle)
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// sampleProc is sampleIdle for any goroutine: it returns the error.
func sampleProc(pid int, idle time.Duration) (map[string]int, error) {
	time.Sleep(idle / 2)
	m := map[string]int{}
	for end := time.Now().Add(idle / 2); ; {
		now, err := readProcMemory(pid)
		if err != nil {
			return nil, err
		}
		for k, v := range now {
			m[k] = v
			m[k+"_max"] = max(m[k+"_max"], v)
		}
		if time.Now().After(end) {
			return m, nil
		}
		time.Sleep(time.Second)
	}
}

// procMemory reads the kB figures of /proc/PID/status and smaps_rollup.
func procMemory(b *testing.B, pid int) map[string]int {
	m, err := readProcMemory(pid)
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// readProcMemory is procMemory for any goroutine: it returns the error.
func readProcMemory(pid int) (map[string]int, error) {
	m := map[string]int{}
	for _, f := range []string{"status", "smaps_rollup"} {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, f))
		if err != nil {
			return nil, err
		}
		for _, l := range strings.Split(string(data), "\n") {
			k, v, ok := strings.Cut(l, ":")
			if !ok {
				continue
			}
			if n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB")); err == nil {
				m[k] = n
			}
		}
	}
	return m, nil
}

// startAgentProcess runs bin with the demo config (four simulated devices,
// a chat sink to operator) plus extra, against srv, until the benchmark
// ends.
func startAgentProcess(b *testing.B, bin string, srv *testserver.Server, dir, agentExtra, extra string) *exec.Cmd {
	cfg := filepath.Join(dir, "stanzad.toml")
	body := fmt.Sprintf(`[xmpp]
jid = "device@%[1]s/agent"
password = "pw-device"
server = %[2]q
ca_file = %[3]q

[agent]
state_dir = %[4]q
%[6]s
[acl]
operators = ["operator@%[1]s"]

[[device]]
name = "greenhouse"
kind = "sim"
interval = "10s"

[[device]]
name = "shed"
kind = "sim"
interval = "10s"

[[device]]
name = "relay1"
kind = "sim-switch"

[[device]]
name = "relay2"
kind = "sim-switch"

[[sink]]
kind = "chat"
to = "operator@%[1]s"
%[5]s`, srv.Host, srv.Addr, srv.CAFile, filepath.Join(dir, "state"), extra, agentExtra)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "-config", cfg)
	logf, err := os.Create(filepath.Join(dir, "stanzad.log"))
	if err != nil {
		b.Fatal(err)
	}
	defer logf.Close()
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() })
	return cmd
}

// BenchmarkIntegrationMemoryHostile runs the shipped build (demo config)
// through what must not grow it, and reports RssAnon and VmRSS before,
// right after and 70 s after (kB; settle):
//   - flood: a stranger sends 10,000 chats, 1,000 IQs and 100 chats of
//     60 KiB (the agent answers the IQs with <forbidden/> and drops the
//     rest with a log line);
//   - offline: the server is stopped and 86,400 readings a day (one a
//     second; two days by default, STANZAD_OFFLINE_DAYS) arrive on a
//     serial line; they queue in the outbox on disk, not in memory. Then
//     the server returns and every reading must reach the operator once.
func BenchmarkIntegrationMemoryHostile(b *testing.B) {
	bin := shippedBinary(b)
	report := func(b *testing.B, phase string, m map[string]int) {
		b.ReportMetric(float64(m["RssAnon"]), "RssAnon_"+phase+"_kB")
		b.ReportMetric(float64(m["VmRSS"]), "VmRSS_"+phase+"_kB")
	}
	b.Run("flood", func(b *testing.B) {
		for b.Loop() {
			srv := testserver.New(b, testserver.Options{})
			for _, u := range []string{"device", "operator", "stranger"} {
				testserver.MustRegister(b, srv, u, "pw-"+u)
			}
			cmd := startAgentProcess(b, bin, srv, b.TempDir(), "", "")
			time.Sleep(20 * time.Second)
			report(b, "before", procMemory(b, cmd.Process.Pid))
			flood(b, srv, "device@"+srv.Host+"/agent")
			time.Sleep(5 * time.Second)
			report(b, "after", procMemory(b, cmd.Process.Pid))
			time.Sleep(settle)
			report(b, "settled", procMemory(b, cmd.Process.Pid))
		}
	})
	b.Run("offline", func(b *testing.B) {
		days := 2
		if n, err := strconv.Atoi(os.Getenv("STANZAD_OFFLINE_DAYS")); err == nil && n > 0 {
			days = n
		}
		for b.Loop() {
			offlineDays(b, bin, days, report)
		}
	})
}

// settle is how long after a burst the hostile runs measure again: the
// daemon gives memory back at the end of the first quiet 30 s window
// after a busy one (giveback.go), so within 60 s.
const settle = 70 * time.Second

// offlineDays is the offline run: the server stops, days × 86,400
// readings arrive on a serial line at 2,000 a second and queue in the
// outbox, then the server returns and an operator connects. It reports
// memory after each day (it must not grow with the queue), the outbox
// on disk, the time to deliver the queue and memory while doing so, and
// readings lost or duplicated.
func offlineDays(b *testing.B, bin string, days int, report func(*testing.B, string, map[string]int)) {
	srv := testserver.New(b, testserver.Options{})
	testserver.MustRegister(b, srv, "device", "pw-device")
	testserver.MustRegister(b, srv, "operator", "pw-operator")
	master, port := ptytest.Open(b)
	defer master.Close()
	dir := b.TempDir()
	cmd := startAgentProcess(b, bin, srv, dir, `outbox_max = "64MiB"`, fmt.Sprintf(`
[[device]]
name = "meter"
kind = "serial"
port = %q
parse = "kv"
`, port))
	time.Sleep(20 * time.Second)
	report(b, "before", procMemory(b, cmd.Process.Pid))
	if err := srv.Stop(); err != nil {
		b.Fatal(err)
	}
	const day = 86400
	outbox := func() float64 {
		var disk int64
		filepath.WalkDir(filepath.Join(dir, "state", "outbox"), func(_ string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				if fi, err := d.Info(); err == nil {
					disk += fi.Size()
				}
			}
			return nil
		})
		return float64(disk) / (1 << 20)
	}
	// 2,000 lines a second: a day in 43 s, within what the pipeline
	// takes (a faster burst is dropped at the bus, by design, and
	// counted).
	w := bufio.NewWriterSize(master, 64<<10)
	for d := range days {
		for i := d * day; i < (d+1)*day; i++ {
			fmt.Fprintf(w, "n=%d\n", i)
			if i%100 == 99 {
				if err := w.Flush(); err != nil {
					b.Fatal(err)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		if err := w.Flush(); err != nil {
			b.Fatal(err)
		}
		time.Sleep(10 * time.Second)
		report(b, fmt.Sprintf("day%d", d+1), procMemory(b, cmd.Process.Pid))
		b.ReportMetric(outbox(), fmt.Sprintf("outbox_day%d_MiB", d+1))
	}
	time.Sleep(settle)
	report(b, "settled", procMemory(b, cmd.Process.Pid))
	// The server returns; the operator connects and counts every
	// reading of the meter.
	if err := srv.Start(b.Context()); err != nil {
		b.Fatal(err)
	}
	total := days * day
	var mu sync.Mutex
	got := make([]uint8, total)
	var n, dups, bad int
	allIn := make(chan struct{})
	back := time.Now()
	stop := connectCounter(b, srv, "operator", func(v int) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case v < 0 || v >= total:
			bad++
		case got[v] > 0:
			dups++
		default:
			got[v] = 1
			if n++; n == total {
				close(allIn)
			}
		}
	})
	defer stop()
	peak := map[string]int{}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	timeout := time.After(time.Duration(days) * 10 * time.Minute)
wait:
	for {
		select {
		case <-allIn:
			break wait
		case <-tick.C:
			for k, v := range procMemory(b, cmd.Process.Pid) {
				peak[k] = max(peak[k], v)
			}
		case <-timeout:
			mu.Lock()
			b.Errorf("%d of %d readings arrived", n, total)
			mu.Unlock()
			break wait
		}
	}
	drain := time.Since(back)
	report(b, "drain_max", peak)
	time.Sleep(settle)
	report(b, "drained", procMemory(b, cmd.Process.Pid))
	mu.Lock()
	b.ReportMetric(float64(total-n), "lost")
	b.ReportMetric(float64(dups), "dup")
	b.ReportMetric(float64(bad), "bad")
	mu.Unlock()
	b.ReportMetric(drain.Seconds(), "drain_s")
	b.ReportMetric(float64(total)/drain.Seconds(), "drain_readings/s")
	b.ReportMetric(outbox(), "outbox_drained_MiB")
	logData, _ := os.ReadFile(filepath.Join(dir, "stanzad.log"))
	b.ReportMetric(float64(strings.Count(string(logData), "bus full")), "drop_log_lines")
	if os.Getenv("STANZAD_SHOWLOG") != "" { // the agent's log, without the reconnect lines
		for _, l := range strings.Split(string(logData), "\n") {
			if !strings.Contains(l, "connect") {
				b.Log(l)
			}
		}
	}
}

// connectCounter logs user in and calls count with the value of every
// field "n" in the readings it receives, until the returned stop.
func connectCounter(b *testing.B, srv *testserver.Server, user string, count func(int)) (stop func()) {
	return runCounter(b, xmpp.MustParseJID(user+"@"+srv.Host+"/counter"), "pw-"+user, srv.Addr, srv.CAFile,
		func(_ xmpp.JID, v int) { count(v) })
}

// runCounter logs jid in at addr (trusting ca), sends presence, and calls
// count with the sender and the value of every field "n" of every
// reading it receives (a batch holds several: a node each), one message
// at a time, until the returned stop.
func runCounter(tb testing.TB, jid xmpp.JID, password, addr, ca string, count func(from xmpp.JID, v int)) (stop func()) {
	tb.Helper()
	tc, err := xmpp.TLSConfig(xmpp.TLSOptions{CAFile: ca})
	if err != nil {
		tb.Fatal(err)
	}
	mux := xmpp.NewMux(xmpp.Identity{Category: "client", Type: "pc"}, xmpp.Software{Name: "counter"})
	mux.Message = func(_ context.Context, _ *xmpp.Session, m *xmpp.Element) {
		fields := m.Child(xmpp.NSSensorData, "fields")
		from, err := xmpp.ParseJID(m.Attr("from"))
		if fields == nil || err != nil {
			return
		}
		for _, node := range fields.Children {
			for _, ts := range node.Children {
				for _, fl := range ts.Children {
					if fl.Attr("name") == "n" {
						if v, err := strconv.Atoi(fl.Attr("value")); err == nil {
							count(from, v)
						}
					}
				}
			}
		}
	}
	c := xmpp.NewClient(xmpp.Config{JID: jid, Password: password, Servers: []string{addr}, TLS: tc, Handler: mux, MaxHandlers: 1})
	c.OnConnect = func(ctx context.Context, s *xmpp.Session) error {
		if s.Resumed() {
			return nil
		}
		return s.SendRaw(ctx, []byte("<presence/>"))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	wctx, wcancel := context.WithTimeout(ctx, 15*time.Second)
	defer wcancel()
	if _, err := c.WaitConnected(wctx); err != nil {
		cancel()
		<-done
		tb.Fatal(err)
	}
	return func() { cancel(); <-done }
}

// flood sends, as stranger, 10,000 chats, 1,000 IQs (answered: each
// waits for its <forbidden/>) and 100 chats of 60 KiB to the agent.
func flood(b *testing.B, srv *testserver.Server, agent string) {
	tc, err := xmpp.TLSConfig(xmpp.TLSOptions{CAFile: srv.CAFile})
	if err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	s, err := xmpp.Dial(ctx, xmpp.Config{JID: xmpp.MustParseJID("stranger@" + srv.Host + "/x"), Password: "pw-stranger",
		Servers: []string{srv.Addr}, TLS: tc})
	if err != nil {
		b.Fatal(err)
	}
	go s.Serve(ctx)
	defer s.Close(context.WithoutCancel(ctx))
	chat := func(body string) {
		m := xmpp.Stanza("message", "chat", agent, "")
		m.Add(xmpp.NewElement(xmpp.NSClient, "body").SetText(body))
		if err := s.Send(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
	for i := range 10000 {
		chat(fmt.Sprintf("set relay1 on %d", i))
	}
	forbidden := 0
	for range 1000 {
		iq := xmpp.Stanza("iq", "get", agent, s.NewID()).Add(xmpp.NewElement(xmpp.NSDiscoInf, "query"))
		ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := s.SendIQ(ictx, iq)
		cancel()
		var se *xmpp.StanzaError
		if errors.As(err, &se) && se.Condition == "forbidden" {
			forbidden++
		}
	}
	big := strings.Repeat("x", 60<<10)
	for range 100 {
		chat(big)
	}
	if forbidden != 1000 {
		b.Errorf("%d of 1000 IQs answered <forbidden/>", forbidden)
	}
}
