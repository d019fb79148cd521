package devices

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"periph.io/x/conn/v3/gpio"
)

// PinOpener returns the pin a GPIO device drives. The agent looks pins
// up by name in periph's registry; tests hand in gpiotest.Pin.
type PinOpener func() (gpio.PinIO, error)

// edgePoll bounds how long WaitForEdge blocks, so Run notices a
// cancelled context (WaitForEdge takes no context).
const edgePoll = 100 * time.Millisecond

// GPIOInConfig configures a digital input.
type GPIOInConfig struct {
	Name string
	Open PinOpener
	Pull gpio.Pull
	// Edge selects which changes wake the device; gpio.BothEdges by default.
	Edge gpio.Edge
	// Debounce is how long the level must settle after an edge before it
	// is read; contacts bounce for a few milliseconds. Zero disables.
	Debounce time.Duration
	// Invert reports a low level as true (active-low buttons, pull-ups).
	Invert bool
	// Interval, if set, also reports the state periodically.
	Interval time.Duration
}

// GPIOIn reports a digital input's state on every (debounced) change.
type GPIOIn struct {
	cfg GPIOInConfig

	mu  sync.Mutex
	pin gpio.PinIO
}

// NewGPIOIn returns a digital input device.
func NewGPIOIn(cfg GPIOInConfig) *GPIOIn {
	if cfg.Edge == gpio.NoEdge {
		cfg.Edge = gpio.BothEdges
	}
	return &GPIOIn{cfg: cfg}
}

// Name returns the device name.
func (g *GPIOIn) Name() string { return g.cfg.Name }

func (g *GPIOIn) state(l gpio.Level) bool { return bool(l) != g.cfg.Invert }

func (g *GPIOIn) reading(l gpio.Level) Reading {
	return Reading{Device: g.cfg.Name, Time: time.Now().UTC(), Fields: []Field{Bool("state", g.state(l))}}
}

// Run configures the pin for edge detection, reports the current state,
// then every debounced change (and the state every Interval, if set).
// Edge detection is switched off again when ctx is done.
func (g *GPIOIn) Run(ctx context.Context, emit func(Reading)) error {
	pin, err := g.cfg.Open()
	if err != nil {
		return err
	}
	if err := pin.In(g.cfg.Pull, g.cfg.Edge); err != nil {
		return fmt.Errorf("%s: %w", pin, err)
	}
	g.mu.Lock()
	g.pin = pin
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.pin = nil
		g.mu.Unlock()
		pin.In(gpio.PullNoChange, gpio.NoEdge) // stop edge detection
		pin.Halt()
	}()

	last := pin.Read()
	emit(g.reading(last))
	lastEmit := time.Now()
	for ctx.Err() == nil {
		if g.cfg.Interval > 0 && time.Since(lastEmit) >= g.cfg.Interval {
			last = pin.Read()
			emit(g.reading(last))
			lastEmit = time.Now()
		}
		if !pin.WaitForEdge(edgePoll) {
			continue
		}
		// Debounce: let further edges of the same bounce pass, then take
		// the level that remains.
		settle := time.Now().Add(g.cfg.Debounce)
		for d := time.Until(settle); d > 0 && ctx.Err() == nil; d = time.Until(settle) {
			pin.WaitForEdge(d)
		}
		if l := pin.Read(); l != last {
			last = l
			emit(g.reading(l))
			lastEmit = time.Now()
		}
	}
	return nil
}

// Read returns the current state; it fails while the device is not
// running (the pin is not configured as an input).
func (g *GPIOIn) Read(context.Context) (Reading, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.pin == nil {
		return Reading{}, fmt.Errorf("%s: %w", g.cfg.Name, ErrNotRunning)
	}
	return g.reading(g.pin.Read()), nil
}

// ErrNotRunning is returned by Read and Set of a device whose Run is not
// active (starting, or restarting after a failure).
var ErrNotRunning = errors.New("device is not running")

