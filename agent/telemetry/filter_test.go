package telemetry

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/stanzad/stanzad/devices"
)

func temp(v float64) devices.Reading {
	return devices.Reading{Device: "t", Fields: []devices.Field{devices.Number("temperature", v, 1, "°C")}}
}

// step is one reading offered at an offset, with the verdict wanted.
type step struct {
	at      time.Duration
	v       float64
	verdict int
}

func runSteps(t *testing.T, f *filter, steps []step) {
	t.Helper()
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	for i, st := range steps {
		if got := f.offer(temp(st.v), t0.Add(st.at)); got.verdict != st.verdict {
			t.Fatalf("step %d (%v at +%v): verdict %d, want %d", i, st.v, st.at, got.verdict, st.verdict)
		}
	}
}

func TestFilterDeadband(t *testing.T) {
	f := &filter{deadband: 0.5, maxSilence: time.Minute}
	runSteps(t, f, []step{
		{0, 20.0, pass},               // first reading always goes
		{time.Second, 20.4, skip},     // moved 0.4 < 0.5
		{2 * time.Second, 19.6, skip}, // 0.4 the other way: still measured from 20.0
		{3 * time.Second, 20.5, pass}, // exactly the deadband: a change
		{4 * time.Second, 20.6, skip},
		{64 * time.Second, 20.6, pass}, // max_silence since the last one sent
		{65 * time.Second, 20.6, skip},
	})
	// A field that comes or goes, and non-numeric changes, always count.
	g := &filter{deadband: 100}
	now := time.Now()
	r := devices.Reading{Device: "d", Fields: []devices.Field{devices.Bool("open", false)}}
	g.offer(r, now)
	if v := g.offer(r, now); v.verdict != skip {
		t.Errorf("same boolean: %d, want skip", v.verdict)
	}
	r.Fields = []devices.Field{devices.Bool("open", true)}
	if v := g.offer(r, now); v.verdict != pass {
		t.Errorf("boolean change: %d, want pass", v.verdict)
	}
	r.Fields = append(r.Fields, devices.Text("line", "x"))
	if v := g.offer(r, now); v.verdict != pass {
		t.Errorf("new field: %d, want pass", v.verdict)
	}
}

// min_interval holds back what comes too soon and releases the latest
// when the interval is over; nothing else is lost.
func TestFilterMinInterval(t *testing.T) {
	f := &filter{minInterval: 10 * time.Second}
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	runSteps(t, f, []step{
		{0, 20, pass},
		{time.Second, 21, hold},
		{2 * time.Second, 22, hold}, // replaces 21
	})
	if got, next := f.release(nil, t0.Add(5*time.Second)); len(got) != 0 || !next.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("release before due: %v, next %v", got, next)
	}
	got, next := f.release(nil, t0.Add(10*time.Second))
	if len(got) != 1 || got[0].Fields[0].Num != 22 || !next.IsZero() {
		t.Fatalf("release when due: %+v, next %v; want the latest (22)", got, next)
	}
	// The interval now counts from the release.
	if v := f.offer(temp(23), t0.Add(15*time.Second)); v.verdict != hold || !v.due.Equal(t0.Add(20*time.Second)) {
		t.Fatalf("after release: %+v", v)
	}
	if v := f.offer(temp(23.5), t0.Add(31*time.Second)); v.verdict != pass || !v.dropped {
		t.Fatalf("a newer reading after the due time: %+v, want pass dropping the held one", v)
	}
	// Shutdown flushes what is held.
	f.offer(temp(24), t0.Add(32*time.Second))
	if got := f.flush(nil); len(got) != 1 || got[0].Fields[0].Num != 24 {
		t.Fatalf("flush: %+v", got)
	}
}

// With both, a held change that is undone within the interval is void.
func TestFilterHeldChangeUndone(t *testing.T) {
	f := &filter{minInterval: 10 * time.Second, deadband: 1}
	runSteps(t, f, []step{
		{0, 20, pass},
		{time.Second, 25, hold},
		{2 * time.Second, 20.2, skip}, // back within the deadband of what was sent
	})
	if got, _ := f.release(nil, time.Date(2026, 11, 25, 13, 0, 0, 0, time.UTC)); len(got) != 0 {
		t.Fatalf("void change released: %+v", got)
	}
}

func TestFilterPerDevice(t *testing.T) {
	f := &filter{minInterval: time.Minute}
	now := time.Now()
	a, b := temp(1), temp(1)
	b.Device = "u"
	if f.offer(a, now).verdict != pass || f.offer(b, now).verdict != pass {
		t.Fatal("first reading of each device must pass")
	}
	if f.offer(a, now).verdict != hold {
		t.Fatal("second reading of a device within the interval must be held")
	}
	names := slices.Sorted(maps.Keys(f.dev))
	if !slices.Equal(names, []string{"t", "u"}) {
		t.Fatalf("devices tracked: %v", names)
	}
}
