package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/stanzad/stanzad/agent/history"
	"github.com/stanzad/stanzad/xmpp"
)

// History is what the control plane reads from the agent's reading
// history.
type History interface {
	Query(device, field string, from, to time.Time) ([]history.Point, error)
	Series() []history.Series
	Oldest() time.Time
}

// Errors of history requests; each says what the user can ask instead.
var (
	ErrNoHistory    = errors.New("this agent keeps no history ([agent] history_max is 0, or its directory cannot be opened)")
	ErrUnknownField = errors.New("no such field")
)

// reqError is a request error whose text is all the user needs; it
// wraps kind for the stanza error condition.
type reqError struct {
	msg  string
	kind error
}

func (e reqError) Error() string { return e.msg }
func (e reqError) Unwrap() error { return e.kind }

// HistoryRequest is what history (and plot) answer: a device, one field
// or every field it has history for, over the last Span (0: the last
// DefaultHistorySpan, or as much as the history holds if that is less).
type HistoryRequest struct {
	Device, Field string
	Span          time.Duration
}

// DefaultHistorySpan is the span when the request names none.
const DefaultHistorySpan = 24 * time.Hour

// ParseHistoryArgs reads the "<device> [field] [duration]" of verb
// (history or plot) as typed in chat. A duration is Go's (90m, 6h) or
// whole days (7d).
func ParseHistoryArgs(verb string, args []string) (HistoryRequest, error) {
	usage := fmt.Sprintf(`usage: %[1]s <device> [field] [duration], e.g. "%[1]s greenhouse temperature 12h"`, verb)
	if len(args) < 1 || len(args) > 3 {
		return HistoryRequest{}, fmt.Errorf("%w: %s", ErrChatSyntax, usage)
	}
	req := HistoryRequest{Device: args[0]}
	rest := args[1:]
	if len(rest) > 0 {
		if d, err := ParseSpan(rest[len(rest)-1]); err == nil {
			req.Span = d
			rest = rest[:len(rest)-1]
		} else if len(rest) == 2 {
			return HistoryRequest{}, fmt.Errorf("%w: %v", ErrChatSyntax, err)
		}
	}
	if len(rest) == 1 {
		req.Field = rest[0]
	}
	return req, nil
}

// ParseSpan parses a history duration: Go's syntax (90m, 6h30m) or whole
// days (7d), positive and at most a year.
func ParseSpan(s string) (time.Duration, error) {
	var d time.Duration
	var err error
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, perr := strconv.Atoi(days)
		if perr != nil {
			err = perr
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		d, err = time.ParseDuration(s)
	}
	switch {
	case err != nil:
		return 0, fmt.Errorf("%q is not a duration (e.g. 90m, 12h, 7d)", s)
	case d <= 0 || d > 366*24*time.Hour:
		return 0, fmt.Errorf("duration %s: must be more than 0 and at most a year", s)
	}
	return d, nil
}

// HistoryAnswer is the history of one device over a span.
type HistoryAnswer struct {
	Device   string
	From, To time.Time
	Fields   []FieldHistory
}

// FieldHistory is one field's points.
type FieldHistory struct {
	Field, Unit string
	Points      []history.Point
}

// History answers a history request. Viewers and operators; debug-logged
// like read.
func (pl *Plane) History(ctx context.Context, c Caller, req HistoryRequest) (ans HistoryAnswer, err error) {
	start := time.Now()
	defer func() {
		pl.audit(ctx, c, slog.LevelDebug, "history", []string{req.Device, req.Field, req.Span.String()}, err, time.Since(start))
	}()
	return pl.history(c, req)
}

