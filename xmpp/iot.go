package xmpp

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// NSControl is XEP-0325 (Internet of Things - Control).
const NSControl = "urn:xmpp:iot:control"

// Limits on XEP-0323/0325 requests.
const (
	maxIoTNodes  = 64
	maxIoTParams = 64
	maxIoTString = 1024
)

// ReadoutRequest is a parsed XEP-0323 <req/>.
type ReadoutRequest struct {
	SeqNr uint64
	// Nodes and Fields filter the readout; empty means all.
	Nodes  []string
	Fields []string
	// Momentary reports whether momentary values were asked for (or no
	// field type at all, which XEP-0323 §3.1 reads as all types).
	Momentary bool
	// Historical reports whether any historical field type (or all) was
	// asked for; From and To, when not zero, bound the historical values.
	Historical bool
	From, To   time.Time
}

// readout field type attributes of <req/> (XEP-0323 §3.1).
var readoutTypes = []string{"momentary", "peak", "status", "computed", "identity",
	"historicalSecond", "historicalMinute", "historicalHour", "historicalDay",
	"historicalWeek", "historicalMonth", "historicalQuarter", "historicalYear",
	"historicalOther", "all"}

// ParseReadoutRequest parses a XEP-0323 <req xmlns='urn:xmpp:iot:sensordata'/>.
func ParseReadoutRequest(e *Element) (ReadoutRequest, error) {
	var r ReadoutRequest
	seq := e.Attr("seqnr")
	n, err := strconv.ParseUint(seq, 10, 64)
	if err != nil {
		return r, fmt.Errorf("seqnr %q: want an unsigned integer", seq)
	}
	r.SeqNr = n
	any := false
	for _, t := range readoutTypes {
		if v := e.Attr(t); v != "" {
			b, err := ParseFormBool(v)
			if err != nil {
				return r, fmt.Errorf("%s=%q: want true or false", t, v)
			}
			if b {
				any = true
				if t == "momentary" || t == "all" {
					r.Momentary = true
				}
				if t == "all" || strings.HasPrefix(t, "historical") {
					r.Historical = true
				}
			}
		}
	}
	if !any {
		// XEP-0323 reads no field type as all of them; a bare request
		// gets the momentary values only, so it never pulls the whole
		// history by accident. Historical values are asked for by name.
		r.Momentary = true
	}
	for _, b := range []struct {
		attr string
		t    *time.Time
	}{{"from", &r.From}, {"to", &r.To}} {
		if v := e.Attr(b.attr); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return r, fmt.Errorf("%s=%q: want an xs:dateTime with its zone, e.g. 2026-11-28T22:00:00Z", b.attr, v)
			}
			*b.t = t
		}
	}
	if !r.From.IsZero() && !r.To.IsZero() && !r.From.Before(r.To) {
		return r, fmt.Errorf("from=%q is not before to=%q", e.Attr("from"), e.Attr("to"))
	}
	for _, c := range e.Children {
		if c.Space != NSSensorData {
			continue
		}
		var err error
		switch c.Name {
		case "node":
			r.Nodes, err = appendNamed(r.Nodes, c, "nodeId", maxIoTNodes)
		case "field":
			r.Fields, err = appendNamed(r.Fields, c, "name", maxIoTParams)
		}
		if err != nil {
			return r, err
		}
	}
	return r, nil
}

// appendNamed appends the attr of element c (a <node nodeId/> or a
// <field name/> filter) to list, refusing a missing value and more than
// max entries.
func appendNamed(list []string, c *Element, attr string, max int) ([]string, error) {
	v := c.Attr(attr)
	if v == "" {
		return list, fmt.Errorf("<%s/> without %s", c.Name, attr)
	}
	if len(list) == max {
		return list, fmt.Errorf("more than %d %ss", max, c.Name)
	}
	return append(list, v), nil
}

// ControlParam is one typed XEP-0325 control parameter.
type ControlParam struct {
	Type  string // boolean, color, date, dateTime, double, duration, int, long, string, time
	Name  string
	Value string // validated for Type; booleans normalized to "true"/"false"
}

// ControlSet is a parsed XEP-0325 <set/>: parameters applied to the
// listed nodes, or, without nodes, to the parameters' own names.
type ControlSet struct {
	Nodes  []string
	Params []ControlParam
}

// The syntax checks of XEP-0325's color, time and duration values. They
// are plain functions rather than regular expressions: a compiled
// expression lives for the whole process (2.5-8 KB each), for values an
// operator sets now and then.