// GPIOOutConfig configures a digital output (relay, LED, valve).
type GPIOOutConfig struct {
	Name string
	Open PinOpener
	// Initial is the state set when the device starts.
	Initial bool
	// Safe, if set, is the state set when the device stops (shutdown,
	// or losing the pin); nil leaves the output as it is.
	Safe *bool
	// Invert drives the pin low for "on" (active-low relay boards).
	Invert bool
	// Pulse, if set, is the longest the output stays on: it switches
	// itself off that long after being switched on.
	Pulse time.Duration
}

// GPIOOut is a writable digital output.
type GPIOOut struct {
	cfg GPIOOutConfig

	mu    sync.Mutex
	pin   gpio.PinIO
	on    bool
	emit  func(Reading)
	pulse *time.Timer
}

// NewGPIOOut returns a digital output device.
func NewGPIOOut(cfg GPIOOutConfig) *GPIOOut { return &GPIOOut{cfg: cfg} }

// Name returns the device name.
func (g *GPIOOut) Name() string { return g.cfg.Name }

func (g *GPIOOut) level(on bool) gpio.Level { return gpio.Level(on != g.cfg.Invert) }

func (g *GPIOOut) readingLocked() Reading {
	return Reading{Device: g.cfg.Name, Time: time.Now().UTC(), Fields: []Field{Bool("state", g.on)}}
}

// Run drives the output to its initial state and holds the pin until ctx
// is done; then it drives the safe state, if one is configured.
func (g *GPIOOut) Run(ctx context.Context, emit func(Reading)) error {
	pin, err := g.cfg.Open()
	if err != nil {
		return err
	}
	if err := pin.Out(g.level(g.cfg.Initial)); err != nil {
		return fmt.Errorf("%s: %w", pin, err)
	}
	g.mu.Lock()
	g.pin, g.on, g.emit = pin, g.cfg.Initial, emit
	r := g.readingLocked()
	g.mu.Unlock()
	emit(r)

	<-ctx.Done()

	g.mu.Lock()
	defer g.mu.Unlock()
	if g.pulse != nil {
		g.pulse.Stop()
		g.pulse = nil
	}
	g.pin, g.emit = nil, nil
	if s := g.cfg.Safe; s != nil {
		if err := pin.Out(g.level(*s)); err != nil {
			return fmt.Errorf("%s: safe state: %w", pin, err)
		}
		g.on = *s
	}
	return nil
}

// Set switches the output: on/off, true/false, 1/0. With Pulse set, "on"
// switches off again after Pulse.
func (g *GPIOOut) Set(_ context.Context, value string) (Reading, error) {
	on, err := ParseBool(value)
	if err != nil {
		return Reading{}, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.pin == nil {
		return Reading{}, fmt.Errorf("%s: %w", g.cfg.Name, ErrNotRunning)
	}
	if err := g.pin.Out(g.level(on)); err != nil {
		return Reading{}, fmt.Errorf("%s: %w", g.pin, err)
	}
	g.on = on
	if g.pulse != nil {
		g.pulse.Stop()
		g.pulse = nil
	}
	if on && g.cfg.Pulse > 0 {
		pin := g.pin
		g.pulse = time.AfterFunc(g.cfg.Pulse, func() { g.pulseOff(pin) })
	}
	r := g.readingLocked()
	if g.emit != nil {
		g.emit(r)
	}
	return r, nil
}

// pulseOff ends a pulse, unless the device was restarted meanwhile.
func (g *GPIOOut) pulseOff(pin gpio.PinIO) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.pin != pin || !g.on {
		return
	}
	if err := pin.Out(g.level(false)); err != nil {
		return // the next Set or the safe state will try again
	}
	g.on = false
	g.pulse = nil
	if g.emit != nil {
		g.emit(g.readingLocked())
	}
}

// Read returns the output's state.
func (g *GPIOOut) Read(context.Context) (Reading, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.pin == nil {
		return Reading{}, fmt.Errorf("%s: %w", g.cfg.Name, ErrNotRunning)
	}
	return g.readingLocked(), nil
}
