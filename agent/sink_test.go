package agent

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stanzad/stanzad/agent/outbox"
	"github.com/stanzad/stanzad/devices"
)

func climateReading() devices.Reading {
	return devices.Reading{
		Device: "greenhouse",
		Time:   time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC),
		Fields: []devices.Field{
			devices.Number("temperature", 21.5, 1, "°C"),
			devices.Number("humidity", 40.2, 1, "%"),
		},
	}
}

func TestChatSinkEncode(t *testing.T) {
	s := &chatSink{to: "operator@iot.test", from: "device@iot.test"}
	s.encode(climateReading(), 42, time.Time{})
	want := "<message to='operator@iot.test' type='chat' id='r-42'>" +
		"<body>greenhouse: temperature=21.5 °C humidity=40.2 %</body>" +
		"<fields xmlns='urn:xmpp:iot:sensordata' seqnr='42' done='true'><node nodeId='greenhouse'>" +
		"<timestamp value='2026-11-24T10:00:00Z'>" +
		"<numeric name='temperature' momentary='true' automaticReadout='true' value='21.5' unit='°C'/>" +
		"<numeric name='humidity' momentary='true' automaticReadout='true' value='40.2' unit='%'/>" +
		"</timestamp></node></fields></message>"
	if got := string(s.buf); got != want {
		t.Fatalf("encode:\n got %s\nwant %s", got, want)
	}
	// The buffer is reused: a second, shorter reading leaves nothing of
	// the first behind.
	r := devices.Reading{Device: "relay1", Time: climateReading().Time, Fields: []devices.Field{devices.Bool("state", true)}}
	s.encode(r, 43, time.Time{})
	if got := string(s.buf); strings.Contains(got, "greenhouse") || !strings.Contains(got, "seqnr='43'") {
		t.Fatalf("second encode: %s", got)
	}
}

func TestChatSinkWants(t *testing.T) {
	tests := []struct {
		devices []string
		name    string
		want    bool
	}{
		{nil, "any", true},
		{[]string{"*"}, "any", true},
		{[]string{"greenhouse"}, "greenhouse", true},
		{[]string{"greenhouse"}, "relay1", false},
		{[]string{"temp-*"}, "temp-1", true},
		{[]string{"temp-*"}, "relay1", false},
		{[]string{"relay?", "x"}, "relay1", true},
	}
	for _, tt := range tests {
		s := &chatSink{devices: tt.devices}
		if got := s.wants(tt.name); got != tt.want {
			t.Errorf("wants(%q) with %q = %v, want %v", tt.name, tt.devices, got, tt.want)
		}
	}
}

func TestRecordRoundTrip(t *testing.T) {
	in := devices.Reading{
		Device: "door",
		Time:   time.Date(2026, 11, 24, 10, 0, 0, 123456789, time.UTC),
		Fields: []devices.Field{
			devices.Number("temperature", -21.5, 2, "°C"),
			devices.Bool("open", true),
			devices.Bool("locked", false),
			devices.Text("line", "a<b \x00 ü"),
		},
	}
	b := appendRecord(nil, in)
	var out devices.Reading
	if err := decodeRecord(b, &out); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprintf("%+v", out) != fmt.Sprintf("%+v", in) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", out, in)
	}
	for n := range len(b) {
		if err := decodeRecord(b[:n], &out); err == nil {
			t.Fatalf("decodeRecord accepted a record cut at %d of %d bytes", n, len(b))
		}
	}
}

// FuzzDecodeRecord: outbox records come from disk; whatever is there must
// decode or fail cleanly, and what decodes must encode back the same.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(appendRecord(nil, climateReading()))
	f.Add(appendRecord(nil, devices.Reading{Device: "x", Fields: []devices.Field{devices.Text("s", "v"), devices.Bool("b", true)}}))
	f.Add([]byte{0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r devices.Reading
		if decodeRecord(b, &r) != nil {
			return
		}
		var again devices.Reading
		if err := decodeRecord(appendRecord(nil, r), &again); err != nil || fmt.Sprint(again) != fmt.Sprint(r) {
			t.Fatalf("re-encoding %+v gives %+v, %v", r, again, err)
		}
	})
}

// BenchmarkChatSinkEncode measures reading → stanza bytes, the work done
// for every reading a chat sink sends (DESIGN.md: ≤ 2 µs, ≤ 4 allocs).
func BenchmarkChatSinkEncode(b *testing.B) {
	s := &chatSink{to: "operator@iot.test", from: "device@iot.test"}
	r := climateReading()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		s.encode(r, uint64(i), time.Time{})
	}
}

// onAck acknowledges, per sink, everything up to the last tag it got.
func TestOnAckRoutesToSinks(t *testing.T) {
	a := &Agent{}
	for i := range 2 {
		box, err := outbox.Open(t.TempDir(), outbox.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer box.Close()
		s := &chatSink{index: i, box: box}
		for range 5 {
			box.Append([]byte("r"))
		}
		a.sinks = append(a.sinks, s)
	}
	s0, s1 := a.sinks[0], a.sinks[1]
	a.onAck([]uint64{s0.tag(1), s0.tag(2), s1.tag(1), s0.tag(3), s1.tag(2), s1.tag(3), s1.tag(4), 7 << tagBits})
	if got := s0.box.Stats(); got.Acked != 3 || got.Pending != 2 {
		t.Errorf("sink 0: %+v, want acked 3, 2 pending", got)
	}
	if got := s1.box.Stats(); got.Acked != 4 || got.Pending != 1 {
		t.Errorf("sink 1: %+v, want acked 4, 1 pending", got)
	}
}