// isColor reports whether v is RRGGBB or RRGGBBAA in hex.
func isColor(v string) bool {
	if len(v) != 6 && len(v) != 8 {
		return false
	}
	for i := range len(v) {
		if !isHex(v[i]) {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// digits is the length of the run of decimal digits s starts with.
func digits(s string) int {
	n := 0
	for n < len(s) && isDigit(s[n]) {
		n++
	}
	return n
}

// isClockTime reports whether v is an xs:time without a zone:
// hh:mm:ss with hours 00-23, and up to nine digits of fraction.
func isClockTime(v string) bool {
	if len(v) < 8 || v[2] != ':' || v[5] != ':' {
		return false
	}
	hh, mm, ss := v[0:2], v[3:5], v[6:8]
	if digits(hh) != 2 || digits(mm) != 2 || digits(ss) != 2 ||
		hh > "23" || mm[0] > '5' || ss[0] > '5' {
		return false
	}
	frac := v[8:]
	if frac == "" {
		return true
	}
	n := digits(frac[1:])
	return frac[0] == '.' && n >= 1 && n <= 9 && n == len(frac)-1
}

// isDuration reports whether v is an xs:duration: an optional minus, P,
// then any of nY nM nD in that order, and T followed by any of nH nM nS
// (seconds may have a fraction), at least one part, and T only before a
// time part.
func isDuration(v string) bool {
	s, ok := strings.CutPrefix(strings.TrimPrefix(v, "-"), "P")
	if !ok {
		return false
	}
	date, clock, hasT := strings.Cut(s, "T")
	if !durationParts(date, "YMD") || hasT && (clock == "" || !durationParts(clock, "HMS")) {
		return false
	}
	return date != "" || hasT
}

// durationParts reports whether s is a run of number-unit pairs whose
// units appear in order in units, each at most once. Only S takes a
// fraction.
func durationParts(s, units string) bool {
	for s != "" {
		n := digits(s)
		if n == 0 {
			return false
		}
		s = s[n:]
		frac := s != "" && s[0] == '.'
		if frac {
			m := digits(s[1:])
			if m == 0 {
				return false
			}
			s = s[1+m:]
		}
		if s == "" {
			return false
		}
		k := strings.IndexByte(units, s[0])
		if k < 0 || frac && s[0] != 'S' {
			return false
		}
		units, s = units[k+1:], s[1:]
	}
	return true
}

// ParseControlSet parses a XEP-0325 <set xmlns='urn:xmpp:iot:control'/>
// and checks every value's syntax for its type, so a bad value is refused
// before anything is changed.
func ParseControlSet(e *Element) (ControlSet, error) {
	var s ControlSet
	for _, c := range e.Children {
		if c.Space != NSControl {
			continue
		}
		if c.Name == "node" {
			var err error
			if s.Nodes, err = appendNamed(s.Nodes, c, "nodeId", maxIoTNodes); err != nil {
				return s, err
			}
			continue
		}
		p := ControlParam{Type: c.Name, Name: c.Attr("name"), Value: c.Attr("value")}
		if p.Name == "" {
			return s, fmt.Errorf("<%s/> without name", c.Name)
		}
		v, err := checkControlValue(p.Type, p.Value)
		if err != nil {
			return s, fmt.Errorf("%s: %w", p.Name, err)
		}
		p.Value = v
		if len(s.Params) == maxIoTParams {
			return s, fmt.Errorf("more than %d parameters", maxIoTParams)
		}
		s.Params = append(s.Params, p)
	}
	if len(s.Params) == 0 {
		return s, fmt.Errorf("no control parameters")
	}
	return s, nil
}

func checkControlValue(typ, v string) (string, error) {
	bad := func(want string) (string, error) {
		return "", fmt.Errorf("%s value %q: want %s", typ, v, want)
	}
	switch typ {
	case "boolean":
		b, err := ParseFormBool(v)
		if err != nil {
			return bad("true, false, 1 or 0")
		}
		return strconv.FormatBool(b), nil
	case "int":
		if _, err := strconv.ParseInt(v, 10, 32); err != nil {
			return bad("a 32-bit integer")
		}
	case "long":
		if _, err := strconv.ParseInt(v, 10, 64); err != nil {
			return bad("a 64-bit integer")
		}
	case "double":
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return bad("a finite number")
		}
	case "string":
		if len(v) > maxIoTString {
			return bad(fmt.Sprintf("at most %d bytes", maxIoTString))
		}
	case "color":
		if !isColor(v) {
			return bad("RRGGBB or RRGGBBAA in hex")
		}
	case "date":
		if _, err := time.Parse(time.DateOnly, v); err != nil {
			return bad("YYYY-MM-DD")
		}
	case "time":
		if !isClockTime(v) {
			return bad("hh:mm:ss")
		}
	case "dateTime":
		if _, err := time.Parse(time.RFC3339Nano, v); err != nil {
			return bad("an XEP-0082 date and time such as 2026-11-24T10:00:00Z")
		}
	case "duration":
		if !isDuration(v) {
			return bad("an xs:duration such as PT30S")
		}
	default:
		return "", fmt.Errorf("unknown parameter type <%s/>", typ)
	}
	return v, nil
}
