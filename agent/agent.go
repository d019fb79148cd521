package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/agent/control"
	"github.com/stanzad/stanzad/agent/history"
	"github.com/stanzad/stanzad/agent/telemetry"
	"github.com/stanzad/stanzad/devices"
	"github.com/stanzad/stanzad/xmpp"
)

// Options configure an Agent.
type Options struct {
	Config  *config.Config
	Logger  *slog.Logger
	Version string
	// Devices, if set, replaces the devices built from Config (tests);
	// a reload then leaves devices alone.
	Devices []devices.Device
	// ConfigPath is the file Reload reads; empty disables reload.
	ConfigPath string
	// Level, if set, is the logger's level; reload changes it.
	Level *slog.LevelVar
}

// busSize is how many readings may wait between devices and sinks before
// emit starts dropping (devices never block on the network).
const busSize = 1024

// Agent runs the devices, the XMPP session and the sinks, each as a unit
// (units.go) that a reload can start and stop alone.
type Agent struct {
	log      *slog.Logger
	version  string
	started  time.Time
	self     atomic.Pointer[xmpp.JID] // the configured JID; an [xmpp] reload changes it
	injected bool                     // devices came from Options.Devices

	u  atomic.Pointer[units] // what runs now
	ln atomic.Pointer[link]  // the XMPP session unit

	ctl *control.Plane      // the ACL, rate limits, actions, command paths
	tel *telemetry.Pipeline // what the sinks share

	// presenceText is the configured presence_status; running is the config
	// in effect and runningText its file, guarded by reloadMu.
	presenceText atomic.Pointer[string]
	reloadMu     cfgLock
	liveXMPP     config.XMPP // the [xmpp] of the session that runs
	pendingLink  *link       // a session swap waiting to happen (apply's laterSession)
	pushApplying bool        // PushConfig's own apply runs (a.reloadMu held)
	running      *config.Config
	runningText  []byte
	configPath   string
	level        *slog.LevelVar
	push         pushState

	// Set by Run, under reloadMu: the contexts units start in, and
	// whether the agent runs (a reload before or after Run is refused).
	devCtx, sessCtx context.Context
	live            bool
	pipe            chan func(*telemetry.Dispatcher) // pipeline edits, run by the dispatcher
	fatal           chan error                       // the first session cannot log in

	bus     *telemetry.Bus
	dropped atomic.Uint64
	// lastDispatch is when the dispatcher last took a reading (unix ns).
	lastDispatch atomic.Int64
	last         lastReadings
	hist         *history.Store // nil without a history (history_max 0, or it could not be opened)
	upload       uploadState
	contacts     contacts
	health       deviceHealth
}

