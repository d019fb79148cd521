package xmpp

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// NSSM is XEP-0198 stream management.
const NSSM = "urn:xmpp:sm:3"

// maxUnacked bounds the stanzas kept for resending. A server that lets this
// many go unacknowledged is broken; the session is dropped and rebuilt.
const maxUnacked = 50000

// smState is XEP-0198 state. It belongs to a Client and outlives the
// sessions that use it, so a new connection can resume the old stream and
// resend what the server never acknowledged.
type smState struct {
	mu       sync.Mutex
	id       string // resumption id; "" when the stream cannot be resumed
	location string // server's preferred reconnect address, host:port
	jid      JID    // full JID of the resumable stream
	inH      uint32 // stanzas received and handled on the stream
	acked    uint32 // outbound stanzas the server has acknowledged (its h)
	stream   uint64 // Session.Stream of the resumable stream
	// resumeFails counts resumptions in a row that got no answer (a
	// stream error, a closed connection): at resumeGiveUp the stream is
	// given up, else a server that cannot resume it holds the agent off
	// its own account for good.
	resumeFails int
	// The window: outbound stanzas not yet acknowledged, oldest first,
	// are q[head:]; their bytes lie back to back in buf. Once both have
	// grown to the window in flight, a stanza sent costs no allocation,
	// where a copy each was garbage as soon as the server acked it (an
	// eighth of what an idle agent with every sink kind allocated).
	q    []smEntry
	head int
	buf  []byte
	tags []uint64 // ack's result, reused: onAck must not keep it
	// acks receives the tags of acknowledged tracked stanzas in order.
	onAck func(tags []uint64)
	// pace bounds paced stanzas in flight (see pacer).
	pace pacer
}

// smEntry is one outbound stanza not yet acknowledged: buf[off:off+n].
// tag 0 is untracked.
type smEntry struct {
	off, n int
	tag    uint64
	paced  bool
}

// smKeep is the window capacity kept once everything is acknowledged,
// enough for a reading sent to every sink: what a burst grew beyond it
// (start-up's, an outbox sent after an outage, up to maxUnacked stanzas)
// goes back to the collector.
const smKeep = 4 << 10

// pending is the number of stanzas not yet acknowledged.
func (m *smState) pending() int { return len(m.q) - m.head }

// unacked is the bytes of the stanzas not yet acknowledged, oldest first,
// back to back: what a resumed stream sends again. It aliases the window:
// valid until the next sent, ack or reset.
func (m *smState) unacked() []byte {
	if m.pending() == 0 {
		return nil
	}
	return m.buf[m.q[m.head].off:]
}

// reset forgets the stream: after a failed resumption or when starting
// fresh. Unacknowledged stanzas are dropped; their owners (the agent's
// outbox) resend them on the new stream.
func (m *smState) reset() {
	m.id, m.location, m.jid = "", "", JID{}
	m.inH, m.acked, m.stream, m.resumeFails = 0, 0, 0, 0
	m.drop(m.pending())
	m.pace.reset()
}

// sent records an outbound stanza, copying b into the window.
func (m *smState) sent(b []byte, tag uint64, paced bool) error {
	if m.pending() >= maxUnacked {
		return fmt.Errorf("xmpp: %d stanzas unacknowledged by the server", m.pending())
	}
	m.q = append(m.q, smEntry{off: len(m.buf), n: len(b), tag: tag, paced: paced})
	if len(m.buf)+len(b) > cap(m.buf) {
		// Capacity in powers of two from 2 KiB: the window lives as
		// long as the stream, and append's growth would put it in a
		// size class of its own (5,376 bytes for an idle agent with
		// every sink kind), which costs the runtime 20-30 KB whatever
		// the object's size (docs/decisions.md §14).
		grown := make([]byte, len(m.buf), max(2<<10, 1<<bits.Len(uint(len(m.buf)+len(b)-1))))
		copy(grown, m.buf)
		m.buf = grown
	}
	m.buf = append(m.buf, b...)
	if paced {
		m.pace.add(len(b), time.Now())
	}
	return nil
}

// drop removes the n oldest stanzas from the window. The space they held
// is reused: at once when the window empties, else by moving the rest to
// the front once the dropped part is the larger (each byte moves at most
// once per stanza's life, on average).
func (m *smState) drop(n int) {
	m.head += n
	switch {
	case m.head == len(m.q):
		m.q, m.buf, m.head = m.q[:0], m.buf[:0], 0
		if cap(m.buf) > smKeep || cap(m.q) > smKeep/64 {
			m.q, m.buf = nil, nil
		}
		if cap(m.tags) > smKeep/64 {
			m.tags = nil
		}
	case m.head > len(m.q)-m.head:
		first := m.q[m.head].off
		m.buf = m.buf[:copy(m.buf, m.buf[first:])]
		m.q = m.q[:copy(m.q, m.q[m.head:])]
		m.head = 0
		for i := range m.q {
			m.q[i].off -= first
		}
	}
}

