package agent

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"time"

	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/agent/control"
	"github.com/stanzad/stanzad/agent/telemetry"
	"github.com/stanzad/stanzad/xmpp"
)

// Reload is control.Host's: it re-reads the config file and applies
// what changed (see apply), for an operator.
func (h *host) Reload(ctx context.Context, c control.Caller) (rep ReloadReport, err error) {
	a := (*Agent)(h)
	if a.configPath == "" {
		return rep, ErrNoConfigFile
	}
	if err := a.reloadMu.LockCtx(ctx); err != nil {
		return rep, err
	}
	defer a.reloadMu.Unlock()
	data, err := os.ReadFile(a.configPath)
	if err != nil {
		return rep, fmt.Errorf("%w: %w", ErrBadConfig, err)
	}
	cfg, err := config.LoadData(a.configPath, data, a.configPath)
	if err != nil {
		return rep, fmt.Errorf("%w: %w", ErrBadConfig, err)
	}
	rep, err = a.apply(ctx, cfg, data, c.Via != "sighup" && c.Via != "file-change" && c.Via != "test")
	if err == nil {
		a.log.Info(rep.String(), "via", c.Via)
	}
	return rep, err
}

// fileChanged reports whether the config file differs from what runs:
// the watcher stays quiet about a file a push itself wrote.
func (a *Agent) fileChanged() bool {
	data, err := os.ReadFile(a.configPath)
	if err != nil {
		return true // let Reload say what is wrong
	}
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	return sha256.Sum256(data) != sha256.Sum256(a.runningText)
}

