package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/stanzad/stanzad/agent/config"
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
	refused strangerLog
	sink    *sink // the bridge's sink; nil when there are no devices of ours

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// mqttFeed routes a foreign topic to a virtual device.
type mqttFeed struct {
	filter string
	dev    *mqttDevice
	parse  devices.Parser
}

// mqttWindow is how many records may await the broker's PUBACKs at once.
const mqttWindow = 64

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
	return m, nil
}

// mqttSink builds the bridge's sink, which takes every reading of the
// devices that are not the bridge's own (devs: all running devices);
// nil when there are none.
func (a *Agent) mqttSink(cfg *config.Config, m *mqttMap, devs []*devUnit) (*sink, error) {
	names := ownDevices(devs)
	if len(names) == 0 {
		return nil, nil // only virtual devices: nothing of ours to publish
	}
	s := &sink{id: a.sinkIDs.Add(1), key: "mqtt-" + m.caller.JID.Domain, kind: "mqtt", name: "mqtt " + cfg.MQTT.Broker,
		devices: names, wake: make(chan struct{}, 1), mq: &mqttSender{m: m}}
	var err error
	if s.box, err = openBox(cfg, s.key, s.name, 0, a.log); err != nil {
		return nil, err
	}
	return s, nil
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
		if m.refused.first(device) {
			a.log.Warn("mqtt: command refused: allow_commands is off", "device", device)
		}
	default:
		if value, err = ParseSetPayload(payload); err == nil {
			if err = a.admit(ctx, m.caller); err == nil {
				r, err = a.Set(ctx, m.caller, device, value)
			}
		}
	}
	b := []byte(`{"device":`)
	b = appendJSONString(b, device)
	if err != nil {
		se := stanzaError(err)
		b = append(b, `,"ok":false,"error":`...)
		b = appendJSONString(b, err.Error())
		b = append(b, `,"condition":`...)
		b = appendJSONString(b, se.Condition)
		return append(b, '}')
	}
	b = append(b, `,"ok":true,"value":`...)
	b = appendJSONString(b, value)
	b = append(b, ',')
	return append(appendReadingJSON(b, r), '}')
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
		return "", fmt.Errorf("%w: empty payload; send the value, e.g. \"on\" or {\"value\": 21.5}", errBadRequest)
	case len(p) > maxSetPayload:
		return "", fmt.Errorf("%w: payload of %d bytes; at most %d", errBadRequest, len(p), maxSetPayload)
	case !utf8.Valid(p):
		return "", fmt.Errorf("%w: payload is not UTF-8", errBadRequest)
	case p[0] == '{':
		var v struct {
			Value json.RawMessage `json:"value"`
		}
		if err := json.Unmarshal(p, &v); err != nil {
			return "", fmt.Errorf("%w: payload: %v", errBadRequest, err)
		}
		var any interface{}
		if len(v.Value) == 0 || json.Unmarshal(v.Value, &any) != nil {
			return "", fmt.Errorf("%w: payload: want {\"value\": …}", errBadRequest)
		}
		switch x := any.(type) {
		case string:
			return checkValue(x)
		case bool:
			return strconv.FormatBool(x), nil
		case float64:
			return string(v.Value), nil
		}
		return "", fmt.Errorf("%w: payload: value must be a string, number or boolean", errBadRequest)
	}
	return checkValue(string(p))
}

func checkValue(s string) (string, error) {
	if s == "" || strings.ContainsAny(s, "\r\n\x00") {
		return "", fmt.Errorf("%w: value must be one non-empty line", errBadRequest)
	}
	return s, nil
}

// mqttSender publishes a sink's records: for each reading its JSON on
// {prefix}/{device} and each field on {prefix}/{device}/{field}. A record
// leaves the outbox when the broker has acknowledged all its messages.
type mqttSender struct {
	m       *mqttMap
	rec     record
	msgs    []bridge.Message
	skipped map[string]bool // fields whose names clash with command topics
}

type mqttFlight struct {
	id   uint64
	pend []bridge.Pending
}

