package devices

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"
)

// SimConfig configures a simulated climate sensor.
type SimConfig struct {
	Name string
	// Interval between readings; zero means 10s.
	Interval time.Duration
	// Seed makes the random walk reproducible; zero picks a random seed.
	Seed uint64
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Sim is a simulated temperature/humidity sensor whose values follow a
// bounded random walk. It stands in for real hardware in the demo and in
// tests.
type Sim struct {
	cfg SimConfig

	mu       sync.Mutex
	rng      *rand.Rand
	temp     float64
	humidity float64
}

// NewSim returns a simulated sensor starting at 21 °C and 45 %.
func NewSim(cfg SimConfig) *Sim {
	if cfg.Interval <= 0 {
		cfg.Interval = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	return &Sim{cfg: cfg, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), temp: 21, humidity: 45}
}

// Name returns the device name.
func (s *Sim) Name() string { return s.cfg.Name }

// Run emits one reading immediately and then one per interval.
func (s *Sim) Run(ctx context.Context, emit func(Reading)) error {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		emit(s.step())
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Read returns the current values without advancing the walk.
func (s *Sim) Read(context.Context) (Reading, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reading(), nil
}

func (s *Sim) step() Reading {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.temp = clamp(s.temp+(s.rng.Float64()-0.5)*0.4, -10, 45)
	s.humidity = clamp(s.humidity+(s.rng.Float64()-0.5)*1.0, 5, 95)
	return s.reading()
}

func (s *Sim) reading() Reading {
	return Reading{
		Device: s.cfg.Name,
		Time:   s.cfg.Now().UTC(),
		Fields: []Field{
			Number("temperature", round(s.temp, 1), 1, "°C"),
			Number("humidity", round(s.humidity, 1), 1, "%"),
		},
	}
}

// SwitchConfig configures a simulated switch (a relay without hardware).
type SwitchConfig struct {
	Name    string
	Initial bool
	Now     func() time.Time
}

// Switch is a simulated settable boolean, like a relay. It reports its
// state once at start and on every change.
type Switch struct {
	cfg     SwitchConfig
	mu      sync.Mutex
	state   bool
	changed chan struct{}
}

// NewSwitch returns a simulated switch in its initial state.
func NewSwitch(cfg SwitchConfig) *Switch {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Switch{cfg: cfg, state: cfg.Initial, changed: make(chan struct{}, 1)}
}

// Name returns the device name.
func (s *Switch) Name() string { return s.cfg.Name }

// Run emits the state at start and after every Set until ctx is done.
func (s *Switch) Run(ctx context.Context, emit func(Reading)) error {
	for {
		r, _ := s.Read(ctx)
		emit(r)
		select {
		case <-ctx.Done():
			return nil
		case <-s.changed:
		}
	}
}

// Read returns the current state.
func (s *Switch) Read(context.Context) (Reading, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Reading{Device: s.cfg.Name, Time: s.cfg.Now().UTC(), Fields: []Field{Bool("state", s.state)}}, nil
}

// Set parses value as a boolean (on/off, true/false, 1/0) and switches.
func (s *Switch) Set(ctx context.Context, value string) (Reading, error) {
	v, err := ParseBool(value)
	if err != nil {
		return Reading{}, err
	}
	s.mu.Lock()
	changed := s.state != v
	s.state = v
	s.mu.Unlock()
	if changed {
		select {
		case s.changed <- struct{}{}:
		default: // a change notification is already pending
		}
	}
	return s.Read(ctx)
}

func clamp(v, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, v)) }

func round(v float64, decimals int) float64 {
	p := math.Pow10(decimals)
	return math.Round(v*p) / p
}

func badValue(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadValue, fmt.Sprintf(format, args...))
}
