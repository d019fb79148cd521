//go:build !nogpio

package agent

import (
	"fmt"
	"strings"
	"sync"

	"periph.io/x/conn/v3/driver/driverreg"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2creg"

	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/devices"
)

// GPIOBuilt reports whether this build drives GPIO and I²C (not -tags
// nogpio).
const GPIOBuilt = true

// buildPeriph builds the devices that go through periph: GPIO pins and
// I²C sensors.
func buildPeriph(c config.Device) (devices.Device, error) {
	switch c.Kind {
	case "gpio-in":
		pull := map[string]gpio.Pull{"none": gpio.Float, "up": gpio.PullUp, "down": gpio.PullDown}[c.Pull]
		edge := map[string]gpio.Edge{"both": gpio.BothEdges, "rising": gpio.RisingEdge, "falling": gpio.FallingEdge}[c.Edge]
		return devices.NewGPIOIn(devices.GPIOInConfig{Name: c.Name, Open: openPin(c.Pin), Pull: pull, Edge: edge,
			Debounce: c.Debounce.Duration, Invert: c.Invert, Interval: c.Interval.Duration}), nil
	case "gpio-out":
		return devices.NewGPIOOut(devices.GPIOOutConfig{Name: c.Name, Open: openPin(c.Pin), Initial: c.Initial,
			Safe: c.Safe, Invert: c.Invert, Pulse: c.Pulse.Duration}), nil
	case "i2c-bme280":
		return devices.NewBME280(devices.I2CConfig{Name: c.Name, Open: openBus(c.Bus), Addr: c.Address, Interval: c.Interval.Duration}), nil
	case "i2c-sht3x":
		return devices.NewSHT3x(devices.I2CConfig{Name: c.Name, Open: openBus(c.Bus), Addr: c.Address, Interval: c.Interval.Duration}), nil
	}
	return nil, fmt.Errorf("kind %q is not supported by this build", c.Kind)
}

// hostInit loads periph's host drivers once, on first use of a pin or
// bus: boards without GPIO devices never touch /dev/gpiochip* or /sys.
// The drivers are those registered in drivers.go.
var hostInit = sync.OnceValue(func() error {
	_, err := driverreg.Init()
	return err
})

func openPin(name string) devices.PinOpener {
	return func() (gpio.PinIO, error) {
		if err := hostInit(); err != nil {
			return nil, fmt.Errorf("gpio: %w", err)
		}
		p := gpioreg.ByName(name)
		if p == nil {
			return nil, fmt.Errorf("gpio: no pin %q on this board (names look like GPIO17; see docs/devices.md)", name)
		}
		return p, nil
	}
}

func openBus(bus string) devices.BusOpener {
	// "/dev/i2c-1" and "1" name the same bus; periph's registry knows it
	// by number.
	name := strings.TrimPrefix(bus, "/dev/i2c-")
	return func() (i2c.BusCloser, error) {
		if err := hostInit(); err != nil {
			return nil, fmt.Errorf("i2c: %w", err)
		}
		b, err := i2creg.Open(name)
		if err != nil {
			return nil, fmt.Errorf("i2c bus %s: %w (is I2C enabled, and is stanzad in group i2c?)", bus, err)
		}
		return b, nil
	}
}
