package control

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/agent/telemetry"
	"github.com/stanzad/stanzad/devices"
	"github.com/stanzad/stanzad/xmpp"
)

// The command registry: every path (XEP-0050, XEP-0323/0325, chat text,
// MQTT) ends in these methods, which check the caller's role, run the
// command and write the audit line. The rate limit is applied once per
// inbound command stanza by the path, with Admit.

// Host is what the control plane needs from the agent it controls.
type Host interface {
	// Self is the agent's own JID as configured.
	Self() xmpp.JID
	// Devices returns the running devices in config order; Device finds
	// one by name.
	Devices() []devices.Device
	Device(name string) (devices.Device, bool)
	// Last returns a device's latest good reading, if it reported one.
	Last(name string) (devices.Reading, bool)
	// Occupant looks up from as an occupant JID (room@service/nick) of a
	// room the agent is in now: inRoom false for any other JID; present
	// whether the nick is in the room; real the occupant's real JID, ""
	// when the room hides it. IQs a room relays come from such JIDs.
	Occupant(from xmpp.JID) (real string, present, inRoom bool)
	// History is the agent's reading history, nil when it keeps none.
	History() History
	// Report fills in the status report: everything but Actions.
	Report() StatusReport
	// Reload, ConfigText and PushConfig do what the methods of Plane by
	// those names do, for a caller already allowed to.
	Reload(ctx context.Context, c Caller) (ReloadReport, error)
	ConfigText(ctx context.Context) ([]byte, error)
	PushConfig(ctx context.Context, c Caller, data []byte) (ReloadReport, error)
}

// Plane is the control plane of one agent: the ACL, the rate limits and
// the actions in effect (a policy, replaced whole by a reload), the
// registry methods every command path ends in, and the handlers of those
// paths (chat, rooms, XEP-0050, XEP-0323/0325).
type Plane struct {
	host  Host
	log   *slog.Logger
	pol   atomic.Pointer[policy]
	calls deviceCalls
	// plotting is set while a chart is drawn and uploaded.
	plotting atomic.Bool

	strangers strangerLog
	limited   strangerLog // rate-limited senders, logged once a minute
	hidden    strangerLog // room occupants whose real JID the agent cannot see
}

// New returns the control plane of host, with the ACL, rate limits and
// actions of cfg for the agent self.
func New(host Host, log *slog.Logger, self xmpp.JID, cfg *config.Config) *Plane {
	pl := &Plane{host: host, log: log}
	pl.SetPolicy(self, cfg)
	return pl
}

// policy is the part of the configuration a reload replaces whole: who
// may do what, how often, and which actions exist.
type policy struct {
	acl     acl
	members []string // the ACL's bare keys, sorted (Members)
	actions map[string]*action
	order   []string // action names in config order
	limit   *limiter
}

func newPolicy(self xmpp.JID, cfg *config.Config, old *policy) *policy {
	p := &policy{
		acl:     newACL(self, cfg.ACL.Operators, cfg.ACL.Viewers),
		actions: make(map[string]*action, len(cfg.Actions)),
		limit:   newLimiter(cmp.Or(cfg.ACL.CommandRate, 2), cmp.Or(cfg.ACL.CommandBurst, 20)),
	}
	p.members = slices.Sorted(maps.Keys(p.acl.roles))
	for _, ac := range cfg.Actions {
		act := &action{cfg: ac}
		// An unchanged action keeps its lock, so a reload during a run
		// cannot start a second one.
		if old != nil {
			if o := old.actions[ac.Name]; o != nil && reflect.DeepEqual(o.cfg, ac) {
				act = o
			}
		}
		p.actions[ac.Name] = act
		p.order = append(p.order, ac.Name)
	}
	return p
}

func (pl *Plane) policy() *policy { return pl.pol.Load() }

// SetPolicy installs the ACL, rate limits and actions of cfg for the
// agent self. Actions that did not change keep running (and their lock).
func (pl *Plane) SetPolicy(self xmpp.JID, cfg *config.Config) {
	pl.pol.Store(newPolicy(self, cfg, pl.pol.Load()))
}

// Role returns the role of a stanza's sender.
func (pl *Plane) Role(from xmpp.JID) Role { return pl.policy().acl.role(from) }

// Members returns the ACL's operators and viewers as sorted bare keys;
// the same ACL returns the same slice, which callers must not change.
func (pl *Plane) Members() []string { return pl.policy().members }

