// Package agent is stanzad's orchestration: it builds devices from the
// config, runs them, the XMPP session, the MQTT bridge and the sinks as
// units that a reload starts and stops alone (units.go, reload.go), takes
// pushed configs on probation (push.go), follows its contacts' presence
// and sends its own, and maps MQTT topics to readings and commands.
//
// The telemetry pipeline (dispatch, filters, alerts, sinks) is in
// agent/telemetry and the control plane (ACL, rate limit, actions, the
// command registry, chat, ad-hoc, XEP-0323/0325) in agent/control; agent
// wires them together and implements what they ask of it
// (telemetry.Hooks, control.Host). It is the only package that knows
// xmpp, devices and bridge together.
package agent
