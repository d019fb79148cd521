package devices

import (
	"context"
	"errors"
	"strconv"
	"time"
)

// Kind says which value of a Field is meaningful.
type Kind uint8

// Field kinds. They map to XEP-0323 field elements.
const (
	Numeric Kind = iota // Num, with Unit and Decimals
	Boolean             // Bool
	String              // Str
)

// Field is one named value of a Reading. It is a small tagged union rather
// than an interface so that building and encoding readings does not
// allocate per field.
type Field struct {
	Name string
	Kind Kind
	Num  float64
	// Decimals is the number of decimals to print for Num; -1 prints the
	// shortest representation that round-trips.
	Decimals int
	Unit     string
	Bool     bool
	Str      string
}

// Number returns a numeric field.
func Number(name string, v float64, decimals int, unit string) Field {
	return Field{Name: name, Kind: Numeric, Num: v, Decimals: decimals, Unit: unit}
}

// Bool returns a boolean field.
func Bool(name string, v bool) Field {
	return Field{Name: name, Kind: Boolean, Bool: v}
}

// Text returns a string field.
func Text(name, v string) Field {
	return Field{Name: name, Kind: String, Str: v}
}

// AppendValue appends the field's value as text, without unit.
func (f Field) AppendValue(dst []byte) []byte {
	switch f.Kind {
	case Numeric:
		return strconv.AppendFloat(dst, f.Num, 'f', f.Decimals, 64)
	case Boolean:
		return strconv.AppendBool(dst, f.Bool)
	default:
		return append(dst, f.Str...)
	}
}

// Value returns the field's value as text, without unit.
func (f Field) Value() string { return string(f.AppendValue(nil)) }

// Reading is what a device reports: a set of fields taken at one instant.
// A Reading with Err set reports a failed readout; its Fields may be empty.
type Reading struct {
	Device string
	Time   time.Time
	Fields []Field
	Err    error
}

// Device is a driver instance. Run produces readings through emit until ctx
// is cancelled; emit must not block for long (the agent's bus buffers), and
// Run must return promptly once ctx is done. Run returns nil on
// cancellation, an error only when the device cannot go on.
type Device interface {
	Name() string
	Run(ctx context.Context, emit func(Reading)) error
}

// Reader is implemented by devices that can be read on demand (XEP-0323
// momentary readout, the "read" command).
type Reader interface {
	Read(ctx context.Context) (Reading, error)
}

// Setter is implemented by writable devices (relays, outputs, serial
// writes). Set parses value itself, so every command path (ad-hoc form,
// XEP-0325, chat text, MQTT) gets the same validation. It returns the
// device state after the change.
type Setter interface {
	Set(ctx context.Context, value string) (Reading, error)
}

// ErrBadValue is wrapped by Set when value cannot be parsed or is out of
// range; callers report it as a client error, not a device failure.
var ErrBadValue = errors.New("bad value")

// ParseBool parses the switch values operators type: on/off, true/false,
// 1/0, yes/no (case-insensitive).
func ParseBool(s string) (bool, error) {
	switch lower(s) {
	case "on", "true", "1", "yes":
		return true, nil
	case "off", "false", "0", "no":
		return false, nil
	}
	return false, badValue("want on/off, true/false or 1/0, got %q", s)
}

func lower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
