// Package telemetry is stanzad's telemetry pipeline: the dispatcher that
// takes readings off the agent's bus, the per-sink filters (devices,
// deadband, min_interval, max_silence, batch), alerts, the outbox record
// format, and the sinks with their senders — chat and room (MUC)
// messages with bounce bookkeeping, pubsub/PEP items with node access
// control, and the MQTT bridge's publisher. Each sink is a unit: it owns
// its goroutines and its outbox and can be started and stopped alone.
//
// What the sinks need from the agent that runs them (the XMPP client in
// use, the ACL's members, whether a contact is offline, what to do with a
// command typed in a room) comes in through Hooks. It must not import
// package agent or agent/control; adding a sink kind touches this folder
// and agent/config only.
package telemetry
