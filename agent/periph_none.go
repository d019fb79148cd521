//go:build nogpio

package agent

import (
	"fmt"

	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/devices"
)

// GPIOBuilt reports whether this build drives GPIO and I²C (not -tags
// nogpio).
const GPIOBuilt = false

// buildPeriph refuses: this build has no GPIO or I²C (-tags nogpio), so
// neither periph's host drivers nor the sensor drivers are linked.
func buildPeriph(c config.Device) (devices.Device, error) {
	return nil, fmt.Errorf("kind %q needs GPIO/I²C, and this stanzad was built without it (-tags nogpio); use a full build", c.Kind)
}
