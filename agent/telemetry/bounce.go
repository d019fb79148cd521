package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/stanzad/stanzad/xmpp"
)

// Holding: a chat sink stops sending while its person is known to be
// offline, and any message sink stops for a while after the server
// bounced a reading with a temporary error, so that the server never
// throws away what it cannot store: the readings wait in the outbox.
const (
	holdFirst = 10 * time.Second
	holdMax   = 5 * time.Minute
)

// sinkHold is why a message sink does not send, and until when.
type sinkHold struct {
	mu    sync.Mutex
	until time.Time
	delay time.Duration // the next hold's length (backoff)
	why   string
}

// A hold that ended this long ago is forgotten: the next bounce starts
// the backoff afresh.
const holdForget = 2 * holdMax

// set holds the sink for the current backoff, growing it for next time.
func (h *sinkHold) set(now time.Time, why string) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.delay == 0 || now.Sub(h.until) > holdForget {
		h.delay = holdFirst
	}
	if now.Before(h.until) {
		h.why = why
		return h.until.Sub(now) // one bounce run makes one hold
	}
	d := h.delay
	h.until, h.why = now.Add(d), why
	h.delay = min(2*h.delay, holdMax)
	return d
}

// left returns how long the hold lasts from now and why; 0 when none.
func (h *sinkHold) left(now time.Time) (time.Duration, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !now.Before(h.until) {
		return 0, ""
	}
	return h.until.Sub(now), h.why
}

// lift ends the hold: the recipient came online. The backoff stays, in
// case the server bounces again.
func (h *sinkHold) lift(now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if now.Before(h.until) {
		h.until = now
	}
}

// bounceID returns the outbox id of a reading message's id ("r-42").
func bounceID(id string) (uint64, bool) {
	n, ok := strings.CutPrefix(id, "r-")
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseUint(n, 10, 64)
	if err != nil || v == 0 {
		return 0, false
	}
	return v, true
}

// sinkFor returns the message sink that sent the reading message a
// bounce from 'from' answers: a chat sink to that JID or a room sink of
// that room.
func (p *Pipeline) sinkFor(from xmpp.JID) *Sink {
	key := from.BareKey()
	for _, s := range p.sinks() {
		if s.dl == nil {
			continue
		}
		// A room answers for itself, from its bare JID; an error from
		// room/nick is an occupant's, who must not be able to drop or
		// rewind our readings.
		if s.dest.BareKey() == key && (s.room == nil || from.Resource == "") {
			return s
		}
	}
	return nil
}

// retryable reports whether a bounced reading should be sent again
// later: the recipient is away or the server is short of something for
// now (RFC 6120 §8.3.2: type wait; service-unavailable and
// recipient-unavailable are how servers without offline storage answer
// for a person who is offline; not-acceptable from a room means the
// agent is no longer in it). A bounce that says nothing usable — no
// <error/>, or undefined-condition — is retried too: dropping a reading
// needs a reason. Anything else is a refusal for good.
func retryable(s *Sink, e *xmpp.StanzaError) bool {
	switch {
	case e.Type == xmpp.ErrorTypeWait || e.Condition == "undefined-condition":
		return true
	case e.Condition == "service-unavailable" || e.Condition == "recipient-unavailable":
		return s.room == nil
	case e.Condition == "not-acceptable":
		return s.room != nil
	}
	return false
}

// HandleError handles an error message from 'from': a bounce of one of
// the agent's reading messages, or a room that no longer has the agent
// in it refusing a groupchat message.
func (p *Pipeline) HandleError(ctx context.Context, s *xmpp.Session, st *xmpp.Element, from xmpp.JID) {
	if p.handleBounce(ctx, s, st, from) {
		return
	}
	// A room that bounces our groupchat no longer has us in it.
	if r := p.roomFor(from); r != nil && xmpp.ParseStanzaError(st).Condition == "not-acceptable" && r.joinedOn(s) {
		r.log.Warn("the room refused a message: no longer in the room; rejoining")
		r.left(s)
		r.rejoinIn(0)
	}
}

// handleBounce handles an error message answering one of the agent's
// reading messages. It reports false for error messages that do not.
func (p *Pipeline) handleBounce(ctx context.Context, s *xmpp.Session, st *xmpp.Element, from xmpp.JID) bool {
	id, ok := bounceID(st.Attr("id"))
	if !ok {
		return false
	}
	sk := p.sinkFor(from)
	if sk == nil {
		return false
	}
	e := xmpp.ParseStanzaError(st)
	retry := retryable(sk, e)
	now := time.Now()
	res := sk.dl.bounced(id, retry, now)
	if res == bounceUnknown {
		p.log.Debug("bounce for a reading no longer followed", "sink", sk.name, "id", id, "condition", e.Condition)
		return true
	}
	n := sk.bounced.Add(1)
	level, msg := slog.LevelWarn, "the server bounced a reading; it stays queued and is sent again"
	switch {
	case res == bounceLost:
		sk.lost.Add(1)
		level, msg = slog.LevelError, "the server bounced a reading after the outbox had let it go: lost"
	case res == bounceRefused:
		sk.rejected.Add(1)
		level, msg = slog.LevelError, "the server refused a reading for good; dropped"
	}
	var wait time.Duration
	if retry {
		if sk.room != nil && e.Condition == "not-acceptable" {
			if r := sk.room; r.joinedOn(s) {
				r.log.Warn("the room refused a message: no longer in the room; rejoining")
				r.left(s)
				r.rejoinIn(0)
			}
		} else {
			wait = sk.hold.set(now, bounceWhy(e))
			p.h.HoldChanged() // presence says so
		}
		signal(sk.wake)
	}
	// One line per sink and condition a minute, with the running count.
	if p.bounces.First(sk.name + "\x00" + e.Condition) {
		attrs := []slog.Attr{slog.String("sink", sk.name), slog.Uint64("id", id),
			slog.String("type", e.Type), slog.String("condition", e.Condition), slog.Uint64("bounced_total", n)}
		if e.Text != "" {
			attrs = append(attrs, slog.String("text", e.Text))
		}
		if wait > 0 {
			attrs = append(attrs, slog.Duration("retry_in", wait))
		}
		p.log.LogAttrs(ctx, level, msg, attrs...)
	}
	return true
}

// bounceWhy words a bounce for status: "the server bounced readings
// (wait/resource-constraint: offline message queue is full)".
func bounceWhy(e *xmpp.StanzaError) string {
	why := fmt.Sprintf("the server bounced readings (%s/%s", e.Type, e.Condition)
	if e.Text != "" {
		why += ": " + Truncate(e.Text, 80)
	}
	return why + ")"
}

// Truncate cuts s to at most n bytes on a character boundary, marking
// the cut with "…": a server's or a command's error text in a stanza.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
