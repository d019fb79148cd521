//go:build integration

package agent_test

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stanzad/stanzad/agent"
	"github.com/stanzad/stanzad/internal/testserver"
	"github.com/stanzad/stanzad/xmpp"
)

// BenchmarkIntegrationCommandRTT measures the command round trip
// operator → Prosody → responder → Prosody → operator for stanzad and,
// in the same run, for a slixmpp peer answering the same XEP-0050
// "status" command (DESIGN.md, quality bars). Requests are sequential;
// the two responders alternate in blocks so both see the same machine
// noise. It prints a table; run it with -benchtime 1x.
func BenchmarkIntegrationCommandRTT(b *testing.B) {
	const (
		n     = 2000 // measured commands per responder
		warm  = 200
		block = 100
	)
	srv := testserver.New(b, testserver.Options{})
	testserver.MustRegister(b, srv, "device", "pw-device")
	op := newPeer(b, srv, "operator")
	peer := testserver.NewSlixPeer(b, srv, "peer", "pw-peer")

	cfg := agentConfig(srv, b.TempDir())
	cfg.Sinks = nil // commands only: no telemetry on the wire
	cfg.ACL.CommandRate, cfg.ACL.CommandBurst = 1e6, 1e6
	runOnline(b, agent.Options{Config: cfg, Version: "bench"})
	targets := []struct{ name, jid string }{
		{"stanzad", cfg.XMPP.JID},
		{"slixmpp " + slixVersion(), peer.JID},
	}
	status := func(to string) *xmpp.Element {
		return xmpp.Stanza("iq", "set", to, op.sess.NewID()).
			Add(xmpp.NewElement(xmpp.NSCommands, "command", "node", "status", "action", "execute"))
	}
	ping := func(to string) *xmpp.Element {
		return xmpp.Stanza("iq", "get", to, op.sess.NewID()).Add(xmpp.NewElement(xmpp.NSPing, "ping"))
	}
	rtt := func(iq *xmpp.Element) time.Duration {
		start := time.Now()
		res, err := op.sess.SendIQ(b.Context(), iq)
		d := time.Since(start)
		if err != nil {
			b.Fatalf("%s: %v", iq.Attr("to"), err)
		}
		if c := res.FirstChild(); iq.Attr("type") == "set" && (c == nil || c.Attr("status") != "completed") {
			b.Fatalf("%s: not completed: %s", iq.Attr("to"), res)
		}
		return d
	}

	for b.Loop() {
		for _, kind := range []struct {
			name string
			iq   func(string) *xmpp.Element
		}{{`XEP-0050 "status"`, status}, {"XEP-0199 ping", ping}} {
			samples := make([][]time.Duration, len(targets))
			cpu := make([]time.Duration, len(targets)) // Prosody CPU while serving each
			for i, t := range targets {
				for range warm {
					rtt(kind.iq(t.jid))
				}
				samples[i] = make([]time.Duration, 0, n)
			}
			for done := 0; done < n; done += block {
				for i, t := range targets {
					before := procCPU(srv.PID())
					for range block {
						samples[i] = append(samples[i], rtt(kind.iq(t.jid)))
					}
					cpu[i] += procCPU(srv.PID()) - before
				}
			}
			fmt.Printf("\ncommand round trip, %s, %d sequential requests each, operator → Prosody → responder → operator\n", kind.name, n)
			fmt.Printf("%-16s %9s %9s %9s %9s %14s\n", "responder", "p50", "p90", "p99", "max", "Prosody CPU")
			var p50s, p99s []float64
			for i, t := range targets {
				s := samples[i]
				slices.Sort(s)
				p50, p90, p99 := s[len(s)/2], s[len(s)*90/100], s[len(s)*99/100]
				fmt.Printf("%-16s %9s %9s %9s %9s %11.0f µs/req\n", t.name, ms(p50), ms(p90), ms(p99), ms(s[len(s)-1]),
					float64(cpu[i].Microseconds())/float64(n))
				p50s, p99s = append(p50s, float64(p50.Microseconds())), append(p99s, float64(p99.Microseconds()))
			}
			fmt.Printf("%-16s %9.2f %9s %9.2f   (stanzad / peer; ≤ 1 meets the bar)\n", "ratio", p50s[0]/p50s[1], "", p99s[0]/p99s[1])
			unit := strings.Fields(kind.name)[0]
			b.ReportMetric(p50s[0], unit+"-stanzad-p50-µs")
			b.ReportMetric(p99s[0], unit+"-stanzad-p99-µs")
			b.ReportMetric(p50s[1], unit+"-peer-p50-µs")
			b.ReportMetric(p99s[1], unit+"-peer-p99-µs")
		}
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000) }

// procCPU returns a process's user+system CPU time from /proc.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:]) // after "pid (comm) "
	ut, _ := strconv.ParseInt(fields[11], 10, 64)                 // utime, field 14
	st, _ := strconv.ParseInt(fields[12], 10, 64)                 // stime, field 15
	return time.Duration(ut+st) * 10 * time.Millisecond           // USER_HZ = 100 on Linux
}

func slixVersion() string {
	v, err := os.ReadFile("/usr/lib/python3/dist-packages/slixmpp/version.py")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(v), "\n") {
		if k, val, ok := strings.Cut(line, "="); ok && strings.TrimSpace(k) == "__version__" {
			return strings.Trim(strings.TrimSpace(val), `'"`)
		}
	}
	return ""
}
