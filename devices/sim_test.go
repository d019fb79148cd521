package devices

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestParseBool(t *testing.T) {
	for _, s := range []string{"on", "ON", "true", "1", "yes", "On"} {
		if v, err := ParseBool(s); err != nil || !v {
			t.Errorf("ParseBool(%q) = %v, %v; want true", s, v, err)
		}
	}
	for _, s := range []string{"off", "false", "0", "no", "OFF"} {
		if v, err := ParseBool(s); err != nil || v {
			t.Errorf("ParseBool(%q) = %v, %v; want false", s, v, err)
		}
	}
	for _, s := range []string{"", "2", "onn", "true!", "ön"} {
		if _, err := ParseBool(s); !errors.Is(err, ErrBadValue) {
			t.Errorf("ParseBool(%q) error = %v, want ErrBadValue", s, err)
		}
	}
}

func TestSimRandomWalkStaysInRange(t *testing.T) {
	s := NewSim(SimConfig{Name: "g", Seed: 7})
	for range 100000 {
		r := s.step()
		temp, hum := r.Fields[0], r.Fields[1]
		if temp.Name != "temperature" || temp.Unit != "°C" || hum.Name != "humidity" || hum.Unit != "%" {
			t.Fatalf("fields = %+v", r.Fields)
		}
		if temp.Num < -10 || temp.Num > 45 || hum.Num < 5 || hum.Num > 95 {
			t.Fatalf("out of range: %+v", r.Fields)
		}
	}
}

// collect runs d until ctx is done and returns what it emitted.
type collect struct {
	mu sync.Mutex
	rs []Reading
	ch chan struct{}
}

func (c *collect) emit(r Reading) {
	c.mu.Lock()
	c.rs = append(c.rs, r)
	c.mu.Unlock()
	select {
	case c.ch <- struct{}{}:
	default:
	}
}

func (c *collect) wait(t *testing.T, n int) []Reading {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		c.mu.Lock()
		if len(c.rs) >= n {
			out := append([]Reading(nil), c.rs...)
			c.mu.Unlock()
			return out
		}
		c.mu.Unlock()
		select {
		case <-c.ch:
		case <-deadline:
			t.Fatalf("timed out waiting for %d readings", n)
		}
	}
}

func TestSwitchSetEmitsChange(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	sw := NewSwitch(SwitchConfig{Name: "relay1"})
	c := &collect{ch: make(chan struct{}, 1)}
	done := make(chan error)
	go func() { done <- sw.Run(ctx, c.emit) }()
	rs := c.wait(t, 1)
	if rs[0].Fields[0].Bool {
		t.Fatalf("initial state = %+v, want false", rs[0])
	}
	r, err := sw.Set(ctx, "on")
	if err != nil || !r.Fields[0].Bool || r.Device != "relay1" {
		t.Fatalf("Set(on) = %+v, %v", r, err)
	}
	rs = c.wait(t, 2)
	if !rs[1].Fields[0].Bool {
		t.Errorf("emitted after set = %+v, want true", rs[1])
	}
	if _, err := sw.Set(ctx, "maybe"); !errors.Is(err, ErrBadValue) {
		t.Errorf("Set(maybe) error = %v, want ErrBadValue", err)
	}
	if r, _ := sw.Read(ctx); !r.Fields[0].Bool {
		t.Errorf("bad value changed state: %+v", r)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil on cancel", err)
	}
}

func TestSimRunStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	s := NewSim(SimConfig{Name: "g", Interval: time.Millisecond})
	c := &collect{ch: make(chan struct{}, 1)}
	done := make(chan error)
	go func() { done <- s.Run(ctx, c.emit) }()
	c.wait(t, 3)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}
