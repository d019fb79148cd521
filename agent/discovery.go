package agent

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/stanzad/stanzad/bridge"
	"github.com/stanzad/stanzad/devices"
)

// Home Assistant MQTT discovery ([mqtt] discovery = true): for every
// device and field, a retained config on
// {discovery_prefix}/{component}/{node}_{device}/{field}/config, so the
// board shows up in Home Assistant with its sensors and switches. Fields
// are known from readings, so a field is announced with the first reading
// that carries it on each connection (and, at connect, from every
// device's last reading). A switch flipped in Home Assistant publishes to
// the bridge's {prefix}/{device}/set, which runs through the registry
// like any command (allow_commands, audit).

// discovery announces the devices of one agent to Home Assistant.
type discovery struct {
	client   *bridge.Client
	prefix   string // discovery_prefix
	base     string // the bridge's topic prefix
	node     string // the agent's localpart, for topics and ids
	device   haDevice
	commands bool // allow_commands: writable booleans become switches
	writable func(device string) bool
	log      *slog.Logger

	queue chan devices.Reading

	mu        sync.Mutex
	connected bool
	announced map[string]map[string]string // device → field → config topic, this connection
	known     map[string]map[string]string // device → field → config topic, ever (for clearing)
	refused   map[string]bool              // device/field names with no topic
}

// haDevice is the device block every config carries: all entities of a
// board group under it.
type haDevice struct {
	Identifiers  []string `json:"identifiers"`
	Name         string   `json:"name"`
	Model        string   `json:"model"`
	Manufacturer string   `json:"manufacturer"`
	SWVersion    string   `json:"sw_version,omitempty"`
}

// haConfig is one entity's discovery config.
type haConfig struct {
	Name                string   `json:"name"`
	UniqueID            string   `json:"unique_id"`
	ObjectID            string   `json:"object_id"`
	StateTopic          string   `json:"state_topic"`
	ValueTemplate       string   `json:"value_template"`
	Unit                string   `json:"unit_of_measurement,omitempty"`
	DeviceClass         string   `json:"device_class,omitempty"`
	StateClass          string   `json:"state_class,omitempty"`
	CommandTopic        string   `json:"command_topic,omitempty"`
	PayloadOn           string   `json:"payload_on,omitempty"`
	PayloadOff          string   `json:"payload_off,omitempty"`
	StateOn             string   `json:"state_on,omitempty"`
	StateOff            string   `json:"state_off,omitempty"`
	AvailabilityTopic   string   `json:"availability_topic"`
	PayloadAvailable    string   `json:"payload_available"`
	PayloadNotAvailable string   `json:"payload_not_available"`
	Device              haDevice `json:"device"`
}

func newDiscovery(m *mqttMap, self, version string, writable func(string) bool, log *slog.Logger) *discovery {
	node := haID(strings.SplitN(self, "@", 2)[0])
	return &discovery{
		client: m.client, prefix: m.cfg.DiscoveryPrefix, base: m.prefix, node: node,
		device:   haDevice{Identifiers: []string{self}, Name: self, Model: "stanzad", Manufacturer: "stanzad", SWVersion: version},
		commands: m.cfg.AllowCommands, writable: writable, log: log.With("component", "mqtt-discovery"),
		queue: make(chan devices.Reading, 64),
		known: map[string]map[string]string{}, refused: map[string]bool{},
	}
}

// note is called for every good reading (on the dispatcher goroutine,
// so it never blocks): a reading with a field not announced on this
// connection goes to the publisher.
func (d *discovery) note(r devices.Reading) {
	d.mu.Lock()
	have := d.announced[r.Device]
	missing := false
	for _, f := range r.Fields {
		if _, ok := have[f.Name]; !ok && !d.refused[r.Device+"/"+f.Name] {
			missing = d.connected
		}
	}
	d.mu.Unlock()
	if missing {
		select {
		case d.queue <- r:
		default: // the next reading asks again
		}
	}
}

// run publishes configs until ctx ends: at every (re)connect for the
// last reading of every device in last, then as readings bring fields.
func (d *discovery) run(ctx context.Context, last func() []devices.Reading) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-d.queue:
			d.announce(r)
		case <-tick.C:
			up := d.client.IsConnected()
			d.mu.Lock()
			was := d.connected
			d.connected = up
			if up && !was {
				d.announced = map[string]map[string]string{} // a new connection: say it all again
			}
			d.mu.Unlock()
			if up && !was {
				for _, r := range last() {
					d.announce(r)
				}
			}
		}
	}
}

