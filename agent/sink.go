package agent

import (
	"context"
	"errors"
	"log/slog"
	"path"
	"strconv"
	"time"

	"github.com/stanzad/stanzad/agent/outbox"
	"github.com/stanzad/stanzad/devices"
	"github.com/stanzad/stanzad/xmpp"
)

// lateAfter: a reading sent later than this after it was taken carries an
// XEP-0203 <delay/> with its original time.
const lateAfter = 2 * time.Second

// sendBatch is how many outbox records a sink takes per round.
const sendBatch = 256

// chatSink sends each reading as a chat message with a human body and
// XEP-0323 fields. Readings go through the sink's own outbox, whose record
// ids are the seqnr, so the receiver sees one contiguous sequence and any
// gap is a real loss.
type chatSink struct {
	index   int // position in Agent.sinks; the high bits of its ack tags
	to      string
	from    string
	devices []string
	box     *outbox.Outbox
	wake    chan struct{} // capacity 1: "the outbox has news"

	// Used only by run's goroutine.
	buf     []byte
	fields  []xmpp.SensorField
	msg     xmpp.SensorMessage
	id      []byte
	reading devices.Reading
}

// tagBits splits an ack tag into sink index and outbox id.
const tagBits = 48

func (s *chatSink) tag(id uint64) uint64 { return uint64(s.index)<<tagBits | id }

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

// enqueue stores a reading in the outbox and wakes the sender. It never
// touches the network.
func (s *chatSink) enqueue(r devices.Reading, scratch []byte) ([]byte, error) {
	scratch = appendRecord(scratch[:0], r)
	if _, err := s.box.Append(scratch); err != nil {
		return scratch, err
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return scratch, nil
}

// run sends outbox records on the live session until ctx is done. On a new
// stream everything not yet acknowledged is sent again, in order; on a
// resumed stream the session itself resends what the server missed, so
// run carries on where it was.
func (s *chatSink) run(ctx context.Context, c *xmpp.Client, log *slog.Logger) {
	var sess *xmpp.Session
	var cursor uint64 // highest id sent on sess
	for {
		cur, err := c.WaitConnected(ctx)
		if err != nil {
			return
		}
		if cur != sess {
			sess = cur
			if !cur.Resumed() {
				cursor = s.box.Stats().Acked
			}
		}
		cursor = s.sendPending(ctx, sess, cursor, log)
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-sess.Done():
		}
	}
}

// sendPending sends records after cursor until the outbox is drained or
// the session fails, and returns the new cursor.
func (s *chatSink) sendPending(ctx context.Context, sess *xmpp.Session, cursor uint64, log *slog.Logger) uint64 {
	for {
		rs := s.box.Pending(cursor, sendBatch)
		if len(rs) == 0 {
			return cursor
		}
		for _, rec := range rs {
			if err := decodeRecord(rec.Payload, &s.reading); err != nil {
				log.Error("outbox record unreadable; skipped", "id", rec.ID, "err", err)
				cursor = rec.ID
				continue
			}
			var delay time.Time
			if time.Since(s.reading.Time) > lateAfter {
				delay = s.reading.Time // XEP-0203: when it was taken
			}
			s.encode(s.reading, rec.ID, delay)
			if err := sess.SendTracked(ctx, s.buf, s.tag(rec.ID)); err != nil {
				if errors.Is(err, xmpp.ErrQueuedForResume) {
					cursor = rec.ID // a resumed stream resends it itself
				}
				log.Debug("reading not sent; waiting for the next session", "id", rec.ID, "err", err)
				return cursor
			}
			cursor = rec.ID
		}
	}
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
