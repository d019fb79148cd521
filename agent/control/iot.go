package control

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/stanzad/stanzad/agent/history"
	"github.com/stanzad/stanzad/agent/telemetry"
	"github.com/stanzad/stanzad/devices"
	"github.com/stanzad/stanzad/xmpp"
)

// controlSet answers a XEP-0325 <set/>. Without <node/> elements each
// parameter names a device (<boolean name='relay1' value='true'/>); with
// nodes, the parameters apply to each listed device and are named after
// its value ("state", "value" or the device's own name). Every target is
// checked before anything is switched, so a typo changes nothing.
func (pl *Plane) controlSet(ctx context.Context, _ *xmpp.Session, iq *xmpp.Element) (*xmpp.Element, error) {
	from, _ := xmpp.ParseJID(iq.Attr("from"))
	c, err := pl.iqCaller(from, "xep-0325")
	if err != nil {
		return nil, err
	}
	if c.Role < RoleOperator {
		pl.audit(ctx, c, slog.LevelInfo, "set", nil, ErrForbidden, 0)
		return nil, StanzaError(ErrForbidden)
	}
	if err := pl.Admit(ctx, c); err != nil {
		return nil, StanzaError(err)
	}
	req, err := xmpp.ParseControlSet(iq.FirstChild())
	if err != nil {
		return nil, StanzaError(fmt.Errorf("%w: %w", ErrBadRequest, err))
	}
	type change struct{ device, value string }
	var changes []change
	for _, p := range req.Params {
		targets := req.Nodes
		if len(targets) == 0 {
			targets = []string{p.Name}
		} else if p.Name != "state" && p.Name != "value" && !slices.Contains(req.Nodes, p.Name) {
			return nil, StanzaError(fmt.Errorf("%w: parameter %q: a device takes \"state\" or \"value\"", ErrBadRequest, p.Name))
		}
		for _, t := range targets {
			d, ok := pl.host.Device(t)
			if !ok {
				return nil, StanzaError(fmt.Errorf("%w %q (devices: %s)", ErrUnknownDevice, t, pl.deviceNames()))
			}
			if _, ok := d.(devices.Setter); !ok {
				return nil, StanzaError(fmt.Errorf("%q: %w (writable: %s)", t, ErrNotWritable, pl.writableNames()))
			}
			changes = append(changes, change{t, p.Value})
		}
	}
	var done []string
	for _, ch := range changes {
		if _, err := pl.Set(ctx, c, ch.device, ch.value); err != nil {
			if len(done) > 0 {
				err = fmt.Errorf("%w (already applied: %s)", err, strings.Join(done, ", "))
			}
			return nil, StanzaError(err)
		}
		done = append(done, ch.device+"="+ch.value)
	}
	return xmpp.NewElement(xmpp.NSControl, "setResponse", "responseCode", "OK"), nil
}

