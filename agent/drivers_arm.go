//go:build !nogpio

package agent

import (
	_ "periph.io/x/host/v3/bcm283x" // Raspberry Pi SoCs: GPIO17-style names, fast GPIO
	_ "periph.io/x/host/v3/rpi"     // Raspberry Pi header pins (P1_11, ...)

	_ "periph.io/x/host/v3/am335x"      // BeagleBone SoC
	_ "periph.io/x/host/v3/beagle/bone" // BeagleBone header pins (P8_..., P9_...)
	_ "periph.io/x/host/v3/beagle/green"
)
