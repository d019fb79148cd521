package telemetry

import (
	"encoding/json"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/stanzad/stanzad/devices"
)

// The device JSON is valid JSON with the fields, units and time, whatever
// the names and strings hold.
func TestReadingJSON(t *testing.T) {
	r := devices.Reading{Device: "door", Time: time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC), Fields: []devices.Field{
		devices.Number("temperature", 21.456, 1, "°C"), devices.Bool("open", true), devices.Text("line", "a\"b\\c\x01 ü"),
		devices.Number("bad", math.NaN(), -1, ""),
	}}
	b := append(AppendReadingJSON([]byte("{"), r), '}')
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

// BenchmarkMQTTMessages measures one reading → its MQTT messages (device
// JSON and one topic per field), the work per reading on the bridge.
func BenchmarkMQTTMessages(b *testing.B) {
	ms := &mqttSender{MQTT: MQTT{Retain: true, Prefix: "stanzad/device"}}
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