// New builds an agent from its configuration. It opens state files and
// constructs devices but starts nothing.
func New(opts Options) (*Agent, error) {
	cfg := opts.Config
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	self, err := xmpp.ParseJID(cfg.XMPP.JID)
	if err != nil {
		return nil, err
	}
	a := &Agent{
		log:     log,
		version: opts.Version,
		started: time.Now(), // not in Run: Status may be called while Run starts
		bus:     telemetry.NewBus(busSize),

		running:    cfg,
		configPath: opts.ConfigPath,
		level:      opts.Level,
		pipe:       make(chan func(*telemetry.Dispatcher)),
		reloadMu:   newCfgLock(),
		fatal:      make(chan error, 1),
		injected:   opts.Devices != nil,
	}
	a.self.Store(&self)
	a.liveXMPP = cfg.XMPP
	a.health.changed = make(chan struct{}, 1)
	if a.configPath != "" {
		// What config get shows; the file may have been edited since it
		// was loaded, but then a reload follows.
		if a.runningText, err = os.ReadFile(a.configPath); err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
	}
	a.ctl = control.New((*host)(a), log, self, cfg)
	a.presenceText.Store(&cfg.XMPP.PresenceStatus)
	a.tel = telemetry.New(log, a.hooks())
	u := &units{}
	devs := opts.Devices
	if devs == nil {
		if devs, err = BuildDevices(cfg.Devices); err != nil {
			return nil, err
		}
	}
	var dus []*devUnit
	for i, d := range devs {
		du := &devUnit{dev: d}
		if !a.injected {
			du.cfg = cfg.Devices[i]
		}
		dus = append(dus, du)
	}
	var errs []error
	for i := range cfg.Sinks {
		s, err := a.tel.NewSink(cfg, i, self, nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("sink[%d]: %w", i, err))
			continue
		}
		u.sinks = append(u.sinks, s)
	}
	if cfg.MQTT != nil {
		m, err := a.newMQTT(cfg, self)
		if err != nil {
			errs = append(errs, fmt.Errorf("mqtt: %w", err))
		} else {
			u.mqtt = m
			for _, d := range m.devs {
				dus = append(dus, &devUnit{dev: d, virtual: true})
			}
			if m.sink, err = a.mqttSink(cfg, m, dus, nil); err != nil {
				errs = append(errs, fmt.Errorf("mqtt: %w", err))
			} else if m.sink != nil {
				u.sinks = append(u.sinks, m.sink)
			}
		}
	}
	if cfg.Agent.HistoryMax > 0 {
		dir := history.Dir(cfg.Agent.StateDir)
		if a.hist, err = history.Open(dir, history.Options{Max: int64(cfg.Agent.HistoryMax), Logger: log}); err != nil {
			log.Error("no reading history this run: cannot open it", "dir", dir, "err", err)
			a.hist = nil
		}
	}
	a.u.Store(u.with(dus))
	if err := errors.Join(errs...); err != nil {
		a.closeState()
		return nil, err
	}
	ln, err := a.newLink(cfg, self)
	if err != nil {
		a.closeState()
		return nil, err
	}
	a.ln.Store(ln)
	a.push.load(a)
	return a, nil
}

// Run runs devices, session and sinks until ctx is cancelled, then shuts
// down in order: devices stop, queued readings are flushed to a live
// session, unavailable presence and </stream:stream> are sent, state is
// synced. It returns an error only when the agent cannot run at all, such
// as an authentication failure at startup.
func (a *Agent) Run(ctx context.Context) error {
	defer a.closeState()

	devCtx, stopDevices := context.WithCancel(ctx)
	defer stopDevices()
	sessCtx, stopSession := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSession()

	a.reloadMu.Lock()
	a.devCtx, a.sessCtx, a.live = devCtx, sessCtx, true
	u := a.now()
	for _, d := range u.devs {
		d.start(devCtx, a)
	}
	a.startLink(sessCtx, a.ln.Load(), true)
	for _, s := range u.sinks {
		s.Start(sessCtx)
	}
	if u.mqtt != nil {
		u.mqtt.start(sessCtx, a)
	}
	cfg := a.running
	a.reloadMu.Unlock()

	var side sync.WaitGroup
	side.Go(func() { a.followHealth(sessCtx) })
	if a.configPath != "" {
		side.Go(func() { a.watchConfig(sessCtx) })
	}
	side.Go(func() { a.push.watch(sessCtx, a) })
	if a.hist != nil {
		side.Go(func() { a.tickHistory(sessCtx) })
	}
	dispatched := make(chan struct{})
	go func() {
		defer close(dispatched)
		a.tel.Dispatch(a.bus, a.pipe, cfg, u.sinks)
	}()

	// On shutdown: stop devices, queue what they produced, give the sinks
	// a moment to get it acknowledged, then end the session. What is
	// still unacknowledged stays in the outbox for the next start. The
	// first session failing to log in ends everything.
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-a.fatal:
	}
	a.reloadMu.Lock()
	a.live = false
	stopDevices()
	for _, d := range a.now().devs {
		d.halt()
	}
	a.bus.Close()
	<-dispatched
	if runErr == nil {
		a.awaitAcks(sessCtx, 2*time.Second)
	}
	stopSession()
	u = a.now()
	telemetry.Stop(u.sinks)
	if u.mqtt != nil {
		u.mqtt.halt()
	}
	a.ln.Load().halt()
	a.reloadMu.Unlock()
	side.Wait()
	return runErr
}

