package telemetry

import (
	"errors"
	"sync"

	"github.com/stanzad/stanzad/devices"
)

// Errors of Bus.Push.
var (
	ErrBusFull   = errors.New("bus full")
	ErrBusClosed = errors.New("bus closed")
)

// busMinRing is the smallest ring a bus has: a few sensors' readings on
// one interval fit without growing.
const busMinRing = 16

// Bus carries readings from the devices to the dispatcher: many
// producers, one consumer. Push never blocks; it fails once max readings
// wait. Unlike a channel of that capacity (80 KiB for 1,024 readings,
// zeroed and resident from the start), the ring grows as readings queue
// up, and halves each time the dispatcher drains it having used no more
// than a quarter of it: after a burst an idle board is back to a small
// ring within a few rounds, and holds the readings it has, not the bus's
// worst case, while a busy bus keeps the ring it uses.
type Bus struct {
	mu     sync.Mutex
	ring   []devices.Reading
	head   int // index of the oldest reading
	n      int // readings waiting
	peak   int // most readings waiting since the bus was last empty
	max    int
	closed bool
	ready  chan struct{} // one token: readings wait, or the bus closed
}

// NewBus returns an empty bus that holds at most max readings.
func NewBus(max int) *Bus {
	return &Bus{max: max, ready: make(chan struct{}, 1)}
}

// Push queues r. It returns ErrBusFull when max readings wait and
// ErrBusClosed after Close; r is not queued then.
func (b *Bus) Push(r devices.Reading) error {
	b.mu.Lock()
	switch {
	case b.closed:
		b.mu.Unlock()
		return ErrBusClosed
	case b.n == b.max:
		b.mu.Unlock()
		return ErrBusFull
	case b.n == len(b.ring):
		b.grow()
	}
	b.ring[(b.head+b.n)%len(b.ring)] = r
	b.n++
	b.peak = max(b.peak, b.n)
	first := b.n == 1
	b.mu.Unlock()
	// Only the first reading of an empty bus signals: while readings
	// wait, the consumer either holds Ready's token or is taking, and
	// takes until the bus is empty or calls Leave.
	if first {
		b.signal()
	}
	return nil
}

// grow doubles the ring (up to max), oldest reading first.
func (b *Bus) grow() {
	size := min(max(2*len(b.ring), busMinRing), b.max)
	ring := make([]devices.Reading, size)
	k := copy(ring, b.ring[b.head:])
	copy(ring[k:], b.ring[:b.head])
	b.ring, b.head = ring, 0
}

func (b *Bus) signal() {
	select {
	case b.ready <- struct{}{}:
	default:
	}
}

// Ready has a value when readings wait or the bus has closed. Only the
// consumer receives from it; after it fires, Take until the bus is empty
// or the consumer has taken enough, and then Leave, which makes Ready
// fire again for the readings left.
func (b *Bus) Ready() <-chan struct{} { return b.ready }

// Take removes the oldest reading. ok is false when none waits; closed
// is true once the bus is closed and empty: nothing will arrive again.
func (b *Bus) Take() (r devices.Reading, ok, closed bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.n == 0 {
		return r, false, b.closed
	}
	r = b.ring[b.head]
	b.ring[b.head] = devices.Reading{} // let the fields go
	b.head = (b.head + 1) % len(b.ring)
	b.n--
	if b.n == 0 {
		b.head = 0
		if len(b.ring) > busMinRing && 4*b.peak <= len(b.ring) {
			b.ring = make([]devices.Reading, len(b.ring)/2)
		}
		b.peak = 0
	}
	return r, true, false
}

// Leave is what the consumer calls when it stops taking while readings
// may still wait: Ready fires again for them.
func (b *Bus) Leave() {
	b.mu.Lock()
	left := b.n > 0 || b.closed
	b.mu.Unlock()
	if left {
		b.signal()
	}
}

// Close ends the bus: Push fails from now on; the readings waiting can
// still be taken.
func (b *Bus) Close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.signal()
}

// Len is how many readings wait.
func (b *Bus) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}

// Max is how many readings may wait.
func (b *Bus) Max() int { return b.max }
