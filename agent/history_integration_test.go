//go:build integration

package agent_test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stanzad/stanzad/agent/history"
	"github.com/stanzad/stanzad/internal/testserver"
	"github.com/stanzad/stanzad/xmpp"
)

// The agent keeps its readings: history in chat and as an ad-hoc
// command gives the numbers the device produced, across a restart, and
// a torn history file costs only its torn record.
func TestIntegrationHistory(t *testing.T) {
	srv := testserver.New(t, testserver.Options{})
	testserver.MustRegister(t, srv, "device", "pw-device")
	op := newPeer(t, srv, "operator")
	state := t.TempDir()
	cfg := agentConfig(srv, state)
	cfg.Agent.HistoryMax = 1 << 20
	cfg.Sinks = nil
	const n = 250 // more than one message of historical readout
	done := make(chan struct{})
	_, stop := runAgent(t, cfg, counter{n: n, every: 5 * time.Millisecond, done: done})
	<-done
	to := "device@" + srv.Host + "/agent"
	check := func(readings int) {
		t.Helper()
		// The dispatcher may still hold the last reading for a moment.
		var got string
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			got = op.ask(t, to, "history counter n 1m")
			if strings.Contains(got, "("+itoa(readings)+" readings)") || time.Now().After(deadline) {
				break
			}
		}
		for _, want := range []string{"counter n, last 1m (" + itoa(readings) + " readings):", "min 1 at ", "max " + itoa(readings) + " at "} {
			if !strings.Contains(got, want) {
				t.Fatalf("history answer %q lacks %q", got, want)
			}
		}
		res, err := op.command(t, to, "history", "execute", "", "device", "counter", "field", "n", "duration", "1m")
		if err != nil {
			t.Fatal(err)
		}
		f := resultForm(t, res)
		var rows []string
		if csv := f.Field("csv"); csv != nil && len(csv.Values) == 1 {
			rows = strings.Split(csv.Values[0], "\n")
		}
		if len(rows) != readings+1 || rows[0] != "time,field,min,avg,max,readings" {
			t.Fatalf("ad-hoc history csv: %q", rows)
		}
		for i, row := range rows[1:] {
			cols := strings.Split(row, ",")
			if len(cols) != 6 || cols[1] != "n" || cols[3] != itoa(i+1) || cols[5] != "1" {
				t.Fatalf("csv row %d = %q, want reading %d", i, row, i+1)
			}
			if _, err := time.Parse(time.RFC3339, cols[0]); err != nil {
				t.Fatalf("csv row %d time: %v", i, err)
			}
		}
		if fld := f.Field("n"); fld == nil || len(fld.Values) != 2 || !strings.Contains(fld.Label, itoa(readings)+" readings") {
			t.Errorf("ad-hoc history text field: %+v", fld)
		}
	}
	check(n)
	// XEP-0323 historical readout: the same numbers, as timestamps.
	req := xmpp.NewElement(xmpp.NSSensorData, "req", "seqnr", "77", "historicalOther", "true",
		"from", time.Now().Add(-time.Hour).UTC().Format(time.RFC3339))
	req.Add(xmpp.NewElement(xmpp.NSSensorData, "node", "nodeId", "counter"))
	if _, err := op.iq(t, "get", to, req); err != nil {
		t.Fatal(err)
	}
	var vals []string
	messages := 0
	for done := false; !done; messages++ {
		m := op.next(t, 5*time.Second, func(m *xmpp.Element) bool {
			f := m.Child(xmpp.NSSensorData, "fields")
			return f != nil && f.Attr("seqnr") == "77"
		})
		f := m.Child(xmpp.NSSensorData, "fields")
		done = f.Attr("done") == "true"
		for _, node := range f.Children {
			for _, ts := range node.Children {
				for _, fl := range ts.Children {
					if node.Attr("nodeId") != "counter" || fl.Attr("name") != "n" || fl.Attr("historicalOther") != "true" {
						t.Fatalf("historical readout field %s", m)
					}
					vals = append(vals, fl.Attr("value"))
				}
			}
		}
	}
	if len(vals) != n || vals[0] != "1" || vals[n-1] != itoa(n) || messages != 3 {
		t.Fatalf("historical readout: %d values in %d messages, want 1..%d in 3: %v", len(vals), messages, n, vals)
	}
	if got := op.ask(t, to, "history counter n 2h"); !strings.HasPrefix(got, "history: the history goes back 1m (to ") {
		t.Errorf("history longer than kept: %q", got)
	}
	_, err := op.command(t, to, "history", "execute", "", "device", "counter", "field", "co2")
	wantStanzaError(t, "unknown field", err, "item-not-found", `counter has no field "co2"; fields: n`)
	_, err = op.command(t, to, "history", "execute", "", "device", "counter", "duration", "soon")
	wantStanzaError(t, "bad duration", err, "bad-request", `"soon" is not a duration`)
	stranger := newPeer(t, srv, "stranger")
	_, err = stranger.command(t, to, "history", "execute", "", "device", "counter")
	wantStanzaError(t, "stranger", err, "forbidden", "")

	// A restart keeps the history.
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	_, stop = runAgent(t, cfg, counter{every: time.Hour})
	check(n)
	// A crash that tore the last record: the rest is kept.
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	segs, _ := filepath.Glob(filepath.Join(history.Dir(state), "raw-*.log"))
	if len(segs) == 0 {
		t.Fatal("no raw history segment on disk")
	}
	last := segs[len(segs)-1]
	fi, _ := os.Stat(last)
	if err := os.Truncate(last, fi.Size()-3); err != nil {
		t.Fatal(err)
	}
	_, stop = runAgent(t, cfg, counter{every: time.Hour})
	defer stop()
	check(n - 1)
}

var itoa = strconv.Itoa
