//go:build arm.7 && !nogpio

package agent

// The BeagleBone's AM335x is ARMv7, and its images run armhf: the armv6
// build (Pi Zero, Pi 1; Debian's armel) goes without these drivers (the
// generic gpioioctl and sysfs ones still work there).
import (
	_ "periph.io/x/host/v3/am335x"      // BeagleBone SoC
	_ "periph.io/x/host/v3/beagle/bone" // BeagleBone header pins (P8_..., P9_...)
	_ "periph.io/x/host/v3/beagle/green"
)
