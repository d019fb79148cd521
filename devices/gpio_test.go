package devices

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"
)

// collector gathers emitted readings for a test.
type collector struct {
	mu sync.Mutex
	rs []Reading
	ch chan Reading
}

func newCollector() *collector { return &collector{ch: make(chan Reading, 100)} }

func (c *collector) emit(r Reading) {
	c.mu.Lock()
	c.rs = append(c.rs, r)
	c.mu.Unlock()
	c.ch <- r
}

func (c *collector) next(t *testing.T) Reading {
	t.Helper()
	select {
	case r := <-c.ch:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("no reading within 5s")
		return Reading{}
	}
}

// none checks that nothing more is emitted for a while (a negative
// check; the wait does not decide a pass on a fast machine).
func (c *collector) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case r := <-c.ch:
		t.Fatalf("unexpected reading %+v", r)
	case <-time.After(d):
	}
}

func state(t *testing.T, r Reading) bool {
	t.Helper()
	if r.Err != nil || len(r.Fields) != 1 || r.Fields[0].Name != "state" || r.Fields[0].Kind != Boolean {
		t.Fatalf("reading %+v, want one boolean state", r)
	}
	return r.Fields[0].Bool
}

// run starts d.Run and returns a stop that cancels it and returns its error.
func run(t *testing.T, d Device, emit func(Reading)) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, emit) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Run did not return within 5s of cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

func TestGPIOInDebounce(t *testing.T) {
	pin := &gpiotest.Pin{N: "GPIO4", EdgesChan: make(chan gpio.Level, 16)}
	c := newCollector()
	d := NewGPIOIn(GPIOInConfig{Name: "door", Open: func() (gpio.PinIO, error) { return pin, nil },
		Pull: gpio.PullDown, Debounce: 30 * time.Millisecond})
	stop := run(t, d, c.emit)
	if state(t, c.next(t)) {
		t.Fatal("initial state true with pull-down")
	}
	// A bouncing contact: five edges within the debounce time settle high.
	for _, l := range []gpio.Level{gpio.High, gpio.Low, gpio.High, gpio.Low, gpio.High} {
		pin.EdgesChan <- l
	}
	if !state(t, c.next(t)) {
		t.Fatal("after the bounce: state false, want true")
	}
	c.none(t, 100*time.Millisecond)
	// A glitch that returns to the same level reports nothing.
	pin.EdgesChan <- gpio.Low
	pin.EdgesChan <- gpio.High
	c.none(t, 100*time.Millisecond)
	pin.EdgesChan <- gpio.Low
	if state(t, c.next(t)) {
		t.Fatal("after release: state true")
	}
	r, err := d.Read(context.Background())
	if err != nil || state(t, r) {
		t.Errorf("Read = %+v, %v", r, err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Read(context.Background()); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Read after stop = %v, want ErrNotRunning", err)
	}
}

func TestGPIOInInvertAndInterval(t *testing.T) {
	pin := &gpiotest.Pin{N: "GPIO5", EdgesChan: make(chan gpio.Level, 4)}
	c := newCollector()
	d := NewGPIOIn(GPIOInConfig{Name: "button", Open: func() (gpio.PinIO, error) { return pin, nil },
		Pull: gpio.PullUp, Invert: true, Interval: 50 * time.Millisecond})
	run(t, d, c.emit)
	// Pulled up and inverted: released reads false, and is repeated.
	for range 3 {
		if state(t, c.next(t)) {
			t.Fatal("released button reads true")
		}
	}
	pin.EdgesChan <- gpio.Low
	for state(t, c.next(t)) == false {
	}
}

func TestGPIOInOpenFails(t *testing.T) {
	d := NewGPIOIn(GPIOInConfig{Name: "x", Open: func() (gpio.PinIO, error) { return nil, errors.New("no pin GPIO99") }})
	if err := d.Run(context.Background(), func(Reading) {}); err == nil {
		t.Fatal("Run with a missing pin returned nil")
	}
}

func TestGPIOOut(t *testing.T) {
	pin := &gpiotest.Pin{N: "GPIO17"}
	safe := false
	c := newCollector()
	d := NewGPIOOut(GPIOOutConfig{Name: "relay", Open: func() (gpio.PinIO, error) { return pin, nil },
		Initial: true, Safe: &safe, Invert: true})
	level := func() gpio.Level { pin.Lock(); defer pin.Unlock(); return pin.L }

	if _, err := d.Set(context.Background(), "on"); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Set before Run = %v, want ErrNotRunning", err)
	}
	stop := run(t, d, c.emit)
	if !state(t, c.next(t)) || level() != gpio.Low {
		t.Fatalf("initial on, inverted: pin %v, want Low", level())
	}
	r, err := d.Set(context.Background(), "off")
	if err != nil || state(t, r) || level() != gpio.High {
		t.Fatalf("Set off = %+v, %v; pin %v", r, err, level())
	}
	if state(t, c.next(t)) {
		t.Error("the change was not emitted")
	}
	if _, err := d.Set(context.Background(), "maybe"); !errors.Is(err, ErrBadValue) {
		t.Errorf("Set maybe = %v, want ErrBadValue", err)
	}
	d.Set(context.Background(), "1")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if level() != gpio.High { // safe = off, inverted
		t.Errorf("after stop pin %v, want the safe state (High)", level())
	}
}

func TestGPIOOutPulse(t *testing.T) {
	pin := &gpiotest.Pin{N: "GPIO27"}
	c := newCollector()
	d := NewGPIOOut(GPIOOutConfig{Name: "valve", Open: func() (gpio.PinIO, error) { return pin, nil }, Pulse: 50 * time.Millisecond})
	run(t, d, c.emit)
	c.next(t) // initial off
	if r, err := d.Set(context.Background(), "on"); err != nil || !state(t, r) {
		t.Fatalf("Set on = %+v, %v", r, err)
	}
	if !state(t, c.next(t)) {
		t.Fatal("on not emitted")
	}
	if state(t, c.next(t)) {
		t.Fatal("pulse did not end")
	}
	if r, _ := d.Read(context.Background()); state(t, r) {
		t.Error("still on after the pulse")
	}
}
