package agent

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"time"

	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/devices"
	"github.com/stanzad/stanzad/xmpp"
)

// The command registry: every path (XEP-0050, XEP-0323/0325, chat text,
// MQTT) ends in these methods, which check the caller's role, run the
// command and write the audit line. The rate limit is applied once per
// inbound command stanza by the path, with admit.

// policy is the part of the configuration a reload replaces whole: who
// may do what, how often, and which actions exist.
type policy struct {
	acl      acl
	actions  map[string]*action
	order    []string // action names in config order
	limit    *limiter
	presence string
}

func newPolicy(self xmpp.JID, cfg *config.Config, old *policy) *policy {
	p := &policy{
		acl:      newACL(self, cfg.ACL.Operators, cfg.ACL.Viewers),
		actions:  make(map[string]*action, len(cfg.Actions)),
		limit:    newLimiter(cmp.Or(cfg.ACL.CommandRate, 2), cmp.Or(cfg.ACL.CommandBurst, 20)),
		presence: cfg.XMPP.PresenceStatus,
	}
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

func (a *Agent) policy() *policy { return a.pol.Load() }

// caller returns the Caller for a stanza's sender.
func (a *Agent) caller(from xmpp.JID, via string) Caller {
	return Caller{JID: from, Role: a.policy().acl.role(from), Via: via}
}

// admit takes one token from the caller's bucket, or returns a
// *RateError. Refusals are logged once per sender per minute.
func (a *Agent) admit(ctx context.Context, c Caller) error {
	err := a.policy().limit.allow(c.JID.BareKey())
	if err != nil {
		a.limited.log(ctx, a.log, c.JID, "rate limit: "+c.Via)
	}
	return err
}

// StatusReport is what the status command shows.
type StatusReport struct {
	Version string
	Uptime  time.Duration
	Online  bool
	JID     string // the bound full JID while online
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
}

// OutboxStatus is one sink's queue.
type OutboxStatus struct {
	Sink             string // kind and destination: "chat operator@iot.test"
	Pending, Dropped int
	Degraded         bool   // disk failed: queued in memory only
	Filtered         uint64 // readings skipped by deadband or min_interval
	Rejected         uint64 // readings the server refused for good
	Bounced          uint64 // reading messages the server answered with an error
	Lost             uint64 // bounced after the outbox had let them go
	Note             string // e.g. "not in the room"
}

// String is the human line for one sink.
func (o OutboxStatus) String() string {
	line := fmt.Sprintf("%s: %d waiting, %d dropped (full)", o.Sink, o.Pending, o.Dropped)
	if o.Filtered > 0 {
		line += fmt.Sprintf(", %d filtered", o.Filtered)
	}
	if o.Bounced > 0 {
		line += fmt.Sprintf(", %d bounced by the server", o.Bounced)
	}
	if o.Rejected > 0 {
		line += fmt.Sprintf(", %d refused by the server", o.Rejected)
	}
	if o.Lost > 0 {
		line += fmt.Sprintf(", %d lost (bounced after leaving the outbox)", o.Lost)
	}
	if o.Degraded {
		line += ", in memory only: disk failed"
	}
	if o.Note != "" {
		line += ", " + o.Note
	}
	return line
}

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
func (a *Agent) Status(ctx context.Context, c Caller) (rep StatusReport, err error) {
	start := time.Now()
	defer func() { a.audit(ctx, c, slog.LevelDebug, "status", nil, err, time.Since(start)) }()
	if c.Role < RoleViewer {
		return rep, ErrForbidden
	}
	rep = StatusReport{Version: a.version, Uptime: time.Since(a.started), Dropped: a.dropped.Load()}
	sess := a.conn().Session()
	if sess != nil {
		rep.Online, rep.JID = true, sess.JID().String()
		rep.Link = sess.Link()
	}
	now := time.Now()
	for _, s := range a.sinks() {
		st := s.box.Stats()
		rep.Queued += st.Pending
		o := OutboxStatus{Sink: s.name, Pending: st.Pending, Dropped: int(st.Dropped), Degraded: st.Degraded != nil,
			Filtered: s.filtered.Load(), Rejected: s.rejected.Load(), Bounced: s.bounced.Load(), Lost: s.lost.Load()}
		if wait, why := s.hold.left(now); wait > 0 {
			o.Note = fmt.Sprintf("held: %s; sending again in %s", why, wait.Round(time.Second))
		} else if s.dl != nil && s.held(a) < 0 {
			o.Note = "held: " + s.to + " is offline; sent when they are back"
		}
		if s.mq != nil && !s.mq.m.client.IsConnected() {
			o.Note = "broker unreachable"
		}
		if s.room != nil && sess != nil && !s.room.joinedOn(sess) {
			o.Note = "not in the room"
			if g := s.room.goneWhy(); g != "" {
				o.Note = g
			}
		}
		if s.pub != nil {
			o.Note = appendNote(o.Note, s.pub.acc.status()) // nodes looser than access_model
		}
		rep.Outboxes = append(rep.Outboxes, o)
	}
	for _, d := range a.devices() {
		_, r := d.(devices.Reader)
		_, w := d.(devices.Setter)
		info := DeviceInfo{Name: d.Name(), Readable: r, Writable: w}
		info.Err, info.ErrSince = a.health.failing(d.Name())
		rep.Devices = append(rep.Devices, info)
	}
	rep.Actions = a.policy().order
	rep.Config = a.push.status()
	return rep, nil
}

// ActionNames lists the configured actions in config order.
func (a *Agent) ActionNames() []string { return a.policy().order }

// RunAction runs a configured action. Operators only; one run per action
// at a time (ErrBusy); audit-logged with its exit code.
func (a *Agent) RunAction(ctx context.Context, c Caller, name string) (res ActionResult, err error) {
	start := time.Now()
	defer func() {
		if err == nil && (res.ExitCode != 0 || res.TimedOut) {
			a.audit(ctx, c, slog.LevelWarn, "action", []string{name}, actionFailure(res), time.Since(start))
			return
		}
		a.audit(ctx, c, slog.LevelInfo, "action", []string{name}, err, time.Since(start))
	}()
	if c.Role < RoleOperator {
		return res, ErrForbidden
	}
	act := a.policy().actions[name]
	if act == nil {
		return res, fmt.Errorf("%w %q (actions: %s)", ErrUnknownAction, name, joinOrNone(a.policy().order))
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
