package telemetry

import (
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/devices"
	"github.com/stanzad/stanzad/xmpp"
)

// dispatchTest is a pipeline with the given sinks and alerts, not
// running: tests feed its bus and run dispatch themselves.
type dispatchTest struct {
	p            *Pipeline
	cfg          *config.Config
	bus          *Bus
	sinkSet      []*Sink
	lastDispatch atomic.Int64
}

func (a *dispatchTest) sinks() []*Sink { return a.sinkSet }

func (a *dispatchTest) dispatch() { a.p.Dispatch(a.bus, nil, a.cfg, a.sinkSet) }

// newDispatchAgent builds a pipeline with the given sinks and alerts, not
// running: tests feed its bus and run dispatch themselves.
func newDispatchAgent(t *testing.T, sinks []config.Sink, alerts []config.Alert, decimals *int) *dispatchTest {
	t.Helper()
	cfg := &config.Config{
		XMPP:    config.XMPP{JID: "device@iot.test/agent"},
		Agent:   config.Agent{StateDir: t.TempDir(), OutboxMax: 1 << 20},
		Devices: []config.Device{{Name: "t", Kind: "sim", Decimals: decimals}},
		Sinks:   sinks,
		Alerts:  alerts,
	}
	a := &dispatchTest{cfg: cfg, bus: NewBus(1024)}
	a.p = New(slog.New(slog.DiscardHandler), Hooks{
		Sinks:    a.sinks,
		Seen:     func(_ devices.Reading, now time.Time) { a.lastDispatch.Store(now.UnixNano()) },
		Accepted: func(devices.Reading) {},
	})
	self := xmpp.MustParseJID(cfg.XMPP.JID)
	for i := range sinks {
		s, err := a.p.NewSink(cfg, i, self, nil)
		if err != nil {
			t.Fatal(err)
		}
		a.sinkSet = append(a.sinkSet, s)
	}
	t.Cleanup(func() { a.p.Close(a.sinkSet) })
	return a
}

