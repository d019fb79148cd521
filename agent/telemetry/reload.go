package telemetry

import (
	"context"
	"fmt"
	"reflect"
	"time"

	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/agent/outbox"
	"github.com/stanzad/stanzad/xmpp"
)

// Change is what a reload does to the sinks. Dispatcher.Plan works it out
// for the configured sinks, the agent adds the MQTT bridge's sink (Keep,
// Add, Leave), and Handover, Stop and Install carry it out, all on the
// dispatcher goroutine.
type Change struct {
	// Next is the sink set after the reload, in config order.
	Next []*Sink
	// Bridge is the MQTT bridge's running sink, if any; Plan leaves it
	// out of Next for the agent to decide.
	Bridge *Sink

	// What changed, for the reload report: "sink chat op@iot.test".
	Added, Removed, Changed, Restarted, Failed, Notes []string

	starting []*Sink
	leaving  []*Sink
	reuse    map[*Sink]bool // leaving sinks whose outbox a successor keeps
}

// SinkKey names a sink's outbox directory: its kind and destination. Two
// sinks with one key would share an outbox; a reload matches old and new
// sinks by it.
func SinkKey(sc config.Sink) (string, error) { return sinkKey(sc) }

// Keep carries a running sink over into Next.
func (c *Change) Keep(s *Sink) { c.Next = append(c.Next, s) }

// Add puts a new sink into Next, to be started by Install.
func (c *Change) Add(s *Sink) {
	c.Next = append(c.Next, s)
	c.starting = append(c.starting, s)
}

// Leave stops a running sink; its outbox is closed.
func (c *Change) Leave(s *Sink) { c.leaving = append(c.leaving, s) }

// Succeed stops a running sink and starts next in its place; when next
// was built around the running sink's outbox (the same destination),
// the outbox stays open for it.
func (c *Change) Succeed(s, next *Sink) {
	c.leaving = append(c.leaving, s)
	if s.box == next.box {
		c.reuse[s] = true
	}
	c.Add(next)
}

// sameButFilters reports whether two sinks differ at most in the keys a
// running sink takes in place.
func sameButFilters(a, b config.Sink) bool {
	a.Devices, a.MinInterval, a.MaxSilence, a.Deadband, a.Batch = nil, config.Duration{}, config.Duration{}, 0, 0
	b.Devices, b.MinInterval, b.MaxSilence, b.Deadband, b.Batch = nil, config.Duration{}, config.Duration{}, 0, 0
	return reflect.DeepEqual(a, b)
}

// Plan matches cfg's sinks with the running ones by destination:
// unchanged ones keep running untouched (same goroutines, same outbox,
// seqnr continuing); one whose filters (devices, deadband, min_interval,
// max_silence, batch) changed keeps running with the new filter, applied
// now; any other change restarts it around the same outbox; removed ones
// leave (their outbox stays on disk and is picked up when the sink comes
// back). A sink that cannot be built is reported in Failed and logged.
func (d *Dispatcher) Plan(cfg *config.Config, self xmpp.JID) *Change {
	ch := &Change{reuse: make(map[*Sink]bool)}
	byKey := make(map[string]*Sink)
	for _, s := range d.sinks {
		if s.mq != nil {
			ch.Bridge = s
		} else {
			byKey[s.key] = s
		}
	}
	for i, sc := range cfg.Sinks {
		key, _ := sinkKey(sc)
		s := byKey[key]
		delete(byKey, key)
		switch {
		case s != nil && reflect.DeepEqual(s.cfg, sc):
			ch.Keep(s)
			continue
		case s != nil && sameButFilters(s.cfg, sc):
			s.refilter(sc)
			s.cfg = sc
			ch.Changed = append(ch.Changed, "sink "+s.name+" (filters)")
			ch.Keep(s)
			continue
		}
		var box *outbox.Outbox
		if s != nil {
			ch.Leave(s)
			box = s.box
			ch.reuse[s] = true
		}
		ns, err := d.p.NewSink(cfg, i, self, box)
		if err != nil {
			d.p.log.Error("sink not started", "sink", i, "err", err)
			ch.Failed = append(ch.Failed, fmt.Sprintf("sink[%d] (%v)", i, err))
			continue
		}
		if s != nil {
			ch.Restarted = append(ch.Restarted, "sink "+ns.name)
		} else {
			ch.Added = append(ch.Added, "sink "+ns.name)
		}
		ch.Add(ns)
	}
	for _, s := range d.sinks {
		if s.mq == nil && byKey[s.key] == s {
			ch.Leave(s)
			n := s.box.Stats().Pending + len(s.batch) + s.filter.heldCount()
			ch.Removed = append(ch.Removed, "sink "+s.name)
			if n > 0 {
				ch.Notes = append(ch.Notes, fmt.Sprintf("sink %s removed with %d readings not yet delivered: they stay in its outbox and go out when a sink to the same destination is configured again", s.name, n))
			}
		}
	}
	return ch
}

// Handover makes the leaving sinks hand what their filters and batches
// hold to their outboxes, after the readings they have in flight are
// acknowledged: for up to two seconds in all, however many leave, since
// the pipeline waits meanwhile (readings queue on the bus).
func (d *Dispatcher) Handover(ch *Change) {
	deadline := time.Now().Add(2 * time.Second)
	for _, s := range ch.leaving {
		s.settle(deadline)
		d.held = s.filter.flush(d.held[:0])
		for _, r := range d.held {
			d.scratch = s.add(r, d.scratch, d.p.log)
		}
		d.scratch = s.flush(d.scratch, d.p.log)
	}
	clear(d.held)
}

// Stop stops the leaving sinks: those whose successor keeps the outbox
// only pause; the others close it.
func (ch *Change) Stop() {
	for _, s := range ch.leaving {
		if ch.reuse[s] {
			s.StopRun()
		} else {
			s.Halt()
		}
	}
}

// Install makes ch.Next the dispatcher's sinks, shares outbox_max among
// them, starts the new ones in ctx and takes decimals and alerts from cfg.
func (d *Dispatcher) Install(ctx context.Context, ch *Change, cfg *config.Config) {
	share := int64(cfg.Agent.OutboxMax) / int64(max(1, len(ch.Next)))
	for _, s := range ch.Next {
		s.box.SetMax(share)
	}
	for _, s := range ch.starting {
		s.Start(ctx)
	}
	d.sinks = ch.Next
	d.reconfigure(cfg)
}
