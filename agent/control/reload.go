package control

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Reload errors.
var (
	ErrNoConfigFile = errors.New("no config file to reload (started with -demo or without -config)")
	ErrBadConfig    = errors.New("new config rejected; still running the old one")
	ErrConfigBusy   = errors.New("another reload or config push is being applied")
	ErrNotRunning   = errors.New("the agent is not running")
	// ErrDisk is a config that could not be written; the old one still runs.
	ErrDisk = errors.New("config not written; still running the old one")
)

// ReloadReport says what a reload (or a pushed config) changed. Entries
// name units and settings: "device relay1", "sink chat op@iot.test",
// "mqtt bridge", "xmpp session", "acl".
type ReloadReport struct {
	Added     []string
	Removed   []string
	Changed   []string // applied in place: settings, filters, alerts
	Restarted []string // stopped and started again with the new settings
	// NotLive are changed settings that take effect at the next start.
	NotLive []string
	// Failed are units the new config wants that could not start (an
	// outbox directory the disk refuses); the rest is applied.
	Failed []string
	Notes  []string
}

// Empty reports whether nothing changed.
func (r ReloadReport) Empty() bool {
	return len(r.Added)+len(r.Removed)+len(r.Changed)+len(r.Restarted)+len(r.NotLive)+len(r.Failed) == 0
}

func (r ReloadReport) String() string {
	if r.Empty() {
		return "config reloaded: nothing changed"
	}
	var parts []string
	for _, p := range []struct {
		what  string
		names []string
	}{
		{"added", r.Added}, {"removed", r.Removed}, {"changed", r.Changed}, {"restarted", r.Restarted},
		{"failed", r.Failed}, {"restart stanzad to apply", r.NotLive},
	} {
		if len(p.names) > 0 {
			parts = append(parts, p.what+": "+strings.Join(p.names, ", "))
		}
	}
	s := "config applied; " + strings.Join(parts, "; ")
	for _, n := range r.Notes {
		s += "\n" + n
	}
	return s
}

// Reload re-reads the config file and applies what changed. A file with
// problems changes nothing and the error lists every problem with its
// line. Operators (and SIGHUP, and the file watcher) only.
func (pl *Plane) Reload(ctx context.Context, c Caller) (rep ReloadReport, err error) {
	start := time.Now()
	defer func() { pl.audit(ctx, c, slog.LevelInfo, "reload", nil, err, time.Since(start)) }()
	if c.Role < RoleOperator {
		return rep, ErrForbidden
	}
	return pl.host.Reload(ctx, c)
}

// ConfigText returns the running config file with every inline secret
// replaced by "<secret>". Operators only.
func (pl *Plane) ConfigText(ctx context.Context, c Caller) (text []byte, err error) {
	start := time.Now()
	defer func() { pl.audit(ctx, c, slog.LevelInfo, "config get", nil, err, time.Since(start)) }()
	if c.Role < RoleOperator {
		return nil, ErrForbidden
	}
	return pl.host.ConfigText(ctx)
}

// PushConfig checks data as a whole config file, writes it in place of
// the running one (the old kept as .prev) and applies it. "<secret>"
// keeps the running secret at that key. Nothing changes when the config
// has a problem (ErrBadConfig, with every problem and its line), when
// another reload or push is being applied or a pushed [xmpp] change
// waits to get online (ErrConfigBusy), or when the file cannot be
// written (ErrDisk). Operators only; audit-logged without its content.
func (pl *Plane) PushConfig(ctx context.Context, c Caller, data []byte) (rep ReloadReport, err error) {
	start := time.Now()
	sum := sha256.Sum256(data)
	defer func() {
		pl.audit(ctx, c, slog.LevelInfo, "config push",
			[]string{fmt.Sprintf("%d bytes", len(data)), "sha256:" + hex.EncodeToString(sum[:6])}, err, time.Since(start))
	}()
	if c.Role < RoleOperator {
		return rep, ErrForbidden
	}
	return pl.host.PushConfig(ctx, c, data)
}

// configText joins a text-multi field's lines into a file.
func configText(lines []string) []byte {
	return []byte(strings.Join(lines, "\n") + "\n")
}