// records returns what a sink queued, decoded.
func records(t *testing.T, s *Sink) []record {
	t.Helper()
	var out []record
	for _, rec := range s.box.Pending(0, 1000) {
		var r record
		if err := decodeRecord(rec.Payload, &r); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// Readings that wait on the bus together become one stanza per message
// sink (up to defaultBatch), but one item each on a pubsub sink.
func TestDispatchBatches(t *testing.T) {
	a := newDispatchAgent(t, []config.Sink{
		{Kind: "chat", To: "op@iot.test", Devices: []string{"*"}},
		{Kind: "pep", Node: "n/{device}", MaxItems: 1, Devices: []string{"*"}},
	}, nil, nil)
	for i := range defaultBatch + 3 {
		if err := a.bus.Push(temp(float64(i))); err != nil {
			t.Fatal(err)
		}
	}
	a.bus.Close()
	a.dispatch()
	chat := records(t, a.sinks()[0])
	if len(chat) != 2 || len(chat[0].readings) != defaultBatch || len(chat[1].readings) != 3 {
		t.Fatalf("chat sink: %d records (%v), want %d + 3 readings", len(chat), sizes(chat), defaultBatch)
	}
	if got := chat[1].readings[2].Fields[0].Num; got != float64(defaultBatch+2) {
		t.Errorf("order lost: last reading %v", got)
	}
	if pep := records(t, a.sinks()[1]); len(pep) != defaultBatch+3 {
		t.Errorf("pep sink: %d records, want one per reading (%d)", len(pep), defaultBatch+3)
	}
}

// More readings than one dispatch round takes (drainMax), waiting when
// the bus closes: every one is queued, in order.
func TestDispatchDrainsBusBeyondOneRound(t *testing.T) {
	a := newDispatchAgent(t, []config.Sink{{Kind: "chat", To: "op@iot.test", Devices: []string{"*"}}}, nil, nil)
	const n = 3*drainMax + 5
	for i := range n {
		if err := a.bus.Push(temp(float64(i))); err != nil {
			t.Fatal(err)
		}
	}
	a.bus.Close()
	a.dispatch()
	chat := records(t, a.sinks()[0])
	if got := countReadings(chat); got != n {
		t.Fatalf("%d readings queued, want %d", got, n)
	}
	i := 0
	for _, r := range chat {
		for _, x := range r.readings {
			if x.Fields[0].Num != float64(i) {
				t.Fatalf("reading %d is %v", i, x.Fields[0].Num)
			}
			i++
		}
	}
}

func sizes(rs []record) []int {
	var n []int
	for _, r := range rs {
		n = append(n, len(r.readings))
	}
	return n
}

// Each sink filters on its own; what min_interval holds back is queued
// when the bus closes; the device's decimals apply to what is sent.
func TestDispatchFiltersPerSink(t *testing.T) {
	one := 1
	a := newDispatchAgent(t, []config.Sink{
		{Kind: "chat", To: "all@iot.test", Devices: []string{"*"}},
		{Kind: "chat", To: "calm@iot.test", Devices: []string{"t"}, Deadband: 1, MinInterval: config.Duration{Duration: time.Hour}},
		{Kind: "chat", To: "other@iot.test", Devices: []string{"u*"}},
	}, nil, &one)
	go a.dispatch()
	for _, v := range []float64{20, 20.5, 25, 26} {
		if err := a.bus.Push(temp(v)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond) // separate dispatch rounds
	}
	a.bus.Close()
	for a.lastDispatch.Load() == 0 || len(records(t, a.sinks()[1])) < 2 {
		time.Sleep(time.Millisecond)
	}
	if got := values(records(t, a.sinks()[0])); got != "20.0 20.5 25.0 26.0" {
		t.Errorf("unfiltered sink got %s", got)
	}
	// 20 passes; 20.5 is within the deadband; 25 is held for the hour and
	// replaced by 26, which is queued at shutdown.
	if got := values(records(t, a.sinks()[1])); got != "20.0 26.0" {
		t.Errorf("filtered sink got %s, want 20.0 26.0", got)
	}
	if got := a.sinks()[1].filtered.Load(); got != 2 {
		t.Errorf("filtered count %d, want 2", got)
	}
	if got := records(t, a.sinks()[2]); len(got) != 0 {
		t.Errorf("sink for other devices got %d records", len(got))
	}
}

// values renders the temperatures of all readings in rs with their
// decimals, as a receiver would see them.
func values(rs []record) string {
	var out []string
	for _, r := range rs {
		for _, rd := range r.readings {
			f := SensorFields(nil, rd.Fields)
			b := xmpp.AppendSensorBody(nil, "", f)
			out = append(out, strings.TrimSuffix(strings.TrimPrefix(string(b), ": temperature="), " °C"))
		}
	}
	return strings.Join(out, " ")
}

// An alert is queued as its own record, with its text and the reading
// behind it, to the chosen sinks only; the readings keep their order.
func TestDispatchAlert(t *testing.T) {
	above := 30.0
	a := newDispatchAgent(t, []config.Sink{
		{Kind: "chat", To: "op@iot.test", Devices: []string{"*"}},
		{Kind: "pep", Node: "n/{device}", MaxItems: 1, Devices: []string{"*"}},
	}, []config.Alert{{Device: "t", Field: "temperature", Above: &above, Hysteresis: 1, Sinks: []string{"chat"}}}, nil)
	go a.dispatch()
	for _, v := range []float64{25, 31, 30.5, 28} {
		if err := a.bus.Push(temp(v)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	a.bus.Close()
	for a.lastDispatch.Load() == 0 || a.bus.Len() > 0 || countReadings(records(t, a.sinks()[0])) < 6 {
		time.Sleep(time.Millisecond)
	}
	// One token per reading, in order, and one per alert with the reading
	// it carries; readings that shared a stanza count one by one.
	var tokens []string
	for _, r := range records(t, a.sinks()[0]) {
		if r.body != "" {
			tokens = append(tokens, r.body+" ["+values([]record{r})+"]")
			continue
		}
		tokens = append(tokens, strings.Fields(values([]record{r}))...)
	}
	want := "25.0|31.0|ALERT t: temperature 31.0 °C is above 30.0 °C [31.0]|30.5|28.0|CLEARED t: temperature 28.0 °C is back below 30.0 °C [28.0]"
	if got := strings.Join(tokens, "|"); got != want {
		t.Errorf("chat sink:\n got %s\nwant %s", got, want)
	}
	for _, r := range records(t, a.sinks()[1]) {
		if r.body != "" {
			t.Errorf("alert went to the pep sink: %q", r.body)
		}
	}
}

func countReadings(rs []record) int {
	n := 0
	for _, r := range rs {
		n += len(r.readings)
	}
	return n
}
