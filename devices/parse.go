package devices

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Parser turns one line (or a whole small file) from a serial port or a
// file into fields. Its input is untrusted: it never panics, caps what it
// returns, and reports what it cannot use as an error.
type Parser func(s string) ([]Field, error)

// maxParsedFields caps the fields one line may produce.
const maxParsedFields = 64

// ErrParse is wrapped by parser errors.
var ErrParse = errors.New("cannot parse")

// NewParser returns the parser for a config's parse key: "line" (the
// line as the string field "line"), "whole" (the text as "text"), "kv"
// (key=value pairs), "json" (a JSON object, nested keys joined with
// '.') or "regexp" (named groups of pattern).
func NewParser(kind, pattern string) (Parser, error) {
	switch kind {
	case "", "line":
		return func(s string) ([]Field, error) { return []Field{Text("line", clean(s))}, nil }, nil
	case "whole":
		return func(s string) ([]Field, error) { return []Field{Text("text", clean(s))}, nil }, nil
	case "kv":
		return parseKV, nil
	case "json":
		return parseJSON, nil
	case "regexp":
		re, err := regexp.Compile(pattern)
		if err != nil {
			return nil, err
		}
		return func(s string) ([]Field, error) { return parseRegexp(re, s) }, nil
	}
	return nil, fmt.Errorf("unknown parse %q", kind)
}

// clean makes s valid UTF-8 without control characters other than tab,
// so it can be put in a stanza and a log line as it is.
func clean(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\t' || r == 0x7f {
			return '\uFFFD'
		}
		return r
	}, s)
}

// value turns a text value into a field: a number, a boolean, or a
// string. NaN and infinities are errors: a sensor that sends them is
// broken, and a reading that carries them would mislead.
func value(name, v string) (Field, error) {
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return Field{}, fmt.Errorf("%w: %s: %s is not a measurement", ErrParse, name, v)
		}
		return Number(name, f, -1, ""), nil
	}
	switch strings.ToLower(v) {
	case "true", "on":
		return Bool(name, true), nil
	case "false", "off":
		return Bool(name, false), nil
	}
	return Text(name, clean(v)), nil
}

// validKey accepts field names that are safe in every wire format
// (XEP-0323 field names, MQTT topic levels).
func validKey(k string) bool {
	if k == "" || len(k) > 64 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// parseKV parses "temp=21.5 hum=40 door=open", separated by spaces,
// commas or semicolons; ':' works as '=' too.
func parseKV(s string) ([]Field, error) {
	if !utf8.ValidString(s) {
		return nil, fmt.Errorf("%w: not UTF-8", ErrParse)
	}
	var out []Field
	for _, tok := range strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' || r == ',' || r == ';' }) {
		k, v, ok := strings.Cut(tok, "=")
		if !ok {
			k, v, ok = strings.Cut(tok, ":")
		}
		if !ok || !validKey(k) {
			return nil, fmt.Errorf("%w: %q is not key=value", ErrParse, clean(truncateText(tok, 40)))
		}
		f, err := value(k, v)
		if err != nil {
			return nil, err
		}
		if len(out) == maxParsedFields {
			return nil, fmt.Errorf("%w: more than %d fields", ErrParse, maxParsedFields)
		}
		out = append(out, f)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no key=value pairs", ErrParse)
	}
	return out, nil
}

// parseJSON parses one JSON object of scalars; nested objects become
// "outer.inner" fields, arrays and nulls are skipped.
func parseJSON(s string) ([]Field, error) {
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var obj map[string]any
	if err := d.Decode(&obj); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrParse, err)
	}
	var out []Field
	var walk func(prefix string, m map[string]any, depth int) error
	walk = func(prefix string, m map[string]any, depth int) error {
		if depth > 4 {
			return fmt.Errorf("%w: nested deeper than 4", ErrParse)
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			name := prefix + k
			if !validKey(name) {
				return fmt.Errorf("%w: key %q", ErrParse, clean(truncateText(name, 40)))
			}
			var f Field
			switch v := m[k].(type) {
			case map[string]any:
				if err := walk(name+".", v, depth+1); err != nil {
					return err
				}
				continue
			case json.Number:
				n, err := v.Float64()
				if err != nil {
					return fmt.Errorf("%w: %s: %v", ErrParse, name, err)
				}
				f = Number(name, n, -1, "")
			case bool:
				f = Bool(name, v)
			case string:
				f = Text(name, clean(v))
			default: // arrays, null
				continue
			}
			if len(out) == maxParsedFields {
				return fmt.Errorf("%w: more than %d fields", ErrParse, maxParsedFields)
			}
			out = append(out, f)
		}
		return nil
	}
	if err := walk("", obj, 0); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no values in the object", ErrParse)
	}
	return out, nil
}

// parseRegexp returns the named groups of the first match.
func parseRegexp(re *regexp.Regexp, s string) ([]Field, error) {
	m := re.FindStringSubmatch(s)
	if m == nil {
		return nil, fmt.Errorf("%w: line does not match the pattern", ErrParse)
	}
	var out []Field
	for i, name := range re.SubexpNames() {
		if name == "" || i >= len(m) {
			continue
		}
		f, err := value(name, m[i])
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

func truncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
