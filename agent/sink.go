package agent

import (
	"context"
	"path"
	"strconv"
	"time"

	"github.com/stanzad/stanzad/devices"
	"github.com/stanzad/stanzad/xmpp"
)

// sender is what sinks need of the XMPP client.
type sender interface {
	SendRaw(ctx context.Context, b []byte) error
}

// chatSink sends each reading as a chat message with a human body and
// XEP-0323 fields. Its sequence number is its own, so the receiver sees
// one contiguous sequence.
type chatSink struct {
	to      string
	from    string
	devices []string
	seq     *seqFile

	buf    []byte
	fields []xmpp.SensorField
	msg    xmpp.SensorMessage
	id     []byte
}

// wants reports whether the sink's device selection matches name; entries
// are names or path.Match globs ("*", "temp-*").
func (s *chatSink) wants(name string) bool {
	if len(s.devices) == 0 {
		return true
	}
	for _, pat := range s.devices {
		if pat == name || pat == "*" {
			return true
		}
		if ok, _ := path.Match(pat, name); ok {
			return true
		}
	}
	return false
}

// deliver encodes and sends one reading. The sequence number is taken only
// when a session is up, so numbers are not burnt while offline.
func (s *chatSink) deliver(ctx context.Context, c *xmpp.Client, r devices.Reading) error {
	sess := c.Session()
	if sess == nil {
		return xmpp.ErrNotConnected
	}
	seq, err := s.seq.Next()
	if err != nil {
		return err
	}
	s.encode(r, seq, time.Time{})
	return sess.SendRaw(ctx, s.buf)
}

// encode fills s.buf with the message stanza for r.
func (s *chatSink) encode(r devices.Reading, seq uint64, delay time.Time) {
	s.fields = sensorFields(s.fields, r.Fields)
	s.id = strconv.AppendUint(append(s.id[:0], "r-"...), seq, 10)
	s.msg = xmpp.SensorMessage{
		To:        s.to,
		ID:        string(s.id),
		SeqNr:     seq,
		Node:      r.Device,
		Time:      r.Time,
		Fields:    s.fields,
		Delay:     delay,
		DelayFrom: s.from,
	}
	s.buf = xmpp.AppendSensorMessage(s.buf[:0], &s.msg)
}

var _ sender = (*xmpp.Client)(nil)
