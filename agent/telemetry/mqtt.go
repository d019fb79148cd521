package telemetry

import (
	"context"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/bridge"
	"github.com/stanzad/stanzad/devices"
	"github.com/stanzad/stanzad/xmpp"
)

// MQTT is the bridge a MQTT sink publishes through: the agent owns the
// client (it also takes commands and feeds virtual devices) and maps the
// topics.
type MQTT struct {
	Client *bridge.Client
	Prefix string // {prefix} of the topics, {node} filled in
	Retain bool   // readings are published retained
	Host   string // the broker's host: the sink's outbox is named after it
}

// mqttWindow is how many records may await the broker's PUBACKs at once.
const mqttWindow = 64

// NewMQTTSink builds the MQTT bridge's sink, which publishes every
// reading of devices (names) through m.
func (p *Pipeline) NewMQTTSink(cfg *config.Config, m MQTT, devices []string, prev *Sink) (*Sink, error) {
	s := &Sink{p: p, id: p.newSinkID(), key: "mqtt-" + m.Host, kind: "mqtt", name: "mqtt " + cfg.MQTT.Broker,
		devices: devices, wake: make(chan struct{}, 1), mq: &mqttSender{MQTT: m}}
	if prev != nil && prev.key == s.key {
		s.box = prev.box // the same outbox: one owner, never two
		return s, nil
	}
	var err error
	if s.box, err = openBox(cfg, s.key, s.name, 0, p.log); err != nil {
		return nil, err
	}
	return s, nil
}

// SetDevices changes the devices the bridge's sink takes. Used on the
// dispatcher goroutine only, once the sink runs.
func (s *Sink) SetDevices(names []string) { s.devices = names }

// mqttSender publishes a sink's records: for each reading its JSON on
// {prefix}/{device} and each field on {prefix}/{device}/{field}. A record
// leaves the outbox when the broker has acknowledged all its messages.
type mqttSender struct {
	MQTT
	rec     record
	msgs    []bridge.Message
	skipped map[string]bool // fields whose names clash with command topics
}

type mqttFlight struct {
	id   uint64
	pend []bridge.Pending
}

func (ms *mqttSender) run(ctx context.Context, s *Sink, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-ms.Client.Connected():
		}
		ms.serve(ctx, s, log)
		select { // the link dropped or a publish failed: pause, then start over from the last acknowledged
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (ms *mqttSender) serve(ctx context.Context, s *Sink, log *slog.Logger) {
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
						p, err := ms.Client.Publish(msg)
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
			if !ms.Client.IsConnected() {
				return
			}
		}
	}
}

// messages builds the MQTT messages for the record in ms.rec.
func (ms *mqttSender) messages(log *slog.Logger) []bridge.Message {
	ms.msgs = ms.msgs[:0]
	retain := ms.Retain
	for _, r := range ms.rec.readings {
		base := ms.Prefix + "/" + r.Device
		ms.msgs = append(ms.msgs, bridge.Message{Topic: base, Payload: append(AppendReadingJSON([]byte("{"), r), '}'), Retain: retain})
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

// AppendReadingJSON appends the members of a reading's JSON object:
// "device":…,"time":…,"fields":{"temperature":{"value":21.5,"unit":"°C"},…}.
func AppendReadingJSON(b []byte, r devices.Reading) []byte {
	b = append(b, `"device":`...)
	b = AppendJSONString(b, r.Device)
	b = append(b, `,"time":"`...)
	b = xmpp.AppendTime(b, r.Time)
	b = append(b, `","fields":{`...)
	for i, f := range r.Fields {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendJSONString(b, f.Name)
		b = append(b, `:{"value":`...)
		switch {
		case f.Kind == devices.String:
			b = AppendJSONString(b, f.Str)
		case f.Kind == devices.Numeric && (math.IsNaN(f.Num) || math.IsInf(f.Num, 0)):
			b = append(b, "null"...)
		default:
			b = appendValue(b, f)
		}
		if f.Unit != "" {
			b = append(b, `,"unit":`...)
			b = AppendJSONString(b, f.Unit)
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

// AppendJSONString appends s as a JSON string.
func AppendJSONString(b []byte, s string) []byte {
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