// history is History without the audit line (plot writes its own).
func (pl *Plane) history(c Caller, req HistoryRequest) (ans HistoryAnswer, err error) {
	if c.Role < RoleViewer {
		return ans, ErrForbidden
	}
	h := pl.host.History()
	if h == nil {
		return ans, ErrNoHistory
	}
	var fields []history.Series
	for _, s := range h.Series() {
		if s.Device == req.Device {
			fields = append(fields, s)
		}
	}
	if len(fields) == 0 {
		if _, ok := pl.host.Device(req.Device); ok {
			return ans, reqError{req.Device + " has no history yet (no numeric readings since history began)", ErrUnknownField}
		}
		return ans, fmt.Errorf("%w %q (devices: %s)", ErrUnknownDevice, req.Device, pl.deviceNames())
	}
	if req.Field != "" {
		names := make([]string, len(fields))
		var match []history.Series
		for i, s := range fields {
			names[i] = s.Field
			if s.Field == req.Field {
				match = append(match, s)
			}
		}
		if len(match) == 0 {
			return ans, reqError{fmt.Sprintf("%s has no field %q; fields: %s", req.Device, req.Field, strings.Join(names, ", ")), ErrUnknownField}
		}
		fields = match
	}
	ans.To = time.Now()
	span := req.Span
	oldest := h.Oldest()
	kept := ans.To.Sub(oldest)
	switch {
	case span == 0:
		span = min(DefaultHistorySpan, kept.Truncate(time.Minute)+time.Minute)
	case !oldest.IsZero() && span > kept+kept/10+history.Bucket:
		// Clearly longer than what is kept (by a tenth): say so, rather
		// than draw a mostly empty chart. "24h" of a history of 23h58m
		// is what the user meant.
		return HistoryAnswer{}, reqError{fmt.Sprintf("the history goes back %s (to %s); ask for %s or less",
			roundSpan(kept), oldest.Local().Format("Jan 2 15:04"), roundSpan(kept)), ErrBadRequest}
	}
	ans.From = ans.To.Add(-span)
	ans.Device = req.Device
	for _, s := range fields {
		pts, err := h.Query(s.Device, s.Field, ans.From, ans.To)
		if err != nil {
			return HistoryAnswer{}, err
		}
		ans.Fields = append(ans.Fields, FieldHistory{Field: s.Field, Unit: s.Unit, Points: pts})
	}
	return ans, nil
}

// roundSpan shows a span the way a person asks for one: 7d, 12h, 1h30m,
// 5m (whole days from two days on, else whole minutes, rounded down).
func roundSpan(d time.Duration) string {
	const day = 24 * time.Hour
	if d >= 2*day {
		return strconv.Itoa(int(d/day)) + "d"
	}
	h, m := int(d/time.Hour), int(d%time.Hour/time.Minute)
	switch {
	case h == 0:
		return strconv.Itoa(max(1, m)) + "m"
	case m == 0:
		return strconv.Itoa(h) + "h"
	}
	return strconv.Itoa(h) + "h" + strconv.Itoa(m) + "m"
}

// sparkWidth is the sparkline's width in chat: it fits a phone's line.
const sparkWidth = 32

// Text is the history as chat text: per field a sparkline, then the
// minimum and maximum with their local times and the mean.
func (a HistoryAnswer) Text() string {
	var b strings.Builder
	span := roundSpan(a.To.Sub(a.From))
	for i, f := range a.Fields {
		if i > 0 {
			b.WriteString("\n")
		}
		s, ok := history.Summarize(f.Points)
		if !ok {
			fmt.Fprintf(&b, "%s %s, last %s: no readings", a.Device, f.Field, span)
			continue
		}
		fmt.Fprintf(&b, "%s %s, last %s (%d readings):\n%s\n", a.Device, f.Field, span, s.N,
			history.Sparkline(f.Points, a.From, a.To, sparkWidth))
		fmt.Fprintf(&b, "min %s at %s, avg %s, max %s at %s",
			withUnit(s.Min, f.Unit), clock(s.MinAt, a.To), withUnit(s.Avg, f.Unit), withUnit(s.Max, f.Unit), clock(s.MaxAt, a.To))
	}
	return b.String()
}

// withUnit formats a value with at most two decimals, and its unit.
func withUnit(v float64, unit string) string {
	s := strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64)
	if unit != "" {
		s += " " + unit
	}
	return s
}

// clock is a local time of day, with the date when it is not within the
// last day.
func clock(t, now time.Time) string {
	if now.Sub(t) < 24*time.Hour {
		return t.Local().Format("15:04")
	}
	return t.Local().Format("Jan 2 15:04")
}

// historyRows bounds the rows of an ad-hoc history answer: a week of
// one-minute buckets would not fit in a stanza.
const historyRows = 500

