package xmpp

import (
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestParseReadoutRequest(t *testing.T) {
	r, err := ParseReadoutRequest(parseEl(t, `<req xmlns='urn:xmpp:iot:sensordata' seqnr='7' momentary='true'>`+
		`<node nodeId='greenhouse'/><field name='temperature'/></req>`))
	want := ReadoutRequest{SeqNr: 7, Nodes: []string{"greenhouse"}, Fields: []string{"temperature"}, Momentary: true}
	if err != nil || !reflect.DeepEqual(r, want) {
		t.Errorf("ParseReadoutRequest = %+v, %v, want %+v", r, err, want)
	}
	if r, _ := ParseReadoutRequest(parseEl(t, `<req xmlns='urn:xmpp:iot:sensordata' seqnr='1'/>`)); !r.Momentary {
		t.Error("a request without field types does not ask for momentary values")
	}
	if r, _ := ParseReadoutRequest(parseEl(t, `<req xmlns='urn:xmpp:iot:sensordata' seqnr='1' historicalDay='true'/>`)); r.Momentary || !r.Historical {
		t.Error("a historical-only request asks for momentary values, or not for historical ones")
	}
	if r, _ := ParseReadoutRequest(parseEl(t, `<req xmlns='urn:xmpp:iot:sensordata' seqnr='1'/>`)); r.Historical {
		t.Error("a bare request asks for the history")
	}
	r, err = ParseReadoutRequest(parseEl(t, `<req xmlns='urn:xmpp:iot:sensordata' seqnr='2' historicalMinute='true' from='2026-11-28T22:00:00Z' to='2026-11-29T06:00:00+01:00'/>`))
	if err != nil || !r.Historical || !r.From.Equal(time.Date(2026, 11, 28, 22, 0, 0, 0, time.UTC)) || !r.To.Equal(time.Date(2026, 11, 29, 5, 0, 0, 0, time.UTC)) {
		t.Errorf("historical request with a range = %+v, %v", r, err)
	}
	for _, bad := range []string{
		`<req xmlns='urn:xmpp:iot:sensordata'/>`,
		`<req xmlns='urn:xmpp:iot:sensordata' seqnr='-1'/>`,
		`<req xmlns='urn:xmpp:iot:sensordata' seqnr='1' momentary='maybe'/>`,
		`<req xmlns='urn:xmpp:iot:sensordata' seqnr='1'><node/></req>`,
		`<req xmlns='urn:xmpp:iot:sensordata' seqnr='1'><field/></req>`,
		`<req xmlns='urn:xmpp:iot:sensordata' seqnr='1' historicalDay='true' from='yesterday'/>`,
		`<req xmlns='urn:xmpp:iot:sensordata' seqnr='1' historicalDay='true' from='2026-11-28T22:00:00'/>`,
		`<req xmlns='urn:xmpp:iot:sensordata' seqnr='1' all='true' from='2026-11-29T00:00:00Z' to='2026-11-28T00:00:00Z'/>`,
	} {
		if _, err := ParseReadoutRequest(parseEl(t, bad)); err == nil {
			t.Errorf("ParseReadoutRequest(%s) = nil error", bad)
		}
	}
}

func TestParseControlSet(t *testing.T) {
	s, err := ParseControlSet(parseEl(t, `<set xmlns='urn:xmpp:iot:control'><node nodeId='relay1'/>`+
		`<boolean name='state' value='1'/><int name='i' value='-3'/><long name='l' value='9000000000'/>`+
		`<double name='d' value='2.5e3'/><string name='s' value='hi'/><color name='c' value='FF00aa'/>`+
		`<date name='dt' value='2026-11-25'/><time name='t' value='23:59:60'/></set>`))
	if err == nil {
		t.Fatalf("leap second accepted: %+v", s)
	}
	s, err = ParseControlSet(parseEl(t, `<set xmlns='urn:xmpp:iot:control'><node nodeId='relay1'/>`+
		`<boolean name='state' value='1'/><int name='i' value='-3'/><long name='l' value='9000000000'/>`+
		`<double name='d' value='2.5e3'/><string name='s' value='hi'/><color name='c' value='FF00aa'/>`+
		`<date name='dt' value='2026-11-25'/><time name='t' value='23:59:59.5'/>`+
		`<dateTime name='ts' value='2026-11-25T10:00:00Z'/><duration name='du' value='PT1H30M'/></set>`))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Nodes) != 1 || len(s.Params) != 10 || s.Params[0] != (ControlParam{"boolean", "state", "true"}) {
		t.Errorf("ParseControlSet = %+v", s)
	}
	tests := []struct{ in, want string }{
		{`<boolean name='r' value='on'/>`, "true, false"},
		{`<int name='r' value='3000000000'/>`, "32-bit"},
		{`<long name='r' value='1.5'/>`, "64-bit"},
		{`<double name='r' value='NaN'/>`, "finite"},
		{`<color name='r' value='red'/>`, "RRGGBB"},
		{`<date name='r' value='2026-13-01'/>`, "YYYY-MM-DD"},
		{`<dateTime name='r' value='yesterday'/>`, "XEP-0082"},
		{`<duration name='r' value='PT'/>`, "xs:duration"},
		{`<duration name='r' value='P'/>`, "xs:duration"},
		{`<string name='r' value='` + strings.Repeat("x", 1025) + `'/>`, "1024"},
		{`<slider name='r' value='1'/>`, "unknown parameter type"},
		{`<boolean value='1'/>`, "without name"},
		{``, "no control parameters"},
	}
	for _, tt := range tests {
		_, err := ParseControlSet(parseEl(t, `<set xmlns='urn:xmpp:iot:control'>`+tt.in+`</set>`))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseControlSet(%s) = %v, want error containing %q", tt.in, err, tt.want)
		}
	}
}

