package telemetry

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stanzad/stanzad/agent/outbox"
	"github.com/stanzad/stanzad/devices"

	"github.com/stanzad/stanzad/xmpp"
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

func encodeOne(s *Sink, r devices.Reading, seq uint64) {
	s.encode(&record{readings: []devices.Reading{r}}, seq, r.Time)
}

func TestChatSinkEncode(t *testing.T) {
	s := &Sink{to: "operator@iot.test", from: "device@iot.test"}
	encodeOne(s, climateReading(), 42)
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
	encodeOne(s, r, 43)
	if got := string(s.buf); strings.Contains(got, "greenhouse") || !strings.Contains(got, "seqnr='43'") {
		t.Fatalf("second encode: %s", got)
	}
}

// A batch is one stanza: one node per reading, one body line each; a
// record that waited gets the <delay/> of its first reading; a room sink
// sends groupchat; an alert's text replaces the derived body.
func TestSinkEncodeBatchRoomAlert(t *testing.T) {
	s := &Sink{to: "lab@conference.iot.test", from: "device@iot.test", room: &room{}}
	relay := devices.Reading{Device: "relay1", Time: climateReading().Time.Add(time.Second), Fields: []devices.Field{devices.Bool("state", true)}}
	rec := &record{readings: []devices.Reading{climateReading(), relay}}
	s.encode(rec, 7, climateReading().Time.Add(time.Minute))
	got := string(s.buf)
	for _, want := range []string{
		"type='groupchat'",
		"<body>greenhouse: temperature=21.5 °C humidity=40.2 %\nrelay1: state=true</body>",
		"seqnr='7'", "<node nodeId='greenhouse'>", "<node nodeId='relay1'><timestamp value='2026-11-24T10:00:01Z'>",
		"<delay xmlns='urn:xmpp:delay' from='device@iot.test' stamp='2026-11-24T10:00:00Z'/>",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("batch lacks %s:\n%s", want, got)
		}
	}
	rec.body = "ALERT greenhouse: temperature 21.5 °C is above 20 °C"
	rec.readings = rec.readings[:1]
	s.encode(rec, 8, climateReading().Time)
	if got := string(s.buf); !strings.Contains(got, "<body>"+rec.body+"</body>") || strings.Contains(got, "delay") {
		t.Errorf("alert: %s", got)
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
		s := &Sink{devices: tt.devices}
		if got := s.Wants(tt.name); got != tt.want {
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
	for _, body := range []string{"", "ALERT door"} {
		rs := []devices.Reading{in, climateReading()}
		b := appendRecordOf(nil, body, rs)
		var out record
		if err := decodeRecord(b, &out); err != nil {
			t.Fatal(err)
		}
		if out.body != body || fmt.Sprintf("%+v", out.readings) != fmt.Sprintf("%+v", rs) {
			t.Fatalf("round trip:\n got %q %+v\nwant %q %+v", out.body, out.readings, body, rs)
		}
		for n := range len(b) {
			if err := decodeRecord(b[:n], &out); err == nil && n != len(appendRecordOf(nil, body, rs[:1])) {
				t.Fatalf("decodeRecord accepted a record cut at %d of %d bytes", n, len(b))
			}
		}
	}
	// A record of the first format: one bare reading.
	var out record
	if err := decodeRecord(appendReading(nil, in), &out); err != nil || len(out.readings) != 1 || fmt.Sprint(out.readings[0]) != fmt.Sprint(in) {
		t.Fatalf("first-format record: %+v, %v", out, err)
	}
}

// FuzzDecodeRecord: outbox records come from disk; whatever is there must
// decode or fail cleanly, and what decodes must encode back the same.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(appendReading(nil, climateReading()))
	f.Add(appendRecordOf(nil, "", []devices.Reading{climateReading(), climateReading()}))
	f.Add(appendRecordOf(nil, "alert", []devices.Reading{{Device: "x", Fields: []devices.Field{devices.Text("s", "v"), devices.Bool("b", true)}}}))
	f.Add([]byte{0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r record
		if decodeRecord(b, &r) != nil {
			return
		}
		var again record
		if err := decodeRecord(appendRecordOf(nil, r.body, r.readings), &again); err != nil ||
			again.body != r.body || fmt.Sprint(again.readings) != fmt.Sprint(r.readings) {
			t.Fatalf("re-encoding %+v gives %+v, %v", r, again, err)
		}
	})
}

