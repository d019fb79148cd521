// Package devices holds stanzad's device drivers behind one small
// interface: a Device produces Readings on its own schedule (Run), and may
// also answer a momentary readout (Reader) or accept a value (Setter).
//
// The drivers: GPIOIn and GPIOOut (periph gpio), BME280 (periph bmxx80)
// and SHT3x on I²C, DS18B20 through the kernel's 1-Wire sysfs, System
// (/proc and /sys), Serial (go.bug.st/serial) and File (fsnotify), plus Sim
// and Switch for the demo. Hardware is reached through openers (a pin, a
// bus, a port) called at the start of every Run, so tests hand in periph's
// fakes or a pseudo-terminal, and a board whose adapter was unplugged gets
// it back on the next Run: a Run that returns an error is restarted by the
// agent with backoff. Input from hardware is untrusted: the parsers cap
// what they keep and turn bad input into error readings.
//
// This package must never import xmpp, bridge or agent: the agent maps
// Readings to wire formats.
package devices
