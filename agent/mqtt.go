package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/agent/control"
	"github.com/stanzad/stanzad/agent/telemetry"
	"github.com/stanzad/stanzad/agent/throttle"
	"github.com/stanzad/stanzad/bridge"
	"github.com/stanzad/stanzad/devices"
	"github.com/stanzad/stanzad/xmpp"
)

// mqttMap is the agent's side of the MQTT bridge: which topics readings
// go to, which commands come in, which foreign topics feed virtual
// devices. Readings travel through an outbox-backed sink like any other,
// so the broker being away or slow never holds up XMPP, and nothing
// accepted is lost.
//
//	{prefix}/{device}          JSON: device, time, fields with value and unit (retained if retain)
//	{prefix}/{device}/{field}  the plain value (retained if retain)
//	{prefix}/status            "online" (retained) / "offline" (retained, also the last will)
//	{prefix}/{device}/set      commands in (allow_commands), payload "on", "21.5" or {"value": …}
//	{prefix}/{device}/result   the answer to each command (JSON, not retained)
type mqttMap struct {
	cfg     *config.MQTT
	prefix  string
	client  *bridge.Client
	caller  Caller
	cmds    chan bridge.Message
	virtual []mqttFeed
	devs    []*mqttDevice // the virtual devices, each once, in config order
	refused throttle.Keys
	sink    *telemetry.Sink // the bridge's sink; nil when there are no devices of ours
	disc    *discovery      // Home Assistant discovery; nil unless [mqtt] discovery

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// mqttFeed routes a foreign topic to a virtual device.
type mqttFeed struct {
	filter string
	dev    *mqttDevice
	parse  devices.Parser
}

func (a *Agent) newMQTT(all *config.Config, self xmpp.JID) (*mqttMap, error) {
	cfg, log := all.MQTT, a.log
	m := &mqttMap{cfg: cfg, prefix: strings.ReplaceAll(cfg.TopicPrefix, "{node}", self.Local),
		cmds: make(chan bridge.Message, 16)}
	host := cfg.Broker
	if u, err := url.Parse(cfg.Broker); err == nil {
		host = u.Host
	}
	m.caller = Caller{JID: xmpp.JID{Local: "mqtt", Domain: host}, Role: RoleOperator, Via: "mqtt"}
	clientID := cfg.ClientID
	if clientID == "" {
		clientID = "stanzad-" + self.Local
	}
	subs := []string{m.prefix + "/+/set"}
	byName := map[string]*mqttDevice{}
	for _, sc := range cfg.Subscribe {
		d := byName[sc.Device]
		if d == nil {
			d = &mqttDevice{name: sc.Device, in: make(chan mqttIn, 64)}
			byName[sc.Device] = d
			m.devs = append(m.devs, d)
		}
		d.topics = append(d.topics, sc.Topic)
		p, err := devices.NewParser(sc.Parse, "")
		if err != nil {
			return nil, fmt.Errorf("mqtt.subscribe %s: %w", sc.Topic, err)
		}
		m.virtual = append(m.virtual, mqttFeed{filter: sc.Topic, dev: d, parse: p})
		subs = append(subs, sc.Topic)
	}
	qos := byte(cfg.QoS)
	status := m.prefix + "/status"
	c, err := bridge.New(bridge.Options{
		Broker: cfg.Broker, ClientID: clientID, Username: cfg.Username, Password: cfg.Password.Reveal(),
		CAFile: cfg.CAFile, ClientCert: cfg.ClientCert, ClientKey: cfg.ClientKey, QoS: qos, Keepalive: cfg.Keepalive.Duration,
		Status:    bridge.Message{Topic: status, Payload: []byte("online"), Retain: true},
		Will:      bridge.Message{Topic: status, Payload: []byte("offline"), Retain: true},
		Subscribe: subs,
		OnMessage: m.receive(log),
		Logger:    log.With("component", "mqtt"),
	})
	if err != nil {
		return nil, err
	}
	m.client = c
	if cfg.Discovery {
		m.disc = newDiscovery(m, self.Bare().String(), a.version, a.writable, log)
	}
	return m, nil
}

// writable reports whether the running device called name takes a set.
func (a *Agent) writable(name string) bool {
	d, ok := a.device(name)
	_, w := d.(devices.Setter)
	return ok && w
}

// ownLast returns the last reading of every running device that is not
// the bridge's own: what discovery announces at connect.
func (a *Agent) ownLast() []devices.Reading {
	var out []devices.Reading
	for _, u := range a.now().devs {
		if r, ok := a.last.get(u.dev.Name()); ok && !u.virtual {
			out = append(out, r)
		}
	}
	return out
}

// accepted is the pipeline's hook for every good reading: read answers
// with the last one, and discovery announces new fields.
func (a *Agent) accepted(r devices.Reading) {
	a.last.note(r)
	u := a.now()
	if m := u.mqtt; m != nil && m.disc != nil {
		if du, ok := u.byName[r.Device]; ok && !du.virtual {
			m.disc.note(r)
		}
	}
}

// mqttSink builds the bridge's sink, which takes every reading of the
// devices that are not the bridge's own (devs: all running devices);
// nil when there are none. prev is the sink it replaces, if any: with
// the same broker host it keeps prev's outbox.
func (a *Agent) mqttSink(cfg *config.Config, m *mqttMap, devs []*devUnit, prev *telemetry.Sink) (*telemetry.Sink, error) {
	names := ownDevices(devs)
	if len(names) == 0 {
		return nil, nil // only virtual devices: nothing of ours to publish
	}
	return a.tel.NewMQTTSink(cfg, telemetry.MQTT{Client: m.client, Prefix: m.prefix, Retain: m.cfg.Retain, Host: m.caller.JID.Domain}, names, prev)
}

// ownDevices names the devices that are not fed by the bridge.
func ownDevices(devs []*devUnit) []string {
	var names []string
	for _, d := range devs {
		if !d.virtual {
			names = append(names, d.dev.Name())
		}
	}
	return names
}

// start connects the bridge and answers commands; the bridge's sink and
// virtual devices are units of their own.
func (m *mqttMap) start(ctx context.Context, a *Agent) {
	ctx, m.cancel = context.WithCancel(ctx)
	m.wg.Go(func() { m.client.Run(ctx) })
	m.wg.Go(func() { m.runCommands(ctx, a) })
	if m.disc != nil {
		m.wg.Go(func() { m.disc.run(ctx, a.ownLast) })
	}
}

// halt disconnects the bridge (its status goes "offline").
func (m *mqttMap) halt() {
	if m.cancel != nil {
		m.cancel()
		m.wg.Wait()
	}
}

// receive hands incoming messages to the command worker or to virtual
// devices. It runs on the MQTT client's goroutine and never blocks.
func (m *mqttMap) receive(log *slog.Logger) func(bridge.Message) {
	setFilter := m.prefix + "/+/set"
	return func(msg bridge.Message) {
		if bridge.Match(setFilter, msg.Topic) {
			if msg.Retain {
				// A retained command would run again on every reconnect.
				log.Warn("mqtt: retained command ignored; publish commands without retain", "topic", msg.Topic)
				return
			}
			select {
			case m.cmds <- msg:
			default:
				log.Warn("mqtt: too many commands waiting; dropped", "topic", msg.Topic)
			}
			return
		}
		for _, f := range m.virtual {
			if bridge.Match(f.filter, msg.Topic) {
				select {
				case f.dev.in <- mqttIn{payload: append([]byte(nil), msg.Payload...), parse: f.parse}:
				default:
					log.Warn("mqtt: device not keeping up; message dropped", "device", f.dev.name, "topic", msg.Topic)
				}
			}
		}
	}
}

// runCommands answers {prefix}/{device}/set messages, one at a time.
func (m *mqttMap) runCommands(ctx context.Context, a *Agent) {
	for {
		select {
		case <-ctx.Done():
			return
		case msg := <-m.cmds:
			device := strings.TrimSuffix(strings.TrimPrefix(msg.Topic, m.prefix+"/"), "/set")
			res := m.command(ctx, a, device, msg.Payload)
			if _, err := m.client.Publish(bridge.Message{Topic: m.prefix + "/" + device + "/result", Payload: res}); err != nil {
				a.log.Warn("mqtt: command result not published", "device", device, "err", err)
			}
		}
	}
}

// command runs one set and returns the result payload.
func (m *mqttMap) command(ctx context.Context, a *Agent, device string, payload []byte) []byte {
	var err error
	var r devices.Reading
	var value string
	switch {
	case !m.cfg.AllowCommands:
		err = fmt.Errorf("%w: commands over MQTT are disabled (mqtt.allow_commands = false)", ErrForbidden)
		if m.refused.First(device) {
			a.log.Warn("mqtt: command refused: allow_commands is off", "device", device)
		}
	default:
		if value, err = ParseSetPayload(payload); err == nil {
			if err = a.ctl.Admit(ctx, m.caller); err == nil {
				r, err = a.Set(ctx, m.caller, device, value)
			}
		}
	}
	b := []byte(`{"device":`)
	b = telemetry.AppendJSONString(b, device)
	if err != nil {
		se := control.StanzaError(err)
		b = append(b, `,"ok":false,"error":`...)
		b = telemetry.AppendJSONString(b, err.Error())
		b = append(b, `,"condition":`...)
		b = telemetry.AppendJSONString(b, se.Condition)
		return append(b, '}')
	}
	b = append(b, `,"ok":true,"value":`...)
	b = telemetry.AppendJSONString(b, value)
	b = append(b, ',')
	return append(telemetry.AppendReadingJSON(b, r), '}')
}

// maxSetPayload caps a command's value.
const maxSetPayload = 1024

// ParseSetPayload reads the value of an MQTT set command: the payload
// itself ("on", "21.5", "RESET"), or a JSON object {"value": …} whose
// value is a string, number or boolean.
func ParseSetPayload(p []byte) (string, error) {
	p = bytes.TrimSpace(p)
	switch {
	case len(p) == 0:
		return "", fmt.Errorf("%w: empty payload; send the value, e.g. \"on\" or {\"value\": 21.5}", control.ErrBadRequest)
	case len(p) > maxSetPayload:
		return "", fmt.Errorf("%w: payload of %d bytes; at most %d", control.ErrBadRequest, len(p), maxSetPayload)
	case !utf8.Valid(p):
		return "", fmt.Errorf("%w: payload is not UTF-8", control.ErrBadRequest)
	case p[0] == '{':
		var v struct {
			Value json.RawMessage `json:"value"`
		}
		if err := json.Unmarshal(p, &v); err != nil {
			return "", fmt.Errorf("%w: payload: %v", control.ErrBadRequest, err)
		}
		var any interface{}
		if len(v.Value) == 0 || json.Unmarshal(v.Value, &any) != nil {
			return "", fmt.Errorf("%w: payload: want {\"value\": …}", control.ErrBadRequest)
		}
		switch x := any.(type) {
		case string:
			return checkValue(x)
		case bool:
			return strconv.FormatBool(x), nil
		case float64:
			return string(v.Value), nil
		}
		return "", fmt.Errorf("%w: payload: value must be a string, number or boolean", control.ErrBadRequest)
	}
	return checkValue(string(p))
}

func checkValue(s string) (string, error) {
	if s == "" || strings.ContainsAny(s, "\r\n\x00") {
		return "", fmt.Errorf("%w: value must be one non-empty line", control.ErrBadRequest)
	}
	return s, nil
}

// mqttDevice is a virtual device fed by foreign MQTT topics: its readings
// go to every sink like a real device's, and it answers read with the last
// one.
type mqttDevice struct {
	name   string
	topics []string
	in     chan mqttIn

	mu   sync.Mutex
	last devices.Reading
}

type mqttIn struct {
	payload []byte
	parse   devices.Parser
}

func (d *mqttDevice) Name() string { return d.name }

func (d *mqttDevice) Run(ctx context.Context, emit func(devices.Reading)) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-d.in:
			r := devices.Reading{Device: d.name, Time: time.Now().UTC()}
			r.Fields, r.Err = m.parse(string(m.payload))
			if r.Err != nil {
				r.Err = fmt.Errorf("mqtt message: %w", r.Err)
			}
			d.mu.Lock()
			d.last = r
			d.mu.Unlock()
			emit(r)
		}
	}
}

// errNoMessage is a virtual device's read before anything arrived.
var errNoMessage = errors.New("no MQTT message received yet")

func (d *mqttDevice) Read(context.Context) (devices.Reading, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.last.Time.IsZero() {
		return devices.Reading{}, fmt.Errorf("%w on %s", errNoMessage, strings.Join(d.topics, ", "))
	}
	return d.last, d.last.Err
}
