package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/stanzad/stanzad/agent/telemetry"
	"github.com/stanzad/stanzad/devices"
	"github.com/stanzad/stanzad/xmpp"
)

// Command errors. Every command path maps them to its wire format in one
// place (StanzaError for XMPP; chat text shows the message).
var (
	ErrUnknownDevice = errors.New("unknown device")
	ErrNotWritable   = errors.New("device is not writable")
	ErrNotReadable   = errors.New("device cannot be read on demand")
	ErrForbidden     = errors.New("not allowed")
	ErrDevice        = errors.New("device failure")
)

// Caller identifies who runs a command and through which path, for the
// ACL and the audit log.
type Caller struct {
	JID  xmpp.JID
	Role Role
	Via  string // "chat", "adhoc", "xep-0325", "mqtt"
}

// Read returns momentary readings of the named devices, or of every
// device when names is empty. Devices that only report events (serial
// lines, GPIO edges, file changes, MQTT topics) answer with their last
// reading, whose Time says how old it is, or an ErrNoReading error.
func (pl *Plane) Read(ctx context.Context, c Caller, names []string) (_ []devices.Reading, err error) {
	start := time.Now()
	defer func() { pl.audit(ctx, c, slog.LevelDebug, "read", names, err, time.Since(start)) }()
	if c.Role < RoleViewer {
		return nil, ErrForbidden
	}
	var targets []devices.Device
	if len(names) == 0 {
		targets = pl.host.Devices()
	} else {
		for _, n := range names {
			d, ok := pl.host.Device(n)
			if !ok {
				return nil, fmt.Errorf("%w %q (devices: %s)", ErrUnknownDevice, n, pl.deviceNames())
			}
			targets = append(targets, d)
		}
	}
	out := make([]devices.Reading, 0, len(targets))
	for _, d := range targets {
		rd, ok := d.(devices.Reader)
		if !ok {
			r, ok := pl.host.Last(d.Name())
			if !ok {
				r = devices.Reading{Device: d.Name(), Time: time.Now().UTC(), Err: ErrNoReading}
			}
			out = append(out, r)
			continue
		}
		r, err := pl.calls.do(ctx, d.Name(), rd.Read)
		if err != nil {
			r = devices.Reading{Device: d.Name(), Time: time.Now().UTC(), Err: err}
		}
		out = append(out, r)
	}
	return out, nil
}

// Set writes value to a writable device. Operators only; audit-logged.
func (pl *Plane) Set(ctx context.Context, c Caller, name, value string) (r devices.Reading, err error) {
	start := time.Now()
	defer func() {
		pl.audit(ctx, c, slog.LevelInfo, "set", []string{name, value}, err, time.Since(start))
	}()
	if c.Role < RoleOperator {
		return r, ErrForbidden
	}
	d, ok := pl.host.Device(name)
	if !ok {
		return r, fmt.Errorf("%w %q (devices: %s)", ErrUnknownDevice, name, pl.deviceNames())
	}
	s, ok := d.(devices.Setter)
	if !ok {
		return r, fmt.Errorf("%q: %w (writable: %s)", name, ErrNotWritable, pl.writableNames())
	}
	r, err = pl.calls.do(ctx, name, func(ctx context.Context) (devices.Reading, error) {
		return s.Set(ctx, value)
	})
	if err != nil && !errors.Is(err, devices.ErrBadValue) {
		err = fmt.Errorf("%w: %s: %w", ErrDevice, name, err)
	}
	return r, err
}

// ErrNoReading is the read of an event device that has reported nothing
// since it started.
var ErrNoReading = errors.New("no reading yet")

// deviceCalls bounds on-demand device calls (Read, Set): a driver that
// hangs (a wedged bus, a serial write that never drains) must not hang the
// command, nor pile up goroutines. A call that does not return within
// timeout is abandoned with an error; until it does return, further calls
// to that device fail at once.
type deviceCalls struct {
	timeout time.Duration // default 10s
	mu      sync.Mutex
	busy    map[string]bool
}

// ErrDeviceBusy is returned while an earlier call to the device has not
// returned.
var ErrDeviceBusy = errors.New("device has not answered an earlier request yet")

func (dc *deviceCalls) do(ctx context.Context, name string, call func(context.Context) (devices.Reading, error)) (devices.Reading, error) {
	dc.mu.Lock()
	if dc.busy == nil {
		dc.busy = make(map[string]bool)
	}
	if dc.busy[name] {
		dc.mu.Unlock()
		return devices.Reading{}, fmt.Errorf("%s: %w", name, ErrDeviceBusy)
	}
	dc.busy[name] = true
	dc.mu.Unlock()

	timeout := dc.timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	type result struct {
		r   devices.Reading
		err error
	}
	ch := make(chan result, 1)
	go func() { // owned by the call; ends when the driver returns
		defer cancel()
		r, err := call(ctx)
		dc.mu.Lock()
		delete(dc.busy, name)
		dc.mu.Unlock()
		ch <- result{r, err}
	}()
	select {
	case res := <-ch:
		return res.r, res.err
	case <-ctx.Done():
		// The call's own cancel also ends ctx, just after it has left its
		// result: a call that returned in time is not a timeout.
		select {
		case res := <-ch:
			return res.r, res.err
		default:
		}
		return devices.Reading{}, fmt.Errorf("%s: no answer within %v", name, timeout)
	}
}

