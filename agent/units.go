package agent

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync"
	"time"

	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/agent/telemetry"
	"github.com/stanzad/stanzad/devices"
	"github.com/stanzad/stanzad/xmpp"
)

// The agent runs units: each device, each sink, the MQTT bridge and the
// XMPP session own their goroutines and can be started and stopped
// alone. A reload (reload.go) is a diff of units: what is unchanged keeps
// running untouched.

// units is the set running now. A reload builds a new set and stores it
// whole; readers (commands, status, stanza handlers) load it without a
// lock. Only the dispatcher may change a sink's filter fields.
type units struct {
	devs   []*devUnit
	byName map[string]*devUnit
	sinks  []*telemetry.Sink // config order; the MQTT bridge's sink last
	mqtt   *mqttMap
}

func (u *units) with(devs []*devUnit) *units {
	n := &units{devs: devs, byName: make(map[string]*devUnit, len(devs)), sinks: u.sinks, mqtt: u.mqtt}
	for _, d := range devs {
		n.byName[d.dev.Name()] = d
	}
	return n
}

func (a *Agent) now() *units { return a.u.Load() }

// sinks returns the sinks running now.
func (a *Agent) sinks() []*telemetry.Sink {
	if u := a.now(); u != nil {
		return u.sinks
	}
	return nil // still being built
}

// devices returns the devices running now, in config order (MQTT virtual
// devices last).
func (a *Agent) devices() []devices.Device {
	us := a.now().devs
	out := make([]devices.Device, len(us))
	for i, u := range us {
		out[i] = u.dev
	}
	return out
}

// device returns the running device called name.
func (a *Agent) device(name string) (devices.Device, bool) {
	u, ok := a.now().byName[name]
	if !ok {
		return nil, false
	}
	return u.dev, true
}

// me returns the agent's own JID as configured.
func (a *Agent) me() xmpp.JID { return *a.self.Load() }

// devUnit is one running device: a driver under supervision.
type devUnit struct {
	cfg     config.Device // zero for MQTT virtual devices and injected ones
	dev     devices.Device
	virtual bool // fed by the MQTT bridge; its unit stops with the bridge
	cancel  context.CancelFunc
	done    chan struct{}
}

// start runs the device until halt (or ctx) stops it.
func (u *devUnit) start(ctx context.Context, a *Agent) {
	ctx, u.cancel = context.WithCancel(ctx)
	u.done = make(chan struct{})
	go func() {
		defer close(u.done)
		a.superviseDevice(ctx, u.dev)
	}()
}

// halt stops the device and waits until its driver has returned: its
// pins and ports are released (a gpio-out has gone to its safe state).
func (u *devUnit) halt() {
	if u.cancel == nil {
		return
	}
	u.cancel()
	<-u.done
}

// lastReadings keeps each device's latest good reading, so that read
// answers for devices that only report events (serial lines, GPIO edges,
// file changes, MQTT topics) with what they said last and when.
type lastReadings struct {
	mu sync.Mutex
	m  map[string]devices.Reading
}

func (l *lastReadings) note(r devices.Reading) {
	l.mu.Lock()
	if l.m == nil {
		l.m = make(map[string]devices.Reading)
	}
	l.m[r.Device] = r
	l.mu.Unlock()
}

func (l *lastReadings) get(name string) (devices.Reading, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r, ok := l.m[name]
	return r, ok
}

func (l *lastReadings) forget(name string) {
	l.mu.Lock()
	delete(l.m, name)
	l.mu.Unlock()
}

// link is one XMPP client with its stanza handlers: the session unit. A
// change of [xmpp] replaces it whole.
type link struct {
	client   *xmpp.Client
	mux      *xmpp.Mux
	cancel   context.CancelFunc
	done     chan struct{}
	replaced chan struct{} // closed when another link takes over
	caFile   string        // the [xmpp] ca_file, also trusted for uploads
}

