package control

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/devices"
	"github.com/stanzad/stanzad/xmpp"
)

// XEP-0050 command nodes, as DESIGN.md names them.
const (
	NodeStatus  = "status"
	NodeRead    = "read"
	NodeSet     = "set"
	NodeAction  = "action"
	NodeReload  = "reload"
	NodeConfig  = "config"
	NodeHistory = "history"
	NodePlot    = "plot"
)

// Register installs the command surface on the mux: XEP-0050
// ad-hoc commands, XEP-0325 control and XEP-0323 readout. All of them go
// through the registry (registry.go) and the ACL.
func (pl *Plane) Register(mux *xmpp.Mux) {
	viewer := func(from xmpp.JID) bool { return pl.iqRole(from) >= RoleViewer }
	operator := func(from xmpp.JID) bool { return pl.iqRole(from) >= RoleOperator }
	commands := &xmpp.Commands{Principal: pl.principal}
	for _, cmd := range []*xmpp.Command{
		{Node: NodeStatus, Name: "Status", Allowed: viewer, Run: pl.adhocStatus},
		{Node: NodeRead, Name: "Read sensors", Allowed: viewer, Run: pl.adhocRead},
		{Node: NodeHistory, Name: "History of a sensor", Allowed: viewer, Run: pl.adhocHistory},
		{Node: NodePlot, Name: "Chart of a sensor", Allowed: viewer, Run: pl.adhocPlot},
		{Node: NodeSet, Name: "Set a device", Allowed: operator, Run: pl.adhocSet},
		{Node: NodeAction, Name: "Run an action", Allowed: operator, Run: pl.adhocAction},
		{Node: NodeReload, Name: "Reload configuration", Allowed: operator, Run: pl.adhocReload},
		{Node: NodeConfig, Name: "Edit configuration", Allowed: operator, Run: pl.adhocConfig},
	} {
		commands.Add(cmd)
	}
	commands.Register(mux)
	mux.HandleIQ("set", xmpp.NSControl, "set", pl.controlSet)
	mux.HandleIQ("get", xmpp.NSSensorData, "req", pl.readout)
}

// adhocStart resolves the caller of an ad-hoc stage and applies the rate
// limit: every stage is one command.
func (pl *Plane) adhocStart(ctx context.Context, r *xmpp.CommandRequest) (Caller, error) {
	c, err := pl.iqCaller(r.From, "adhoc")
	if err != nil {
		return c, err
	}
	return c, pl.Admit(ctx, c)
}

// wrapStanza turns a registry error into the stanza error to send.
func wrapStanza(err error) error {
	if err == nil {
		return nil
	}
	return StanzaError(err)
}

func (pl *Plane) adhocStatus(ctx context.Context, r *xmpp.CommandRequest) (*xmpp.CommandResponse, error) {
	c, err := pl.adhocStart(ctx, r)
	if err != nil {
		return nil, wrapStanza(err)
	}
	rep, err := pl.Status(ctx, c)
	if err != nil {
		return nil, wrapStanza(err)
	}
	session := "offline, reconnecting"
	if rep.Online {
		session = "online as " + rep.JID
	}
	var outboxes, devs []string
	for _, o := range rep.Outboxes {
		outboxes = append(outboxes, o.String())
	}
	for _, d := range rep.Devices {
		line := d.Name
		if d.Writable {
			line += " (writable)"
		}
		if d.Err != "" {
			line += fmt.Sprintf(" — failing since %s UTC: %s", d.ErrSince.UTC().Format(time.TimeOnly), d.Err)
		}
		devs = append(devs, line)
	}
	f := &xmpp.Form{Type: xmpp.FormResult, Title: "stanzad status", Fields: []xmpp.FormField{
		resultField("version", "Version", rep.Version),
		resultField("uptime", "Uptime", rep.Uptime.Round(time.Second).String()),
		resultField("session", "Session", session),
		resultField("server", "Server", rep.Server),
		resultField("dropped", "Readings dropped (bus full)", strconv.FormatUint(rep.Dropped, 10)),
		resultField("link", "Link", cmp.Or(rep.LinkText(), "telemetry flows as it comes")),
		resultMulti("outboxes", "Sinks", outboxes),
		resultMulti("devices", "Devices", devs),
		resultMulti("actions", "Actions", rep.Actions),
	}}
	if rep.Config != "" {
		f.Fields = append(f.Fields, resultField("config", "Config", rep.Config),
			xmpp.FormField{Var: "config_state", Type: xmpp.FieldHidden, Values: []string{rep.ConfigState}})
	}
	return &xmpp.CommandResponse{Form: f}, nil
}