// audit writes one line per command: who, what, result, duration. Control
// commands log at level (info), reads at debug; failures and refusals
// always at warn.
func (pl *Plane) audit(ctx context.Context, c Caller, level slog.Level, cmd string, args []string, err error, d time.Duration) {
	result := "ok"
	if err != nil {
		result = err.Error()
		level = max(level, slog.LevelWarn)
	}
	pl.log.LogAttrs(ctx, level, "audit",
		slog.String("who", c.JID.Bare().String()),
		slog.String("jid", c.JID.String()),
		slog.String("role", c.Role.String()),
		slog.String("via", c.Via),
		slog.String("command", cmd),
		slog.Any("args", args),
		slog.String("result", result),
		slog.Duration("duration", d),
	)
}

func (pl *Plane) deviceNames() string {
	names := make([]string, 0, len(pl.host.Devices()))
	for _, d := range pl.host.Devices() {
		names = append(names, d.Name())
	}
	return strings.Join(names, ", ")
}

func (pl *Plane) writableNames() string {
	var names []string
	for _, d := range pl.host.Devices() {
		if _, ok := d.(devices.Setter); ok {
			names = append(names, d.Name())
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// StanzaError maps command errors to XMPP stanza errors (DESIGN.md,
// "Command surface"). It is the only place that does.
func StanzaError(err error) *xmpp.StanzaError {
	var se *xmpp.StanzaError
	switch {
	case errors.As(err, &se):
		return se
	case errors.Is(err, ErrForbidden):
		return &xmpp.StanzaError{Type: xmpp.ErrorTypeAuth, Condition: "forbidden"}
	case errors.Is(err, ErrRateLimited):
		return &xmpp.StanzaError{Type: xmpp.ErrorTypeWait, Condition: "resource-constraint", Text: err.Error()}
	case errors.Is(err, ErrConfigBusy):
		return &xmpp.StanzaError{Type: xmpp.ErrorTypeWait, Condition: "resource-constraint", Text: err.Error()}
	case errors.Is(err, ErrBusy), errors.Is(err, ErrDeviceBusy), errors.Is(err, ErrPlotBusy):
		return &xmpp.StanzaError{Type: xmpp.ErrorTypeWait, Condition: "resource-constraint", Text: err.Error() + "; try again when it has finished"}
	case errors.Is(err, ErrUnknownDevice), errors.Is(err, ErrUnknownAction), errors.Is(err, ErrUnknownField):
		return &xmpp.StanzaError{Type: xmpp.ErrorTypeCancel, Condition: "item-not-found", Text: err.Error()}
	case errors.Is(err, devices.ErrBadValue), errors.Is(err, ErrNotWritable), errors.Is(err, ErrNotReadable),
		errors.Is(err, ErrBadConfig), errors.Is(err, xmpp.ErrForm), errors.Is(err, ErrBadRequest):
		return &xmpp.StanzaError{Type: xmpp.ErrorTypeModify, Condition: "bad-request", Text: telemetry.Truncate(err.Error(), 1024)}
	case errors.Is(err, ErrNoConfigFile), errors.Is(err, ErrNoHistory):
		return &xmpp.StanzaError{Type: xmpp.ErrorTypeCancel, Condition: "feature-not-implemented", Text: err.Error()}
	default:
		return &xmpp.StanzaError{Type: xmpp.ErrorTypeCancel, Condition: "internal-server-error", Text: err.Error()}
	}
}

// ErrBadRequest is wrapped by malformed protocol requests (a XEP-0325 set
// or XEP-0323 req that does not parse, an MQTT set payload).
var ErrBadRequest = errors.New("bad request")

// formatReading is the one-line human form of a reading.
func formatReading(r devices.Reading) string {
	if errors.Is(r.Err, ErrNoReading) {
		return r.Device + ": " + r.Err.Error()
	}
	if r.Err != nil {
		return r.Device + ": error: " + r.Err.Error()
	}
	b := make([]byte, 0, 64)
	b = append(b, r.Device...)
	b = append(b, ':')
	for _, f := range r.Fields {
		b = append(b, ' ')
		b = append(b, f.Name...)
		b = append(b, '=')
		b = f.AppendValue(b)
		if f.Unit != "" {
			b = append(b, ' ')
			b = append(b, f.Unit...)
		}
	}
	return string(b)
}

// formatAged is formatReading of a reading that may not be fresh (an
// event device's last one): "uart: line=hello (12s ago)".
func formatAged(r devices.Reading, now time.Time) string {
	line := formatReading(r)
	if age := now.Sub(r.Time); r.Err == nil && age >= time.Second {
		line += " (" + age.Round(time.Second).String() + " ago)"
	}
	return line
}
