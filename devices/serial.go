package devices

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.bug.st/serial"
)

// SerialConfig configures a device on a serial port (USB adapter, UART).
type SerialConfig struct {
	Name string
	Port string // /dev/ttyUSB0, /dev/serial/by-id/...
	Mode serial.Mode
	// Parse turns each line into fields; nil reports the line as "line".
	Parse Parser
	// MaxLine caps a line; longer ones are dropped with an error reading.
	// Default 4 KiB.
	MaxLine int
	// Open opens the port; nil means go.bug.st/serial's Open.
	Open func(port string, mode *serial.Mode) (serial.Port, error)
}

// Serial reads lines from a serial port; each line is a reading. When the
// port fails (a USB adapter unplugged) Run returns and the agent reopens
// it with backoff, so the device comes back when the adapter does.
type Serial struct {
	cfg SerialConfig

	mu   sync.Mutex
	port serial.Port
}

// serialPoll bounds a Read so Run notices cancellation.
const serialPoll = 200 * time.Millisecond

// NewSerial returns a read-only serial device.
func NewSerial(cfg SerialConfig) *Serial {
	if cfg.MaxLine <= 0 {
		cfg.MaxLine = 4 << 10
	}
	if cfg.Parse == nil {
		cfg.Parse, _ = NewParser("line", "")
	}
	if cfg.Open == nil {
		cfg.Open = serial.Open
	}
	return &Serial{cfg: cfg}
}

// Name returns the device name.
func (s *Serial) Name() string { return s.cfg.Name }

// Run reads lines until ctx is done or the port fails.
func (s *Serial) Run(ctx context.Context, emit func(Reading)) error {
	port, err := s.cfg.Open(s.cfg.Port, &s.cfg.Mode)
	if err != nil {
		return fmt.Errorf("open %s: %w", s.cfg.Port, err)
	}
	if err := port.SetReadTimeout(serialPoll); err != nil {
		port.Close()
		return fmt.Errorf("%s: %w", s.cfg.Port, err)
	}
	s.mu.Lock()
	s.port = port
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.port = nil
		s.mu.Unlock()
		port.Close()
	}()

	fr := framer{max: s.cfg.MaxLine}
	buf := make([]byte, 512)
	for ctx.Err() == nil {
		n, err := port.Read(buf)
		fr.feed(buf[:n], func(line []byte, tooLong bool) { emit(s.reading(line, tooLong)) })
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("read %s: %w", s.cfg.Port, err)
		}
	}
	return nil
}

func (s *Serial) reading(line []byte, tooLong bool) Reading {
	r := Reading{Device: s.cfg.Name, Time: time.Now().UTC()}
	if tooLong {
		r.Err = fmt.Errorf("%w: line longer than %d bytes dropped", ErrParse, s.cfg.MaxLine)
		return r
	}
	r.Fields, r.Err = s.cfg.Parse(string(line))
	return r
}

// framer splits a byte stream into lines at '\n' (a trailing '\r' is
// dropped), never holding more than max bytes: the rest of an overlong
// line is skipped and the line reported once as too long.
type framer struct {
	max      int
	line     []byte
	skipping bool
}

func (f *framer) feed(b []byte, out func(line []byte, tooLong bool)) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		chunk := b
		if i >= 0 {
			chunk = b[:i]
		}
		if !f.skipping {
			if len(f.line)+len(chunk) > f.max {
				f.skipping, f.line = true, f.line[:0]
				out(nil, true)
			} else {
				f.line = append(f.line, chunk...)
			}
		}
		if i < 0 {
			return
		}
		if !f.skipping {
			line := bytes.TrimSuffix(f.line, []byte("\r"))
			if len(line) > 0 {
				out(line, false)
			}
		}
		f.line, f.skipping = f.line[:0], false
		b = b[i+1:]
	}
}

// WritableSerial is a serial device that operators may write to: Set
// sends the value as one line.
type WritableSerial struct{ *Serial }

// Set writes value and a newline to the port.
func (w WritableSerial) Set(_ context.Context, value string) (Reading, error) {
	if strings.ContainsAny(value, "\r\n") || len(value) > w.cfg.MaxLine {
		return Reading{}, badValue("want one line of at most %d bytes", w.cfg.MaxLine)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.port == nil {
		return Reading{}, fmt.Errorf("%s: %w", w.cfg.Name, ErrNotRunning)
	}
	if _, err := w.port.Write([]byte(value + "\n")); err != nil {
		return Reading{}, fmt.Errorf("write %s: %w", w.cfg.Port, err)
	}
	return Reading{Device: w.cfg.Name, Time: time.Now().UTC(), Fields: []Field{Text("sent", clean(value))}}, nil
}
