package main

import (
	"context"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Giving memory back while the agent runs (docs/benchmarks.md, "Where
// the memory goes", has the figures).
//
// A burst (a flood of stanzas, a day of queued readings going out, a
// serial device streaming) grows the heap to the collector's goal, and
// the runtime keeps that much for the next burst: an idle board would
// then hold MBs it does not need. The watch counts collections per
// window; once a busy window (burstGCs or more) is followed by a quiet
// one, it collects and returns the free pages to the kernel, once. An
// idle agent collects about once in two minutes (the runtime's forced
// collection), so this never fires at idle, where a periodic trim would
// only keep the collector's code resident.
//
// The executable's pages are dropped again after every imageEvery quiet
// windows, and after a burst: code that ran once (a reload, a command,
// the burst) otherwise stays mapped for the life of the process. The
// pages stay in the page cache; what runs next maps back in.

const (
	giveBackWindow = 30 * time.Second
	burstGCs       = 3
	imageEvery     = 10 // quiet windows: 5 minutes
)

// burstWatch tells, from the collection count at the end of each
// window, when a burst has ended and when to drop image pages.
type burstWatch struct {
	last  uint64 // collections at the end of the previous window
	busy  bool   // a busy window has not yet been followed by a quiet one
	quiet int    // quiet windows since the image was last dropped
}

// step takes the collection count at the end of a window and reports
// whether to give the heap's free pages back now, and whether to drop
// the executable's pages.
func (w *burstWatch) step(n uint64) (heap, image bool) {
	cycles := n - w.last
	w.last = n
	switch {
	case cycles >= burstGCs:
		w.busy, w.quiet = true, 0
	case cycles > 1:
		w.quiet = 0
	case w.busy:
		w.busy, w.quiet = false, 0
		return true, true
	default:
		if w.quiet++; w.quiet >= imageEvery {
			w.quiet = 0
			return false, true
		}
	}
	return false, false
}

// gcCycles is the number of collections so far, as counted by
// countGCs. (A finalizer costs nothing the binary does not already
// have; runtime.ReadMemStats would add 10 KB on armv7, runtime/metrics
// 130 KB.)
func gcCycles() uint64 { return gcCount.Load() }

var gcCount atomic.Uint64

// gcSentinel is garbage whose finalizer counts a collection and makes
// the next one. It is 16 bytes and holds a pointer so that the tiny
// allocator does not batch it with other objects (whose liveness would
// delay the finalizer).
type gcSentinel struct {
	p *byte
	_ [8]byte
}

// countGCs starts the count, once per process: from the next
// collection on, each one runs the sentinel's finalizer once.
func countGCs() { countOnce.Do(armSentinel) }

var countOnce sync.Once

func armSentinel() {
	runtime.SetFinalizer(&gcSentinel{}, func(*gcSentinel) {
		gcCount.Add(1)
		armSentinel()
	})
}

// runGiveBack gives memory back as burstWatch says until ctx is done,
// and reports each time to done.
func runGiveBack(ctx context.Context, done func(heap bool, imageBytes int64)) {
	t := time.NewTicker(giveBackWindow)
	defer t.Stop()
	countGCs()
	w := burstWatch{last: gcCycles()}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		heap, image := w.step(gcCycles())
		if heap {
			debug.FreeOSMemory()
			w.last++ // its own collection is not work
		}
		if image {
			done(heap, dropImagePages())
		}
	}
}
