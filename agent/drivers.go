//go:build !nogpio

package agent

// periph host drivers. host.Init would register every board periph knows
// (Allwinner, C.H.I.P., ODROID-C1, Pine64, ...); stanzad registers the
// generic Linux ones, which reach any board's GPIO and I²C through the
// kernel, and (drivers_arm*.go) the boards firmware-notes describe. On
// other boards, pins are named by their gpiochip line names (gpioinfo
// shows them). This keeps the armv7 binary under its 8 MiB budget with
// the MQTT bridge.
import (
	_ "periph.io/x/host/v3/gpioioctl" // /dev/gpiochip*: every board with a current kernel, Raspberry Pi 5 included
	_ "periph.io/x/host/v3/sysfs"     // I²C buses (/dev/i2c-*), legacy /sys/class/gpio
)
