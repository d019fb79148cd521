// Package devices holds stanzad's device drivers behind one small
// interface: a Device produces Readings on its own schedule (Run), and may
// also answer a momentary readout (Reader) or accept a value (Setter).
//
// Drivers talk to hardware through periph.io, go.bug.st/serial and fsnotify,
// or simulate it. This package must never import xmpp, bridge or agent:
// the agent maps Readings to wire formats.
package devices