// caller returns the Caller for a stanza's sender.
func (pl *Plane) caller(from xmpp.JID, via string) Caller {
	return Caller{JID: from, Role: pl.policy().acl.role(from), Via: via}
}

// iqCaller returns the Caller behind an IQ's sender. An IQ a room the
// agent is in relays from one of its occupants (Gajim's "Execute
// Command…" on a participant) is the occupant's real JID's, with the
// room in Via: same ACL, rate limit and audit as a direct IQ. When the
// agent cannot tell who the occupant is, the error is a forbidden that
// says why. A room the agent is not in relays nothing: its JIDs are
// strangers like any other.
func (pl *Plane) iqCaller(from xmpp.JID, via string) (Caller, error) {
	real, present, inRoom := pl.host.Occupant(from)
	if !inRoom {
		return pl.caller(from, via), nil
	}
	room := from.Bare().String()
	var why string
	switch {
	case !present:
		why = "you are not in " + room + " as far as I can see, so I can't tell who you are"
	case real == "":
		why = "this room hides your JID from me, so I can't tell whether you may do that; " +
			"make the room non-anonymous (or me a moderator), or send your command to " + pl.host.Self().Bare().String() + " directly"
	}
	jid, err := xmpp.ParseJID(real)
	if why == "" && err != nil {
		why = "the room gave me a JID for you I can't read"
	}
	if why != "" {
		return Caller{JID: from, Via: via}, &xmpp.StanzaError{Type: xmpp.ErrorTypeAuth, Condition: "forbidden", Text: why}
	}
	return pl.caller(jid, via+" via "+room), nil
}

// iqRole is the role behind an IQ's sender (iqCaller), none when the
// agent cannot tell.
func (pl *Plane) iqRole(from xmpp.JID) Role {
	c, err := pl.iqCaller(from, "")
	if err != nil {
		return RoleNone
	}
	return c.Role
}

// principal names who stands behind an IQ's sender for ad-hoc sessions
// (xmpp.Commands.Principal): the bare JID of a room occupant's real JID,
// else of the sender — the same person, whichever way they come.
func (pl *Plane) principal(from xmpp.JID) string {
	c, err := pl.iqCaller(from, "")
	if err != nil {
		return "unknown " + from.String()
	}
	return c.JID.BareKey()
}

// Admit takes one token from the caller's bucket, or returns a
// *RateError. Refusals are logged once per sender per minute. Every
// path calls it once per inbound command stanza.
func (pl *Plane) Admit(ctx context.Context, c Caller) error {
	err := pl.policy().limit.allow(c.JID.BareKey())
	if err != nil {
		pl.limited.log(ctx, pl.log, c.JID, "rate limit: "+c.Via)
	}
	return err
}

// StatusReport is what the status command shows.
type StatusReport struct {
	Version string
	Uptime  time.Duration
	Online  bool
	JID     string // the bound full JID while online
	// Server is the endpoint (host:port) of the live session: which
	// server, or which node of a cluster, the agent is on.
	Server  string
	Dropped uint64 // readings dropped before queueing (bus full)
	// Link is how the server takes telemetry: when it set the pace within
	// the last minute (Link.Limited), the rate it allows.
	Link     xmpp.LinkStats
	Queued   int // readings waiting in all outboxes
	Outboxes []OutboxStatus
	Devices  []DeviceInfo
	Actions  []string
	// Config is the outcome of the last pushed config, or the push
	// waiting to get online; empty when there was none.
	Config string
	// ConfigState is Config for scripts: waiting, applied, rolled-back,
	// failed or superseded.
	ConfigState string
}

// OutboxStatus is one sink's queue.
type OutboxStatus = telemetry.OutboxStatus

// DeviceInfo describes a configured device.
type DeviceInfo struct {
	Name               string
	Readable, Writable bool
	// Err is the device's last failure while it is failing (a bus error,
	// an unplugged adapter), with when it started; empty when healthy.
	Err      string
	ErrSince time.Time
}

// Status reports the agent's state. Viewers and operators.
func (pl *Plane) Status(ctx context.Context, c Caller) (rep StatusReport, err error) {
	start := time.Now()
	defer func() { pl.audit(ctx, c, slog.LevelDebug, "status", nil, err, time.Since(start)) }()
	if c.Role < RoleViewer {
		return rep, ErrForbidden
	}
	rep = pl.host.Report()
	rep.Actions = pl.policy().order
	return rep, nil
}

