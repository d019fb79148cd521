//go:build !nogpio

package agent

import (
	_ "periph.io/x/host/v3/bcm283x" // Raspberry Pi SoCs: GPIO17-style names, fast GPIO
	_ "periph.io/x/host/v3/rpi"     // Raspberry Pi header pins (P1_11, ...)
)