// awaitAcks waits until every sink's outbox is acknowledged, the session
// is down, or timeout passes.
func (a *Agent) awaitAcks(ctx context.Context, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for a.Queued() > 0 && time.Now().Before(deadline) && ctx.Err() == nil && a.conn().Session() != nil {
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitConnected blocks until the agent has a live XMPP session, across
// a change of account.
func (a *Agent) WaitConnected(ctx context.Context) (*xmpp.Session, error) {
	for {
		l := a.ln.Load()
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			select {
			case <-l.replaced:
				cancel()
			case <-done:
			}
		}()
		s, err := l.client.WaitConnected(wctx)
		close(done)
		cancel()
		if err == nil || ctx.Err() != nil {
			return s, err
		}
	}
}

// Summary is a one-line status for service managers (systemd STATUS=).
func (a *Agent) Summary() string {
	state := "offline, reconnecting"
	s := a.conn().Session()
	if s != nil {
		state = "online as " + s.JID().String()
	}
	line := fmt.Sprintf("%s; %d readings queued", state, a.Queued())
	if s != nil {
		if l := s.Link(); l.Limited && l.Rate > 0 {
			line += fmt.Sprintf("; server accepts ~%.1f KB/s", l.Rate/1000)
		}
	}
	if held := a.tel.HeldCount(); held > 0 {
		line += fmt.Sprintf("; %d sinks held (recipient offline or readings bounced)", held)
	}
	return line
}

// Healthy reports whether the agent's pipeline moves: readings are being
// taken off the bus. A watchdog restarts an agent that stops being healthy
// (a hung disk under the outbox, a deadlock).
func (a *Agent) Healthy() bool {
	return a.bus.Len() < a.bus.Max() || time.Since(time.Unix(0, a.lastDispatch.Load())) < 10*time.Second
}

// Queued returns how many readings wait in the outboxes, not yet
// acknowledged by the server.
func (a *Agent) Queued() int { return a.tel.Queued() }

// hooks is how the telemetry pipeline reaches the agent.
func (a *Agent) hooks() telemetry.Hooks {
	return telemetry.Hooks{
		Sinks:       a.sinks,
		Conn:        a.conn,
		Offline:     a.contacts.offline,
		Members:     a.ctl.Members,
		HoldChanged: func() { signal(a.health.changed) },
		Status: func() string {
			_, status := a.presenceStatus()
			return status
		},
		RoomCommand: a.ctl.RoomCommand,
		Seen: func(r devices.Reading, now time.Time) {
			a.lastDispatch.Store(now.UnixNano())
			a.health.note(a.log, r)
			if a.hist != nil {
				a.hist.Add(r) // errors are logged by the store
			}
		},
		Accepted: a.accepted,
	}
}

// superviseDevice runs a device and restarts it with backoff when it fails.
func (a *Agent) superviseDevice(ctx context.Context, d devices.Device) {
	log := a.log.With("device", d.Name())
	delay := time.Second
	for {
		started := time.Now()
		err := d.Run(ctx, a.emit)
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > time.Minute {
			delay = time.Second // it ran fine for a while: a new fault
		}
		if err == nil {
			err = errors.New("stopped without an error")
		}
		a.health.failed(a.log, d.Name(), err)
		log.Info("device restarting", "err", err, "in", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, time.Minute)
	}
}

// emit is the devices' only way into the agent. It never blocks: when the
// bus is full (or closed: the agent is stopping) the reading is dropped
// and counted.
func (a *Agent) emit(r devices.Reading) {
	if err := a.bus.Push(r); err != nil {
		if n := a.dropped.Add(1); n&(n-1) == 0 { // log at 1, 2, 4, 8, ...
			a.log.Warn(err.Error()+": reading dropped", "device", r.Device, "dropped_total", n)
		}
	}
}

func (a *Agent) closeState() {
	if a.hist != nil {
		if err := a.hist.Close(); err != nil {
			a.log.Warn("history not closed cleanly", "err", err)
		}
	}
	u := a.now()
	if u == nil {
		return
	}
	a.tel.Close(u.sinks)
}

// tickHistory writes the history's buffered readings and finished
// buckets every second until ctx is done.
func (a *Agent) tickHistory(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			a.hist.Tick(now) // errors are logged by the store
		}
	}
}

func (a *Agent) onConnect(ctx context.Context, s *xmpp.Session) error {
	if s.Resumed() {
		return nil // the resumed stream keeps its presence
	}
	// RFC 6121 §2.2: the roster before initial presence, so the contacts'
	// presence that follows is understood.
	a.contacts.newStream()
	a.loadRoster(ctx, s)
	return s.Send(ctx, a.presence())
}

