package telemetry

import (
	"slices"
	"sync"
	"time"

	"github.com/stanzad/stanzad/agent/outbox"
)

// A message sink's stanza is not delivered when the server acknowledges
// it (XEP-0198): the server may still bounce it — ejabberd answers a
// reading for a person whose offline queue is full with an error
// message, after it has acknowledged the reading. deliveries follows
// each record of a chat or room sink from its send to the point where
// nothing can come back for it, so that a bounce puts the record back
// in the outbox (Outbox.Rewind) instead of losing it, and a record that
// was delivered is never sent twice because an earlier one bounced.
//
// The outbox is acknowledged as soon as the server has acknowledged an
// unbroken run of records, as before: an agent that crashes re-sends
// only what the server never had. A bounce that arrives later than the
// outbox retains records (deliveryRetain) is a loss; it is counted and
// logged, never silent.
type deliveries struct {
	box *outbox.Outbox

	mu    sync.Mutex
	base  uint64     // id of states[0]
	state []delivery // ids base, base+1, …
	order []uint64   // ids sent on the current stream and not yet acknowledged, in send order
	moved bool       // a bounce moved records back: the sender starts again from the cursor
}

type delivery struct {
	st deliveryState
	at time.Time // when acknowledged
}

type deliveryState uint8

const (
	dUnsent  deliveryState = iota // not sent on the current stream
	dSent                         // sent, not yet acknowledged
	dDone                         // acknowledged by the server (or refused for good)
	dBounced                      // the server bounced it; to be sent again
	dRefused                      // the server refused it for good; settled
)

func (s deliveryState) settled() bool { return s == dDone || s == dRefused }

// deliveryRetain is how long after the server's acknowledgement a bounce
// can still take a record back; deliveryMax bounds the records followed.
const (
	deliveryRetain = 30 * time.Second
	deliveryMax    = 4096
)

func newDeliveries(box *outbox.Outbox) *deliveries {
	return &deliveries{box: box, base: box.Stats().Acked + 1}
}

// lookup returns the state of id, or nil if the window does not hold it.
func (d *deliveries) lookup(id uint64) *delivery {
	if id < d.base || id-d.base >= uint64(len(d.state)) {
		return nil
	}
	return &d.state[id-d.base]
}

// at returns the state of id, growing the window to hold it; nil for an
// id before the window. Records the outbox let go (dropped while it was
// full) are forgotten first, so the window never spans them.
func (d *deliveries) at(id uint64) *delivery {
	if id < d.base {
		return nil
	}
	if id-d.base > uint64(len(d.state)) {
		d.settle(time.Now())
	}
	for id-d.base >= uint64(len(d.state)) {
		d.state = append(d.state, delivery{})
	}
	return &d.state[id-d.base]
}

// due reports whether id is to be sent: not sent on this stream, or
// bounced. d.mu is held.
func (d *deliveries) due(id uint64) bool {
	e := d.lookup(id)
	return e == nil || e.st == dUnsent || e.st == dBounced
}

// claim reports whether the sender should send id now — it was not sent
// on this stream, or it bounced; a record delivered before an earlier one
// bounced, or one still in flight, is not sent again — and if so marks
// it sent. It is marked before the write: without stream management the
// write itself is the acknowledgement, reported at once.
func (d *deliveries) claim(id uint64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.due(id) {
		return false
	}
	if e := d.at(id); e != nil {
		e.st = dSent
	}
	d.order = append(d.order, id)
	return true
}

// inFlight reports whether records sent on the stream await the
// server's acknowledgement.
func (d *deliveries) inFlight() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.order) > 0
}

// unsent takes back claim(id): the write failed before the stream had the
// stanza (and it is not queued for a resumed stream to resend).
func (d *deliveries) unsent(id uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e := d.lookup(id); e != nil && e.st == dSent {
		e.st = dUnsent
	}
	if n := len(d.order); n > 0 && d.order[n-1] == id {
		d.order = d.order[:n-1]
	}
}

// skip marks id done without sending it (an unreadable record).
func (d *deliveries) skip(id uint64, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e := d.at(id); e != nil {
		e.st, e.at = dRefused, now
	}
	d.settle(now)
}

