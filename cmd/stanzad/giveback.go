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
// one, it collects and returns the free pages to the kernel, once.
//
// At idle the runtime collects only every two minutes (its forced
// collection: the heap's 4 MB minimum goal is never reached), so the
// heap's resident pages grow with two minutes of garbage. A window
// without any collection ends with one: the garbage stays a window's
// worth and the pages it frees are reused.
//
// The executable's pages are dropped again at the end of every quiet
// window, right after its collection, and after a burst: code that ran
// once (start-up, a reload, a command, the burst, the collector itself)
// otherwise stays mapped for the life of the process. The pages stay in
// the page cache; what runs next maps back in (a few hundred minor
// faults a window, no I/O).

const (
	giveBackWindow = 30 * time.Second
	burstGCs       = 3
	imageEvery     = 1 // quiet windows: every one, right after its collection
)

// burstWatch tells, from the collection count at the end of each
// window, what to give back.
type burstWatch struct {
	last  uint64 // collections at the end of the previous window
	busy  bool   // a busy window has not yet been followed by a quiet one
	quiet int    // quiet windows since the image was last dropped
}

// giveBackNow is what to do at the end of a window.
type giveBackNow struct {
	collect bool // collect the heap
	release bool // collect and return every free page (FreeOSMemory)
	image   bool // drop the executable's pages
}

// step takes the collection count at the end of a window. After a burst
// (a busy window, then a quiet one) it releases the heap and drops the
// image pages; in a window without any collection it collects, so that
// an idle agent's garbage (keepalives, a reading now and then) is a
// window's worth, not the two minutes' worth the runtime's forced
// collection allows — the pages freed are reused by the next
// allocations and the heap's resident size stops growing; every
// imageEvery quiet windows it drops the image pages. The caller counts
// its own collections into last.
func (w *burstWatch) step(n uint64) (do giveBackNow) {
	cycles := n - w.last
	w.last = n
	switch {
	case cycles >= burstGCs:
		w.busy, w.quiet = true, 0
	case cycles > 1:
		w.quiet = 0
	case w.busy:
		w.busy, w.quiet = false, 0
		return giveBackNow{release: true, image: true}
	default:
		do.collect = cycles == 0
		if w.quiet++; w.quiet >= imageEvery {
			w.quiet = 0
			do.image = true
		}
	}
	return do
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
		do := w.step(gcCycles())
		switch {
		case do.release:
			debug.FreeOSMemory()
			w.last++ // its own collection is not work
		case do.collect:
			runtime.GC()
			w.last++
		}
		if do.image {
			done(do.release, dropImagePages())
		}
	}
}
