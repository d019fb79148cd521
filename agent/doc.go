// Package agent is stanzad's orchestration: it builds devices from the
// config, carries their readings to the sinks (XMPP chat today; MUC,
// pubsub and MQTT as they land), and runs operator commands through one
// registry and one ACL, whatever path they arrive by.
//
// It is the only package that knows xmpp, devices and bridge together.
package agent
