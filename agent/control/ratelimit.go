package control

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// ErrRateLimited is wrapped by the error a command gets when its sender
// has used up the token bucket; errors.As to *RateError gives the wait.
var ErrRateLimited = errors.New("too many commands")

// RateError says how long the sender should wait.
type RateError struct {
	Retry time.Duration
}

func (e *RateError) Error() string {
	return fmt.Sprintf("%v; retry in %v", ErrRateLimited, e.Retry.Round(100*time.Millisecond))
}

func (e *RateError) Unwrap() error { return ErrRateLimited }

// limiter is a token bucket per sender (bare JID): burst commands at once,
// rate per second on average.
type limiter struct {
	rate  float64
	burst float64
	now   func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// maxBuckets bounds memory: beyond it, buckets that have refilled (their
// senders idle) are forgotten, which loses nothing.
const maxBuckets = 1024

func newLimiter(rate float64, burst int) *limiter {
	return &limiter{rate: rate, burst: float64(burst), now: time.Now, buckets: make(map[string]*bucket)}
}

// allow takes a token for key, or returns a *RateError with the time
// until one is available.
func (l *limiter) allow(key string) error {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= maxBuckets {
			l.pruneLocked(now)
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return nil
	}
	wait := time.Duration((1 - b.tokens) / l.rate * float64(time.Second))
	return &RateError{Retry: wait}
}

func (l *limiter) pruneLocked(now time.Time) {
	for k, b := range l.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
			delete(l.buckets, k)
		}
	}
}
