package telemetry

import (
	"math"
	"time"

	"github.com/stanzad/stanzad/devices"
)

// filter decides, per device, which readings a sink passes on:
//
//   - deadband: a reading whose numeric fields all moved less than deadband
//     from the last reading passed, and whose other fields did not change,
//     is skipped — unless max_silence has passed since the last one;
//   - min_interval: at most one reading per interval; a reading that comes
//     sooner is held back, replaced by any newer one, and passed when the
//     interval is over, so the latest state always gets through.
//
// A filter belongs to the dispatcher goroutine; it is not safe for
// concurrent use.
type filter struct {
	minInterval time.Duration
	maxSilence  time.Duration // 0: no limit
	deadband    float64
	dev         map[string]*devFilter
}

type devFilter struct {
	sentAt time.Time
	sent   devices.Reading // the last reading passed (deadband reference)
	held   devices.Reading // waiting for min_interval, if holding
	due    time.Time       // when held may go
	// holding is set while held is valid.
	holding bool
}

// active reports whether the filter can hold back or skip anything.
func (f *filter) active() bool { return f.minInterval > 0 || f.deadband > 0 }

// Filter verdicts.
const (
	pass = iota // send now
	hold        // held back until min_interval is over
	skip        // within the deadband
)

type offerResult struct {
	verdict int
	due     time.Time // with hold: when the reading will be released
	// dropped is set when the offer cost a reading: r skipped, or an
	// older held reading replaced or made void.
	dropped bool
}

// offer decides about r, which arrives at now.
func (f *filter) offer(r devices.Reading, now time.Time) offerResult {
	if !f.active() {
		return offerResult{verdict: pass}
	}
	d := f.dev[r.Device]
	if d == nil {
		if f.dev == nil {
			f.dev = make(map[string]*devFilter)
		}
		d = &devFilter{}
		f.dev[r.Device] = d
		f.passed(d, r, now)
		return offerResult{verdict: pass}
	}
	wasHolding := d.holding
	silent := f.maxSilence > 0 && now.Sub(d.sentAt) >= f.maxSilence
	if !silent && !f.significant(d.sent, r) {
		// Back where it was: a change held back is void.
		d.holding = false
		d.held = devices.Reading{}
		return offerResult{verdict: skip, dropped: true}
	}
	if f.minInterval > 0 && now.Sub(d.sentAt) < f.minInterval {
		d.held, d.holding = r, true
		d.due = d.sentAt.Add(f.minInterval)
		return offerResult{verdict: hold, due: d.due, dropped: wasHolding}
	}
	f.passed(d, r, now)
	return offerResult{verdict: pass, dropped: wasHolding}
}

func (f *filter) passed(d *devFilter, r devices.Reading, now time.Time) {
	d.sent, d.sentAt = r, now
	d.holding = false
	d.held = devices.Reading{}
}

// release appends to dst the held readings whose time has come and
// returns the earliest time another one is due (zero: none held).
func (f *filter) release(dst []devices.Reading, now time.Time) ([]devices.Reading, time.Time) {
	var next time.Time
	for _, d := range f.dev {
		if !d.holding {
			continue
		}
		if !d.due.After(now) {
			dst = append(dst, d.held)
			f.passed(d, d.held, now)
			continue
		}
		if next.IsZero() || d.due.Before(next) {
			next = d.due
		}
	}
	return dst, next
}

// flush appends every held reading to dst, due or not (shutdown).
func (f *filter) flush(dst []devices.Reading) []devices.Reading {
	for _, d := range f.dev {
		if d.holding {
			dst = append(dst, d.held)
			f.passed(d, d.held, time.Now())
		}
	}
	return dst
}

// significant reports whether r differs from ref by more than the
// deadband: a numeric field that moved by deadband or more, any other
// field that changed, or fields that came or went.
func (f *filter) significant(ref, r devices.Reading) bool {
	if len(ref.Fields) != len(r.Fields) {
		return true
	}
	for i, a := range r.Fields {
		b := ref.Fields[i]
		if a.Name != b.Name || a.Kind != b.Kind {
			return true
		}
		switch a.Kind {
		case devices.Numeric:
			if !(math.Abs(a.Num-b.Num) < f.deadband) { // NaN counts as a change
				return true
			}
		case devices.Boolean:
			if a.Bool != b.Bool {
				return true
			}
		default:
			if a.Str != b.Str {
				return true
			}
		}
	}
	return false
}

// heldCount is how many readings the filter holds back for min_interval.
func (f *filter) heldCount() int {
	n := 0
	for _, d := range f.dev {
		if d.holding {
			n++
		}
	}
	return n
}