// acked handles the server's acknowledgement of the stanza of id and of
// everything this sink sent before it on the stream, and acknowledges the
// outbox up to the first record not yet done.
func (d *deliveries) acked(id uint64, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !slices.Contains(d.order, id) {
		return // not sent on this stream by this sink (a sink that was replaced)
	}
	n := 0
	for n < len(d.order) {
		got := d.order[n]
		n++
		if e := d.lookup(got); e != nil && e.st == dSent {
			e.st, e.at = dDone, now
		}
		if got == id {
			break
		}
	}
	d.order = d.order[:copy(d.order, d.order[n:])]
	d.settle(now)
}

// settle acknowledges the outbox over the run of done records after its
// cursor and forgets records that can no longer bounce. d.mu is held.
func (d *deliveries) settle(now time.Time) {
	cursor := d.box.Stats().Acked
	next := max(cursor+1, d.base)
	for next-d.base < uint64(len(d.state)) && d.state[next-d.base].st.settled() {
		next++
	}
	if next-1 > cursor {
		d.box.Ack(next - 1)
		cursor = next - 1
	}
	drop := 0
	for drop < len(d.state) && d.base+uint64(drop) <= cursor {
		e := d.state[drop]
		if e.st.settled() && now.Sub(e.at) < deliveryRetain && len(d.state)-drop <= deliveryMax {
			break
		}
		drop++
	}
	if drop > 0 {
		d.state = d.state[:copy(d.state, d.state[drop:])]
		d.base += uint64(drop)
	}
	if len(d.state) == 0 {
		d.base = max(d.base, cursor+1)
	}
}

// bounceResult says what became of a bounced record.
type bounceResult int

const (
	bounceUnknown  bounceResult = iota // not a record this sink sent (never sent, or on an old stream)
	bounceRequeued                     // it is pending again and will be sent again
	bounceRefused                      // refused for good: done, not sent again
	bounceLost                         // it had left the outbox: lost
)

// bounced marks id as bounced by the server. With retry, the record is
// sent again (taken back from the outbox's acknowledged records if
// need be); without, it counts as done: refused for good.
func (d *deliveries) bounced(id uint64, retry bool, now time.Time) bounceResult {
	d.mu.Lock()
	defer d.mu.Unlock()
	if id < d.base && id <= d.box.Stats().Acked {
		// Acknowledged long enough ago that this sink no longer
		// follows it (a bounce minutes late, one for what a sink this
		// one replaced sent, or from before a restart): the outbox may
		// still hold it. The window reaches back to it, the records in
		// between done, so that nothing before it is acknowledged again
		// until it is.
		if d.base-id > deliveryMax {
			if !retry {
				return bounceRefused
			}
			return bounceLost
		}
		back := make([]delivery, d.base-id, uint64(len(d.state))+d.base-id)
		for i := range back {
			back[i] = delivery{st: dDone, at: now}
		}
		d.state, d.base = append(back, d.state...), id
	}
	if id < d.base || id-d.base >= uint64(len(d.state)) {
		return bounceUnknown
	}
	e := &d.state[id-d.base]
	if e.st == dUnsent || e.st == dRefused {
		return bounceUnknown // not sent on this stream (an old stream's bounce), or settled for good
	}
	if !retry {
		e.st, e.at = dRefused, now
		d.settle(now)
		return bounceRefused
	}
	e.st = dBounced
	d.moved = true
	if id <= d.box.Stats().Acked {
		// Rewind restores an unbroken run up to the cursor: records
		// older than what it still holds, id among them, are gone.
		if restored, lost := d.box.Rewind(id); restored == 0 || lost > 0 {
			e.st = dRefused
			d.settle(now)
			return bounceLost
		}
	}
	return bounceRequeued
}

// newStream forgets what was in flight on a stream that ended without
// being resumed: those records are sent again.
func (d *deliveries) newStream() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range d.state {
		if d.state[i].st == dSent {
			d.state[i].st = dUnsent
		}
	}
	d.order = d.order[:0]
	d.moved = false
}

// takeMoved reports, once, that a bounce moved records back.
func (d *deliveries) takeMoved() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := d.moved
	d.moved = false
	return m
}
