//go:build integration

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stanzad/stanzad/internal/testserver"
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
	for _, full := range []bool{false, true} {
		name := "demo"
		if full {
			name = "full"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				m := idleMemory(b, bin, full, idle)
				for _, k := range []string{"VmRSS", "RssAnon", "RssFile", "Pss"} {
					b.ReportMetric(float64(m[k]), k+"_kB")
					b.ReportMetric(float64(m[k+"_max"]), k+"_max_kB")
				}
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
	cfg := filepath.Join(dir, "stanzad.toml")
	body := fmt.Sprintf(`[xmpp]
jid = "device@%[1]s/agent"
password = "pw-device"
server = %[2]q
ca_file = %[3]q

[agent]
state_dir = %[4]q

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
%[5]s`, srv.Host, srv.Addr, srv.CAFile, filepath.Join(dir, "state"), extra)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "-config", cfg)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }()
	// The figures are the last sample; the maxima are over the second
	// half of the idle time, sampled every second, so a figure taken
	// just after the agent trimmed its heap cannot pass for its idle size.
	time.Sleep(idle / 2)
	m := map[string]int{}
	for end := time.Now().Add(idle / 2); ; {
		now := procMemory(b, cmd.Process.Pid)
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
