package telemetry

import (
	"testing"
	"time"

	"github.com/stanzad/stanzad/agent/config"
)

func f64(v float64) *float64 { return &v }

// The rule fires once when the value crosses, ignores noise inside the
// hysteresis, clears once, and never says more than once per holdoff.
func TestAlertHysteresisAndHoldoff(t *testing.T) {
	al := &alertRule{cfg: config.Alert{Device: "t", Field: "temperature", Above: f64(30), Hysteresis: 1,
		Holdoff: config.Duration{Duration: 10 * time.Second}}, decimals: -1}
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	var texts []string
	offer := func(at time.Duration, v float64) {
		now := t0.Add(at)
		if al.check(temp(v), now) {
			al.report(now)
			texts = append(texts, al.text())
		}
	}
	offer(0, 25)
	offer(time.Second, 30.5) // fires
	offer(2*time.Second, 29.5)
	offer(3*time.Second, 30.2)  // noise within the hysteresis: nothing
	offer(20*time.Second, 29.0) // clears (≤ 30 − 1)
	offer(21*time.Second, 31)   // fires again within the holdoff: waits
	if al.due.IsZero() || !al.due.Equal(t0.Add(30*time.Second)) {
		t.Fatalf("a change within the holdoff is not scheduled: due %v", al.due)
	}
	offer(22*time.Second, 28) // and clears again before it ends: nothing to say
	if al.pending(t0.Add(30 * time.Second)) {
		t.Fatal("a change undone within the holdoff was reported")
	}
	offer(40*time.Second, 32)
	want := []string{
		"ALERT t: temperature 30.5 °C is above 30.0 °C",
		"CLEARED t: temperature 29.0 °C is back below 30.0 °C",
		"ALERT t: temperature 32.0 °C is above 30.0 °C",
	}
	if len(texts) != len(want) {
		t.Fatalf("messages:\n%q\nwant\n%q", texts, want)
	}
	for i := range want {
		if texts[i] != want[i] {
			t.Errorf("message %d: %q, want %q", i, texts[i], want[i])
		}
	}
}

func TestAlertBand(t *testing.T) {
	al := &alertRule{cfg: config.Alert{Device: "t", Field: "temperature", Above: f64(30), Below: f64(5), Hysteresis: 0.5}, decimals: 1}
	now := time.Now()
	for _, tt := range []struct {
		v    float64
		want alertState
	}{{20, alertNormal}, {4.9, alertBelow}, {5.3, alertBelow}, {5.5, alertNormal}, {31, alertAbove}, {4, alertBelow}} {
		al.check(temp(tt.v), now)
		if al.state != tt.want {
			t.Fatalf("at %v: state %d, want %d", tt.v, al.state, tt.want)
		}
	}
	al.check(temp(20), now)
	if got := al.text(); got != "CLEARED t: temperature 20.0 °C is back between 5.0 and 30.0 °C" {
		t.Errorf("clear text %q", got)
	}
	// Other devices, other fields and NaN leave it alone.
	other := temp(100)
	other.Device = "u"
	if al.check(other, now) || al.state != alertNormal {
		t.Error("another device's reading moved the rule")
	}
}
