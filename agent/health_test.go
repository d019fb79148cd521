package agent

import (
	"errors"
	"log/slog"
	"testing"

	"github.com/stanzad/stanzad/devices"
)

func TestDeviceHealth(t *testing.T) {
	var h deviceHealth
	log := slog.New(slog.DiscardHandler)
	ok := devices.Reading{Device: "a", Fields: []devices.Field{devices.Bool("state", true)}}
	h.note(log, ok)
	if e, _ := h.failing("a"); e != "" {
		t.Fatalf("healthy device failing: %q", e)
	}
	h.note(log, devices.Reading{Device: "a", Err: errors.New("bus error")})
	h.note(log, devices.Reading{Device: "a", Err: errors.New("bus error again")})
	h.failed(log, "b", errors.New("no pin"))
	if e, since := h.failing("a"); e != "bus error again" || since.IsZero() {
		t.Errorf("failing(a) = %q, %v", e, since)
	}
	if n := h.nfailing.Load(); n != 2 {
		t.Errorf("failing count %d, want 2", n)
	}
	h.note(log, ok)
	if e, _ := h.failing("a"); e != "" {
		t.Errorf("recovered device still failing: %q", e)
	}
	if e, _ := h.failing("b"); e != "no pin" {
		t.Errorf("failing(b) = %q", e)
	}
	if n := h.nfailing.Load(); n != 1 {
		t.Errorf("failing count %d, want 1", n)
	}
}
