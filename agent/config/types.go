package config

import (
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a Go duration string in TOML ("30s", "1m30s").
type Duration struct{ time.Duration }

// UnmarshalText parses a duration; negative durations are errors.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q (use e.g. \"30s\", \"5m\")", b)
	}
	if v < 0 {
		return fmt.Errorf("negative duration %q", b)
	}
	d.Duration = v
	return nil
}

// MarshalText formats the duration as Go does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Size is a byte count: an integer, or a string with a unit such as
// "16MiB", "4KiB", "64KB", "1.5MiB".
type Size int64

var sizeUnits = []struct {
	suffix string
	mult   float64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1},
}

// UnmarshalText parses a size. TOML integers arrive here too.
func (s *Size) UnmarshalText(b []byte) error {
	str := strings.TrimSpace(string(b))
	mult := 1.0
	for _, u := range sizeUnits {
		if num, ok := strings.CutSuffix(str, u.suffix); ok {
			str, mult = strings.TrimSpace(num), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(strings.ReplaceAll(str, "_", ""), 64)
	if err != nil || str == "" || math.IsNaN(f) {
		return fmt.Errorf("invalid size %q (use e.g. \"16MiB\", \"4KiB\")", b)
	}
	f *= mult
	if f < 0 || f > math.MaxInt64/2 {
		return fmt.Errorf("size %q out of range", b)
	}
	*s = Size(f)
	return nil
}

// String formats the size with the largest binary unit that divides it.
func (s Size) String() string {
	switch {
	case s >= 1<<30 && s%(1<<30) == 0:
		return strconv.FormatInt(int64(s>>30), 10) + "GiB"
	case s >= 1<<20 && s%(1<<20) == 0:
		return strconv.FormatInt(int64(s>>20), 10) + "MiB"
	case s >= 1<<10 && s%(1<<10) == 0:
		return strconv.FormatInt(int64(s>>10), 10) + "KiB"
	}
	return strconv.FormatInt(int64(s), 10) + "B"
}

// Secret holds a password. It prints and logs as "[redacted]"; only
// Reveal returns the value.
type Secret string

const redacted = "[redacted]"

// Reveal returns the secret itself, for the code that must use it.
func (s Secret) Reveal() string { return string(s) }

// String hides the value from fmt.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString hides the value from %#v.
func (s Secret) GoString() string { return strconv.Quote(s.String()) }

// LogValue hides the value from log/slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText hides the value from encoders.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