func (ms *mqttSender) run(ctx context.Context, s *sink, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-ms.m.client.Connected():
		}
		ms.serve(ctx, s, log)
		select { // the link dropped or a publish failed: pause, then start over from the last acknowledged
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (ms *mqttSender) serve(ctx context.Context, s *sink, log *slog.Logger) {
	cursor := s.box.Stats().Acked
	var inflight []mqttFlight
	check := time.NewTicker(time.Second)
	defer check.Stop()
	for {
		for len(inflight) < mqttWindow {
			rs := s.box.Pending(cursor, mqttWindow-len(inflight))
			if len(rs) == 0 {
				break
			}
			for _, rec := range rs {
				f := mqttFlight{id: rec.ID}
				if err := decodeRecord(rec.Payload, &ms.rec); err != nil {
					log.Error("outbox record unreadable; skipped", "id", rec.ID, "err", err)
				} else {
					for _, msg := range ms.messages(log) {
						p, err := ms.m.client.Publish(msg)
						if err != nil {
							return // the broker is away: start over when it is back
						}
						f.pend = append(f.pend, p)
					}
				}
				inflight = append(inflight, f)
				cursor = rec.ID
			}
		}
		// Settle in order.
		var acked uint64
		for len(inflight) > 0 {
			done := true
			for _, p := range inflight[0].pend {
				select {
				case <-p.Done():
					if err := p.Err(); err != nil {
						log.Warn("mqtt publish failed; sending again", "err", err)
						if acked != 0 {
							s.box.Ack(acked)
						}
						return
					}
				default:
					done = false
				}
				if !done {
					break
				}
			}
			if !done {
				break
			}
			acked = inflight[0].id
			inflight = inflight[1:]
		}
		if acked != 0 {
			s.box.Ack(acked)
			continue
		}
		var wait <-chan struct{}
		if len(inflight) > 0 {
			for _, p := range inflight[0].pend {
				wait = p.Done()
				select {
				case <-wait:
					continue
				default:
				}
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-wait:
		case <-check.C:
			if !ms.m.client.IsConnected() {
				return
			}
		}
	}
}

// messages builds the MQTT messages for the record in ms.rec.
func (ms *mqttSender) messages(log *slog.Logger) []bridge.Message {
	ms.msgs = ms.msgs[:0]
	retain := ms.m.cfg.Retain
	for _, r := range ms.rec.readings {
		base := ms.m.prefix + "/" + r.Device
		ms.msgs = append(ms.msgs, bridge.Message{Topic: base, Payload: append(appendReadingJSON([]byte("{"), r), '}'), Retain: retain})
		for _, f := range r.Fields {
			if f.Name == "set" || f.Name == "result" || strings.ContainsAny(f.Name, "+#/") {
				if ms.skipped == nil {
					ms.skipped = map[string]bool{}
				}
				if !ms.skipped[r.Device+"/"+f.Name] {
					ms.skipped[r.Device+"/"+f.Name] = true
					log.Warn("mqtt: field has no topic of its own (its name is reserved or not a topic level); it is in the device's JSON", "device", r.Device, "field", f.Name)
				}
				continue
			}
			ms.msgs = append(ms.msgs, bridge.Message{Topic: base + "/" + f.Name, Payload: appendValue(nil, f), Retain: retain})
		}
	}
	return ms.msgs
}

// appendReadingJSON appends the members of a reading's JSON object:
// "device":…,"time":…,"fields":{"temperature":{"value":21.5,"unit":"°C"},…}.
func appendReadingJSON(b []byte, r devices.Reading) []byte {
	b = append(b, `"device":`...)
	b = appendJSONString(b, r.Device)
	b = append(b, `,"time":"`...)
	b = xmpp.AppendTime(b, r.Time)
	b = append(b, `","fields":{`...)
	for i, f := range r.Fields {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, f.Name)
		b = append(b, `:{"value":`...)
		switch {
		case f.Kind == devices.String:
			b = appendJSONString(b, f.Str)
		case f.Kind == devices.Numeric && (math.IsNaN(f.Num) || math.IsInf(f.Num, 0)):
			b = append(b, "null"...)
		default:
			b = appendValue(b, f)
		}
		if f.Unit != "" {
			b = append(b, `,"unit":`...)
			b = appendJSONString(b, f.Unit)
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

// appendValue appends a field's plain value: the number with its
// decimals, true/false, or the text.
func appendValue(b []byte, f devices.Field) []byte {
	switch f.Kind {
	case devices.Numeric:
		if f.Decimals < 0 {
			return strconv.AppendFloat(b, f.Num, 'g', -1, 64)
		}
		return strconv.AppendFloat(b, f.Num, 'f', f.Decimals, 64)
	case devices.Boolean:
		return strconv.AppendBool(b, f.Bool)
	}
	return append(b, f.Str...)
}

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r < 0x20:
			b = append(b, `\u00`...)
			b = append(b, "0123456789abcdef"[r>>4], "0123456789abcdef"[r&15])
		case r == utf8.RuneError:
			b = append(b, `\ufffd`...)
		default:
			b = utf8.AppendRune(b, r)
		}
	}
	return append(b, '"')
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