// ActionNames lists the configured actions in config order.
func (pl *Plane) ActionNames() []string { return pl.policy().order }

// RunAction runs a configured action. Operators only; one run per action
// at a time (ErrBusy); audit-logged with its exit code.
func (pl *Plane) RunAction(ctx context.Context, c Caller, name string) (res ActionResult, err error) {
	start := time.Now()
	defer func() {
		if err == nil && (res.ExitCode != 0 || res.TimedOut) {
			pl.audit(ctx, c, slog.LevelWarn, "action", []string{name}, actionFailure(res), time.Since(start))
			return
		}
		pl.audit(ctx, c, slog.LevelInfo, "action", []string{name}, err, time.Since(start))
	}()
	if c.Role < RoleOperator {
		return res, ErrForbidden
	}
	act := pl.policy().actions[name]
	if act == nil {
		return res, fmt.Errorf("%w %q (actions: %s)", ErrUnknownAction, name, joinOrNone(pl.policy().order))
	}
	return act.run(ctx, c.JID.Bare().String())
}

// actionFailure describes an action that ran but failed, for the audit
// log and for replies.
func actionFailure(res ActionResult) error {
	if res.TimedOut {
		return fmt.Errorf("timed out after %v; killed", res.Duration.Round(time.Millisecond))
	}
	return fmt.Errorf("exit code %d", res.ExitCode)
}

func joinOrNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	s := names[0]
	for _, n := range names[1:] {
		s += ", " + n
	}
	return s
}

// Text is the human status report.
func (r StatusReport) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "stanzad %s, up %s\n", r.Version, r.Uptime.Round(time.Second))
	if r.Online {
		fmt.Fprintf(&b, "session: online as %s via %s\n", r.JID, r.Server)
	} else {
		b.WriteString("session: offline\n")
	}
	fmt.Fprintf(&b, "readings dropped before queueing: %d\n", r.Dropped)
	if l := r.LinkText(); l != "" {
		b.WriteString(l + "\n")
	}
	for _, o := range r.Outboxes {
		b.WriteString("sink " + o.String() + "\n")
	}
	b.WriteString("devices:")
	for _, d := range r.Devices {
		b.WriteString(" " + d.Name)
		if d.Writable {
			b.WriteString(" (writable)")
		}
		if d.Err != "" {
			fmt.Fprintf(&b, " (failing since %s: %s)", d.ErrSince.UTC().Format(time.TimeOnly), d.Err)
		}
	}
	if len(r.Actions) > 0 {
		b.WriteString("\nactions: " + strings.Join(r.Actions, ", "))
	}
	if r.Config != "" {
		b.WriteString("\nconfig: " + r.Config)
	}
	return b.String()
}

// LinkText says how the server takes telemetry while it sets the pace:
// "link: the server accepts ~2.9 KB/s of telemetry; 1,204 readings
// waiting". Empty while telemetry flows as fast as it comes.
func (r StatusReport) LinkText() string {
	if !r.Online || !r.Link.Limited || r.Link.Rate <= 0 {
		return ""
	}
	return fmt.Sprintf("link: the server accepts ~%.1f KB/s of telemetry; %s readings waiting",
		r.Link.Rate/1000, thousands(r.Queued))
}

// thousands formats n with commas: 1,204.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// Text is the human report of an action run.
func (r ActionResult) Text(name string) string {
	var b strings.Builder
	switch {
	case r.TimedOut:
		fmt.Fprintf(&b, "%s: timed out after %v, killed", name, r.Duration.Round(time.Millisecond))
	case r.ExitCode == 0:
		fmt.Fprintf(&b, "%s: ok (exit code 0, %v)", name, r.Duration.Round(time.Millisecond))
	default:
		fmt.Fprintf(&b, "%s: failed with exit code %d (%v)", name, r.ExitCode, r.Duration.Round(time.Millisecond))
	}
	if out := strings.TrimRight(r.Output, "\n"); out != "" {
		if r.Truncated {
			b.WriteString("\noutput (last 4 KiB):\n…")
		} else {
			b.WriteString("\noutput:\n")
		}
		b.WriteString(out)
	}
	return b.String()
}
