package agent

import (
	"encoding/json"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/devices"
)

func TestParseSetPayload(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{"on", "on", ""},
		{"  21.5\n", "21.5", ""},
		{`{"value": true}`, "true", ""},
		{`{"value": 21.50}`, "21.50", ""},
		{`{"value": "RESET"}`, "RESET", ""},
		{"", "", "empty payload"},
		{`{"value":`, "", "bad request"},
		{`{"value": null}`, "", "string, number or boolean"},
		{`{"value": [1]}`, "", "string, number or boolean"},
		{`{"other": 1}`, "", `want {"value"`},
		{"a\nb", "", "one non-empty line"},
		{`{"value": "a\nb"}`, "", "one non-empty line"},
		{"\xff", "", "not UTF-8"},
		{strings.Repeat("x", 2000), "", "at most 1024"},
	}
	for _, tt := range tests {
		got, err := ParseSetPayload([]byte(tt.in))
		if tt.err == "" && (err != nil || got != tt.want) || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("ParseSetPayload(%q) = %q, %v; want %q, error containing %q", tt.in, got, err, tt.want, tt.err)
		}
	}
}

// The device JSON is valid JSON with the fields, units and time, whatever
// the names and strings hold.
func TestReadingJSON(t *testing.T) {
	r := devices.Reading{Device: "door", Time: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC), Fields: []devices.Field{
		devices.Number("temperature", 21.456, 1, "°C"), devices.Bool("open", true), devices.Text("line", "a\"b\\c\x01 ü"),
		devices.Number("bad", math.NaN(), -1, ""),
	}}
	b := append(appendReadingJSON([]byte("{"), r), '}')
	var got struct {
		Device string
		Time   string
		Fields map[string]struct {
			Value any
			Unit  string
		}
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if got.Device != "door" || got.Time != "2026-11-25T12:00:00Z" || got.Fields["temperature"].Value != 21.5 ||
		got.Fields["temperature"].Unit != "°C" || got.Fields["open"].Value != true || got.Fields["line"].Value != "a\"b\\c\x01 ü" ||
		got.Fields["bad"].Value != nil {
		t.Errorf("%s → %+v", b, got)
	}
}

// FuzzParseSetPayload: MQTT payloads come from anyone on the broker.
func FuzzParseSetPayload(f *testing.F) {
	for _, s := range []string{"on", `{"value": 1e3}`, `{"value":"x"}`, `{"value":`, "", "\xff", `{"value":{"a":1}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		v, err := ParseSetPayload(p)
		if err != nil {
			return
		}
		if v == "" || strings.ContainsAny(v, "\r\n\x00") || len(v) > maxSetPayload {
			t.Fatalf("ParseSetPayload(%q) = %q", p, v)
		}
		b := appendJSONString(nil, v)
		var back string
		if json.Unmarshal(b, &back) != nil || back != strings.ToValidUTF8(v, "\ufffd") {
			t.Fatalf("JSON string of %q: %s", v, b)
		}
	})
}

// BenchmarkMQTTMessages measures one reading → its MQTT messages (device
// JSON and one topic per field), the work per reading on the bridge.
func BenchmarkMQTTMessages(b *testing.B) {
	ms := &mqttSender{m: &mqttMap{cfg: &config.MQTT{Retain: true}, prefix: "stanzad/device"}}
	ms.rec.readings = []devices.Reading{{Device: "greenhouse", Time: time.Now(), Fields: []devices.Field{
		devices.Number("temperature", 21.5, 1, "°C"), devices.Number("humidity", 40.2, 1, "%")}}}
	log := slog.New(slog.DiscardHandler)
	b.ReportAllocs()
	for b.Loop() {
		if len(ms.messages(log)) != 3 {
			b.Fatal("want 3 messages")
		}
	}
}
