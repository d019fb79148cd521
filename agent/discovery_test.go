package agent

import (
	"encoding/json"
	"testing"

	"github.com/stanzad/stanzad/devices"
)

func TestHAClass(t *testing.T) {
	for _, tt := range []struct{ field, unit, class, state string }{
		{"temperature", "°C", "temperature", "measurement"},
		{"t", "°F", "temperature", "measurement"},
		{"humidity", "%", "humidity", "measurement"},
		{"load", "%", "", "measurement"},
		{"pressure", "hPa", "pressure", "measurement"},
		{"supply", "V", "voltage", "measurement"},
		{"draw", "A", "current", "measurement"},
		{"power", "W", "power", "measurement"},
		{"energy", "kWh", "energy", "total_increasing"},
		{"co2", "ppm", "carbon_dioxide", "measurement"},
		{"voc", "ppm", "", "measurement"},
		{"light", "lx", "illuminance", "measurement"},
		{"disk_free", "B", "data_size", "measurement"},
		{"uptime", "s", "duration", "measurement"},
		{"load1", "", "", "measurement"},
	} {
		if c, s := haClass(tt.field, tt.unit); c != tt.class || s != tt.state {
			t.Errorf("haClass(%q, %q) = %q, %q; want %q, %q", tt.field, tt.unit, c, s, tt.class, tt.state)
		}
	}
}

func TestHAConfig(t *testing.T) {
	d := &discovery{prefix: "homeassistant", base: "stanzad/device", node: haID("device"), commands: true,
		device:   haDevice{Identifiers: []string{"device@iot.test"}, Name: "device@iot.test", Model: "stanzad", Manufacturer: "stanzad"},
		writable: func(name string) bool { return name == "relay1" }}
	topic, b := d.config("relay1", devices.Field{Name: "state", Kind: devices.Boolean})
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	if topic != "homeassistant/switch/device_relay1/state/config" || c["command_topic"] != "stanzad/device/relay1/set" ||
		c["unique_id"] != "stanzad_device_iot_test_relay1_state" || c["availability_topic"] != "stanzad/device/status" {
		t.Errorf("switch: %s %s", topic, b)
	}
	// A field name with spaces and dots is escaped in topics and ids,
	// and quoted in the template.
	topic, b = d.config("uart", devices.Field{Name: `rx rate.avg"`, Kind: devices.Numeric, Unit: "B"})
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	if topic != "homeassistant/sensor/device_uart/rx_rate_avg_/config" || c["value_template"] != `{{ value_json.fields["rx rate.avg\""].value }}` ||
		c["object_id"] != "device_uart_rx_rate_avg_" || c["device_class"] != "data_size" {
		t.Errorf("escaped: %s %s", topic, b)
	}
	// Without allow_commands a switch is only a binary_sensor.
	d.commands = false
	if topic, _ := d.config("relay1", devices.Field{Name: "state", Kind: devices.Boolean}); topic != "homeassistant/binary_sensor/device_relay1/state/config" {
		t.Errorf("without allow_commands: %s", topic)
	}
}

// Field names come from parsers of serial lines, files and MQTT payloads:
// a wildcard or a separator must never reach a discovery topic.
func TestHALevel(t *testing.T) {
	for name, ok := range map[string]bool{
		"temperature": true, "rx rate.avg": true, "": false, "a+b": false, "#": false, "a/b": false,
	} {
		if haLevel(name) != ok {
			t.Errorf("haLevel(%q) = %v", name, !ok)
		}
	}
}
