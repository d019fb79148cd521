package agent

import (
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stanzad/stanzad/devices"
)

// deviceHealth tracks which devices are failing, from the readings they
// emit and from their Run errors. A device that fails every interval
// logs when it starts failing and when it recovers, not every time.
type deviceHealth struct {
	// nfailing is the number of entries of fail, so a good reading while every
	// device is healthy (the dispatch hot path) takes no lock.
	nfailing atomic.Int32

	mu   sync.Mutex
	fail map[string]deviceFailure

	// changed gets a signal when a device starts failing or recovers
	// (the presence status follows); nil: nobody listens.
	changed chan struct{}
}

type deviceFailure struct {
	err   string
	since time.Time
	count uint64
}

// note records a reading's outcome.
func (h *deviceHealth) note(log *slog.Logger, r devices.Reading) {
	if r.Err != nil {
		h.failed(log, r.Device, r.Err)
		return
	}
	if h.nfailing.Load() == 0 {
		return
	}
	h.mu.Lock()
	f, was := h.fail[r.Device]
	if was {
		delete(h.fail, r.Device)
		h.nfailing.Add(-1)
	}
	h.mu.Unlock()
	if was {
		signal(h.changed)
		log.Info("device recovered", "device", r.Device, "failed_for", time.Since(f.since).Round(time.Second), "failures", f.count)
	}
}

// failed records a failure: an error reading or a Run that ended.
func (h *deviceHealth) failed(log *slog.Logger, name string, err error) {
	h.mu.Lock()
	if h.fail == nil {
		h.fail = make(map[string]deviceFailure)
	}
	f, was := h.fail[name]
	if !was {
		f.since = time.Now()
		h.nfailing.Add(1)
	}
	f.err, f.count = err.Error(), f.count+1
	h.fail[name] = f
	h.mu.Unlock()
	if !was {
		signal(h.changed)
		log.Warn("device failing", "device", name, "err", err)
	} else {
		log.Debug("device still failing", "device", name, "err", err, "failures", f.count)
	}
}

// failing returns the last error of a failing device, or "".
func (h *deviceHealth) failing(name string) (string, time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f, ok := h.fail[name]
	if !ok {
		return "", time.Time{}
	}
	return f.err, f.since
}

// names returns the failing devices, sorted.
func (h *deviceHealth) names() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Sorted(maps.Keys(h.fail))
}

// forget drops a device that a reload stopped: it no longer fails.
func (h *deviceHealth) forget(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.fail[name]; ok {
		delete(h.fail, name)
		h.nfailing.Store(int32(len(h.fail)))
		if h.changed != nil {
			select {
			case h.changed <- struct{}{}:
			default:
			}
		}
	}
}

// signal sends on c without blocking; c has capacity 1, so a pending
// signal stands for any number.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
