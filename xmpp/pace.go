package xmpp

import (
	"context"
	"sync"
	"time"
)

// Pacing keeps telemetry from standing in front of everything else. A
// server that reads a client's socket slowly — ejabberd's stock
// c2s_shaper reads 3000 B/s — leaves whatever the client wrote queued in
// the sockets, and a command's answer written behind a megabyte of
// readings arrives minutes late. So paced stanzas (readings and
// publishes) may occupy at most a window of bytes that the server has
// not yet acknowledged (XEP-0198 <a/>); everything else — IQ answers,
// presence, room joins, acks — is written at once and so waits behind
// at most that window.
//
// The window is bdpFactor times the bandwidth-delay product: the rate at
// which the server acknowledges paced bytes while senders wait for the
// window, times the shortest ack round trip on the stream (which
// includes the ackDelay before an <r/>). That keeps a fast server busy —
// a window that lets three times the measured rate through triples the
// rate each sample until the server is the limit — while on a slow one
// almost nothing queues: a command waits behind about three round trips
// of telemetry, or the minimum window. A rate measured during a shaper's
// burst (ejabberd allows 20 kB at full speed first) leaves a window of a
// few kB when the burst ends, not a second of the burst's rate.
const (
	bdpFactor     = 3
	minWindow     = 2 << 10
	maxWindow     = 1 << 20
	paceSample    = 250 * time.Millisecond
	limitedRecent = 10 * time.Second
	// slowWait: a sender that waited this long for the window waited
	// for the server, not for an ack round trip.
	slowWait = 100 * time.Millisecond
)

// pacer is the window of paced bytes in flight. It belongs to the
// Client's stream management state, so the rate it has learnt survives
// reconnects.
type pacer struct {
	mu          sync.Mutex
	inflight    int           // paced bytes sent, not yet acknowledged
	sends       []pacedSend   // paced stanzas in flight, oldest first
	window      int           // bytes allowed in flight
	rate        float64       // estimated bytes/s the server acknowledges; 0 unknown
	minRTT      time.Duration // shortest ack round trip on this stream
	sampleStart time.Time     // start of the current rate sample
	sampleBytes int           // paced bytes acknowledged in it
	limited     bool          // a sender waited for the window during the sample
	lastSlow    time.Time     // when a sender last waited slowWait or longer
	idleSince   time.Time     // when the last paced bytes were acknowledged
	freed       chan struct{}
}

// pacedSend is one paced stanza in flight: its size and when it was sent.
type pacedSend struct {
	n  int
	at time.Time
}

// wake wakes waiting senders. p.mu is held.
func (p *pacer) wake() {
	if p.freed != nil {
		close(p.freed)
		p.freed = nil
	}
}

// windowLocked is the window in bytes; the zero pacer has the minimum.
func (p *pacer) windowLocked() int { return max(minWindow, p.window) }

// add counts n paced bytes as sent. A busy period after a pause starts
// a new sample: time with nothing to send says nothing about the
// server's rate. (A window that empties between two stanzas is no
// pause: that is a window-bound sender.)
func (p *pacer) add(n int, now time.Time) {
	p.mu.Lock()
	if p.inflight == 0 && now.Sub(p.idleSince) > paceSample {
		p.sampleStart, p.sampleBytes, p.limited = now, 0, false
	}
	p.inflight += n
	p.sends = append(p.sends, pacedSend{n, now})
	p.mu.Unlock()
}

// release counts n paced bytes as acknowledged (the oldest in flight),
// updates the round trip and rate estimates and wakes waiting senders.
func (p *pacer) release(n int, now time.Time) {
	if n == 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inflight = max(0, p.inflight-n)
	if p.inflight == 0 {
		p.idleSince = now
	}
	// The round trip is timed from the oldest stanza this ack covers:
	// the window must last from one ack to the next, and an <r/> follows
	// the first stanza after an ack by ackDelay, not the last.
	var first time.Time
	for left := n; left > 0 && len(p.sends) > 0; {
		if first.IsZero() {
			first = p.sends[0].at
		}
		left -= p.sends[0].n
		p.sends = p.sends[1:]
	}
	if len(p.sends) == 0 {
		p.sends = nil // let the backing array go
	}
	if !first.IsZero() {
		// The minimum only falls: every later sample may include
		// queueing (the very thing measured against), and a minimum
		// that expired into a queued sample would grow the window with
		// the queue. A new stream (another server, another route)
		// measures afresh.
		if rtt := now.Sub(first); p.minRTT == 0 || rtt < p.minRTT {
			p.minRTT = rtt
		}
	}
	p.sampleBytes += n
	if el := now.Sub(p.sampleStart); el >= paceSample {
		sample := float64(p.sampleBytes) / el.Seconds()
		switch {
		case p.limited && (p.rate == 0 || sample < p.rate):
			// Senders waited for the server: this is what it takes.
			// Down at once — a shaper's burst is over — so what queues
			// shrinks with it.
			p.rate = sample
		case p.limited:
			p.rate = (p.rate + sample) / 2 // up with some caution
		case sample > p.rate:
			// Not window-bound, yet faster than believed: a lower bound.
			p.rate = sample
		}
		p.sampleStart, p.sampleBytes, p.limited = now, 0, false
		p.window = min(maxWindow, max(minWindow, int(bdpFactor*p.rate*p.minRTT.Seconds())))
	}
	p.wake()
}

// reset forgets what was in flight (a new stream: nothing will be acked).
func (p *pacer) reset() {
	p.mu.Lock()
	p.inflight, p.sends, p.minRTT = 0, nil, 0
	p.wake()
	p.mu.Unlock()
}

// wait blocks until n more paced bytes fit in the window (one stanza is
// always allowed when nothing is in flight), ctx is done or done closes.
func (p *pacer) wait(ctx context.Context, n int, done <-chan struct{}) error {
	var start time.Time
	for {
		p.mu.Lock()
		if p.inflight == 0 || p.inflight+n <= p.windowLocked() {
			if !start.IsZero() {
				if now := time.Now(); now.Sub(start) >= slowWait {
					p.lastSlow = now
				}
			}
			p.mu.Unlock()
			return nil
		}
		if start.IsZero() {
			start = time.Now()
		}
		p.limited = true
		if p.freed == nil {
			p.freed = make(chan struct{})
		}
		freed := p.freed
		p.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
			return ctx.Err()
		case <-done:
			return ErrClosed
		}
	}
}

// LinkStats describe the pacing of telemetry on the Client's streams.
type LinkStats struct {
	// Rate is the estimated bytes/s the server acknowledges (0: not yet
	// measured); RTT the shortest recent ack round trip.
	Rate float64
	RTT  time.Duration
	// Window is the paced bytes allowed in flight; InFlight those sent
	// and not yet acknowledged.
	Window, InFlight int
	// Limited reports whether telemetry waited for the server (longer
	// than an ack round trip) within the last 10 s: the server, not
	// the devices, sets the pace.
	Limited bool
}

func (p *pacer) stats(now time.Time) LinkStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	limited := !p.lastSlow.IsZero() && now.Sub(p.lastSlow) < limitedRecent
	return LinkStats{Rate: p.rate, RTT: p.minRTT, Window: p.windowLocked(), InFlight: p.inflight, Limited: limited}
}