// readout answers a XEP-0323 <req/>: <accepted/> at once, then a message
// with the requested nodes and fields (filtered as asked) and, for
// devices that failed, a <failure/> message. stanzad has momentary values
// only; a request for other kinds gets an empty, done readout.
func (pl *Plane) readout(ctx context.Context, s *xmpp.Session, iq *xmpp.Element) (*xmpp.Element, error) {
	from, _ := xmpp.ParseJID(iq.Attr("from"))
	c, err := pl.iqCaller(from, "xep-0323")
	if err != nil {
		return nil, err
	}
	if c.Role < RoleViewer {
		return nil, StanzaError(ErrForbidden)
	}
	if err := pl.Admit(ctx, c); err != nil {
		return nil, StanzaError(err)
	}
	req, err := xmpp.ParseReadoutRequest(iq.FirstChild())
	if err != nil {
		return nil, StanzaError(fmt.Errorf("%w: %w", ErrBadRequest, err))
	}
	for _, n := range req.Nodes {
		if _, ok := pl.host.Device(n); !ok {
			return nil, StanzaError(fmt.Errorf("%w %q (devices: %s)", ErrUnknownDevice, n, pl.deviceNames()))
		}
	}
	accepted := xmpp.NewElement(xmpp.NSSensorData, "accepted", "seqnr", iq.FirstChild().Attr("seqnr"))
	if err := s.Reply(ctx, iq, accepted); err != nil {
		return nil, xmpp.ErrHandled // the session is gone; nobody to answer
	}
	if req.Historical {
		if err := pl.historicalReadout(ctx, s, c, from, req, !req.Momentary); err != nil {
			pl.log.Warn("historical readout not sent", "to", from.String(), "err", err)
			return nil, xmpp.ErrHandled
		}
		if !req.Momentary {
			return nil, xmpp.ErrHandled
		}
	}
	var rs []devices.Reading
	if req.Momentary {
		if rs, err = pl.Read(ctx, c, req.Nodes); err != nil {
			rs = nil
			pl.log.Warn("readout failed", "from", from.String(), "err", err)
		}
	}
	var nodes []xmpp.SensorNode
	var fails []xmpp.SensorFailure
	for _, r := range rs {
		if r.Err != nil {
			fails = append(fails, xmpp.SensorFailure{ID: r.Device, Time: r.Time, Text: r.Err.Error()})
			continue
		}
		fs := r.Fields
		if len(req.Fields) > 0 {
			fs = slices.DeleteFunc(slices.Clone(fs), func(f devices.Field) bool { return !slices.Contains(req.Fields, f.Name) })
			if len(fs) == 0 {
				continue
			}
		}
		nodes = append(nodes, xmpp.SensorNode{ID: r.Device, Time: r.Time, Fields: telemetry.SensorFields(nil, fs)})
	}
	b := xmpp.AppendReadoutMessages(nil, iq.Attr("from"), req.SeqNr, nodes, fails)
	if err := s.SendRaw(ctx, b); err != nil {
		pl.log.Warn("readout not sent", "to", from.String(), "err", err)
	}
	return nil, xmpp.ErrHandled
}

// Historical readout (XEP-0323 §3.4): the history's points for the
// requested nodes and fields between from and to, as timestamps whose
// fields carry historicalMinute (one-minute buckets: the mean) or
// historicalOther (raw readings). At most historicalPoints per field,
// downsampled over the range, sent historicalPerMessage timestamps to a
// message; the last message of the readout says done.
const (
	historicalPoints     = 1000
	historicalPerMessage = 100
)

// historicalReadout sends the historical part of a readout; last says
// whether it ends the readout (no momentary part follows).
func (pl *Plane) historicalReadout(ctx context.Context, s *xmpp.Session, c Caller, to xmpp.JID, req xmpp.ReadoutRequest, last bool) error {
	h := pl.host.History()
	var nodes []xmpp.SensorNode
	if h != nil {
		end := req.To
		if end.IsZero() {
			end = time.Now().Add(time.Second)
		}
		for _, se := range h.Series() {
			if len(req.Nodes) > 0 && !slices.Contains(req.Nodes, se.Device) || len(req.Fields) > 0 && !slices.Contains(req.Fields, se.Field) {
				continue
			}
			pts, err := h.Query(se.Device, se.Field, req.From, end)
			if err != nil {
				return err
			}
			start := req.From
			if start.IsZero() && len(pts) > 0 {
				start = pts[0].T
			}
			for _, p := range history.Downsample(pts, start, end, historicalPoints) {
				typ := "historicalOther"
				if p.N > 1 {
					typ = "historicalMinute"
				}
				nodes = append(nodes, xmpp.SensorNode{ID: se.Device, Time: p.T, Fields: []xmpp.SensorField{
					{Name: se.Field, Type: typ, Kind: xmpp.FieldNumeric, Num: p.Avg, Decimals: -1, Unit: se.Unit},
				}})
			}
		}
	}
	pl.audit(ctx, c, slog.LevelDebug, "history", append([]string{"xep-0323"}, req.Nodes...), nil, 0)
	// One node's timestamps in time order, nodes in series order.
	if len(nodes) == 0 && !last {
		return nil // the momentary part follows and ends the readout
	}
	var b []byte
	for first := true; first || len(nodes) > 0; first = false {
		n := min(len(nodes), historicalPerMessage)
		b = xmpp.AppendHistoricalMessage(b[:0], to.String(), req.SeqNr, last && n == len(nodes), nodes[:n])
		if err := s.SendRaw(ctx, b); err != nil {
			return err
		}
		nodes = nodes[n:]
	}
	return nil
}