func (pl *Plane) historyForm() *xmpp.Form {
	dev := xmpp.FormField{Var: "device", Type: xmpp.FieldListSingle, Label: "Device", Required: true}
	seen := map[string]bool{}
	if h := pl.host.History(); h != nil {
		for _, s := range h.Series() {
			if !seen[s.Device] {
				seen[s.Device] = true
				dev.Options = append(dev.Options, xmpp.FormOption{Label: s.Device, Value: s.Device})
			}
		}
	}
	return &xmpp.Form{Type: xmpp.FormForm, Title: "History of a sensor", Fields: []xmpp.FormField{
		dev,
		{Var: "field", Type: xmpp.FieldTextSingle, Label: "Field", Desc: "One field, e.g. temperature; empty for every field"},
		{Var: "duration", Type: xmpp.FieldTextSingle, Label: "How far back", Desc: "e.g. 90m, 12h, 7d; empty for the last day"},
	}}
}

// adhocHistory answers with each field's sparkline and summary as text,
// and its points (downsampled to at most historyRows per field) in a
// hidden field "csv" for scripts (stanzactl history), one value of
// lines: a header, then time (RFC 3339 in UTC, milliseconds), field,
// min, avg, max, readings.
func (pl *Plane) adhocHistory(ctx context.Context, r *xmpp.CommandRequest) (*xmpp.CommandResponse, error) {
	c, req, first, err := pl.historyStage(ctx, r, "History of a sensor")
	if first != nil || err != nil {
		return first, err
	}
	ans, err := pl.History(ctx, c, req)
	if err != nil {
		return nil, wrapStanza(err)
	}
	res := &xmpp.Form{Type: xmpp.FormResult, Title: "History of " + ans.Device, Fields: ans.textFields()}
	rows := []string{"time,field,min,avg,max,readings"}
	for _, f := range ans.Fields {
		for _, p := range history.Downsample(f.Points, ans.From, ans.To, historyRows) {
			rows = append(rows, fmt.Sprintf("%s,%s,%s,%s,%s,%d", p.T.UTC().Format(csvTime), f.Field,
				num(p.Min), num(p.Avg), num(p.Max), p.N))
		}
	}
	res.Fields = append(res.Fields, xmpp.FormField{Var: "csv", Type: xmpp.FieldHidden, Values: []string{strings.Join(rows, "\n")}})
	return &xmpp.CommandResponse{Form: res}, nil
}

// historyStage is the part history and plot share as ad-hoc commands:
// the caller and rate limit, the form on the first stage (first, to
// return as it is), then the submitted request. err is a stanza error.
func (pl *Plane) historyStage(ctx context.Context, r *xmpp.CommandRequest, title string) (c Caller, req HistoryRequest, first *xmpp.CommandResponse, err error) {
	if c, err = pl.adhocStart(ctx, r); err != nil {
		return c, req, nil, wrapStanza(err)
	}
	if r.Form == nil {
		if c.Role < RoleViewer {
			return c, req, nil, wrapStanza(ErrForbidden)
		}
		f := pl.historyForm()
		f.Title = title
		return c, req, &xmpp.CommandResponse{Form: f, Next: true, Last: true}, nil
	}
	if req, err = historyRequest(r.Form); err != nil {
		return c, req, nil, wrapStanza(err)
	}
	return c, req, nil, nil
}

// textFields is the answer as result fields: per field a text-multi
// labelled with its title, holding the sparkline and the summary.
func (a HistoryAnswer) textFields() []xmpp.FormField {
	var out []xmpp.FormField
	for _, f := range a.Fields {
		one := HistoryAnswer{Device: a.Device, From: a.From, To: a.To, Fields: []FieldHistory{f}}
		lines := strings.Split(one.Text(), "\n")
		out = append(out, resultMulti(f.Field, lines[0], lines[1:]))
	}
	return out
}

// csvTime is the time format of history rows.
const csvTime = "2006-01-02T15:04:05.000Z07:00"

// num is a value as scripts read it: the shortest form that round-trips.
func num(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// historyRequest reads a submitted history (or plot) form.
func historyRequest(f *xmpp.Form) (HistoryRequest, error) {
	req := HistoryRequest{Device: f.Value("device"), Field: f.Value("field")}
	if req.Device == "" {
		return req, fmt.Errorf("%w: no device chosen", ErrBadRequest)
	}
	if d := f.Value("duration"); d != "" {
		var err error
		if req.Span, err = ParseSpan(d); err != nil {
			return req, fmt.Errorf("%w: %v", ErrBadRequest, err)
		}
	}
	return req, nil
}
