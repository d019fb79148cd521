package config

import (
	"bytes"
	"strconv"

	"github.com/pelletier/go-toml/v2"
)

// Placeholder stands for a secret in a config shown to an operator
// (ad-hoc "config", stanzactl config get). Pushed back unchanged, it
// keeps the running secret.
const Placeholder = "<secret>"

var quotedPlaceholder = strconv.Quote(Placeholder)

// Redact returns data with every inline password value replaced by
// "<secret>". Everything else — comments, order, layout — is kept as
// written. A document that does not parse is returned with what could be
// found redacted; a config that runs always parses.
func Redact(data []byte) []byte {
	ix := newIndex(data)
	return replaceSpans(data, ix.spans, func(span) []byte { return []byte(quotedPlaceholder) })
}

// Unredact puts the running secrets back into a pushed document: every
// inline password whose value is "<secret>" gets the value written at the
// same key in running (as it is written there). A placeholder at a key
// where running has no password is an error with its line: the secret it
// stands for does not exist.
func Unredact(pushed, running []byte, name string) ([]byte, error) {
	ix := newIndex(pushed)
	old := newIndex(running)
	have := make(map[string]span, len(old.spans))
	for _, sp := range old.spans {
		have[sp.path] = sp
	}
	var todo []span
	var errs Errors
	newDest, oldDest := sinkDestinations(pushed), sinkDestinations(running)
	for _, sp := range ix.spans {
		if string(pushed[sp.start:sp.end]) != quotedPlaceholder && !isPlaceholder(pushed[sp.start:sp.end]) {
			continue
		}
		msg := ""
		if _, ok := have[sp.path]; !ok {
			msg = Placeholder + " stands for the running secret, but the running config has no " + sp.path + "; write the password"
		} else if table := parent(sp.path); newDest[table] != oldDest[table] {
			// Sinks moved: the secret written at this place belongs to
			// another destination, and must not travel to this one.
			msg = Placeholder + " stands for the secret of " + oldDest[table] + " at " + table + " in the running config, but here " +
				table + " is " + newDest[table] + "; write the password"
		}
		if msg != "" {
			errs = append(errs, &Error{File: name, Line: ix.line(sp.start), Key: sp.path, Msg: msg})
			continue
		}
		todo = append(todo, sp)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return replaceSpans(pushed, todo, func(sp span) []byte {
		o := have[sp.path]
		return running[o.start:o.end]
	}), nil
}

// isPlaceholder reports whether a TOML string literal (any quoting)
// holds exactly "<secret>".
func isPlaceholder(lit []byte) bool {
	lit = bytes.Trim(lit, `"'`)
	return string(lit) == Placeholder
}

// replaceSpans returns data with each span (in document order) replaced.
func replaceSpans(data []byte, spans []span, with func(span) []byte) []byte {
	if len(spans) == 0 {
		return data
	}
	out := make([]byte, 0, len(data))
	last := 0
	for _, sp := range spans {
		out = append(out, data[last:sp.start]...)
		out = append(out, with(sp)...)
		last = sp.end
	}
	return append(out, data[last:]...)
}

// sinkDestinations names, per [[sink]] table path ("sink[1]"), where the
// sink sends: what a secret in that table belongs to.
func sinkDestinations(data []byte) map[string]string {
	var doc struct {
		Sink []struct {
			Kind, To, Room, Service, Node string
		} `toml:"sink"`
	}
	toml.Unmarshal(data, &doc) // a document that does not decode has no destinations to mix up
	out := make(map[string]string, len(doc.Sink))
	for i, s := range doc.Sink {
		out["sink["+strconv.Itoa(i)+"]"] = s.Kind + " " + s.To + s.Room + s.Service + " " + s.Node
	}
	return out
}