// apply makes cfg (read from text) the running config, touching only what
// changed. Everything that can be wrong with the config itself (a device
// driver, the TLS files, the bridge's options) is checked before anything
// changes; ErrBadConfig then. Devices and sinks are matched by name and
// destination:
//   - unchanged ones keep running untouched (same goroutines, same
//     outbox, seqnr continuing);
//   - changed devices restart; a sink whose filters (devices, deadband,
//     min_interval, max_silence, batch) changed keeps running with the
//     new filter; otherwise it restarts around the same outbox;
//   - removed ones stop (a device's pins and ports are released; a sink's
//     outbox stays on disk and is picked up when the sink comes back);
//   - [mqtt] reconnects the bridge only when it changed;
//   - [xmpp] (other than presence_status) opens a new session and closes
//     the old one; laterSession defers that by a moment, so the answer to
//     the operator who asked still leaves on the old one.
//
// a.reloadMu is held.
func (a *Agent) apply(ctx context.Context, cfg *config.Config, text []byte, laterSession bool) (rep ReloadReport, err error) {
	if !a.live {
		return rep, ErrNotRunning
	}
	old := a.running
	self, err := xmpp.ParseJID(cfg.XMPP.JID)
	if err != nil {
		return rep, fmt.Errorf("%w: xmpp.jid: %w", ErrBadConfig, err)
	}
	cur := a.now()

	// Build everything new before touching anything.
	// [xmpp] is compared with the session that runs, not with the last
	// config: a swap still waiting (laterSession) may be superseded.
	var nl *link
	if !sameXMPP(a.liveXMPP, cfg.XMPP) {
		if nl, err = a.newLink(cfg, self); err != nil {
			return rep, fmt.Errorf("%w: %w", ErrBadConfig, err)
		}
	}
	dp, err := a.planDevices(cur, cfg)
	if err != nil {
		return rep, fmt.Errorf("%w: %w", ErrBadConfig, err)
	}
	mqttChanged := !reflect.DeepEqual(old.MQTT, cfg.MQTT) || (cfg.MQTT != nil && self.Local != a.me().Local)
	var nm *mqttMap
	if mqttChanged && cfg.MQTT != nil {
		if nm, err = a.newMQTT(cfg, self); err != nil {
			return rep, fmt.Errorf("%w: mqtt: %w", ErrBadConfig, err)
		}
	}
	for i := range cfg.Sinks {
		if _, err := telemetry.SinkKey(cfg.Sinks[i]); err != nil {
			return rep, fmt.Errorf("%w: sink[%d]: %w", ErrBadConfig, i, err)
		}
	}

	// Who may do what.
	a.applyPolicy(old, cfg, self, &rep)

	// Devices: stop what goes, start what comes; the rest runs on.
	var devs []*devUnit
	var disc *discovery // Home Assistant forgets removed and changed devices
	if cur.mqtt != nil && !mqttChanged {
		disc = cur.mqtt.disc
	}
	for _, u := range cur.devs {
		if u.virtual && mqttChanged {
			u.halt()
			continue
		}
		if nu, ok := dp.replace[u]; ok {
			u.halt()
			a.last.forget(u.dev.Name())
			a.health.forget(u.dev.Name())
			if disc != nil {
				disc.clear([]string{u.dev.Name()}) // before a successor's first reading
			}
			if nu == nil {
				rep.Removed = append(rep.Removed, "device "+u.dev.Name())
				continue
			}
			rep.Restarted = append(rep.Restarted, "device "+u.dev.Name())
			nu.start(a.devCtx, a)
			u = nu
		}
		devs = append(devs, u)
	}
	for _, nu := range dp.added {
		rep.Added = append(rep.Added, "device "+nu.dev.Name())
		nu.start(a.devCtx, a)
		devs = insertDevice(devs, nu, cfg)
	}
	if nm != nil {
		for _, d := range nm.devs {
			u := &devUnit{dev: d, virtual: true}
			u.start(a.devCtx, a)
			devs = append(devs, u)
		}
	}
	a.u.Store(cur.with(devs))

	// Sinks, the bridge, alerts: on the dispatcher, between two readings.
	err = a.edit(func(d *telemetry.Dispatcher) {
		a.applySinks(d, cfg, self, devs, mqttChanged, nm, &rep)
	})
	if err != nil {
		return rep, err
	}
	if mqttChanged {
		switch {
		case old.MQTT == nil:
			rep.Added = append(rep.Added, "mqtt bridge")
		case cfg.MQTT == nil:
			rep.Removed = append(rep.Removed, "mqtt bridge")
		default:
			rep.Restarted = append(rep.Restarted, "mqtt bridge")
		}
	}

	// The session last: a new account, server or TLS setting. Only the
	// latest waiting swap happens; a config back at the live [xmpp]
	// cancels it, and a pushed change it superseded leaves probation.
	a.pendingLink = nil
	if (nl == nil || !a.pushApplying && !sameXMPP(old.XMPP, cfg.XMPP)) && a.push.unswapped() {
		// A reload before the pushed session ran: back at the live
		// [xmpp], or on to [xmpp] settings other than those on trial.
		a.push.supersede()
	}
	if nl != nil {
		rep.Restarted = append(rep.Restarted, "xmpp session")
		x := cfg.XMPP
		if laterSession {
			rep.Notes = append(rep.Notes, "the XMPP session is replaced in a moment: the agent logs in again with the new [xmpp] settings")
			a.pendingLink = nl
			go func() {
				select {
				case <-a.sessCtx.Done():
					return // shutting down: no new session
				case <-time.After(sessionSwapDelay):
				}
				a.reloadMu.Lock()
				defer a.reloadMu.Unlock()
				if a.live && a.pendingLink == nl {
					a.pendingLink = nil
					a.swapLink(nl, self, x)
				}
			}()
		} else {
			a.swapLink(nl, self, x)
		}
	}
	for _, k := range []struct {
		name     string
		old, new any
	}{
		{"agent.state_dir", old.Agent.StateDir, cfg.Agent.StateDir},
		{"agent.history_max", old.Agent.HistoryMax, cfg.Agent.HistoryMax},
		{"agent.log_format", old.Agent.LogFormat, cfg.Agent.LogFormat},
	} {
		if k.old != k.new {
			rep.NotLive = append(rep.NotLive, k.name)
		}
	}
	if old.Agent.RollbackAfter != cfg.Agent.RollbackAfter {
		rep.Changed = append(rep.Changed, "agent.rollback_after")
	}
	a.running, a.runningText = cfg, text
	if len(rep.Added)+len(rep.Removed)+len(rep.Restarted) > 0 || old.XMPP.PresenceStatus != cfg.XMPP.PresenceStatus {
		signal(a.health.changed) // the presence status counts devices
	}
	return rep, nil
}

