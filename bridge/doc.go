// Package bridge is the MQTT client side of stanzad's optional bridge
// (eclipse/paho.mqtt.golang): connect with backoff, buffer while the broker
// is away, publish readings, subscribe to command and foreign-device topics.
//
// It knows topics and payload bytes, not devices or XMPP: the agent maps
// readings and commands to topics. It must not import agent, xmpp or
// devices.
//
// The bridge itself arrives with its own issue; this package fixes its
// place in the layout.
package bridge
