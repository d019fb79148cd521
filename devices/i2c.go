package devices

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/physic"
	"periph.io/x/devices/v3/bmxx80"
)

// BusOpener opens the I²C bus a sensor is on; the sensor closes it when
// its Run ends. The agent opens /dev/i2c-N through periph's registry;
// tests hand in i2ctest.Playback.
type BusOpener func() (i2c.BusCloser, error)

// sensor is what the polled I²C and 1-Wire drivers have in common: set
// up once per Run, then read every interval.
type sensor interface {
	init() error
	sense(ctx context.Context) ([]Field, error)
	close() error
}

// polled runs a sensor: a reading every interval, an error reading when a
// read fails (the bus glitched, the sensor was unplugged). After
// reinitAfter consecutive failures it returns, and the agent's supervisor
// sets the sensor up again with backoff.
type polled struct {
	name     string
	interval time.Duration
	s        sensor

	mu      sync.Mutex // serializes reads (Run's ticker and on-demand Read)
	running bool
}

const reinitAfter = 3

func (p *polled) Name() string { return p.name }

func (p *polled) Run(ctx context.Context, emit func(Reading)) error {
	p.mu.Lock()
	err := p.s.init()
	p.running = err == nil
	p.mu.Unlock()
	if err != nil {
		return err
	}
	defer func() {
		p.mu.Lock()
		p.running = false
		p.s.close()
		p.mu.Unlock()
	}()
	t := time.NewTicker(p.interval)
	defer t.Stop()
	failures := 0
	for {
		r, err := p.Read(ctx)
		if err != nil {
			r = Reading{Device: p.name, Time: time.Now().UTC(), Err: err}
			failures++
		} else {
			failures = 0
		}
		emit(r)
		if failures >= reinitAfter {
			return fmt.Errorf("%d reads failed in a row; last: %w", failures, err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Read takes a reading now.
func (p *polled) Read(ctx context.Context) (Reading, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.running {
		return Reading{}, fmt.Errorf("%s: %w", p.name, ErrNotRunning)
	}
	now := time.Now().UTC()
	fs, err := p.s.sense(ctx)
	if err != nil {
		return Reading{}, err
	}
	for _, f := range fs {
		if f.Kind == Numeric && (math.IsNaN(f.Num) || math.IsInf(f.Num, 0)) {
			return Reading{}, fmt.Errorf("%s: %s is %v", p.name, f.Name, f.Num)
		}
	}
	return Reading{Device: p.name, Time: now, Fields: fs}, nil
}

// I2CConfig configures an I²C sensor.
type I2CConfig struct {
	Name     string
	Open     BusOpener
	Addr     uint16
	Interval time.Duration // default 10s
}

func (c I2CConfig) interval() time.Duration {
	if c.Interval <= 0 {
		return 10 * time.Second
	}
	return c.Interval
}

// NewBME280 returns a Bosch BME280 (temperature, humidity, pressure),
// driven by periph's bmxx80 driver in forced mode: one measurement per
// reading, the sensor sleeps in between.
func NewBME280(cfg I2CConfig) Device {
	return &polled{name: cfg.Name, interval: cfg.interval(), s: &bme280{cfg: cfg}}
}

type bme280 struct {
	cfg I2CConfig
	bus i2c.BusCloser
	dev *bmxx80.Dev
}

func (b *bme280) init() error {
	bus, err := b.cfg.Open()
	if err != nil {
		return err
	}
	dev, err := bmxx80.NewI2C(bus, b.cfg.Addr, &bmxx80.DefaultOpts)
	if err != nil {
		bus.Close()
		return fmt.Errorf("bme280 at %#x: %w", b.cfg.Addr, err)
	}
	b.bus, b.dev = bus, dev
	return nil
}

func (b *bme280) sense(context.Context) ([]Field, error) {
	var e physic.Env
	if err := b.dev.Sense(&e); err != nil {
		return nil, fmt.Errorf("bme280 at %#x: %w", b.cfg.Addr, err)
	}
	return []Field{
		Number("temperature", e.Temperature.Celsius(), 2, "°C"),
		Number("humidity", float64(e.Humidity)/float64(physic.PercentRH), 1, "%"),
		Number("pressure", float64(e.Pressure)/float64(physic.Pascal)/100, 2, "hPa"),
	}, nil
}

func (b *bme280) close() error {
	return errors.Join(b.dev.Halt(), b.bus.Close())
}

// NewSHT3x returns a Sensirion SHT30/31/35 (temperature, humidity).
// periph has no driver for it; this one follows the datasheet: a
// single-shot measurement with high repeatability and no clock
// stretching, CRC-checked.
func NewSHT3x(cfg I2CConfig) Device {
	return &polled{name: cfg.Name, interval: cfg.interval(), s: &sht3x{cfg: cfg}}
}

type sht3x struct {
	cfg I2CConfig
	bus i2c.BusCloser
	dev i2c.Dev
}

// SHT3x datasheet (v6, 2019) §4.3: command 0x2400, measurement ≤ 15.5 ms.
var (
	sht3xMeasure = []byte{0x24, 0x00}
	sht3xWait    = 16 * time.Millisecond
)

func (s *sht3x) init() error {
	bus, err := s.cfg.Open()
	if err != nil {
		return err
	}
	s.bus, s.dev = bus, i2c.Dev{Bus: bus, Addr: s.cfg.Addr}
	return nil
}

func (s *sht3x) sense(ctx context.Context) ([]Field, error) {
	if err := s.dev.Tx(sht3xMeasure, nil); err != nil {
		return nil, fmt.Errorf("sht3x at %#x: %w", s.cfg.Addr, err)
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(sht3xWait):
	}
	var b [6]byte
	if err := s.dev.Tx(nil, b[:]); err != nil {
		return nil, fmt.Errorf("sht3x at %#x: %w", s.cfg.Addr, err)
	}
	if crc8(b[0:2]) != b[2] || crc8(b[3:5]) != b[5] {
		return nil, fmt.Errorf("sht3x at %#x: CRC mismatch in % x", s.cfg.Addr, b)
	}
	t := float64(uint16(b[0])<<8|uint16(b[1]))*175/65535 - 45
	rh := float64(uint16(b[3])<<8|uint16(b[4])) * 100 / 65535
	return []Field{Number("temperature", t, 2, "°C"), Number("humidity", rh, 1, "%")}, nil
}

func (s *sht3x) close() error { return s.bus.Close() }

// crc8 is the Sensirion CRC: polynomial 0x31, init 0xFF (datasheet §4.12).
func crc8(b []byte) byte {
	crc := byte(0xFF)
	for _, v := range b {
		crc ^= v
		for range 8 {
			if crc&0x80 != 0 {
				crc = crc<<1 ^ 0x31
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
