//go:build integration

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
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

	"github.com/stanzad/stanzad/internal/testserver"
	"github.com/stanzad/stanzad/xmpp"
)

// BenchmarkIntegrationFleet runs a fleet of real stanzad processes (the
// shipped bin/stanzad; STANZAD_FLEET agents, default 200) against one
// Prosody and against a 2-node ejabberd cluster, and reports what a site
// plans with: agent memory (PSS, so shared text counts once), server CPU
// for idle agents and per 10,000 readings, and the outage: Prosody
// SIGKILLed for 5 s, or one cluster node SIGKILLed, with how long each
// agent took to be back (p50/p99/max), logins the server refused after it
// was back, and readings lost or duplicated (every reading is numbered by
// the test and checked at the collector).
func BenchmarkIntegrationFleet(b *testing.B) {
	bin, _ := filepath.Abs("../../bin/stanzad")
	if _, err := os.Stat(bin); err != nil {
		b.Skipf("%s: run make build (make bench does)", bin)
	}
	n := 200
	if v, err := strconv.Atoi(os.Getenv("STANZAD_FLEET")); err == nil && v > 0 {
		n = v
	}
	// Each agent holds two inotify instances (config file, file device);
	// Linux allows 128 per user by default, enough for a board, not for a
	// fleet on one machine.
	const limit = "/proc/sys/fs/inotify/max_user_instances"
	if data, err := os.ReadFile(limit); err == nil {
		if have, _ := strconv.Atoi(strings.TrimSpace(string(data))); have < 2*n+64 {
			if err := os.WriteFile(limit, []byte(strconv.Itoa(2*n+64)), 0o644); err != nil {
				b.Fatalf("%s is %d; %d agents need %d: %v", limit, have, n, 2*n+64, err)
			}
			b.Logf("%s raised from %d to %d", limit, have, 2*n+64)
		}
	}
	b.Run("prosody", func(b *testing.B) {
		for b.Loop() {
			srv := testserver.New(b, testserver.Options{})
			f := &fleet{b: b, bin: bin, n: n, host: srv.Host, ca: srv.CAFile, nodes: []*testserver.Server{srv}}
			f.run()
		}
	})
	b.Run("ejabberd-cluster", func(b *testing.B) {
		for b.Loop() {
			opts := testserver.EjabberdOptions{C2SShaper: -1, MaxOfflineMessages: 100000}
			a := testserver.NewEjabberd(b, opts)
			opts.Cluster = a
			c := testserver.NewEjabberd(b, opts)
			f := &fleet{b: b, bin: bin, n: n, host: a.Host, ca: a.CAFile, nodes: []*testserver.Server{a, c}}
			f.run()
		}
	})
}

// fleet is one run: its servers (one, or a cluster whose last node hosts
// the collector and survives), its agents and what the collector saw.
type fleet struct {
	b     *testing.B
	bin   string
	n     int
	host  string
	ca    string
	nodes []*testserver.Server
	dir   string

	agents []*fleetAgent

	mu      sync.Mutex
	got     []map[int]int // per agent: reading number -> times received
	written []int         // per agent: readings written so far (0..written-1)
}

type fleetAgent struct {
	name    string
	dir     string
	cmd     *exec.Cmd
	logFile string
}

