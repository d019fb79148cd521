package agent

import (
	"fmt"
	"time"

	"go.bug.st/serial"

	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/devices"
)

// BuildDevices constructs a driver for every configured device. It opens
// nothing: hardware is touched only when a device runs, so a missing bus
// or pin is a device error retried with backoff, not a failed start.
func BuildDevices(cfgs []config.Device) ([]devices.Device, error) {
	out := make([]devices.Device, 0, len(cfgs))
	for _, c := range cfgs {
		d, err := buildDevice(c)
		if err != nil {
			return nil, fmt.Errorf("device %q: %w", c.Name, err)
		}
		out = append(out, d)
	}
	return out, nil
}

func buildDevice(c config.Device) (devices.Device, error) {
	switch c.Kind {
	case "sim":
		return devices.NewSim(devices.SimConfig{Name: c.Name, Interval: c.Interval.Duration}), nil
	case "sim-switch":
		return devices.NewSwitch(devices.SwitchConfig{Name: c.Name, Initial: c.Initial}), nil
	case "gpio-in", "gpio-out", "i2c-bme280", "i2c-sht3x":
		return buildPeriph(c)
	case "onewire-ds18b20":
		return devices.NewDS18B20(devices.DS18B20Config{Name: c.Name, ID: c.ID, Root: c.Root, Interval: c.Interval.Duration}), nil
	case "system":
		return devices.NewSystem(devices.SystemConfig{Name: c.Name, Root: c.Root, Interval: c.Interval.Duration}), nil
	case "serial":
		p, err := devices.NewParser(c.Parse, c.Pattern)
		if err != nil {
			return nil, err
		}
		parity := map[string]serial.Parity{"none": serial.NoParity, "even": serial.EvenParity, "odd": serial.OddParity}[c.Parity]
		stop := serial.OneStopBit
		if c.StopBits == 2 {
			stop = serial.TwoStopBits
		}
		s := devices.NewSerial(devices.SerialConfig{Name: c.Name, Port: c.Port, Parse: p, MaxLine: int(c.MaxLine),
			Mode: serial.Mode{BaudRate: c.Baud, DataBits: c.DataBits, Parity: parity, StopBits: stop}})
		if c.Writable {
			return devices.WritableSerial{Serial: s}, nil
		}
		return s, nil
	case "file":
		p, err := devices.NewParser(c.Parse, "")
		if err != nil {
			return nil, err
		}
		return devices.NewFile(devices.FileConfig{Name: c.Name, Path: c.Path, Parse: c.Parse, Parser: p, MaxSize: int64(c.MaxSize)}), nil
	}
	return nil, fmt.Errorf("kind %q is not supported by this build", c.Kind)
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