// conn returns the XMPP client in use.
func (a *Agent) conn() *xmpp.Client { return a.ln.Load().client }

// startLink runs the client until its context ends. An authentication
// failure on its first attempt (the client gives up at once then) is
// fatal for the agent's first session, unless a pushed config can be
// rolled back; after a reload it is retried every minute, and a pushed
// config waiting for confirmation is rolled back.
func (a *Agent) startLink(ctx context.Context, l *link, first bool) {
	ctx, l.cancel = context.WithCancel(ctx)
	l.done = make(chan struct{})
	go func() {
		defer close(l.done)
		for {
			err := l.client.Run(ctx)
			if err == nil || ctx.Err() != nil {
				return
			}
			if a.push.failed(err) {
				a.log.Error("cannot log in with the pushed config; rolling back", "err", err)
			} else if first {
				select {
				case a.fatal <- err:
				default:
				}
				return
			} else {
				a.log.Error("cannot log in with the reloaded [xmpp] settings; fix the config (retrying every minute)", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Minute):
			}
		}
	}()
}

// halt ends the session cleanly (unavailable presence, </stream:stream>)
// and waits for the client to return.
func (l *link) halt() {
	close(l.replaced)
	if l.cancel != nil {
		l.cancel()
		<-l.done
	}
}

// newLink builds the client for cfg's [xmpp] table.
func (a *Agent) newLink(cfg *config.Config, self xmpp.JID) (*link, error) {
	x := cfg.XMPP
	tc, err := tlsConfig(x)
	if err != nil {
		return nil, err
	}
	mux := xmpp.NewMux(xmpp.Identity{Category: "client", Type: "bot", Name: "stanzad"},
		xmpp.Software{Name: "stanzad", Version: a.version})
	mux.Message = a.handleMessage
	mux.Presence = a.handlePresence
	mux.Allow = a.ctl.AllowIQ
	mux.HandleIQ("set", xmpp.NSRoster, "query", a.rosterPush)
	a.ctl.Register(mux)
	c := xmpp.NewClient(xmpp.Config{
		JID:       self,
		Password:  x.Password.Reveal(),
		Servers:   x.Server,
		DirectTLS: x.TLS == "direct",
		TLS:       tc,
		Handler:   mux,
		Logger:    a.log.With("component", "xmpp"),
	})
	c.OnConnect = a.onConnect
	c.OnAck = a.tel.OnAck
	c.Keepalive = x.Keepalive.Duration
	return &link{client: c, mux: mux, replaced: make(chan struct{}), caFile: x.CAFile}, nil
}

// tlsConfig loads the TLS files [xmpp] names.
func tlsConfig(x config.XMPP) (*tls.Config, error) {
	tc, err := xmpp.TLSConfig(xmpp.TLSOptions{
		CAFile:     x.CAFile,
		ServerName: x.ServerName,
		PinSHA256:  x.PinSHA256,
		CertFile:   x.ClientCert,
		KeyFile:    x.ClientKey,
	})
	if err != nil {
		return nil, fmt.Errorf("xmpp: %w", err)
	}
	return tc, nil
}

// cfgLock serializes reloads, pushes and the session swap. Unlike a
// sync.Mutex, a command handler waits for it only as long as its
// request lives: a handler must never hold up the session whose end the
// lock's holder may be waiting for (a swap or shutdown halting the old
// session waits for its handlers to return).
type cfgLock chan struct{}

func newCfgLock() cfgLock { return make(cfgLock, 1) }

// Lock takes the lock, however long that takes.
func (l cfgLock) Lock() { l <- struct{}{} }

// LockCtx takes the lock, or gives up when ctx ends.
func (l cfgLock) LockCtx(ctx context.Context) error {
	select {
	case l <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TryLock takes the lock if it is free.
func (l cfgLock) TryLock() bool {
	select {
	case l <- struct{}{}:
		return true
	default:
		return false
	}
}

// Unlock releases the lock.
func (l cfgLock) Unlock() { <-l }