func (f *fleet) run() {
	b := f.b
	f.dir = b.TempDir()
	t0 := time.Now()
	f.register()
	b.Logf("%d accounts registered in %v", f.n+1, time.Since(t0).Round(time.Millisecond))
	f.got = make([]map[int]int, f.n)
	f.written = make([]int, f.n)
	for i := range f.got {
		f.got[i] = map[int]int{}
	}
	f.collect()

	// Cold start: every agent at once, each writing reading 0 at start.
	t0 = time.Now()
	for i := range f.n {
		f.startAgent(i)
	}
	defer f.stopAgents()
	f.waitConnected(f.agents, t0, "cold start")
	coldStart := f.allBack(f.agents, t0)
	b.Logf("cold start: %d agents online in %v (p50 %v)", f.n, coldStart.max, coldStart.p50)
	f.waitDelivered(60 * time.Second)

	// Idle: nothing to send but keepalives.
	time.Sleep(5 * time.Second)
	cpu0, idle := f.serverCPU(), 30*time.Second
	time.Sleep(idle)
	idleCPU := f.serverCPU() - cpu0
	pss := f.agentPSS()

	// Load: 10,000 readings (rounds of one per agent, 5 rounds a second).
	rounds := (10000 + f.n - 1) / f.n
	cpu0, t0 = f.serverCPU(), time.Now()
	for range rounds {
		f.writeRound()
		time.Sleep(200 * time.Millisecond)
	}
	f.waitDelivered(120 * time.Second)
	loadCPU, loadTime := f.serverCPU()-cpu0, time.Since(t0)
	readings := rounds * f.n

	// Outage, with a reading a second per agent throughout.
	stop := make(chan struct{})
	var writer sync.WaitGroup
	writer.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				f.writeRound()
			}
		}
	})
	var from time.Time // back is measured from here
	var what string
	killed := f.nodes[0]
	var hit []*fleetAgent // the agents whose server goes away
	for _, a := range f.agents {
		if a.endpoint() == killed.Addr {
			hit = append(hit, a)
		}
	}
	if len(f.nodes) == 1 {
		what = "Prosody SIGKILLed, back after 5 s"
		if err := killed.Kill(); err != nil {
			b.Fatal(err)
		}
		time.Sleep(5 * time.Second)
		if err := killed.Start(b.Context()); err != nil {
			b.Fatal(err)
		}
		from = time.Now()
	} else {
		what = "cluster node a SIGKILLed"
		if err := killed.Kill(); err != nil {
			b.Fatal(err)
		}
		from = time.Now()
	}
	cpu0 = f.serverCPU() // Prosody: its new process, started and listening
	f.waitConnected(hit, from, what)
	loginCPU := f.serverCPU() - cpu0
	back := f.allBack(hit, from)
	if len(f.nodes) > 1 {
		time.Sleep(5 * time.Second)
		if err := killed.Start(b.Context()); err != nil {
			b.Fatal(err)
		}
	}
	time.Sleep(3 * time.Second)
	close(stop)
	writer.Wait()
	f.waitDelivered(180 * time.Second)
	lost, dups := f.tally()
	refused := f.refusedSince(from)

	b.Logf("%s: the %d agents on it back after p50 %v, p99 %v, max %v; %d logins refused; %d readings lost, %d duplicated",
		what, len(hit), back.p50, back.p99, back.max, refused, lost, dups)
	b.Logf("time back, 0.5 s buckets: %s", back.histogram)
	f.logSlowest(hit, from)
	b.Logf("server CPU: idle %v over %v for %d agents; load %v for %d readings in %v; %v for the %d logins after the outage",
		idleCPU, idle, f.n, loadCPU, readings, loadTime.Round(time.Millisecond), loginCPU, len(hit))
	b.ReportMetric(float64(f.n), "agents")
	b.ReportMetric(pss/1024, "agent_PSS_MiB")
	b.ReportMetric(float64(idleCPU.Microseconds())/1000/float64(f.n)/idle.Minutes(), "srv_cpu_ms/idle-agent-min")
	b.ReportMetric(loadCPU.Seconds()*10000/float64(readings), "srv_cpu_s/10k-readings")
	b.ReportMetric(float64(loginCPU.Microseconds())/1000/float64(len(hit)), "srv_cpu_ms/login")
	b.ReportMetric(coldStart.max.Seconds(), "cold_start_s")
	b.ReportMetric(back.p50.Seconds(), "back_p50_s")
	b.ReportMetric(back.p99.Seconds(), "back_p99_s")
	b.ReportMetric(back.max.Seconds(), "back_max_s")
	b.ReportMetric(float64(refused), "refused")
	b.ReportMetric(float64(lost), "lost")
	b.ReportMetric(float64(dups), "dup")
}

// register creates dev000..devNNN and the collector, four at a time
// (each registration is a prosodyctl or ejabberdctl process).
func (f *fleet) register() {
	users := []string{"collector"}
	for i := range f.n {
		users = append(users, agentName(i))
	}
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for _, u := range users {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := f.nodes[0].Register(u, "pw-"+u); err != nil {
				f.b.Error(err)
			}
		})
	}
	wg.Wait()
	if f.b.Failed() {
		f.b.FailNow()
	}
}

func agentName(i int) string { return fmt.Sprintf("dev%03d", i) }

// collect runs the collector, on the last node, for the rest of the run:
// it counts every reading number per agent.
func (f *fleet) collect() {
	home := f.nodes[len(f.nodes)-1]
	stop := runCounter(f.b, xmpp.MustParseJID("collector@"+f.host+"/bench"), "pw-collector", home.Addr, f.ca,
		func(from xmpp.JID, v int) {
			if !strings.HasPrefix(from.Local, "dev") {
				return
			}
			i, err := strconv.Atoi(from.Local[3:])
			if err != nil || i < 0 || i >= f.n {
				return
			}
			f.mu.Lock()
			f.got[i][v]++
			f.mu.Unlock()
		})
	f.b.Cleanup(stop)
}

