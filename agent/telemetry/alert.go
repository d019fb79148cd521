package telemetry

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/devices"
)

// alertState is where a watched value stands against a rule.
type alertState uint8

const (
	alertNormal alertState = iota
	alertAbove
	alertBelow
)

// alertRule is one [[alert]] with its state. It belongs to the dispatcher
// goroutine.
//
// The value's state follows the thresholds with hysteresis: above fires
// when the value rises over 'above' and clears only when it is back at or
// under above − hysteresis (below likewise). Messages follow the state,
// but at most one per holdoff: a state that flips back and forth within a
// holdoff sends nothing more, and the state at its end is reported if it
// differs from the last one reported. A noisy sensor cannot storm.
type alertRule struct {
	cfg   config.Alert
	sinks []*Sink

	state    alertState // now
	told     alertState // last reported
	toldAt   time.Time
	last     devices.Reading // the reading behind state
	lastVal  float64
	due      time.Time // a report is waiting for the holdoff to end
	fired    uint64    // messages sent (tests, status)
	lastUnit string
	decimals int
}

// check updates the rule with r and returns true when a message is due
// now. Otherwise, if one is waiting for the holdoff, r.due is set.
func (al *alertRule) check(r devices.Reading, now time.Time) bool {
	if r.Device != al.cfg.Device {
		return false
	}
	var f *devices.Field
	for i := range r.Fields {
		if r.Fields[i].Name == al.cfg.Field && r.Fields[i].Kind == devices.Numeric {
			f = &r.Fields[i]
			break
		}
	}
	if f == nil || f.Num != f.Num { // absent, or NaN
		return false
	}
	al.state = al.next(f.Num)
	al.last, al.lastVal, al.lastUnit, al.decimals = r, f.Num, f.Unit, f.Decimals
	return al.pending(now)
}

// next is the state for value v, given the current state.
func (al *alertRule) next(v float64) alertState {
	above, below, h := al.cfg.Above, al.cfg.Below, al.cfg.Hysteresis
	switch {
	case above != nil && v > *above:
		return alertAbove
	case below != nil && v < *below:
		return alertBelow
	case al.state == alertAbove && v > *above-h:
		return alertAbove // not far enough back to clear
	case al.state == alertBelow && v < *below+h:
		return alertBelow
	}
	return alertNormal
}

// pending reports whether a message is due at now; when one waits for
// the holdoff, it sets due.
func (al *alertRule) pending(now time.Time) bool {
	if al.state == al.told {
		al.due = time.Time{}
		return false
	}
	if next := al.toldAt.Add(al.cfg.Holdoff.Duration); !al.toldAt.IsZero() && now.Before(next) {
		al.due = next
		return false
	}
	return true
}

// told records that the current state was reported at now.
func (al *alertRule) report(now time.Time) {
	al.told, al.toldAt, al.due = al.state, now, time.Time{}
	al.fired++
}

// text is the message for the current state, short and readable:
// "ALERT greenhouse: temperature 31.2 °C is above 30 °C".
func (al *alertRule) text() string {
	v := al.format(al.lastVal)
	c := al.cfg
	switch al.state {
	case alertAbove:
		return fmt.Sprintf("ALERT %s: %s %s is above %s", c.Device, c.Field, v, al.format(*c.Above))
	case alertBelow:
		return fmt.Sprintf("ALERT %s: %s %s is below %s", c.Device, c.Field, v, al.format(*c.Below))
	}
	var limits string
	switch {
	case c.Above != nil && c.Below != nil:
		limits = "back between " + trimUnit(al.format(*c.Below), al.lastUnit) + " and " + al.format(*c.Above)
	case c.Above != nil:
		limits = "back below " + al.format(*c.Above)
	default:
		limits = "back above " + al.format(*c.Below)
	}
	return fmt.Sprintf("CLEARED %s: %s %s is %s", c.Device, c.Field, v, limits)
}

func (al *alertRule) format(v float64) string {
	s := strconv.FormatFloat(v, 'f', al.decimals, 64)
	if al.decimals < 0 {
		s = strconv.FormatFloat(v, 'g', -1, 64)
	}
	if al.lastUnit != "" {
		s += " " + al.lastUnit
	}
	return s
}

func trimUnit(s, unit string) string {
	if unit == "" {
		return s
	}
	return strings.TrimSuffix(s, " "+unit)
}
