// Package config loads stanzad's TOML configuration strictly.
//
// It owns the schema of the agent's file (shared/DESIGN.md, "Config" and
// "Keys per kind") and of stanzactl's file, the defaults, and the
// validation. Every unknown key, every key that does not apply to a
// device's or sink's kind, and every bad value is reported as an [Error]
// naming the key and its line, and all of them come back at once as
// [Errors], so `stanzad -check` shows the whole picture in one run.
// Secrets are read from files and carried as [Secret], which never prints.
//
// It imports no other stanzad package (JIDs are checked here
// syntactically), starts nothing and touches no hardware.
package config