// sessionSwapDelay lets the answer to a reload asked over XMPP leave on
// the session the reload is about to replace.
const sessionSwapDelay = time.Second

// sameXMPP reports whether two [xmpp] tables keep the session: only the
// presence status may differ.
func sameXMPP(a, b config.XMPP) bool {
	a.PresenceStatus, b.PresenceStatus = "", ""
	return reflect.DeepEqual(a, b)
}

// applyPolicy installs the ACL, rate limits, actions, presence status and
// log level.
func (a *Agent) applyPolicy(old, cfg *config.Config, self xmpp.JID, rep *ReloadReport) {
	aclChanged := !reflect.DeepEqual(old.ACL, cfg.ACL)
	if aclChanged {
		rep.Changed = append(rep.Changed, "acl")
	}
	if !reflect.DeepEqual(old.Actions, cfg.Actions) {
		rep.Changed = append(rep.Changed, "actions")
	}
	if old.XMPP.PresenceStatus != cfg.XMPP.PresenceStatus {
		rep.Changed = append(rep.Changed, "presence_status")
	}
	if old.Agent.LogLevel != cfg.Agent.LogLevel && a.level != nil {
		var lv slog.Level
		if lv.UnmarshalText([]byte(cfg.Agent.LogLevel)) == nil {
			a.level.Set(lv)
			rep.Changed = append(rep.Changed, "log_level")
		}
	}
	a.ctl.SetPolicy(self, cfg)
	a.presenceText.Store(&cfg.XMPP.PresenceStatus)
	if aclChanged {
		a.tel.WakePublishers() // whitelist nodes' members follow the ACL
	}
	if old.Agent.OutboxMax != cfg.Agent.OutboxMax {
		rep.Changed = append(rep.Changed, "agent.outbox_max")
	}
}

// devicePlan is what a reload does to devices.
type devicePlan struct {
	replace map[*devUnit]*devUnit // running unit → its successor, nil when removed
	added   []*devUnit
}

// planDevices builds the drivers of new and changed devices (without
// opening anything) and pairs them with the running units.
func (a *Agent) planDevices(cur *units, cfg *config.Config) (devicePlan, error) {
	p := devicePlan{replace: make(map[*devUnit]*devUnit)}
	if a.injected {
		return p, nil // a test's own devices
	}
	running := make(map[string]*devUnit)
	for _, u := range cur.devs {
		if !u.virtual {
			running[u.cfg.Name] = u
		}
	}
	for _, dc := range cfg.Devices {
		u := running[dc.Name]
		delete(running, dc.Name)
		if u != nil && reflect.DeepEqual(u.cfg, dc) {
			continue
		}
		d, err := buildDevice(dc)
		if err != nil {
			return p, fmt.Errorf("device %q: %w", dc.Name, err)
		}
		nu := &devUnit{cfg: dc, dev: d}
		if u != nil {
			p.replace[u] = nu
		} else {
			p.added = append(p.added, nu)
		}
	}
	for _, u := range running {
		p.replace[u] = nil
	}
	return p, nil
}

// insertDevice puts u among devs in config order (virtual devices stay
// last).
func insertDevice(devs []*devUnit, u *devUnit, cfg *config.Config) []*devUnit {
	pos := make(map[string]int, len(cfg.Devices))
	for i, dc := range cfg.Devices {
		pos[dc.Name] = i
	}
	at := len(devs)
	for i, d := range devs {
		if d.virtual || pos[d.dev.Name()] > pos[u.dev.Name()] {
			at = i
			break
		}
	}
	out := append(devs[:at:at], u)
	return append(out, devs[at:]...)
}