func (f *fleet) startAgent(i int) {
	a := &fleetAgent{name: agentName(i), dir: filepath.Join(f.dir, agentName(i))}
	if err := os.MkdirAll(filepath.Join(a.dir, "data"), 0o700); err != nil {
		f.b.Fatal(err)
	}
	var servers []string
	for _, n := range f.nodes {
		servers = append(servers, strconv.Quote(n.Addr))
	}
	if i%2 == 1 { // half the fleet lists the cluster's nodes the other way round
		slices.Reverse(servers)
	}
	cfg := fmt.Sprintf(`[xmpp]
jid = "%[1]s@%[2]s/agent"
password = "pw-%[1]s"
server = [%[3]s]
ca_file = %[4]q

[agent]
state_dir = %[5]q
log_format = "json"

[acl]
operators = ["collector@%[2]s"]

[[device]]
name = "meter"
kind = "file"
path = %[6]q
parse = "kv"

[[sink]]
kind = "chat"
to = "collector@%[2]s"
`, a.name, f.host, strings.Join(servers, ", "), f.ca, filepath.Join(a.dir, "state"), filepath.Join(a.dir, "data", "value"))
	if err := os.WriteFile(filepath.Join(a.dir, "stanzad.toml"), []byte(cfg), 0o600); err != nil {
		f.b.Fatal(err)
	}
	f.write(i, a.dir)
	a.logFile = filepath.Join(a.dir, "log")
	log, err := os.Create(a.logFile)
	if err != nil {
		f.b.Fatal(err)
	}
	a.cmd = exec.Command(f.bin, "-config", filepath.Join(a.dir, "stanzad.toml"))
	a.cmd.Stdout, a.cmd.Stderr = log, log
	if err := a.cmd.Start(); err != nil {
		f.b.Fatal(err)
	}
	log.Close()
	f.agents = append(f.agents, a)
}

// write puts the agent's next reading number in its file (atomically:
// the agent reads the file once the change settles).
func (f *fleet) write(i int, dir string) {
	f.mu.Lock()
	n := f.written[i]
	f.written[i]++
	f.mu.Unlock()
	tmp := filepath.Join(dir, "data", ".value")
	if err := os.WriteFile(tmp, []byte("n="+strconv.Itoa(n)+"\n"), 0o600); err != nil {
		f.b.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "data", "value")); err != nil {
		f.b.Fatal(err)
	}
}

func (f *fleet) writeRound() {
	for i, a := range f.agents {
		f.write(i, a.dir)
	}
}

func (f *fleet) stopAgents() {
	for _, a := range f.agents {
		a.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, a := range f.agents {
		a.cmd.Wait()
	}
}

// logEvent is one line of an agent's JSON log.
type logEvent struct {
	Time     time.Time `json:"time"`
	Msg      string    `json:"msg"`
	Err      string    `json:"err"`
	Endpoint string    `json:"endpoint"`
}

// endpoint is where the agent connected last.
func (a *fleetAgent) endpoint() string {
	var at string
	for _, e := range a.events() {
		if e.Msg == "connected" {
			at = e.Endpoint
		}
	}
	return at
}

func (a *fleetAgent) events() []logEvent {
	fh, err := os.Open(a.logFile)
	if err != nil {
		return nil
	}
	defer fh.Close()
	var out []logEvent
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e logEvent
		if json.Unmarshal(sc.Bytes(), &e) == nil {
			out = append(out, e)
		}
	}
	return out
}

// connectedSince returns when the agent logged its first session after
// t, or zero.
func (a *fleetAgent) connectedSince(t time.Time) time.Time {
	for _, e := range a.events() {
		if e.Msg == "connected" && !e.Time.Before(t) {
			return e.Time
		}
	}
	return time.Time{}
}

