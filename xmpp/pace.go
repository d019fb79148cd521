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
// The window follows the rate at which the server acknowledges paced
// bytes while senders wait for it: about paceTarget of it, so a command
// waits about paceTarget behind telemetry on a slow link and a fast
// server is never held back (the window grows by paceTarget/RTT per
// round trip).
const (
	paceTarget    = time.Second
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
	inflight    int       // paced bytes sent, not yet acknowledged
	window      int       // bytes allowed in flight
	rate        float64   // estimated bytes/s the server acknowledges; 0 unknown
	sampleStart time.Time // start of the current rate sample
	sampleBytes int       // paced bytes acknowledged in it
	limited     bool      // a sender waited for the window during the sample
	lastSlow    time.Time // when a sender last waited slowWait or longer
	idleSince   time.Time // when the last paced bytes were acknowledged
	freed       chan struct{}
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
	p.mu.Unlock()
}

// release counts n paced bytes as acknowledged, updates the rate
// estimate and wakes waiting senders.
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
	p.sampleBytes += n
	if el := now.Sub(p.sampleStart); el >= paceSample {
		sample := float64(p.sampleBytes) / el.Seconds()
		switch {
		case p.limited:
			// Senders waited all along (or part of it): this is what
			// the server takes, or a little less; follow it.
			if p.rate == 0 {
				p.rate = sample
			} else {
				p.rate = (p.rate + sample) / 2
			}
		case sample > p.rate:
			// Not window-bound, yet faster than believed: a lower bound.
			p.rate = sample
		}
		p.sampleStart, p.sampleBytes, p.limited = now, 0, false
		p.window = min(maxWindow, max(minWindow, int(p.rate*paceTarget.Seconds())))
	}
	p.wake()
}

// reset forgets what was in flight (a new stream: nothing will be acked).
func (p *pacer) reset() {
	p.mu.Lock()
	p.inflight = 0
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
	// measured).
	Rate float64
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
	return LinkStats{Rate: p.rate, Window: p.windowLocked(), InFlight: p.inflight, Limited: limited}
}
