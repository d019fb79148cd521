package control

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"

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