// edit runs f on the dispatcher goroutine, between two readings, and
// waits for it.
func (a *Agent) edit(f func(*telemetry.Dispatcher)) error {
	done := make(chan struct{})
	select {
	case a.pipe <- func(d *telemetry.Dispatcher) { f(d); close(done) }:
	case <-a.sessCtx.Done():
		return ErrNotRunning
	}
	<-done
	return nil
}

// applySinks is the sink half of apply, on the dispatcher: the
// configured sinks are matched by telemetry (Dispatcher.Plan), the MQTT
// bridge's sink here; sinks that leave hand what their filters hold to
// their outbox first.
func (a *Agent) applySinks(d *telemetry.Dispatcher, cfg *config.Config, self xmpp.JID, devs []*devUnit, mqttChanged bool, nm *mqttMap, rep *ReloadReport) {
	cur := a.now()
	ch := d.Plan(cfg, self)
	bridge := ch.Bridge
	// The bridge's sink takes every device of ours.
	own := ownDevices(devs)
	m := cur.mqtt
	var prev *telemetry.Sink // a bridge sink the new bridge replaces
	if mqttChanged {
		m = nm
		prev, bridge = bridge, nil
	}
	switch {
	case bridge != nil && len(own) == 0:
		ch.Leave(bridge)
	case bridge != nil:
		bridge.SetDevices(own)
		ch.Keep(bridge)
	case m != nil && len(own) > 0:
		bs, err := a.mqttSink(cfg, m, devs, prev)
		if err != nil {
			a.log.Error("mqtt sink not started", "err", err)
			ch.Failed = append(ch.Failed, fmt.Sprintf("mqtt sink (%v)", err))
			if prev != nil {
				ch.Leave(prev)
			}
			break
		}
		m.sink = bs
		if prev != nil {
			ch.Succeed(prev, bs) // the same outbox when the broker host is the same
		} else {
			ch.Add(bs)
		}
	case prev != nil:
		ch.Leave(prev)
	}
	rep.Added = append(rep.Added, ch.Added...)
	rep.Removed = append(rep.Removed, ch.Removed...)
	rep.Changed = append(rep.Changed, ch.Changed...)
	rep.Restarted = append(rep.Restarted, ch.Restarted...)
	rep.Failed = append(rep.Failed, ch.Failed...)
	rep.Notes = append(rep.Notes, ch.Notes...)

	// Hand over: what leaving sinks hold goes to their outbox; they stop
	// (their successors keep the box); the new set starts.
	d.Handover(ch)
	a.u.Store(&units{devs: cur.devs, byName: cur.byName, sinks: ch.Next, mqtt: m})
	ch.Stop()
	if mqttChanged {
		if cur.mqtt != nil {
			cur.mqtt.halt()
		}
		if nm != nil {
			nm.start(a.sessCtx, a)
		}
	}
	d.Install(a.sessCtx, ch, cfg)
	if !reflect.DeepEqual(a.running.Alerts, cfg.Alerts) {
		rep.Changed = append(rep.Changed, "alerts")
	}
}

// swapLink replaces the XMPP session: the message and pubsub sinks pause
// (their outboxes keep taking readings), the old session ends cleanly,
// the new one starts and the sinks carry on over it. a.reloadMu is held.
func (a *Agent) swapLink(nl *link, self xmpp.JID, x config.XMPP) {
	var paused []*telemetry.Sink
	for _, s := range a.sinks() {
		if s.Kind() != "mqtt" {
			s.StopRun()
			paused = append(paused, s)
		}
	}
	old := a.ln.Load()
	a.ln.Store(nl)
	a.self.Store(&self)
	a.liveXMPP = x
	old.halt()
	a.log.Info("xmpp: new session", "jid", self.String())
	a.startLink(a.sessCtx, nl, false)
	for _, s := range paused {
		s.Rebind(self)
		s.Start(a.sessCtx)
	}
	a.push.linkSwapped(nl)
}