func resultField(v, label, value string) xmpp.FormField {
	return xmpp.FormField{Var: v, Type: xmpp.FieldTextSingle, Label: label, Values: []string{value}}
}

func resultMulti(v, label string, values []string) xmpp.FormField {
	return xmpp.FormField{Var: v, Type: xmpp.FieldTextMulti, Label: label, Values: values}
}

func (pl *Plane) readForm() *xmpp.Form {
	fld := xmpp.FormField{Var: "device", Type: xmpp.FieldListMulti, Label: "Devices",
		Desc: "Devices to read; none selected reads all. Devices that report events show their last one."}
	for _, d := range pl.host.Devices() {
		fld.Options = append(fld.Options, xmpp.FormOption{Label: d.Name(), Value: d.Name()})
	}
	return &xmpp.Form{Type: xmpp.FormForm, Title: "Read sensors", Fields: []xmpp.FormField{fld}}
}

func (pl *Plane) adhocRead(ctx context.Context, r *xmpp.CommandRequest) (*xmpp.CommandResponse, error) {
	c, err := pl.adhocStart(ctx, r)
	if err != nil {
		return nil, wrapStanza(err)
	}
	form := pl.readForm()
	if r.Form == nil {
		if c.Role < RoleViewer {
			return nil, wrapStanza(ErrForbidden)
		}
		return &xmpp.CommandResponse{Form: form, Next: true, Last: true}, nil
	}
	if err := pl.checkDeviceForm(form, r.Form); err != nil {
		return nil, wrapStanza(err)
	}
	rs, err := pl.Read(ctx, c, r.Form.Values("device"))
	if err != nil {
		return nil, wrapStanza(err)
	}
	res := &xmpp.Form{Type: xmpp.FormResult, Title: "Readings"}
	var notes []xmpp.Note
	for _, rd := range rs {
		if errors.Is(rd.Err, ErrNoReading) {
			notes = append(notes, xmpp.Note{Type: "info", Text: rd.Device + ": " + rd.Err.Error()})
			continue
		}
		if rd.Err != nil {
			notes = append(notes, xmpp.Note{Type: "error", Text: rd.Device + ": " + rd.Err.Error()})
			continue
		}
		vals := make([]string, 0, len(rd.Fields))
		for _, f := range rd.Fields {
			v := f.Name + " = " + f.Value()
			if f.Unit != "" {
				v += " " + f.Unit
			}
			vals = append(vals, v)
		}
		label := rd.Device + " at " + rd.Time.UTC().Format(time.TimeOnly) + " UTC"
		if age := time.Since(rd.Time); age >= time.Second {
			label += " (" + age.Round(time.Second).String() + " ago)"
		}
		res.Fields = append(res.Fields, resultMulti(rd.Device, label, vals))
	}
	return &xmpp.CommandResponse{Form: res, Notes: notes}, nil
}

// checkDeviceForm checks a submitted form whose "device" field names
// devices: an unknown name is item-not-found, as on every other path,
// before the form's own checks (a writable device chosen, and so on).
func (pl *Plane) checkDeviceForm(offered, sub *xmpp.Form) error {
	for _, n := range sub.Values("device") {
		if _, ok := pl.host.Device(n); !ok {
			return fmt.Errorf("%w %q (devices: %s)", ErrUnknownDevice, n, pl.deviceNames())
		}
	}
	return offered.Check(sub)
}

// setState is what the set command keeps between its two stages.
type setState struct {
	device string
	form   *xmpp.Form // the value form shown
}

func (pl *Plane) deviceForm() *xmpp.Form {
	fld := xmpp.FormField{Var: "device", Type: xmpp.FieldListSingle, Label: "Device", Required: true}
	for _, d := range pl.host.Devices() {
		if _, ok := d.(devices.Setter); ok {
			fld.Options = append(fld.Options, xmpp.FormOption{Label: d.Name(), Value: d.Name()})
		}
	}
	val := xmpp.FormField{Var: "value", Type: xmpp.FieldTextSingle, Label: "Value",
		Desc: "Leave empty to choose on the next page. Switches take on/off."}
	return &xmpp.Form{Type: xmpp.FormForm, Title: "Set a device",
		Instructions: []string{"Choose the device to switch or set."}, Fields: []xmpp.FormField{fld, val}}
}

