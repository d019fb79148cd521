package telemetry

import (
	"reflect"
	"slices"
	"time"

	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/devices"
)

// drainMax bounds how many readings one dispatch round takes off the bus
// before it queues what it has: readings that arrived together go out
// together (batched per sink), but a flood cannot delay queueing forever.
const drainMax = 256

// gatherWindow is how long a dispatch round waits for more readings after
// the first: sensors polled on the same interval report within a few
// milliseconds of each other, and one message carrying all of them costs
// the board (and the reader) less than one each. It is the most a reading
// is delayed by batching.
const gatherWindow = 10 * time.Millisecond

// Dispatch runs the telemetry pipeline until bus is closed and drained:
// it takes readings off the bus, notes device health, evaluates alerts,
// passes each reading through the filter of every sink that wants it and
// queues what passes in the sinks' outboxes, batched. It never waits on
// the network. On close, readings held back by min_interval and alerts
// waiting for their holdoff are queued too: nothing accepted is lost.
// It starts with sinks and the decimals and alerts of cfg; edits run on
// its goroutine between two readings (a reload).
func (p *Pipeline) Dispatch(bus *Bus, edits <-chan func(*Dispatcher), cfg *config.Config, sinks []*Sink) {
	d := Dispatcher{p: p, timer: time.NewTimer(time.Hour), sinks: sinks}
	d.reconfigure(cfg)
	d.timer.Stop()
	gather := time.NewTimer(time.Hour)
	gather.Stop()
	for {
		select {
		case <-bus.Ready():
			n, closed := d.takeFrom(bus, drainMax)
			if n > 0 && !closed {
				gather.Reset(gatherWindow)
			gathering:
				for n < drainMax {
					select {
					case <-bus.Ready():
						var k int
						k, closed = d.takeFrom(bus, drainMax-n)
						if n += k; closed {
							break gathering
						}
					case <-gather.C:
						break gathering
					}
				}
				gather.Stop()
			}
			if closed {
				d.close()
				return
			}
			bus.Leave() // more than drainMax: the next round takes them
		case <-d.timer.C:
			d.armed = false
			d.release(time.Now())
		case edit := <-edits:
			edit(&d)
			d.release(time.Now()) // filters may have changed: work out what is due
		}
		d.flush()
		d.arm()
	}
}

// takeFrom takes up to limit readings off the bus. closed is true once
// the bus is closed and empty.
func (d *Dispatcher) takeFrom(bus *Bus, limit int) (n int, closed bool) {
	for n < limit {
		r, ok, closed := bus.Take()
		if !ok {
			return n, closed
		}
		d.take(r)
		n++
	}
	return n, false
}

// Dispatcher is the state of the dispatcher goroutine: the sinks it
// feeds, the alert rules and the device decimals. Only that goroutine
// uses it; a reload edits it there (see Pipeline.Dispatch).
type Dispatcher struct {
	p        *Pipeline
	sinks    []*Sink
	alerts   []*alertRule
	decimals map[string]int // device → decimals from its config

	timer   *time.Timer
	armed   bool
	armedAt time.Time
	next    time.Time // earliest held reading or waiting alert
	scratch []byte
	held    []devices.Reading
}

// take handles one reading from the bus.
func (d *Dispatcher) take(r devices.Reading) {
	p := d.p
	now := time.Now()
	p.h.Seen(r, now)
	if r.Err != nil {
		return
	}
	if dec, ok := d.decimals[r.Device]; ok {
		for i := range r.Fields {
			if r.Fields[i].Kind == devices.Numeric {
				r.Fields[i].Decimals = dec
			}
		}
	}
	p.h.Accepted(r)
	for _, s := range d.sinks {
		if !s.Wants(r.Device) {
			continue
		}
		v := s.filter.offer(r, now)
		switch v.verdict {
		case pass:
			d.scratch = s.add(r, d.scratch, p.log)
		case hold:
			d.wake(v.due)
		}
		if v.dropped {
			s.filtered.Add(1)
		}
	}
	for _, al := range d.alerts {
		if al.check(r, now) {
			d.alert(al, now)
		} else if !al.due.IsZero() {
			d.wake(al.due)
		}
	}
}

// alert queues the rule's message to its sinks, with the reading behind it.
func (d *Dispatcher) alert(al *alertRule, now time.Time) {
	al.report(now)
	text := al.text()
	d.p.log.Warn("alert", "device", al.cfg.Device, "field", al.cfg.Field, "text", text)
	for _, s := range al.sinks {
		d.scratch = s.flush(d.scratch, d.p.log) // keep the order of what came before
		d.scratch = s.enqueue(d.scratch, text, []devices.Reading{al.last}, d.p.log)
	}
}

// wake makes sure the timer fires by t.
func (d *Dispatcher) wake(t time.Time) {
	if d.next.IsZero() || t.Before(d.next) {
		d.next = t
	}
}

// release passes on held readings and alerts whose time has come and
// works out when the next one is due.
func (d *Dispatcher) release(now time.Time) {
	d.next = time.Time{}
	for _, s := range d.sinks {
		var next time.Time
		d.held, next = s.filter.release(d.held[:0], now)
		for _, r := range d.held {
			d.scratch = s.add(r, d.scratch, d.p.log)
		}
		if !next.IsZero() {
			d.wake(next)
		}
	}
	clear(d.held)
	for _, al := range d.alerts {
		if al.pending(now) {
			d.alert(al, now)
		} else if !al.due.IsZero() {
			d.wake(al.due)
		}
	}
}

// flush queues every sink's batch.
func (d *Dispatcher) flush() {
	for _, s := range d.sinks {
		d.scratch = s.flush(d.scratch, d.p.log)
	}
}

// arm sets the timer for the next held reading or waiting alert.
func (d *Dispatcher) arm() {
	if d.next.IsZero() || d.armed && !d.next.Before(d.armedAt) {
		return
	}
	d.timer.Reset(time.Until(d.next))
	d.armed, d.armedAt = true, d.next
}

// close queues everything still held back.
func (d *Dispatcher) close() {
	d.timer.Stop()
	now := time.Now()
	for _, s := range d.sinks {
		d.held = s.filter.flush(d.held[:0])
		for _, r := range d.held {
			d.scratch = s.add(r, d.scratch, d.p.log)
		}
	}
	for _, al := range d.alerts {
		if al.state != al.told {
			d.alert(al, now)
		}
	}
	d.flush()
}

// reconfigure takes decimals and alerts from cfg. An alert rule that is
// unchanged keeps its state (what it last told, its holdoff).
func (d *Dispatcher) reconfigure(cfg *config.Config) {
	d.decimals = make(map[string]int)
	for _, dc := range cfg.Devices {
		if dc.Decimals != nil {
			d.decimals[dc.Name] = *dc.Decimals
		}
	}
	old := d.alerts
	d.alerts = nil
	for _, ac := range cfg.Alerts {
		al := &alertRule{cfg: ac, decimals: -1}
		for _, o := range old {
			if reflect.DeepEqual(o.cfg, ac) {
				al = o
				al.sinks = nil
				break
			}
		}
		for _, s := range d.sinks {
			if (s.room != nil || s.kind == "chat") && slices.Contains(ac.Sinks, s.kind) && s.Wants(ac.Device) {
				al.sinks = append(al.sinks, s)
			}
		}
		d.alerts = append(d.alerts, al)
	}
}
