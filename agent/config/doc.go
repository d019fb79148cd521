// Package config loads stanzad's TOML configuration strictly: every
// unknown key, every key that does not apply to a device or sink kind, and
// every bad value is an error naming the key and its line, and all of them
// are reported at once so `stanzad -check` shows the whole picture.
//
// It owns the schema of shared/DESIGN.md ("Config"), the defaults and the
// validation. It imports xmpp only to validate JIDs; it starts nothing and
// touches no hardware.
package config
