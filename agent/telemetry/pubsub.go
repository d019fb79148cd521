package telemetry

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stanzad/stanzad/xmpp"
)

// pubWindow is how many publish requests may await their answer at once:
// enough to keep the link busy without a round trip per reading.
const pubWindow = 32

// publisher sends a pubsub or PEP sink's readings as items: one publish
// per reading, on node (with {device} replaced), item id the seqnr — so
// a publish sent twice after a reconnect replaces the same item. A
// reading leaves the outbox when the service has answered its publish,
// not when the server has merely received it.
type publisher struct {
	service string // "" for PEP: the account's own service
	node    string // template
	config  xmpp.NodeConfig
	acc     *accessControl // who may read the nodes (access.go)

	mu        sync.Mutex
	published []string // nodes published to, sorted: status names them

	// Used only by the sender goroutine.
	ensured map[string]bool // nodes known to exist
	warned  map[string]time.Time
	buf     []byte
	payload []byte
}

// flight is one publish awaiting its answer.
type flight struct {
	id      uint64 // outbox record id
	node    string
	payload []byte // the record, for a publish sent again
	sent    time.Time
	done    bool
	err     error
}

// pubStall is how long a publish may go unanswered before the sink
// publishes again from its last answered item.
const pubStall = time.Minute

type flightResult struct {
	f   *flight
	err error
}

func (p *publisher) nodeFor(device string) string {
	return strings.ReplaceAll(p.node, "{device}", device)
}

// noteNode remembers that the sink publishes to node.
func (p *publisher) noteNode(node string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if i, found := slices.BinarySearch(p.published, node); !found {
		p.published = slices.Insert(p.published, i, node)
	}
}

// where names the nodes the sink publishes to: the template's nodes seen
// so far, or the template until a reading went out.
func (p *publisher) where() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !strings.Contains(p.node, "{device}") {
		return p.node
	}
	if len(p.published) == 0 {
		return p.node + " (nothing published yet)"
	}
	return strings.Join(p.published, ", ")
}

func (p *publisher) run(ctx context.Context, s *Sink, log *slog.Logger) {
	p.acc.acl = s.p.h.Members
	for {
		sess, err := s.p.conn().WaitConnected(ctx)
		if err != nil {
			return
		}
		// Answers to publishes sent on an earlier stream are lost with
		// it: everything not yet answered is published again. So it is
		// after a stall on a live stream, after a pause.
		p.serve(ctx, sess, s, log)
		select {
		case <-ctx.Done():
			return
		case <-sess.Done():
		case <-time.After(5 * time.Second):
		}
	}
}

// serve publishes on sess until it ends or ctx is done.
func (p *publisher) serve(ctx context.Context, sess *xmpp.Session, s *Sink, log *slog.Logger) {
	results := make(chan flightResult, pubWindow) // one slot per flight: callbacks never block
	var inflight []*flight
	stall := time.NewTicker(pubStall / 4)
	defer stall.Stop()
	cursor := s.box.Stats().Acked
	for {
		// The ACL changed (a reload wakes the sink): whitelist members follow.
		if err := p.acc.resync(ctx, sess, log); err != nil {
			return
		}
		for len(inflight) < pubWindow {
			rs := s.box.Pending(cursor, pubWindow-len(inflight))
			if len(rs) == 0 {
				break
			}
			for _, rec := range rs {
				cursor = rec.ID
				f := &flight{id: rec.ID, payload: rec.Payload, sent: time.Now()}
				if err := decodeRecord(rec.Payload, &s.rec); err != nil {
					log.Error("outbox record unreadable; skipped", "id", rec.ID, "err", err)
					f.done = true
					inflight = append(inflight, f)
					continue
				}
				f.node = p.nodeFor(s.rec.readings[0].Device)
				if !p.ensured[f.node] {
					if err := p.ensure(ctx, sess, f.node, log); errors.Is(err, xmpp.ErrClosed) || ctx.Err() != nil {
						return
					}
				}
				p.encode(s, rec.ID)
				err := sess.SendTelemetryIQ(ctx, p.buf, p.publishID(s, rec.ID), p.service, func(_ *xmpp.Element, err error) {
					results <- flightResult{f, err}
				})
				if err != nil {
					return // the stream failed; the next one starts from the last answer
				}
				inflight = append(inflight, f)
			}
		}
		if len(inflight) > 0 && inflight[0].done {
			// skipped records at the head
		} else {
			select {
			case <-ctx.Done():
				return
			case <-sess.Done():
				return
			case <-s.wake:
				continue
			case <-stall.C:
				if len(inflight) > 0 && time.Since(inflight[0].sent) > pubStall {
					log.Warn("pubsub service does not answer; publishing again", "node", inflight[0].node, "waited", time.Since(inflight[0].sent).Round(time.Second))
					return
				}
				continue
			case res := <-results:
				res.f.done, res.f.err = true, res.err
			}
		}
		// Settle answered publishes in order, so the outbox is acknowledged
		// only up to the first one still waiting.
		var acked uint64
		for len(inflight) > 0 && inflight[0].done {
			f := inflight[0]
			if f.err != nil {
				if errors.Is(f.err, xmpp.ErrClosed) {
					return
				}
				if !p.repair(ctx, sess, s, f, log) {
					return
				}
			}
			acked = f.id
			inflight = inflight[1:]
		}
		if acked != 0 {
			s.box.Ack(acked)
		}
	}
}

