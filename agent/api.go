package agent

import (
	"context"
	"time"

	"github.com/stanzad/stanzad/agent/control"
	"github.com/stanzad/stanzad/devices"
	"github.com/stanzad/stanzad/xmpp"
)

// The command surface lives in agent/control; these names keep the
// agent's API (cmd/stanzad, cmd/stanzactl, tests) as it was.

// Caller identifies who runs a command and through which path.
type Caller = control.Caller

// Role is what a sender may do.
type Role = control.Role

// Roles, from least to most trusted.
const (
	RoleNone     = control.RoleNone
	RoleViewer   = control.RoleViewer
	RoleOperator = control.RoleOperator
)

// Reports of the registry's commands.
type (
	StatusReport = control.StatusReport
	OutboxStatus = control.OutboxStatus
	DeviceInfo   = control.DeviceInfo
	ActionResult = control.ActionResult
	ReloadReport = control.ReloadReport
	RateError    = control.RateError
	ChatCommand  = control.ChatCommand
)

// Command, action and reload errors (see package control).
var (
	ErrUnknownDevice = control.ErrUnknownDevice
	ErrNotWritable   = control.ErrNotWritable
	ErrNotReadable   = control.ErrNotReadable
	ErrForbidden     = control.ErrForbidden
	ErrDevice        = control.ErrDevice
	ErrDeviceBusy    = control.ErrDeviceBusy
	ErrNoReading     = control.ErrNoReading
	ErrRateLimited   = control.ErrRateLimited
	ErrUnknownAction = control.ErrUnknownAction
	ErrBusy          = control.ErrBusy
	ErrChatSyntax    = control.ErrChatSyntax
	ErrNoConfigFile  = control.ErrNoConfigFile
	ErrBadConfig     = control.ErrBadConfig
	ErrConfigBusy    = control.ErrConfigBusy
	ErrNotRunning    = control.ErrNotRunning
	ErrDisk          = control.ErrDisk
)

// XEP-0050 command nodes.
const (
	NodeStatus = control.NodeStatus
	NodeRead   = control.NodeRead
	NodeSet    = control.NodeSet
	NodeAction = control.NodeAction
	NodeReload = control.NodeReload
	NodeConfig = control.NodeConfig
)

// ParseChatCommand parses a chat message body (control.ParseChatCommand).
func ParseChatCommand(body string) (ChatCommand, error) { return control.ParseChatCommand(body) }

// Read returns momentary readings of the named devices, or of every
// device when names is empty (control.Plane.Read).
func (a *Agent) Read(ctx context.Context, c Caller, names []string) ([]devices.Reading, error) {
	return a.ctl.Read(ctx, c, names)
}

// Set writes value to a writable device. Operators only; audit-logged.
func (a *Agent) Set(ctx context.Context, c Caller, name, value string) (devices.Reading, error) {
	return a.ctl.Set(ctx, c, name, value)
}

// Status reports the agent's state. Viewers and operators.
func (a *Agent) Status(ctx context.Context, c Caller) (StatusReport, error) {
	return a.ctl.Status(ctx, c)
}

// ActionNames lists the configured actions in config order.
func (a *Agent) ActionNames() []string { return a.ctl.ActionNames() }

// RunAction runs a configured action. Operators only; one run per action
// at a time (ErrBusy); audit-logged with its exit code.
func (a *Agent) RunAction(ctx context.Context, c Caller, name string) (ActionResult, error) {
	return a.ctl.RunAction(ctx, c, name)
}

// Reload re-reads the config file and applies what changed (see apply).
// A file with problems changes nothing and the error lists every problem
// with its line. Operators (and SIGHUP, and the file watcher) only.
func (a *Agent) Reload(ctx context.Context, c Caller) (ReloadReport, error) {
	return a.ctl.Reload(ctx, c)
}

// ConfigText returns the running config file with every inline secret
// replaced by "<secret>". Operators only.
func (a *Agent) ConfigText(ctx context.Context, c Caller) ([]byte, error) {
	return a.ctl.ConfigText(ctx, c)
}

// PushConfig checks data as a whole config file, writes it in place of
// the running one and applies it (control.Plane.PushConfig). Operators
// only.
func (a *Agent) PushConfig(ctx context.Context, c Caller, data []byte) (ReloadReport, error) {
	return a.ctl.PushConfig(ctx, c, data)
}

// host is the Agent as the control plane sees it (control.Host); its
// methods are not the Agent's own API.
type host Agent

// Self is the agent's own JID as configured.
func (h *host) Self() xmpp.JID { return (*Agent)(h).me() }

// Devices returns the devices running now, in config order.
func (h *host) Devices() []devices.Device { return (*Agent)(h).devices() }

// Device returns the running device called name.
func (h *host) Device(name string) (devices.Device, bool) { return (*Agent)(h).device(name) }

// Last returns a device's latest good reading.
func (h *host) Last(name string) (devices.Reading, bool) { return h.last.get(name) }

// History is the agent's reading history, nil when it keeps none.
func (h *host) History() control.History {
	if h.hist == nil {
		return nil
	}
	return h.hist
}

// Occupant looks up a room occupant's JID (telemetry.Pipeline.Occupant).
func (h *host) Occupant(from xmpp.JID) (string, bool, bool) { return h.tel.Occupant(from) }

// Report is the status report but for its actions.
func (h *host) Report() StatusReport {
	a := (*Agent)(h)
	rep := StatusReport{Version: a.version, Uptime: time.Since(a.started), Dropped: a.dropped.Load()}
	sess := a.conn().Session()
	if sess != nil {
		rep.Online, rep.JID, rep.Server = true, sess.JID().String(), sess.Endpoint()
		rep.Link = sess.Link()
	}
	rep.Outboxes = a.tel.Statuses(sess, time.Now())
	for _, o := range rep.Outboxes {
		rep.Queued += o.Pending
	}
	for _, d := range a.devices() {
		_, r := d.(devices.Reader)
		_, w := d.(devices.Setter)
		info := DeviceInfo{Name: d.Name(), Readable: r, Writable: w}
		info.Err, info.ErrSince = a.health.failing(d.Name())
		rep.Devices = append(rep.Devices, info)
	}
	rep.Config, rep.ConfigState = a.push.status()
	return rep
}