// ack processes the server's h. It returns the tags of newly acknowledged
// tracked stanzas, in send order (valid until the next ack), or an error
// when h acknowledges more than was sent.
func (m *smState) ack(h uint32) ([]uint64, error) {
	n := h - m.acked // modular: h wraps at 2^32
	if n == 0 {
		return nil, nil
	}
	if int64(n) > int64(m.pending()) {
		return nil, fmt.Errorf("xmpp: server acknowledged %d stanzas, only %d were outstanding", n, m.pending())
	}
	tags := m.tags[:0]
	paced := 0
	for _, e := range m.q[m.head : m.head+int(n)] {
		if e.tag != 0 {
			tags = append(tags, e.tag)
		}
		if e.paced {
			paced += e.n
		}
	}
	m.tags = tags
	m.drop(int(n))
	m.acked = h
	m.pace.release(paced, time.Now())
	if len(tags) == 0 {
		return nil, nil
	}
	return tags, nil
}

func parseH(el *Element) (uint32, error) {
	v, err := strconv.ParseUint(el.Attr("h"), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("xmpp: bad stream management h=%q", el.Attr("h"))
	}
	return uint32(v), nil
}

// resumeGiveUp is how many resumptions in a row may go unanswered
// before the stream is given up and the next connection starts afresh.
const resumeGiveUp = 2

// streams numbers the XML streams of the process (Session.Stream).
var streams atomic.Uint64

// establish finishes negotiation after SASL: resume the previous stream if
// the Client has one and the server allows it, else bind a resource and
// enable stream management for the new stream.
func (s *Session) establish() error {
	s.stream = streams.Add(1) // a new stream, unless one is resumed
	m := s.cfg.sm
	if m == nil {
		return s.bind()
	}
	if s.features.Child(NSSM, "sm") == nil {
		m.mu.Lock()
		m.reset() // nothing can be resumed or acknowledged on this server
		m.mu.Unlock()
		return s.bind()
	}
	m.mu.Lock()
	id, h := m.id, m.inH
	m.mu.Unlock()
	if id != "" {
		ok, err := s.resume(m, id, h)
		if err != nil {
			m.mu.Lock()
			if m.id == id {
				if m.resumeFails++; m.resumeFails >= resumeGiveUp {
					m.id = ""
					s.log.Warn("stream resumption unanswered; the next connection starts a new stream", "attempts", m.resumeFails)
				}
			}
			m.mu.Unlock()
		}
		if err != nil || ok {
			return err
		}
	}
	if err := s.bind(); err != nil {
		return err
	}
	return s.enableSM(m)
}

// giveUp makes the stream unresumable: the next connection starts a new
// one. For a stream whose setup (Client.OnConnect) failed: resuming it
// would skip the setup.
func (m *smState) giveUp() {
	m.mu.Lock()
	m.id = ""
	m.mu.Unlock()
}

// resume asks the server to resume stream id (XEP-0198 §5). On success the
// stanzas the server did not receive are resent, in order.
func (s *Session) resume(m *smState, id string, h uint32) (bool, error) {
	b := []byte("<resume xmlns='urn:xmpp:sm:3' h='")
	b = strconv.AppendUint(b, uint64(h), 10)
	b = append(b, "' previd='"...)
	b = AppendEscaped(b, id)
	b = append(b, "'/>"...)
	if err := s.writeRaw(b); err != nil {
		return false, err
	}
	el, err := s.nextSM()
	if err != nil {
		return false, err
	}
	m.mu.Lock()
	var tags []uint64
	if el.Attr("h") != "" {
		sh, err := parseH(el)
		if err == nil {
			tags, err = m.ack(sh)
		}
		if err != nil {
			// Failing the dial would retry the same resumption forever:
			// give the old stream up and start a new one instead.
			m.reset()
			m.mu.Unlock()
			s.log.Warn("stream resumption answer unusable; starting a new stream", "err", err)
			return false, nil
		}
	}
	m.report(tags)
	if el.Name != "resumed" {
		m.reset()
		m.mu.Unlock()
		s.log.Info("stream resumption refused; starting a new stream", "condition", firstChildName(el))
		return false, nil
	}
	s.jid, s.sm, s.resumed, s.stream = m.jid, m, true, m.stream
	m.resumeFails = 0
	// A copy: the window may change once m.mu is released.
	resent, resend := m.pending(), append([]byte(nil), m.unacked()...)
	m.mu.Unlock()
	if resent > 0 {
		if err := s.writeRaw(resend); err != nil {
			return false, err
		}
	}
	s.log.Info("stream resumed", "resent", resent)
	if resent > 0 {
		s.wmu.Lock()
		s.requestAckLocked()
		s.wmu.Unlock()
	}
	return true, nil
}

// enableSM turns on stream management with resumption for a new stream.
func (s *Session) enableSM(m *smState) error {
	if err := s.writeRaw([]byte("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")); err != nil {
		return err
	}
	el, err := s.nextSM()
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reset()
	if el.Name != "enabled" {
		s.log.Warn("server refused stream management; readings are confirmed by TCP writes only", "condition", firstChildName(el))
		return nil
	}
	// Copies: they live as long as the stream, and a stanza's strings
	// share the stanza's memory (reader.go).
	if r := el.Attr("resume"); r == "true" || r == "1" {
		m.id = strings.Clone(el.Attr("id"))
	}
	m.location = strings.Clone(el.Attr("location"))
	m.jid, m.stream = s.jid, s.stream
	s.sm = m
	return nil
}

