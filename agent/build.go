package agent

import (
	"fmt"
	"time"

	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/devices"
)

// BuildDevices constructs a driver for every configured device. It opens
// nothing: hardware is touched only when a device runs.
func BuildDevices(cfgs []config.Device) ([]devices.Device, error) {
	out := make([]devices.Device, 0, len(cfgs))
	for _, c := range cfgs {
		switch c.Kind {
		case "sim":
			out = append(out, devices.NewSim(devices.SimConfig{Name: c.Name, Interval: c.Interval.Duration}))
		case "sim-switch":
			out = append(out, devices.NewSwitch(devices.SwitchConfig{Name: c.Name, Initial: c.Initial}))
		default:
			return nil, fmt.Errorf("device %q: kind %q is not supported by this build yet", c.Name, c.Kind)
		}
	}
	return out, nil
}

// ApplyDemo fills in what `stanzad -demo` needs beyond the XMPP account:
// a simulated climate sensor and relay when no devices are configured, and
// a chat sink to every operator when no sinks are.
func ApplyDemo(cfg *config.Config) {
	if len(cfg.Devices) == 0 {
		cfg.Devices = []config.Device{
			{Name: "greenhouse", Kind: "sim", Interval: config.Duration{Duration: 5 * time.Second}},
			{Name: "relay1", Kind: "sim-switch"},
		}
	}
	if len(cfg.Sinks) == 0 {
		for _, op := range cfg.ACL.Operators {
			cfg.Sinks = append(cfg.Sinks, config.Sink{Kind: "chat", To: op, Devices: []string{"*"}})
		}
	}
}
