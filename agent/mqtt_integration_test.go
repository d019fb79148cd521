//go:build integration

package agent_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/stanzad/stanzad/agent"
	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/devices"
	"github.com/stanzad/stanzad/internal/testserver"
	"github.com/stanzad/stanzad/xmpp"
)

// mqttWatcher is a paho client in the test: a persistent session (so
// QoS 1 messages wait for it across its own reconnects) subscribed to
// filter, keeping every message in arrival order.
type mqttWatcher struct {
	c    mqtt.Client
	mu   sync.Mutex
	msgs []mqtt.Message
	more chan struct{}
	pos  map[string]int // per topic: where the next wait starts
}

func newMQTTWatcher(t *testing.T, broker *testserver.Mosquitto, id, filter string) *mqttWatcher {
	t.Helper()
	w := &mqttWatcher{more: make(chan struct{}, 1), pos: map[string]int{}}
	o := mqtt.NewClientOptions().AddBroker("tcp://" + broker.Addr).SetClientID(id).SetCleanSession(false).
		SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(200 * time.Millisecond).
		SetMaxReconnectInterval(time.Second)
	o.SetOnConnectHandler(func(c mqtt.Client) {
		c.Subscribe(filter, 1, func(_ mqtt.Client, m mqtt.Message) {
			w.mu.Lock()
			w.msgs = append(w.msgs, m)
			w.mu.Unlock()
			select {
			case w.more <- struct{}{}:
			default:
			}
		}).Wait()
	})
	w.c = mqtt.NewClient(o)
	if tok := w.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("test MQTT client: %v", tok.Error())
	}
	t.Cleanup(func() { w.c.Disconnect(100) })
	return w
}

// wait returns the next message on topic accepted by keep: messages on
// that topic are consumed in order, whether they came before or come
// within the timeout.
func (w *mqttWatcher) wait(t *testing.T, topic string, keep func(mqtt.Message) bool) mqtt.Message {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		w.mu.Lock()
		for i := w.pos[topic]; i < len(w.msgs); i++ {
			if m := w.msgs[i]; m.Topic() == topic {
				w.pos[topic] = i + 1
				if keep(m) {
					w.mu.Unlock()
					return m
				}
			}
		}
		w.mu.Unlock()
		select {
		case <-w.more:
		case <-deadline:
			t.Fatalf("no matching message on %s within 20s", topic)
		}
	}
}

