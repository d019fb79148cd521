// Package bridge is the MQTT client side of stanzad's optional bridge
// (eclipse/paho.mqtt.golang): one connection to a broker that stays up by
// itself, publishes with the broker's acknowledgement, announces the
// agent's status with a retained message and a last will, and hands
// incoming messages to the agent.
//
// It knows topics and payload bytes, not devices or XMPP: the agent maps
// readings and commands to topics. It must not import agent, xmpp or
// devices.
//
// Built with -tags nomqtt, the package has the same API without paho:
// New returns ErrNotBuilt, and the binary carries no MQTT code.
package bridge