// presence is the agent's available presence: health as status (and
// <show>away</show> while a device fails) and XEP-0115 caps, so clients
// learn the features (ad-hoc commands) from the cache.
func (a *Agent) presence() *xmpp.Element {
	p := xmpp.Stanza("presence", "", "", "")
	show, status := a.presenceStatus()
	if show != "" {
		p.Add(xmpp.NewElement(xmpp.NSClient, "show").SetText(show))
	}
	p.Add(xmpp.NewElement(xmpp.NSClient, "status").SetText(status))
	return p.Add(a.ln.Load().mux.Caps())
}

// presenceStatus is the health line: "ok", or how many devices fail and
// which, after presence_status if that is set.
func (a *Agent) presenceStatus() (show, status string) {
	status = "ok"
	if failing := a.health.names(); len(failing) > 0 {
		show = "away"
		status = fmt.Sprintf("%d of %d devices failing: %s", len(failing), len(a.devices()), strings.Join(failing, ", "))
		if len(failing) == 1 {
			status = fmt.Sprintf("1 of %d devices failing: %s", len(a.devices()), failing[0])
		}
	}
	if bounced := a.tel.Bounced(time.Now()); len(bounced) > 0 {
		status += "; readings bounced by the server, retrying: " + strings.Join(bounced, ", ")
	}
	if p := *a.presenceText.Load(); p != "" {
		status = p + ": " + status
	}
	return show, status
}

// healthSettle lets a burst of device changes (a bus that takes several
// sensors down at once) make one presence update.
const healthSettle = 2 * time.Second

// followHealth sends a new presence, to the account's contacts and to
// the rooms the agent is in, when a device starts failing or recovers.
func (a *Agent) followHealth(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.health.changed:
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(healthSettle):
		}
		a.updatePresence(ctx)
	}
}

// updatePresence sends the current presence on the live session.
func (a *Agent) updatePresence(ctx context.Context) {
	s := a.conn().Session()
	if s == nil {
		return // the next session starts with it
	}
	if err := s.Send(ctx, a.presence()); err != nil {
		a.log.Warn("presence not updated", "err", err)
		return
	}
	show, status := a.presenceStatus()
	a.tel.SendRoomPresence(ctx, s, show, status)
}

// handleMessage routes a message: groupchat to the rooms, errors to the
// sinks (bounces), chat to the command paths.
func (a *Agent) handleMessage(ctx context.Context, s *xmpp.Session, st *xmpp.Element) {
	from, err := xmpp.ParseJID(st.Attr("from"))
	if err != nil {
		return
	}
	switch st.Attr("type") {
	case "groupchat":
		a.tel.HandleRoomMessage(ctx, s, st, from)
		return
	case "error":
		a.tel.HandleError(ctx, s, st, from)
		return
	case "headline":
		return
	}
	a.ctl.HandleChat(ctx, s, st, from)
}

// handlePresence answers subscription requests per ACL: operators and
// viewers are approved and subscribed back, anyone else refused.
func (a *Agent) handlePresence(ctx context.Context, s *xmpp.Session, st *xmpp.Element) {
	from, err := xmpp.ParseJID(st.Attr("from"))
	if err != nil {
		return
	}
	if a.tel.HandleRoomPresence(ctx, s, st, from) {
		return
	}
	switch st.Attr("type") {
	case "", "unavailable":
		if from.BareKey() != a.me().BareKey() && a.follows(from) {
			a.contacts.presence(from, st.Attr("type") == "")
			a.tel.WakeChatSinks(from.BareKey())
		}
		return
	case "subscribe":
	default:
		return
	}
	to := from.Bare().String()
	if a.ctl.Role(from) == RoleNone {
		a.ctl.Stranger(ctx, from, "subscribe")
		s.Send(ctx, xmpp.Stanza("presence", "unsubscribed", to, ""))
		return
	}
	a.log.Info("presence subscription approved", "from", to)
	s.Send(ctx, xmpp.Stanza("presence", "subscribed", to, ""))
	s.Send(ctx, xmpp.Stanza("presence", "subscribe", to, ""))
}
