//go:build integration

package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/stanzad/stanzad/agent"
	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/internal/testserver"
)

// Home Assistant discovery against the real mosquitto: retained configs
// with the schema's keys, state topics that carry the values, a switch
// that goes through the registry, a removed device forgotten, and
// availability that goes offline with the agent.
func TestIntegrationHADiscovery(t *testing.T) {
	srv := testserver.New(t, testserver.Options{})
	testserver.MustRegister(t, srv, "device", "pw-device")
	broker := testserver.NewMosquitto(t, testserver.MosquittoOptions{})
	w := newMQTTWatcher(t, broker, "ha", "#")
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "stanzad.toml")
	writeFile(t, filepath.Join(dir, "password"), "pw-device")
	file := func(relay bool) string {
		s := configHead(srv, dir) + fmt.Sprintf(`
[acl]
operators = ["alice@%s"]

[[device]]
name = "greenhouse"
kind = "sim"
interval = "200ms"

[mqtt]
broker = "tcp://%s"
keepalive = "2s"
allow_commands = true
discovery = true
`, srv.Host, broker.Addr)
		if relay {
			s += "\n[[device]]\nname = \"relay1\"\nkind = \"sim-switch\"\n"
		}
		return s
	}
	writeFile(t, cfgPath, file(true))
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Options{Config: cfg, ConfigPath: cfgPath, Version: "test", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	defer stop()

	type haConfig struct {
		Name              string `json:"name"`
		UniqueID          string `json:"unique_id"`
		StateTopic        string `json:"state_topic"`
		ValueTemplate     string `json:"value_template"`
		CommandTopic      string `json:"command_topic"`
		AvailabilityTopic string `json:"availability_topic"`
		Available         string `json:"payload_available"`
		NotAvailable      string `json:"payload_not_available"`
		Unit              string `json:"unit_of_measurement"`
		DeviceClass       string `json:"device_class"`
		StateClass        string `json:"state_class"`
		Device            struct {
			Identifiers []string `json:"identifiers"`
			Name        string   `json:"name"`
			Model       string   `json:"model"`
		} `json:"device"`
	}
	config := func(topic string) haConfig {
		t.Helper()
		m := w.wait(t, topic, func(m mqtt.Message) bool { return len(m.Payload()) > 0 })
		var c haConfig
		if err := json.Unmarshal(m.Payload(), &c); err != nil {
			t.Fatalf("%s: not JSON: %v\n%s", topic, err, m.Payload())
		}
		if c.Name == "" || c.UniqueID == "" || c.ValueTemplate == "" || c.Available != "online" || c.NotAvailable != "offline" {
			t.Errorf("%s lacks keys: %s", topic, m.Payload())
		}
		return c
	}

	temp := config("homeassistant/sensor/device_greenhouse/temperature/config")
	if temp.StateTopic != "stanzad/device/greenhouse" || temp.DeviceClass != "temperature" || temp.Unit != "°C" || temp.StateClass != "measurement" ||
		temp.AvailabilityTopic != "stanzad/device/status" || temp.UniqueID != "stanzad_device_iot_test_greenhouse_temperature" ||
		len(temp.Device.Identifiers) != 1 || temp.Device.Identifiers[0] != "device@"+srv.Host || temp.Device.Model != "stanzad" {
		t.Errorf("temperature config: %+v", temp)
	}
	if hum := config("homeassistant/sensor/device_greenhouse/humidity/config"); hum.DeviceClass != "humidity" || hum.Unit != "%" {
		t.Errorf("humidity config: %+v", hum)
	}
	sw := config("homeassistant/switch/device_relay1/state/config")
	if sw.CommandTopic != "stanzad/device/relay1/set" || sw.StateTopic != "stanzad/device/relay1" {
		t.Errorf("switch config: %+v", sw)
	}

	// The state topic a config names carries the reading's value.
	st := w.wait(t, temp.StateTopic, anyMsg)
	var reading struct {
		Fields map[string]struct{ Value any }
	}
	if err := json.Unmarshal(st.Payload(), &reading); err != nil {
		t.Fatal(err)
	}
	if _, ok := reading.Fields["temperature"].Value.(float64); !ok {
		t.Errorf("state topic %s: %s", temp.StateTopic, st.Payload())
	}

	// Retained: a client that comes later gets every config.
	late := newMQTTWatcher(t, broker, "late", "homeassistant/#")
	if m := late.wait(t, "homeassistant/switch/device_relay1/state/config", anyMsg); !m.Retained() {
		t.Error("the switch's config is not retained")
	}

	// ON from Home Assistant switches the relay through the registry.
	w.publish(t, sw.CommandTopic, "ON", false)
	w.wait(t, "stanzad/device/relay1", func(m mqtt.Message) bool {
		var r struct {
			Fields map[string]struct{ Value any }
		}
		json.Unmarshal(m.Payload(), &r)
		return r.Fields["state"].Value == true
	})
	rs, err := a.Read(t.Context(), operator, []string{"relay1"})
	if err != nil || len(rs) != 1 || !rs[0].Fields[0].Bool {
		t.Errorf("relay1 after ON: %+v, %v", rs, err)
	}

	// A device removed by a reload: its config is emptied.
	writeFile(t, cfgPath, file(false))
	if _, err := a.Reload(t.Context(), operator); err != nil {
		t.Fatal(err)
	}
	w.wait(t, "homeassistant/switch/device_relay1/state/config", func(m mqtt.Message) bool { return len(m.Payload()) == 0 })

	// Availability: offline when the agent stops.
	stop()
	w.wait(t, "stanzad/device/status", func(m mqtt.Message) bool { return string(m.Payload()) == "offline" })
}