func TestAppendReadoutMessages(t *testing.T) {
	ts := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	nodes := []SensorNode{{ID: "a", Time: ts, Fields: []SensorField{{Name: "t", Num: 1.5, Decimals: 1, Unit: "°C"}}}}
	fails := []SensorFailure{{ID: "b", Time: ts, Text: "i2c: no ack <0x76>"}}
	got := string(AppendReadoutMessages(nil, "op@iot.test/x", 9, nodes, fails))
	want := `<message to='op@iot.test/x'><fields xmlns='urn:xmpp:iot:sensordata' seqnr='9'>` +
		`<node nodeId='a'><timestamp value='2026-11-24T10:00:00Z'><numeric name='t' momentary='true' automaticReadout='true' value='1.5' unit='°C'/></timestamp></node></fields></message>` +
		`<message to='op@iot.test/x'><failure xmlns='urn:xmpp:iot:sensordata' seqnr='9' done='true'>` +
		`<error nodeId='b' timestamp='2026-11-24T10:00:00Z'>i2c: no ack &lt;0x76&gt;</error></failure></message>`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if got := string(AppendReadoutMessages(nil, "x@y", 1, nil, nil)); got != `<message to='x@y'><fields xmlns='urn:xmpp:iot:sensordata' seqnr='1' done='true'></fields></message>` {
		t.Errorf("empty readout = %s", got)
	}
}