// valueForm is the second stage of set: a checkbox for devices whose
// state is one boolean (switches, outputs), a text field otherwise, with
// the current reading shown.
func (pl *Plane) valueForm(ctx context.Context, name string) *xmpp.Form {
	f := &xmpp.Form{Type: xmpp.FormForm, Title: "Set " + name}
	val := xmpp.FormField{Var: "value", Type: xmpp.FieldTextSingle, Label: "New value", Required: true}
	d, _ := pl.host.Device(name)
	if rd, ok := d.(devices.Reader); ok {
		// Through the bounded device calls, like every other read: a
		// hung driver must not hang the form.
		cur, err := pl.calls.do(ctx, name, rd.Read)
		switch {
		case err != nil:
			f.Instructions = []string{"Current state unknown: " + err.Error()}
		case len(cur.Fields) == 1 && cur.Fields[0].Kind == devices.Boolean:
			val = xmpp.FormField{Var: "value", Type: xmpp.FieldBool, Label: "On", Required: true,
				Values: []string{strconv.FormatBool(cur.Fields[0].Bool)}}
			f.Instructions = []string{"Currently " + onOff(cur.Fields[0].Bool) + "."}
		default:
			f.Instructions = []string{"Now: " + formatReading(cur)}
		}
	}
	f.Fields = []xmpp.FormField{val}
	return f
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func (pl *Plane) adhocSet(ctx context.Context, r *xmpp.CommandRequest) (*xmpp.CommandResponse, error) {
	c, err := pl.adhocStart(ctx, r)
	if err != nil {
		return nil, wrapStanza(err)
	}
	if c.Role < RoleOperator {
		return nil, wrapStanza(ErrForbidden)
	}
	devForm := pl.deviceForm()
	switch {
	case r.Stage == 0 && r.Form == nil:
		return &xmpp.CommandResponse{Form: devForm, Next: true}, nil
	case r.Stage == 0:
		if err := pl.checkDeviceForm(devForm, r.Form); err != nil {
			return nil, wrapStanza(err)
		}
		name := r.Form.Value("device")
		if v := strings.TrimSpace(r.Form.Value("value")); v != "" {
			return pl.adhocApplySet(ctx, c, name, v) // both given: one stage
		}
		vf := pl.valueForm(ctx, name)
		return &xmpp.CommandResponse{Form: vf, Next: true, Last: true, State: setState{device: name, form: vf}}, nil
	default:
		st, ok := r.State.(setState)
		if !ok {
			return nil, wrapStanza(fmt.Errorf("%w: no device chosen", ErrBadRequest))
		}
		if err := st.form.Check(r.Form); err != nil {
			return nil, wrapStanza(err)
		}
		return pl.adhocApplySet(ctx, c, st.device, r.Form.Value("value"))
	}
}

func (pl *Plane) adhocApplySet(ctx context.Context, c Caller, name, value string) (*xmpp.CommandResponse, error) {
	rd, err := pl.Set(ctx, c, name, value)
	if err != nil {
		return nil, wrapStanza(err)
	}
	res := &xmpp.Form{Type: xmpp.FormResult, Title: "Set " + name}
	for _, f := range rd.Fields {
		res.Fields = append(res.Fields, resultField(f.Name, f.Name, f.Value()))
	}
	return &xmpp.CommandResponse{Form: res, Notes: []xmpp.Note{{Type: "info", Text: "ok, " + formatReading(rd)}}}, nil
}

func (pl *Plane) actionForm() *xmpp.Form {
	fld := xmpp.FormField{Var: "name", Type: xmpp.FieldListSingle, Label: "Action", Required: true}
	pol := pl.policy()
	for _, n := range pol.order {
		fld.Options = append(fld.Options, xmpp.FormOption{Label: n + ": " + strings.Join(pol.actions[n].cfg.Argv, " "), Value: n})
	}
	return &xmpp.Form{Type: xmpp.FormForm, Title: "Run an action", Fields: []xmpp.FormField{fld}}
}

func (pl *Plane) adhocAction(ctx context.Context, r *xmpp.CommandRequest) (*xmpp.CommandResponse, error) {
	c, err := pl.adhocStart(ctx, r)
	if err != nil {
		return nil, wrapStanza(err)
	}
	if c.Role < RoleOperator {
		return nil, wrapStanza(ErrForbidden)
	}
	form := pl.actionForm()
	if r.Form == nil {
		if len(form.Fields[0].Options) == 0 {
			return &xmpp.CommandResponse{Notes: []xmpp.Note{{Type: "info", Text: "no actions are configured ([[action]] in the config)"}}}, nil
		}
		return &xmpp.CommandResponse{Form: form, Next: true, Last: true}, nil
	}
	if err := form.Check(r.Form); err != nil {
		return nil, wrapStanza(err)
	}
	name := r.Form.Value("name")
	res, err := pl.RunAction(ctx, c, name)
	if err != nil {
		return nil, wrapStanza(err)
	}
	out := strings.Split(strings.TrimRight(res.Output, "\n"), "\n")
	if res.Output == "" {
		out = nil
	}
	note := xmpp.Note{Type: "info", Text: res.Text(name)}
	if i := strings.IndexByte(note.Text, '\n'); i >= 0 {
		note.Text = note.Text[:i] // the output is in the form
	}
	switch {
	case res.TimedOut:
		note.Type = "error"
	case res.ExitCode != 0:
		note.Type = "warn"
	}
	label := "Output"
	if res.Truncated {
		label = "Output (last 4 KiB)"
	}
	f := &xmpp.Form{Type: xmpp.FormResult, Title: "Action " + name, Fields: []xmpp.FormField{
		resultField("exit_code", "Exit code", strconv.Itoa(res.ExitCode)),
		{Var: "timed_out", Type: xmpp.FieldBool, Label: "Timed out", Values: []string{strconv.FormatBool(res.TimedOut)}},
		resultField("duration", "Duration", res.Duration.Round(time.Millisecond).String()),
		resultMulti("output", label, out),
	}}
	return &xmpp.CommandResponse{Form: f, Notes: []xmpp.Note{note}}, nil
}

func (pl *Plane) adhocReload(ctx context.Context, r *xmpp.CommandRequest) (*xmpp.CommandResponse, error) {
	c, err := pl.adhocStart(ctx, r)
	if err != nil {
		return nil, wrapStanza(err)
	}
	rep, err := pl.Reload(ctx, c)
	if err != nil {
		return nil, wrapStanza(err)
	}
	return reloadResponse(rep), nil
}

// reloadResponse is the note that says what a reload or push applied: a
// warning when part of it waits for a restart or failed.
func reloadResponse(rep ReloadReport) *xmpp.CommandResponse {
	typ := "info"
	if len(rep.NotLive)+len(rep.Failed) > 0 {
		typ = "warn"
	}
	return &xmpp.CommandResponse{Notes: []xmpp.Note{{Type: typ, Text: rep.String()}}}
}

// adhocConfig shows the running config (secrets hidden) in a text-multi
// field; submitting the field pushes it (PushConfig). stanzactl submits
// it with the first execute.
func (pl *Plane) adhocConfig(ctx context.Context, r *xmpp.CommandRequest) (*xmpp.CommandResponse, error) {
	c, err := pl.adhocStart(ctx, r)
	if err != nil {
		return nil, wrapStanza(err)
	}
	if r.Form == nil {
		text, err := pl.ConfigText(ctx, c)
		if err != nil {
			return nil, wrapStanza(err)
		}
		f := &xmpp.Form{Type: xmpp.FormForm, Title: "Configuration of " + pl.host.Self().Bare().String(),
			Instructions: []string{"Edit and submit to apply; the file is checked first and the old one kept as stanzad.toml.prev. " +
				"Secrets show as \"" + config.Placeholder + "\": leave them so to keep them."},
			Fields: []xmpp.FormField{{Var: "config", Type: xmpp.FieldTextMulti, Label: "stanzad.toml", Required: true,
				Values: strings.Split(strings.TrimSuffix(string(text), "\n"), "\n")}}}
		return &xmpp.CommandResponse{Form: f, Next: true, Last: true}, nil
	}
	lines := r.Form.Values("config")
	if len(lines) == 0 {
		return nil, wrapStanza(fmt.Errorf("%w: the form has no config field", ErrBadRequest))
	}
	rep, err := pl.PushConfig(ctx, c, configText(lines))
	if err != nil {
		return nil, wrapStanza(err)
	}
	return reloadResponse(rep), nil
}