func (w *mqttWatcher) publish(t *testing.T, topic, payload string, retain bool) {
	t.Helper()
	if tok := w.c.Publish(topic, 1, retain, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

func anyMsg(mqtt.Message) bool { return true }

func mqttConfig(srv *testserver.Server, broker *testserver.Mosquitto, dir string, allow bool) *config.Config {
	cfg := baseConfig(srv, dir)
	cfg.MQTT = &config.MQTT{Broker: "tcp://" + broker.Addr, QoS: 1, Retain: true,
		Keepalive: config.Duration{Duration: 2 * time.Second}, TopicPrefix: "stanzad/{node}", AllowCommands: allow,
		Subscribe: []config.MQTTSubscribe{{Topic: "outside/+/climate", Device: "outside", Parse: "kv"}}}
	cfg.Sinks = []config.Sink{{Kind: "chat", To: "alice@" + srv.Host, Devices: []string{"*"}}}
	return cfg
}

func TestIntegrationMQTT(t *testing.T) {
	srv := testserver.New(t, testserver.Options{})
	testserver.MustRegister(t, srv, "device", "pw-device")
	broker := testserver.NewMosquitto(t, testserver.MosquittoOptions{})
	alice := newPeer(t, srv, "alice")
	w := newMQTTWatcher(t, broker, "watcher", "stanzad/#")
	outside := newMQTTWatcher(t, broker, "outside-sensor", "nothing/here")

	green := newScript("greenhouse")
	relay := devices.NewSwitch(devices.SwitchConfig{Name: "relay1"})
	cfg := mqttConfig(srv, broker, t.TempDir(), true)
	a := runOnline(t, agent.Options{Config: cfg, Logger: testLogger(t), Devices: []devices.Device{green, relay}})

	t.Run("status online, retained", func(t *testing.T) {
		m := w.wait(t, "stanzad/device/status", func(m mqtt.Message) bool { return string(m.Payload()) == "online" })
		_ = m
	})

	t.Run("readings on the device and field topics", func(t *testing.T) {
		green.temp(21.5)
		m := w.wait(t, "stanzad/device/greenhouse/temperature", anyMsg)
		if string(m.Payload()) != "21.5" {
			t.Errorf("field topic payload %q", m.Payload())
		}
		j := w.wait(t, "stanzad/device/greenhouse", anyMsg)
		var got struct {
			Device string
			Time   time.Time
			Fields map[string]struct {
				Value float64
				Unit  string
			}
		}
		if err := json.Unmarshal(j.Payload(), &got); err != nil {
			t.Fatalf("device JSON %s: %v", j.Payload(), err)
		}
		if got.Device != "greenhouse" || got.Fields["temperature"].Value != 21.5 || got.Fields["temperature"].Unit != "°C" ||
			time.Since(got.Time) > time.Minute {
			t.Errorf("device JSON %s", j.Payload())
		}
		// Retained: a client that comes later gets the last value at once.
		late := newMQTTWatcher(t, broker, "late", "stanzad/device/greenhouse/temperature")
		if m := late.wait(t, "stanzad/device/greenhouse/temperature", anyMsg); !m.Retained() || string(m.Payload()) != "21.5" {
			t.Errorf("late subscriber: retained=%v %q", m.Retained(), m.Payload())
		}
	})

	t.Run("set over MQTT goes through the registry", func(t *testing.T) {
		w.publish(t, "stanzad/device/relay1/set", "on", false)
		res := w.wait(t, "stanzad/device/relay1/result", anyMsg)
		if !strings.Contains(string(res.Payload()), `"ok":true`) || !strings.Contains(string(res.Payload()), `"state":{"value":true}`) {
			t.Errorf("result %s", res.Payload())
		}
		w.wait(t, "stanzad/device/relay1/state", func(m mqtt.Message) bool { return string(m.Payload()) == "true" })
		if got := alice.ask(t, cfg.XMPP.JID, "read relay1"); !strings.Contains(got, "state=true") {
			t.Errorf("relay after MQTT set: %q", got)
		}
		for _, tt := range []struct{ payload, want string }{
			{`{"value":`, `"condition":"bad-request"`},
			{"maybe", `"condition":"bad-request"`},
			{"", "empty payload"},
			{`{"value":false}`, `"ok":true`},
		} {
			w.publish(t, "stanzad/device/relay1/set", tt.payload, false)
			res := w.wait(t, "stanzad/device/relay1/result", anyMsg)
			if !strings.Contains(string(res.Payload()), tt.want) {
				t.Errorf("payload %q: result %s, want %s", tt.payload, res.Payload(), tt.want)
			}
		}
		w.publish(t, "stanzad/device/pump/set", "on", false)
		if res := w.wait(t, "stanzad/device/pump/result", anyMsg); !strings.Contains(string(res.Payload()), "item-not-found") {
			t.Errorf("unknown device: %s", res.Payload())
		}
	})

	t.Run("foreign topics feed a virtual device", func(t *testing.T) {
		outside.publish(t, "outside/garden/climate", "temp=12.5 rh=80", false)
		m := alice.next(t, 10*time.Second, func(m *xmpp.Element) bool {
			return isReading(m) && strings.Contains(m.ChildText(xmpp.NSClient, "body"), "outside: temp=12.5 rh=80")
		})
		_ = m
		if got := alice.ask(t, cfg.XMPP.JID, "read outside"); !strings.Contains(got, "outside: temp=12.5 rh=80") {
			t.Errorf("read outside: %q", got)
		}
		// Not echoed back to MQTT under the agent's prefix.
		time.Sleep(300 * time.Millisecond)
		w.mu.Lock()
		for _, m := range w.msgs {
			if strings.HasPrefix(m.Topic(), "stanzad/device/outside") {
				t.Errorf("virtual device echoed to %s", m.Topic())
			}
		}
		w.mu.Unlock()
	})

	rep, _ := a.Status(t.Context(), agent.Caller{Role: agent.RoleOperator, Via: "test"})
	t.Logf("status: %+v", rep.Outboxes)
}

// With allow_commands off, a set is refused with a result and changes
// nothing; a retained set is never run.
func TestIntegrationMQTTCommandsOff(t *testing.T) {
	srv := testserver.New(t, testserver.Options{})
	testserver.MustRegister(t, srv, "device", "pw-device")
	broker := testserver.NewMosquitto(t, testserver.MosquittoOptions{})
	alice := newPeer(t, srv, "alice")
	w := newMQTTWatcher(t, broker, "watcher", "stanzad/#")
	w.publish(t, "stanzad/device/relay1/set", "on", true) // retained, before the agent comes
	relay := devices.NewSwitch(devices.SwitchConfig{Name: "relay1"})
	cfg := mqttConfig(srv, broker, t.TempDir(), false)
	stop := startAgentWith(t, cfg, relay)
	w.wait(t, "stanzad/device/status", func(m mqtt.Message) bool { return string(m.Payload()) == "online" })
	w.publish(t, "stanzad/device/relay1/set", "on", false)
	res := w.wait(t, "stanzad/device/relay1/result", anyMsg)
	if !strings.Contains(string(res.Payload()), `"ok":false`) || !strings.Contains(string(res.Payload()), "allow_commands") {
		t.Errorf("result %s", res.Payload())
	}
	if got := alice.ask(t, cfg.XMPP.JID, "read relay1"); !strings.Contains(got, "state=false") {
		t.Errorf("relay switched: %q", got)
	}
	// A clean stop says "offline" itself (the will covers a dead agent).
	stop()
	w.wait(t, "stanzad/device/status", func(m mqtt.Message) bool { return string(m.Payload()) == "offline" })
}

// The broker is SIGKILLed and restarted while readings flow every 20 ms:
// every reading reaches a persistent QoS 1 subscriber (duplicates allowed,
// none lost), and the status is "offline" (the will) while the agent was
// cut off, "online" again after.
func TestIntegrationMQTTBrokerKilled(t *testing.T) {
	srv := testserver.New(t, testserver.Options{})
	testserver.MustRegister(t, srv, "device", "pw-device")
	broker := testserver.NewMosquitto(t, testserver.MosquittoOptions{})
	w := newMQTTWatcher(t, broker, "watcher", "stanzad/device/counter/n")
	time.Sleep(1500 * time.Millisecond) // the broker saves the watcher's session (autosave 1 s)
	const n = 150
	cfg := mqttConfig(srv, broker, t.TempDir(), false)
	cfg.Sinks = nil
	runOnline(t, agent.Options{Config: cfg, Logger: testLogger(t), Devices: []devices.Device{counter{n: n, every: 20 * time.Millisecond}}})
	w.wait(t, "stanzad/device/counter/n", anyMsg)
	if err := broker.Kill(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if err := broker.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		seen := map[int]bool{}
		w.mu.Lock()
		for _, m := range w.msgs {
			v, _ := strconv.Atoi(string(m.Payload()))
			seen[v] = true
		}
		total := len(w.msgs)
		w.mu.Unlock()
		missing := 0
		for i := 1; i <= n; i++ {
			if !seen[i] {
				missing++
			}
		}
		if missing == 0 {
			t.Logf("%d readings in %d messages (%d duplicates)", n, total, total-n)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d readings never arrived", missing, n)
		}
		select {
		case <-w.more:
		case <-time.After(time.Second):
		}
	}
}
