package agent

import (
	"strings"
	"testing"

	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/bridge"
)

// TestOptionalParts runs in the full build and in the reduced ones (make
// test runs it with -tags nomqtt,nogpio too): a part left out of the
// build is refused with a message that says so, never half-run.
func TestOptionalParts(t *testing.T) {
	_, err := BuildDevices([]config.Device{{Name: "relay1", Kind: "gpio-out", Pin: "GPIO17"}})
	switch {
	case GPIOBuilt && err != nil:
		t.Errorf("full build refused a gpio-out device: %v", err)
	case !GPIOBuilt && (err == nil || !strings.Contains(err.Error(), "-tags nogpio")):
		t.Errorf("nogpio build: gpio-out device gave %v, want an error naming the build", err)
	}
	if _, err := BuildDevices([]config.Device{{Name: "greenhouse", Kind: "sim"}, {Name: "t", Kind: "system"}}); err != nil {
		t.Errorf("devices every build has: %v", err)
	}

	cfg := &config.Config{
		XMPP:  config.XMPP{JID: "device@iot.test/agent", Password: "pw"},
		Agent: config.Agent{StateDir: t.TempDir()},
		ACL:   config.ACL{Operators: []string{"operator@iot.test"}},
		MQTT:  &config.MQTT{Broker: "tcp://127.0.0.1:1883"},
	}
	_, err = New(Options{Config: cfg})
	switch {
	case bridge.Built && err != nil:
		t.Errorf("full build refused [mqtt]: %v", err)
	case !bridge.Built && (err == nil || !strings.Contains(err.Error(), "-tags nomqtt")):
		t.Errorf("nomqtt build: [mqtt] gave %v, want an error naming the build", err)
	}
}
