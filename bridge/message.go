package bridge

import (
	"errors"
	"log/slog"
	"strings"
	"time"
)

// Message is one MQTT message.
type Message struct {
	Topic   string
	Payload []byte
	Retain  bool
}

// Options configure a Client.
type Options struct {
	// Broker is scheme://host:port: tcp, ssl/tls/mqtts (TLS), ws, wss.
	Broker   string
	ClientID string
	Username string
	Password string
	// CAFile adds trusted roots for TLS brokers; the system roots are
	// always trusted. Certificate verification cannot be turned off.
	CAFile string
	// ClientCert and ClientKey, if set, authenticate the client by TLS.
	ClientCert, ClientKey string
	QoS                   byte          // for publishes and subscriptions
	Keepalive             time.Duration // default 30s
	// Status is published (retained) on every connect, e.g. "online"
	// on {prefix}/status; Will (retained) is what the broker publishes
	// when the connection dies, e.g. "offline". Shutdown publishes Will
	// itself before disconnecting.
	Status, Will Message
	// Subscribe lists topic filters subscribed to on every connect.
	Subscribe []string
	// OnMessage receives every message on the subscribed topics. It runs
	// on the client's goroutine, one at a time: it must not block.
	OnMessage func(Message)
	Logger    *slog.Logger
}

// ErrNotBuilt is New's error in a build without the MQTT bridge (-tags
// nomqtt).
var ErrNotBuilt = errors.New("this stanzad was built without the MQTT bridge (-tags nomqtt); remove [mqtt] or install a full build")

// ErrNotConnected is returned for a publish while the broker is away.
var ErrNotConnected = errors.New("bridge: not connected to the broker")

// Match reports whether topic matches the MQTT filter (with + and #
// wildcards, MQTT 3.1.1 §4.7).
func Match(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && !strings.HasPrefix(filter, "$") {
		return false // $SYS and friends only match filters that name them
	}
	fs, ts := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, f := range fs {
		switch {
		case f == "#":
			return true
		case i >= len(ts):
			return false
		case f != "+" && f != ts[i]:
			return false
		}
	}
	return len(fs) == len(ts)
}