// A historical readout: one node's timestamps under one <node/>, each
// field with its type flag.
func TestAppendHistoricalMessageHistorical(t *testing.T) {
	ts := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	f := func(v float64, typ string) []SensorField {
		return []SensorField{{Name: "t", Type: typ, Num: v, Decimals: -1}}
	}
	got := string(AppendHistoricalMessage(nil, "op@iot.test", 3, false, []SensorNode{
		{ID: "a", Time: ts, Fields: f(1, "historicalMinute")},
		{ID: "a", Time: ts.Add(time.Minute), Fields: f(2, "historicalOther")},
		{ID: "b", Time: ts, Fields: f(3, "historicalMinute")},
	}))
	want := `<message to='op@iot.test'><fields xmlns='urn:xmpp:iot:sensordata' seqnr='3'>` +
		`<node nodeId='a'><timestamp value='2026-11-24T10:00:00Z'><numeric name='t' historicalMinute='true' automaticReadout='true' value='1'/></timestamp>` +
		`<timestamp value='2026-11-24T10:01:00Z'><numeric name='t' historicalOther='true' automaticReadout='true' value='2'/></timestamp></node>` +
		`<node nodeId='b'><timestamp value='2026-11-24T10:00:00Z'><numeric name='t' historicalMinute='true' automaticReadout='true' value='3'/></timestamp></node></fields></message>`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func FuzzParseIoT(f *testing.F) {
	f.Add(`<set xmlns='urn:xmpp:iot:control'><boolean name='relay1' value='true'/></set>`)
	f.Add(`<set xmlns='urn:xmpp:iot:control'><node nodeId='a'/><duration name='d' value='-P1DT2H'/></set>`)
	f.Add(`<req xmlns='urn:xmpp:iot:sensordata' seqnr='1' momentary='true'><node nodeId='a'/></req>`)
	f.Add(`<req xmlns='urn:xmpp:iot:sensordata' seqnr='1' historicalHour='true' from='2026-11-28T22:00:00Z' to='2026-11-29T06:00:00Z'/>`)
	f.Fuzz(func(t *testing.T, s string) {
		el, err := parseOne(s)
		if err != nil {
			return
		}
		if set, err := ParseControlSet(el); err == nil {
			for _, p := range set.Params {
				// A normalized value is valid for its type.
				if v, err := checkControlValue(p.Type, p.Value); err != nil || v != p.Value {
					t.Fatalf("normalized %+v does not re-check: %q %v", p, v, err)
				}
			}
		}
		ParseReadoutRequest(el)
	})
}

// The value checks of isColor, isClockTime and isDuration accept exactly
// what XEP-0325's syntax (as regular expressions) does.
var (
	reColor    = regexp.MustCompile(`^[0-9A-Fa-f]{6}([0-9A-Fa-f]{2})?$`)
	reTime     = regexp.MustCompile(`^([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?$`)
	reDuration = regexp.MustCompile(`^-?P(([0-9]+Y)?([0-9]+M)?([0-9]+D)?(T([0-9]+H)?([0-9]+M)?([0-9]+(\.[0-9]+)?S)?)?)$`)
)

func wantDuration(v string) bool {
	return reDuration.MatchString(v) && v != "P" && v != "-P" && v[len(v)-1] != 'T'
}

func TestControlValueSyntax(t *testing.T) {
	for _, c := range []struct {
		check func(string) bool
		ok    []string
		bad   []string
	}{
		{isColor, []string{"FF00aa", "00000000", "abcdef12"}, []string{"", "red", "FF00a", "FF00aa0", "FF00aag", "FF00aa001"}},
		{isClockTime, []string{"00:00:00", "23:59:59", "12:30:00.5", "12:30:00.123456789"},
			[]string{"24:00:00", "12:60:00", "12:00:60", "1:00:00", "12:00:00.", "12:00:00.1234567890", "12:00:00Z", "12-00-00", "12:00"}},
		{isDuration, []string{"P1Y", "-P1DT2H", "PT1H30M", "PT0.5S", "P1Y2M3DT4H5M6.7S", "PT30S", "P0D"},
			[]string{"", "P", "-P", "PT", "P1DT", "1D", "P1H", "PT1D", "P1M1Y", "PT1.5M", "P1.5D", "PT.5S", "PT1.S", "P-1D", "--P1D", "P1DT1H1H"}},
	} {
		for _, v := range c.ok {
			if !c.check(v) {
				t.Errorf("%q refused", v)
			}
		}
		for _, v := range c.bad {
			if c.check(v) {
				t.Errorf("%q accepted", v)
			}
		}
	}
}

func FuzzControlValueSyntax(f *testing.F) {
	for _, s := range []string{"FF00aa", "23:59:59.5", "-P1Y2M3DT4H5M6.7S", "PT", "P1DT", "12:00:00.1234567890", "P1.5D"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if got, want := isColor(v), reColor.MatchString(v); got != want {
			t.Errorf("isColor(%q) = %v, the syntax says %v", v, got, want)
		}
		if got, want := isClockTime(v), reTime.MatchString(v); got != want {
			t.Errorf("isClockTime(%q) = %v, the syntax says %v", v, got, want)
		}
		if got, want := isDuration(v), wantDuration(v); got != want {
			t.Errorf("isDuration(%q) = %v, the syntax says %v", v, got, want)
		}
	})
}