// publishID is the IQ id of a publish: unique among the session's pending
// requests (sinks share the session), the same when a publish is sent again.
func (p *publisher) publishID(s *Sink, seq uint64) string {
	return "p" + strconv.FormatUint(s.id, 10) + "-" + strconv.FormatUint(seq, 10)
}

// encode fills p.buf with the publish request for the reading in s.rec.
func (p *publisher) encode(s *Sink, seq uint64) {
	r := s.rec.readings[0]
	s.flds = SensorFields(s.flds[:0], r.Fields)
	p.payload = xmpp.AppendSensorFields(p.payload[:0], seq, r.Device, r.Time, s.flds)
	var id [24]byte
	node := p.nodeFor(r.Device)
	p.noteNode(node)
	p.buf = xmpp.AppendPublish(p.buf[:0], p.service, p.publishID(s, seq), node,
		string(strconv.AppendUint(id[:0], seq, 10)), p.payload)
}

// ensure creates node with the sink's configuration and access model
// unless it exists; a node that exists is checked for who may read it
// (access.go).
func (p *publisher) ensure(ctx context.Context, sess *xmpp.Session, node string, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := p.acc.ensure(ctx, sess, node, p.config, log); err != nil {
		return err
	}
	if p.ensured == nil {
		p.ensured = make(map[string]bool)
	}
	p.ensured[node] = true
	return nil
}

// repair handles a publish the service refused: a missing node is
// created and the item published again; a refusal for good is logged
// clearly and the reading dropped (counted); a temporary one is retried
// after a pause, and one that lasts (or a service that is not there
// now) ends serve, which publishes everything unanswered again later:
// the reading stays queued. It returns false when serve must end.
func (p *publisher) repair(ctx context.Context, sess *xmpp.Session, s *Sink, f *flight, log *slog.Logger) bool {
	for attempt := 0; ; attempt++ {
		var se *xmpp.StanzaError
		if !errors.As(f.err, &se) {
			return false
		}
		switch {
		case se.Condition == "item-not-found" && attempt == 0:
			delete(p.ensured, f.node)
			if err := p.ensure(ctx, sess, f.node, log); err != nil {
				return false
			}
		case se.Type == xmpp.ErrorTypeWait && attempt < 3:
			select {
			case <-ctx.Done():
				return false
			case <-sess.Done():
				return false
			case <-time.After(time.Duration(attempt+1) * time.Second):
			}
		case notNow(se):
			if s.p.bounces.First(s.name + "\x00not now") { // once a minute
				log.Warn("pubsub: the service cannot take items now; readings stay queued and are published again", "node", f.node, "err", se)
			}
			return false
		default:
			s.rejected.Add(1)
			p.explain(f.node, se, log)
			return true
		}
		if err := decodeRecord(f.payload, &s.rec); err != nil {
			return true
		}
		p.encode(s, f.id)
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		done := make(chan error, 1)
		err := sess.SendRawIQ(ctx, p.buf, p.publishID(s, f.id), p.service, func(_ *xmpp.Element, err error) { done <- err })
		if err == nil {
			select {
			case err = <-done:
			case <-ctx.Done():
				err = ctx.Err()
			}
		}
		cancel()
		if err == nil {
			return true
		}
		if !errors.As(err, &se) {
			return false // the stream ended or timed out: publish again on the next
		}
		f.err = err
	}
}

// notNow reports whether a refused publish may succeed later: the
// service says so (wait), or it, or the server it is on, cannot be
// reached or failed now. A pubsub component restarting answers
// service-unavailable; dropping readings for that would lose them.
func notNow(se *xmpp.StanzaError) bool {
	switch se.Condition {
	case "service-unavailable", "remote-server-not-found", "remote-server-timeout", "internal-server-error", "resource-constraint":
		return true
	}
	return se.Type == xmpp.ErrorTypeWait
}

// explain logs why the service refuses items on node, at most every ten
// minutes per node, in words that say what to change.
func (p *publisher) explain(node string, se *xmpp.StanzaError, log *slog.Logger) {
	now := time.Now()
	if t, ok := p.warned[node]; ok && now.Sub(t) < 10*time.Minute {
		return
	}
	if p.warned == nil {
		p.warned = make(map[string]time.Time)
	}
	p.warned[node] = now
	where := p.service
	if where == "" {
		where = "the account's PEP service"
	}
	var msg string
	switch se.Condition {
	case "forbidden", "not-authorized":
		msg = "pubsub: not allowed to publish; make the agent's JID a publisher (or owner) of the node"
	case "item-not-found":
		msg = "pubsub: the node does not exist and the agent may not create it; create it and make the agent's JID a publisher"
	case "not-acceptable":
		msg = "pubsub: item refused as not acceptable (payload too big for the node?)"
	default:
		msg = "pubsub: item refused"
	}
	log.Error(msg+"; readings for this node are dropped", "service", where, "node", node,
		"condition", se.Condition, "text", se.Text)
}