// nextSM reads the server's answer to enable or resume: enabled, resumed
// or failed.
func (s *Session) nextSM() (*Element, error) {
	for {
		el, err := s.r.next()
		if err != nil {
			return nil, s.negotiationError(err)
		}
		switch {
		case el.Space == NSStream && el.Name == "error":
			return nil, parseStreamError(el)
		case el.Space == NSSM && (el.Name == "enabled" || el.Name == "resumed" || el.Name == "failed"):
			return el, nil
		case el.Space == NSSM && el.Name == "r":
			// Not counted yet; nothing was received on this stream.
			continue
		default:
			s.log.Debug("dropping stanza received before stream management answered", "name", el.Name)
		}
	}
}

func firstChildName(el *Element) string {
	if c := el.FirstChild(); c != nil {
		return c.Name
	}
	return ""
}

// report passes acknowledged tags to the owner. Called with m.mu held, so
// acknowledgements are reported in order.
func (m *smState) report(tags []uint64) {
	if len(tags) > 0 && m.onAck != nil {
		m.onAck(tags)
	}
}

// handleSM processes a stream management element arriving during Serve.
func (s *Session) handleSM(el *Element) error {
	m := s.sm
	if m == nil {
		return nil
	}
	switch el.Name {
	case "r":
		m.mu.Lock()
		h := m.inH
		m.mu.Unlock()
		b := strconv.AppendUint([]byte("<a xmlns='urn:xmpp:sm:3' h='"), uint64(h), 10)
		return s.writeRaw(append(b, "'/>"...))
	case "a":
		h, err := parseH(el)
		if err != nil {
			return err
		}
		m.mu.Lock()
		tags, err := m.ack(h)
		if err == nil {
			m.report(tags)
		}
		m.mu.Unlock()
		if err != nil {
			return &StreamError{Condition: "undefined-condition", Text: err.Error(), Local: true}
		}
		// What is still unacknowledged is counted under wmu, after the
		// request flag is cleared: a sender woken by this ack may have
		// sent meanwhile and found a request still "outstanding". Missing
		// its stanza here would leave it unacknowledged for good, and a
		// paced sender waiting on it stuck.
		s.wmu.Lock()
		s.rPending = false
		m.mu.Lock()
		more := m.pending() > 0
		m.mu.Unlock()
		if more {
			s.requestAckLocked()
		}
		s.wmu.Unlock()
	}
	return nil
}

// countInbound counts a received stanza for the server's next ack request.
func (s *Session) countInbound() {
	if m := s.sm; m != nil {
		m.mu.Lock()
		m.inH++
		m.mu.Unlock()
	}
}

// ackDelay is how long an ack request waits after the stanza that called
// for it, so that a burst of stanzas — or a steady flow of readings —
// costs one <r/> and one <a/> per ackDelay instead of one pair per
// stanza: three fewer system calls and a parse per reading. It bounds how
// long a sent stanza stays unacknowledged (kept for resending) on a live
// stream.
const ackDelay = 20 * time.Millisecond

// requestAckLocked schedules an <r/> in ackDelay unless one is scheduled
// or outstanding. One request in flight at a time keeps the window of
// sent-but-unacknowledged stanzas (the ones that may be duplicated after a
// server crash) about one round trip plus ackDelay wide. s.wmu must be
// held.
func (s *Session) requestAckLocked() {
	if s.rPending || s.sm == nil || s.closed {
		return
	}
	s.rPending = true
	time.AfterFunc(ackDelay, func() {
		s.wmu.Lock()
		defer s.wmu.Unlock()
		if !s.closed {
			s.writeLocked([]byte("<r xmlns='urn:xmpp:sm:3'/>"))
		}
	})
}

// RequestAck asks the server to acknowledge what it has received (an <r/>),
// or, without stream management, pings it. Either answer refreshes
// LastRead; keepalive uses this to detect a dead connection.
func (s *Session) RequestAck() error {
	if s.sm != nil {
		return s.writeRaw([]byte("<r xmlns='urn:xmpp:sm:3'/>"))
	}
	b := []byte("<iq type='get' id='")
	b = append(b, s.NewID()...)
	b = append(b, "'><ping xmlns='urn:xmpp:ping'/></iq>"...)
	return s.writeRaw(b)
}

// Resumed reports whether this session resumed a previous stream: presence
// and everything else of the old stream still hold, and unacknowledged
// stanzas were resent.
func (s *Session) Resumed() bool { return s.resumed }

// Stream identifies the XML stream this session carries: a session that
// resumed a stream has that stream's number, any other a new one. What
// belongs to a stream (stanzas sent on it and not yet acknowledged, rooms
// joined on it) is still there when Stream is the same, and only then: a
// session may resume a stream that a session in between started and
// nobody else saw.
func (s *Session) Stream() uint64 { return s.stream }

// StreamManagement reports whether XEP-0198 is enabled on this stream.
func (s *Session) StreamManagement() bool { return s.sm != nil }
