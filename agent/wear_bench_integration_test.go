//go:build integration

package agent_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stanzad/stanzad/agent"
	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/devices"
	"github.com/stanzad/stanzad/internal/testserver"
)

// BenchmarkIntegrationOutboxWear measures what the outbox costs an SD
// card: bytes this process sends to storage (/proc/self/io write_bytes,
// less cancelled_write_bytes: pages dirtied and then truncated before
// the kernel wrote them) per reading, with the agent online through
// Prosody, at 1, 10 and 100 readings/s, and what a year of that is. The
// state directory is on the machine's real filesystem (t.TempDir()).
// Run it with -benchtime 1x.
func BenchmarkIntegrationOutboxWear(b *testing.B) {
	srv := testserver.New(b, testserver.Options{})
	testserver.MustRegister(b, srv, "device", "pw-device")
	rx := newTally(b, srv, "operator")
	for b.Loop() {
		fmt.Printf("\noutbox writes to storage per reading, agent online (chat sink, default batching)\n")
		fmt.Printf("%10s %9s %14s %14s %16s\n", "readings/s", "readings", "written bytes", "bytes/reading", "per year")
		for _, run := range []struct {
			rate float64
			secs int
		}{{1, 40}, {10, 20}, {100, 20}} {
			rx.reset()
			n := int(run.rate) * run.secs
			src := &source{n: n, rate: run.rate, start: make(chan struct{})}
			cfg := &config.Config{
				XMPP: config.XMPP{JID: "device@" + srv.Host + "/agent", Password: config.Secret("pw-device"),
					Server: config.Endpoints{srv.Addr}, TLS: "starttls", CAFile: srv.CAFile},
				Agent: config.Agent{StateDir: b.TempDir()},
				Sinks: []config.Sink{{Kind: "chat", To: rx.jid, Devices: []string{"*"}}},
			}
			a, err := agent.New(agent.Options{Config: cfg, Devices: []devices.Device{src}})
			if err != nil {
				b.Fatal(err)
			}
			stop := runBench(b, a)
			time.Sleep(2 * time.Second) // connected, settled
			w0 := storageWrites(b)
			close(src.start)
			if got, _, _, _ := rx.wait(n, time.Duration(run.secs+30)*time.Second); got < n {
				b.Fatalf("%d of %d readings arrived", got, n)
			}
			time.Sleep(3 * time.Second) // the last syncs and truncations
			written := storageWrites(b) - w0
			stop()
			per := float64(written) / float64(n)
			year := per * run.rate * 365 * 24 * 3600
			fmt.Printf("%10.0f %9d %14d %14.1f %13.2f GB\n", run.rate, n, written, per, year/1e9)
			b.ReportMetric(per, fmt.Sprintf("B/reading@%.0f/s", run.rate))
		}
	}
}

// runBench runs a for the benchmark until the returned stop.
func runBench(b *testing.B, a *agent.Agent) (stop func()) {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	if _, err := a.WaitConnected(b.Context()); err != nil {
		b.Fatal(err)
	}
	return func() { cancel(); <-done }
}

// storageWrites returns this process's write_bytes less its
// cancelled_write_bytes.
func storageWrites(b *testing.B) int64 {
	b.Helper()
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		b.Fatal(err)
	}
	var w, c int64
	for _, line := range strings.Split(string(data), "\n") {
		k, v, _ := strings.Cut(line, ": ")
		n, _ := strconv.ParseInt(v, 10, 64)
		switch k {
		case "write_bytes":
			w = n
		case "cancelled_write_bytes":
			c = n
		}
	}
	return w - c
}
