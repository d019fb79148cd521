package telemetry

import (
	"context"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/stanzad/stanzad/agent/throttle"
	"github.com/stanzad/stanzad/devices"
	"github.com/stanzad/stanzad/xmpp"
)

// Hooks is what the pipeline needs from the agent that runs it. Every
// func must be set unless its comment says otherwise.
type Hooks struct {
	// Sinks returns the sinks running now (a reload replaces the set).
	Sinks func() []*Sink
	// Conn returns the XMPP client in use (a reload may replace it).
	Conn func() *xmpp.Client
	// Offline reports whether a chat recipient is known to be offline.
	Offline func(to xmpp.JID) bool
	// Members returns the ACL's operators and viewers as sorted bare
	// keys: the members of the whitelist nodes the agent owns. The same
	// ACL returns the same slice; callers do not change it.
	Members func() []string
	// HoldChanged says a sink's hold started or ended: the agent's
	// presence status names held sinks.
	HoldChanged func()
	// Status is the agent's presence status text, sent when joining a
	// room.
	Status func() string
	// RoomCommand runs text, addressed to the agent in a room by the
	// occupant from (whose real JID is real, "" when the room hides it),
	// and sends its reply through reply (perhaps later, from another
	// goroutine: a chart); ok is false when the command is ignored.
	RoomCommand func(ctx context.Context, from xmpp.JID, real, text string, reply func(ctx context.Context, link, text string)) (ok bool)
	// Seen is called on the dispatcher goroutine for every reading taken
	// off the bus, good or failed, with when it was taken.
	Seen func(r devices.Reading, now time.Time)
	// Accepted is called on the dispatcher goroutine for every good
	// reading, after its decimals are applied, before the sinks get it.
	Accepted func(r devices.Reading)
}

// Pipeline is the state the sinks of one agent share: the hooks into the
// agent, the sink ids (the high bits of ack tags) and the bounce log.
type Pipeline struct {
	log     *slog.Logger
	h       Hooks
	sinkIDs atomic.Uint64 // the last sink's id
	bounces throttle.Keys // bounced readings, logged once a minute per sink and condition
}

// New returns a pipeline that logs to log and reaches the agent through h.
func New(log *slog.Logger, h Hooks) *Pipeline {
	return &Pipeline{log: log, h: h}
}

func (p *Pipeline) sinks() []*Sink { return p.h.Sinks() }

// newSinkID returns a new sink's id, which its ack tags carry above
// tagBits: handed out in turn from 1 to 65,535, skipping the ids of the
// sinks running. An id comes back only after 65,535 other sinks (long
// after the server acknowledged what its last owner sent) and never to
// two running sinks. Counting on past 65,535 (reloads that change a
// sink, in one process) gave ids that no tag could carry: acks reached
// no sink, and readings went out again at every reconnection.
func (p *Pipeline) newSinkID() uint64 {
	var running []*Sink
	if p.h.Sinks != nil {
		running = p.h.Sinks()
	}
	for {
		id := p.sinkIDs.Add(1) % (1 << (64 - tagBits))
		if id != 0 && !slices.ContainsFunc(running, func(s *Sink) bool { return s.id == id }) {
			return id
		}
	}
}
func (p *Pipeline) conn() *xmpp.Client { return p.h.Conn() }

// signal sends on c without blocking; c has capacity 1, so a pending
// signal stands for any number.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Queued returns how many readings wait in the sinks' outboxes, not yet
// acknowledged by the server.
func (p *Pipeline) Queued() int {
	n := 0
	for _, s := range p.sinks() {
		n += s.box.Stats().Pending
	}
	return n
}

// HeldCount returns how many message sinks do not send now: their
// recipient is offline or the server bounced readings.
func (p *Pipeline) HeldCount() int {
	held := 0
	for _, sk := range p.sinks() {
		if sk.dl != nil && sk.held() != 0 {
			held++
		}
	}
	return held
}

// Bounced names the destinations of the sinks held after a bounce.
func (p *Pipeline) Bounced(now time.Time) []string {
	var bounced []string
	for _, sk := range p.sinks() {
		if wait, _ := sk.hold.left(now); wait > 0 {
			bounced = append(bounced, sk.to)
		}
	}
	return bounced
}

// Statuses returns every running sink's status line data; sess is the
// live session or nil.
func (p *Pipeline) Statuses(sess *xmpp.Session, now time.Time) []OutboxStatus {
	var out []OutboxStatus
	for _, s := range p.sinks() {
		out = append(out, s.status(sess, now))
	}
	return out
}

// OnAck routes the server's acknowledgements to the sinks' outboxes. Tags
// arrive in send order, so for each sink only the last one matters: one
// Ack (one cursor write) per sink per batch, not one per reading.
func (p *Pipeline) OnAck(tags []uint64) {
	sinks := p.sinks()
	for i := len(tags) - 1; i >= 0; i-- {
		id := tags[i] >> tagBits
		last := tags[i] & (1<<tagBits - 1)
		for i > 0 && tags[i-1]>>tagBits == id { // earlier tags of this run
			i--
		}
		for _, s := range sinks {
			if s.id != id {
				continue // a sink a reload replaced: its successor sends again
			}
			if s.dl != nil {
				s.dl.acked(last, time.Now())
			} else {
				s.box.Ack(last)
			}
		}
	}
}

// Close closes every sink's outbox (the agent is done); what they hold
// stays on disk for the next start.
func (p *Pipeline) Close(sinks []*Sink) {
	for _, s := range sinks {
		if err := s.box.Close(); err != nil {
			p.log.Warn("closing outbox", "sink", s.name, "err", err)
		}
	}
}

// Stop stops the sinks' goroutines, all at once, and waits for them;
// their outboxes stay open.
func Stop(sinks []*Sink) {
	for _, s := range sinks {
		if s.cancel != nil {
			s.cancel()
		}
	}
	for _, s := range sinks {
		s.wg.Wait()
	}
}

// ChatRecipients returns the recipients of the chat sinks.
func (p *Pipeline) ChatRecipients() []xmpp.JID {
	var out []xmpp.JID
	for _, sk := range p.sinks() {
		if sk.kind == "chat" {
			out = append(out, sk.dest)
		}
	}
	return out
}

// WakeChatSinks wakes the chat sinks to bare (all with ""), so they
// look again whether their recipient is online. A recipient who came
// online ends a hold after a bounce: what bounced goes out now.
func (p *Pipeline) WakeChatSinks(bare string) {
	now := time.Now()
	for _, sk := range p.sinks() {
		if sk.kind != "chat" {
			continue
		}
		if bare != "" {
			if sk.dest.BareKey() != bare {
				continue
			}
			if !p.h.Offline(sk.dest) {
				sk.hold.lift(now)
			}
		}
		signal(sk.wake)
	}
}

// WakePublishers makes the pubsub and PEP sinks look at the ACL again,
// so whitelist members follow a reload at once.
func (p *Pipeline) WakePublishers() {
	for _, s := range p.sinks() {
		if s.pub == nil {
			continue
		}
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}