// BenchmarkChatSinkEncode measures reading → stanza bytes, the work done
// for every reading a chat sink sends (DESIGN.md: ≤ 2 µs, ≤ 4 allocs).
func BenchmarkChatSinkEncode(b *testing.B) {
	s := &Sink{to: "operator@iot.test", from: "device@iot.test"}
	rec := &record{readings: []devices.Reading{climateReading()}}
	now := rec.readings[0].Time
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		s.encode(rec, uint64(i), now)
	}
}

// OnAck acknowledges, per sink, everything up to the last tag it got.
func TestOnAckRoutesToSinks(t *testing.T) {
	var sinks []*Sink
	p := New(nil, Hooks{Sinks: func() []*Sink { return sinks }})
	for i := range 2 {
		box, err := outbox.Open(t.TempDir(), outbox.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer box.Close()
		s := &Sink{id: uint64(i), box: box}
		for range 5 {
			box.Append([]byte("r"))
		}
		sinks = append(sinks, s)
	}
	s0, s1 := sinks[0], sinks[1]
	p.OnAck([]uint64{s0.tag(1), s0.tag(2), s1.tag(1), s0.tag(3), s1.tag(2), s1.tag(3), s1.tag(4), 7 << tagBits})
	if got := s0.box.Stats(); got.Acked != 3 || got.Pending != 2 {
		t.Errorf("sink 0: %+v, want acked 3, 2 pending", got)
	}
	if got := s1.box.Stats(); got.Acked != 4 || got.Pending != 1 {
		t.Errorf("sink 1: %+v, want acked 4, 1 pending", got)
	}
}

// A publish the service refuses for now keeps the reading queued; only a
// refusal for good drops it.
func TestPubsubNotNow(t *testing.T) {
	for _, tt := range []struct {
		typ, condition string
		notNow         bool
	}{
		{xmpp.ErrorTypeWait, "resource-constraint", true},
		{xmpp.ErrorTypeWait, "policy-violation", true},
		{xmpp.ErrorTypeCancel, "service-unavailable", true},
		{xmpp.ErrorTypeCancel, "remote-server-not-found", true},
		{xmpp.ErrorTypeWait, "remote-server-timeout", true},
		{xmpp.ErrorTypeCancel, "internal-server-error", true},
		{xmpp.ErrorTypeAuth, "forbidden", false},
		{xmpp.ErrorTypeModify, "not-acceptable", false},
		{xmpp.ErrorTypeCancel, "item-not-found", false},
		{xmpp.ErrorTypeModify, "bad-request", false},
	} {
		if got := notNow(&xmpp.StanzaError{Type: tt.typ, Condition: tt.condition}); got != tt.notNow {
			t.Errorf("notNow(%s/%s) = %v, want %v", tt.typ, tt.condition, got, tt.notNow)
		}
	}
}

// Sink ids fit the 16 bits of an ack tag: they go round from 1 to
// 65,535, skipping those of running sinks, and acks reach the sink whose
// id came round.
func TestSinkIDsGoRound(t *testing.T) {
	box, err := outbox.Open(t.TempDir(), outbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer box.Close()
	for range 5 {
		box.Append([]byte("r"))
	}
	running := []*Sink{{id: 2}, {id: 65534}}
	p := New(nil, Hooks{Sinks: func() []*Sink { return running }})
	p.sinkIDs.Store(65532)
	var got []uint64
	for range 4 {
		got = append(got, p.newSinkID())
	}
	if want := []uint64{65533, 65535, 1, 3}; !slices.Equal(got, want) {
		t.Fatalf("ids %v, want %v", got, want)
	}
	s := &Sink{id: 65535, box: box}
	running = append(running, s)
	p.OnAck([]uint64{s.tag(3), 7<<tagBits | 4}) // and one of a sink gone
	if st := box.Stats(); st.Acked != 3 || st.Pending != 2 {
		t.Errorf("sink 65535: %+v, want acked 3, 2 pending", st)
	}
}