func (f *fleet) waitConnected(agents []*fleetAgent, since time.Time, what string) {
	deadline := time.Now().Add(120 * time.Second)
	for {
		missing := 0
		for _, a := range agents {
			if a.connectedSince(since).IsZero() {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			f.b.Fatalf("%s: %d of %d agents not connected after 120 s", what, missing, len(agents))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

type distribution struct {
	p50, p99, max time.Duration
	histogram     string
}

// allBack is the distribution of the agents' time to connect after t.
func (f *fleet) allBack(agents []*fleetAgent, t time.Time) distribution {
	var ds []time.Duration
	for _, a := range agents {
		ds = append(ds, a.connectedSince(t).Sub(t))
	}
	slices.Sort(ds)
	at := func(q float64) time.Duration {
		return ds[min(len(ds)-1, int(q*float64(len(ds))))].Round(10 * time.Millisecond)
	}
	buckets := make([]int, int(ds[len(ds)-1]/(500*time.Millisecond))+1)
	for _, d := range ds {
		buckets[d/(500*time.Millisecond)]++
	}
	var h []string
	for i, n := range buckets {
		h = append(h, fmt.Sprintf("%.1f-%.1fs:%d", float64(i)/2, float64(i+1)/2, n))
	}
	return distribution{p50: at(0.5), p99: at(0.99), max: ds[len(ds)-1].Round(10 * time.Millisecond), histogram: strings.Join(h, " ")}
}

// logSlowest logs what the last agent back did since t.
func (f *fleet) logSlowest(agents []*fleetAgent, t time.Time) {
	var slow *fleetAgent
	var at time.Time
	for _, a := range agents {
		if c := a.connectedSince(t); slow == nil || c.After(at) {
			slow, at = a, c
		}
	}
	for _, e := range slow.events() {
		if !e.Time.Before(t.Add(-10*time.Second)) && !e.Time.After(at) {
			f.b.Logf("slowest, %s: %+.3fs %s %s", slow.name, e.Time.Sub(t).Seconds(), e.Msg, e.Err)
		}
	}
}

// refusedSince counts connection attempts that failed after t for any
// reason but refused TCP connects (a node that is down): a server that
// turned logins away under the storm shows here.
func (f *fleet) refusedSince(t time.Time) int {
	n := 0
	for _, a := range f.agents {
		for _, e := range a.events() {
			if e.Time.Before(t) || e.Msg != "connect failed" && !strings.HasPrefix(e.Msg, "authentication failed") {
				continue
			}
			down := true // every endpoint's error (one per line) is a refused connect
			for _, line := range strings.Split(e.Err, "\n") {
				down = down && strings.Contains(line, "connection refused")
			}
			if !down {
				f.b.Logf("%s: refused after the server was back: %s", a.name, e.Err)
				n++
			}
		}
	}
	return n
}

// waitDelivered waits until the collector has every reading written.
func (f *fleet) waitDelivered(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for {
		lost, _ := f.tally()
		if lost == 0 {
			return
		}
		if time.Now().After(deadline) {
			f.b.Logf("%d readings not delivered after %v", lost, timeout)
			f.explain(3)
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// explain logs, for up to n agents with readings missing, which ones and
// the warnings in their logs.
func (f *fleet) explain(n int) {
	for i, a := range f.agents {
		f.mu.Lock()
		var missing []int
		for k := range f.written[i] {
			if f.got[i][k] == 0 {
				missing = append(missing, k)
			}
		}
		f.mu.Unlock()
		if len(missing) == 0 {
			continue
		}
		f.b.Logf("%s: %d readings missing, from %d", a.name, len(missing), missing[0])
		data, _ := os.ReadFile(a.logFile)
		for _, l := range strings.Split(string(data), "\n") {
			if strings.Contains(l, `"level":"WARN"`) || strings.Contains(l, `"level":"ERROR"`) {
				f.b.Log(l)
			}
		}
		if n--; n == 0 {
			return
		}
	}
}

// tally counts readings written but never received, and extra copies.
func (f *fleet) tally() (lost, dups int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, w := range f.written {
		for n := range w {
			switch c := f.got[i][n]; {
			case c == 0:
				lost++
			case c > 1:
				dups += c - 1
			}
		}
	}
	return lost, dups
}

// serverCPU is the CPU time (user+system) of the running server nodes.
func (f *fleet) serverCPU() time.Duration {
	var total time.Duration
	for _, n := range f.nodes {
		if pid := n.PID(); pid != 0 {
			total += procCPU(pid)
		}
	}
	return total
}

// procCPU reads utime+stime of pid (clock ticks of 10 ms).
func procCPU(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// agentPSS is the mean proportional set size of the agents, in kB.
func (f *fleet) agentPSS() float64 {
	total := 0
	for _, a := range f.agents {
		total += procMemory(f.b, a.cmd.Process.Pid)["Pss"]
	}
	return float64(total) / float64(len(f.agents))
}
