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
	"strconv"
	"strings"
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
// adds a pubsub, a PEP and a room sink and the MQTT bridge.
func BenchmarkIntegrationIdleMemory(b *testing.B) {
	bin, _ := filepath.Abs("../../bin/stanzad")
	if _, err := os.Stat(bin); err != nil {
		b.Skipf("%s: run make build (make bench does)", bin)
	}
	idle := 60 * time.Second
	if d, err := time.ParseDuration(os.Getenv("STANZAD_IDLE")); err == nil {
		idle = d
	}
	report := func(b *testing.B, m map[string]int) {
		for _, k := range []string{"VmRSS", "RssAnon", "RssFile", "Pss"} {
			b.ReportMetric(float64(m[k]), k+"_kB")
			b.ReportMetric(float64(m[k+"_max"]), k+"_max_kB")
		}
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
	for _, full := range []bool{false, true} {
		name := "demo"
		if full {
			name = "full"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				report(b, idleMemory(b, bin, full, idle))
			}
		})
	}
}

func idleMemory(b *testing.B, bin string, full bool, idle time.Duration) map[string]int {
	srv := testserver.New(b, testserver.Options{MUC: full, PubSub: full, Admins: []string{"device@iot.test"}})
	testserver.MustRegister(b, srv, "device", "pw-device")
	testserver.MustRegister(b, srv, "operator", "pw-operator")
	dir := b.TempDir()
	extra := ""
	if full {
		broker := testserver.NewMosquitto(b, testserver.MosquittoOptions{})
		extra = fmt.Sprintf(`
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
	cmd := startAgentProcess(b, bin, srv, dir, "", extra)
	return sampleIdle(b, cmd.Process.Pid, idle)
}

// sampleIdle waits idle and returns pid's memory figures: the last
// sample, and the maxima over the second half of the idle time, sampled
// every second, so a figure taken just after a process trimmed its heap
// cannot pass for its idle size.
func sampleIdle(b *testing.B, pid int, idle time.Duration) map[string]int {
	time.Sleep(idle / 2)
	m := map[string]int{}
	for end := time.Now().Add(idle / 2); ; {
		now := procMemory(b, pid)
		for k, v := range now {
			m[k] = v
			m[k+"_max"] = max(m[k+"_max"], v)
		}
		if time.Now().After(end) {
			return m
		}
		time.Sleep(time.Second)
	}
}

// procMemory reads the kB figures of /proc/PID/status and smaps_rollup.
func procMemory(b *testing.B, pid int) map[string]int {
	m := map[string]int{}
	for _, f := range []string{"status", "smaps_rollup"} {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, f))
		if err != nil {
			b.Fatal(err)
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
	return m
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
// right after and 30 s after (kB):
//   - flood: a stranger sends 10,000 chats, 1,000 IQs and 100 chats of
//     60 KiB (the agent answers the IQs with <forbidden/> and drops the
//     rest with a log line);
//   - offline: the server is stopped and 86,400 readings (a day at one a
//     second) arrive on a serial line; they queue in the outbox on disk,
//     not in memory.
func BenchmarkIntegrationMemoryHostile(b *testing.B) {
	bin, _ := filepath.Abs("../../bin/stanzad")
	if _, err := os.Stat(bin); err != nil {
		b.Skipf("%s: run make build (make bench does)", bin)
	}
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
			time.Sleep(30 * time.Second)
			report(b, "settled", procMemory(b, cmd.Process.Pid))
		}
	})
	b.Run("offline-24h", func(b *testing.B) {
		for b.Loop() {
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
			// 2,000 lines a second: a day in 43 s, within what the
			// pipeline takes (a faster burst is dropped at the bus, by
			// design, and counted).
			w := bufio.NewWriterSize(master, 64<<10)
			for i := range day {
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
			report(b, "after", procMemory(b, cmd.Process.Pid))
			time.Sleep(30 * time.Second)
			report(b, "settled", procMemory(b, cmd.Process.Pid))
			var disk int64
			filepath.WalkDir(filepath.Join(dir, "state", "outbox"), func(_ string, d fs.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					if fi, err := d.Info(); err == nil {
						disk += fi.Size()
					}
				}
				return nil
			})
			b.ReportMetric(float64(disk)/(1<<20), "outbox_MiB")
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
	})
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