// announce publishes the configs of r's fields not yet announced on this
// connection.
func (d *discovery) announce(r devices.Reading) {
	for _, f := range r.Fields {
		d.mu.Lock()
		_, done := d.announced[r.Device][f.Name]
		refused := d.refused[r.Device+"/"+f.Name]
		d.mu.Unlock()
		if done || refused {
			continue
		}
		if !haLevel(f.Name) {
			d.mu.Lock()
			d.refused[r.Device+"/"+f.Name] = true
			d.mu.Unlock()
			d.log.Warn("field not announced to Home Assistant: its name is not a topic level", "device", r.Device, "field", f.Name)
			continue
		}
		topic, payload := d.config(r.Device, f)
		if _, err := d.client.Publish(bridge.Message{Topic: topic, Payload: payload, Retain: true}); err != nil {
			d.log.Debug("discovery config not published; again at the next reading", "topic", topic, "err", err)
			return
		}
		d.mu.Lock()
		for _, m := range []map[string]map[string]string{d.announced, d.known} {
			if m[r.Device] == nil {
				m[r.Device] = map[string]string{}
			}
			m[r.Device][f.Name] = topic
		}
		d.mu.Unlock()
	}
}

// clear empties the retained configs of devices (removed or changed by
// a reload): Home Assistant drops their entities; a changed device is
// announced again with its next reading.
func (d *discovery) clear(names []string) {
	for _, name := range names {
		d.mu.Lock()
		topics := d.known[name]
		delete(d.known, name)
		delete(d.announced, name)
		d.mu.Unlock()
		for _, topic := range topics {
			if _, err := d.client.Publish(bridge.Message{Topic: topic, Payload: nil, Retain: true}); err != nil {
				d.log.Warn("discovery config not cleared", "topic", topic, "err", err)
			}
		}
	}
}

// config builds the discovery topic and config of one field.
func (d *discovery) config(device string, f devices.Field) (string, []byte) {
	id := d.node + "_" + haID(device)
	c := haConfig{
		Name:                device + " " + f.Name,
		UniqueID:            "stanzad_" + haID(d.device.Identifiers[0]) + "_" + haID(device) + "_" + haID(f.Name),
		ObjectID:            id + "_" + haID(f.Name),
		StateTopic:          d.base + "/" + device,
		ValueTemplate:       "{{ value_json.fields[" + jsString(f.Name) + "].value }}",
		AvailabilityTopic:   d.base + "/status",
		PayloadAvailable:    "online",
		PayloadNotAvailable: "offline",
		Device:              d.device,
	}
	component := "sensor"
	switch f.Kind {
	case devices.Numeric:
		c.Unit = f.Unit
		c.DeviceClass, c.StateClass = haClass(f.Name, f.Unit)
	case devices.Boolean:
		c.ValueTemplate = "{{ 'ON' if value_json.fields[" + jsString(f.Name) + "].value else 'OFF' }}"
		c.PayloadOn, c.PayloadOff = "ON", "OFF"
		component = "binary_sensor"
		if d.commands && d.writable(device) {
			component = "switch"
			c.CommandTopic = d.base + "/" + device + "/set"
			c.StateOn, c.StateOff = "ON", "OFF"
		}
	case devices.String:
		if d.commands && d.writable(device) {
			component = "text"
			c.CommandTopic = d.base + "/" + device + "/set"
		}
	}
	topic := d.prefix + "/" + component + "/" + id + "/" + haID(f.Name) + "/config"
	b, _ := json.Marshal(c)
	return topic, b
}

// haClass maps a unit (and a field name, where the unit says too
// little) to Home Assistant's device_class and state_class.
func haClass(field, unit string) (deviceClass, stateClass string) {
	name := strings.ToLower(field)
	switch unit {
	case "°C", "°F", "K":
		return "temperature", "measurement"
	case "%":
		if strings.Contains(name, "humid") {
			return "humidity", "measurement"
		}
		if strings.Contains(name, "batt") {
			return "battery", "measurement"
		}
	case "hPa", "Pa", "kPa", "mbar", "bar":
		return "pressure", "measurement"
	case "V", "mV":
		return "voltage", "measurement"
	case "A", "mA":
		return "current", "measurement"
	case "W", "kW":
		return "power", "measurement"
	case "Wh", "kWh":
		return "energy", "total_increasing"
	case "ppm":
		if strings.Contains(name, "co2") {
			return "carbon_dioxide", "measurement"
		}
	case "lx":
		return "illuminance", "measurement"
	case "B", "KiB", "MiB", "GiB", "kB", "MB", "GB":
		return "data_size", "measurement"
	case "s", "min", "h", "d":
		return "duration", "measurement"
	}
	return "", "measurement"
}

// haLevel reports whether a field name can stand in a discovery topic:
// not empty, and no MQTT wildcard or level separator.
func haLevel(name string) bool {
	return name != "" && !strings.ContainsAny(name, "+#/")
}

// haID makes a topic level and id of s: Home Assistant's node and object
// ids take a-z, A-Z, 0-9, _ and -; anything else becomes _.
func haID(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-':
			return r
		}
		return '_'
	}, s)
}

// jsString quotes s for a Jinja template: a JSON string is a valid
// Jinja string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
