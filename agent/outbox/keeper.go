package outbox

import (
	"context"
	"sync"
	"time"
)

// The upkeep of every outbox kept with Keep runs on one goroutine: an
// agent has an outbox per sink, and a goroutine each would cost a stack
// each and, syncing at the same moments, a thread each (a sync blocks
// its thread). One after the other they also spare the storage
// concurrent flushes. Run is the same upkeep on the caller's goroutine.

// Keep runs o's upkeep every SyncEvery, on the process's one upkeep
// goroutine, until ctx is done or stop is called (stop waits for a tick
// of o that is running). It is what Run does, without a goroutine of
// its own.
func (o *Outbox) Keep(ctx context.Context) (stop func()) {
	k := &upkeep
	e := &kept{o: o, next: time.Now().Add(o.opts.SyncEvery)}
	k.mu.Lock()
	k.boxes = append(k.boxes, e)
	if !k.running {
		k.running = true
		go k.run()
	}
	k.mu.Unlock()
	k.poke()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			k.mu.Lock()
			for i, x := range k.boxes {
				if x == e {
					k.boxes = append(k.boxes[:i:i], k.boxes[i+1:]...)
					break
				}
			}
			k.mu.Unlock()
			k.ticking.Lock() // a tick of e in progress ends first
			k.ticking.Unlock()
		})
	}
	context.AfterFunc(ctx, stop)
	return stop
}

type kept struct {
	o    *Outbox
	next time.Time
}

var upkeep = keeper{wake: make(chan struct{}, 1)}

type keeper struct {
	mu      sync.Mutex
	boxes   []*kept
	running bool
	wake    chan struct{}
	ticking sync.Mutex // held while ticks run
}

// poke makes the loop look at the list again.
func (k *keeper) poke() {
	select {
	case k.wake <- struct{}{}:
	default:
	}
}

// run ticks each kept outbox when it is due, until none is kept.
func (k *keeper) run() {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	var due []*kept
	for {
		k.mu.Lock()
		if len(k.boxes) == 0 {
			k.running = false
			k.mu.Unlock()
			return
		}
		now := time.Now()
		next := now.Add(time.Hour)
		due = due[:0]
		for _, e := range k.boxes {
			if !e.next.After(now) {
				due = append(due, e)
				e.next = now.Add(e.o.opts.SyncEvery)
			}
			next = minTime(next, e.next)
		}
		// Ticks run under ticking, taken before mu is let go, so a
		// stop that returns has seen its box's last tick end.
		k.ticking.Lock()
		k.mu.Unlock()
		for _, e := range due {
			e.o.tick(now)
		}
		k.ticking.Unlock()
		clear(due)
		t.Reset(time.Until(next))
		select {
		case <-t.C:
		case <-k.wake:
		}
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
