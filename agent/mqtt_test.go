package agent

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/agent/telemetry"
	"github.com/stanzad/stanzad/bridge"
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
		b := telemetry.AppendJSONString(nil, v)
		var back string
		if json.Unmarshal(b, &back) != nil || back != strings.ToValidUTF8(v, "\ufffd") {
			t.Fatalf("JSON string of %q: %s", v, b)
		}
	})
}

// A virtual device fed by several topics is one device, however the
// subscriptions are ordered; garbage on its topic is an error reading,
// and read says so too.
func TestMQTTVirtualDevices(t *testing.T) {
	if !bridge.Built {
		t.Skip("no MQTT bridge in this build (-tags nomqtt); TestOptionalParts checks it is refused")
	}
	cfg := &config.Config{
		XMPP:    config.XMPP{JID: "device@iot.test/agent"},
		Agent:   config.Agent{StateDir: t.TempDir(), OutboxMax: 1 << 20},
		Devices: []config.Device{{Name: "t", Kind: "sim"}},
		MQTT: &config.MQTT{Broker: "tcp://127.0.0.1:1", QoS: 1, TopicPrefix: "stanzad/{node}", Subscribe: []config.MQTTSubscribe{
			{Topic: "a/temp", Device: "outside", Parse: "kv"},
			{Topic: "b/#", Device: "shed", Parse: "line"},
			{Topic: "c/temp", Device: "outside", Parse: "json"},
		}},
	}
	a, err := New(Options{Config: cfg, Devices: []devices.Device{devices.NewSwitch(devices.SwitchConfig{Name: "t"})}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.closeState()
	var names []string
	for _, d := range a.devices() {
		names = append(names, d.Name())
	}
	if strings.Join(names, " ") != "t outside shed" {
		t.Fatalf("devices %v, want t outside shed", names)
	}
	if s := a.sinks()[len(a.sinks())-1]; s.Kind() != "mqtt" || s.Wants("outside") || !s.Wants("t") {
		t.Errorf("the MQTT sink %s must take t and not the virtual devices", s.Name())
	}

	od, _ := a.device("outside")
	out := od.(*mqttDevice)
	if _, err := out.Read(context.Background()); !errors.Is(err, errNoMessage) {
		t.Errorf("read before any message: %v", err)
	}
	got := make(chan devices.Reading, 4)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- out.Run(ctx, func(r devices.Reading) { got <- r }) }()
	recv := a.now().mqtt.receive(slog.New(slog.DiscardHandler))
	recv(bridge.Message{Topic: "c/temp", Payload: []byte(`{"temp": `)}) // cut JSON
	if r := <-got; r.Err == nil || r.Device != "outside" {
		t.Errorf("garbage payload: %+v, want an error reading", r)
	}
	if _, err := out.Read(context.Background()); err == nil {
		t.Error("read after garbage: no error")
	}
	recv(bridge.Message{Topic: "a/temp", Payload: []byte("temp=12.5")})
	if r := <-got; r.Err != nil || len(r.Fields) != 1 || r.Fields[0].Num != 12.5 {
		t.Errorf("good payload: %+v", r)
	}
	recv(bridge.Message{Topic: "stanzad/device/t/set", Payload: []byte("on"), Retain: true})
	select {
	case m := <-a.now().mqtt.cmds:
		t.Errorf("retained command queued: %+v", m)
	default:
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run after cancel: %v", err)
	}
}
