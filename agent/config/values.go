package config

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// Duration is a Go duration string in TOML, such as "30s" or "1m30s".
type Duration struct{ time.Duration }

// UnmarshalText parses a duration; negative durations are errors.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q (want e.g. \"30s\")", b)
	}
	if v < 0 {
		return fmt.Errorf("negative duration %q", b)
	}
	d.Duration = v
	return nil
}

// MarshalText formats d as time.Duration.String does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Size is a number of bytes: a TOML integer, or a string such as "512",
// "64KB", "4KiB", "16MiB" or "1.5GiB". Units are case-sensitive.
type Size int64

// Longer suffixes first, so "KiB" is not taken for "B".
var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1},
}

// UnmarshalText parses a size string. A TOML integer is stored as is
// (go-toml sees an int64), so validation, not this, rejects negatives.
func (s *Size) UnmarshalText(b []byte) error {
	num, mult := strings.TrimSpace(string(b)), int64(1)
	for _, u := range sizeUnits {
		if n, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	bad := fmt.Errorf("invalid size %q (want e.g. \"16MiB\", \"4KiB\", \"512\")", b)
	if num == "" || strings.HasPrefix(num, "-") {
		return bad
	}
	if n, err := strconv.ParseInt(num, 0, 64); err == nil {
		if n > math.MaxInt64/mult {
			return fmt.Errorf("size %q is too large", b)
		}
		*s = Size(n * mult)
		return nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || !(f >= 0) { // !(f >= 0) also catches NaN
		return bad
	}
	if f *= float64(mult); f >= math.MaxInt64 {
		return fmt.Errorf("size %q is too large", b)
	}
	*s = Size(f)
	return nil
}

// String formats s with the largest binary unit that divides it exactly.
func (s Size) String() string {
	for i := 2; i >= 0; i-- { // GiB, MiB, KiB
		if u := sizeUnits[i]; s != 0 && int64(s)%u.mult == 0 {
			return strconv.FormatInt(int64(s)/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

// MarshalText formats s as String does.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Secret is a password. However it is printed, formatted, logged or
// encoded it shows as "[redacted]" ("" when empty); only Reveal returns it.
type Secret string

const redacted = "[redacted]"

// Reveal returns the secret itself, for the code that must use it.
func (s Secret) Reveal() string { return string(s) }

// String returns "[redacted]", or "" for an empty secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// Format hides the value from every fmt verb, %x and %#v included.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'q' || f.Flag('#') {
		fmt.Fprint(f, strconv.Quote(s.String()))
		return
	}
	fmt.Fprint(f, s.String())
}

// LogValue hides the value from log/slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText hides the value from encoders (JSON, TOML).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Endpoints is [xmpp] server: one "host:port", or a list of them tried in
// order with failover. Empty means DNS SRV.
type Endpoints []string

// UnmarshalTOML takes a string or an array of strings (go-toml's unstable
// Unmarshaler, enabled by decodeInto: a plain []string would refuse the
// single string every existing config has).
func (e *Endpoints) UnmarshalTOML(data []byte) error {
	var v struct{ V any }
	if err := toml.Unmarshal(append([]byte("V = "), data...), &v); err != nil {
		return errors.New(`want "host:port" or a list of them`)
	}
	switch t := v.V.(type) {
	case string:
		*e = Endpoints{t}
		return nil
	case []any:
		list := make(Endpoints, 0, len(t))
		for _, x := range t {
			s, ok := x.(string)
			if !ok {
				return errors.New(`want "host:port" or a list of them`)
			}
			list = append(list, s)
		}
		*e = list
		return nil
	}
	return errors.New(`want "host:port" or a list of them`)
}
