package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/agent/control"
	"github.com/stanzad/stanzad/xmpp"
)

// Remote configuration: an operator reads the running config (secrets
// hidden) and pushes a new one, which is checked whole, written next to
// the old one and applied like a reload. A push that changes [xmpp] is
// on probation: if the agent is not online with it within
// [agent] rollback_after, the previous file is put back and applied. The
// probation survives a restart (a marker in state_dir), so a board that
// crashes or is restarted with a bad account still comes back.

// ConfigText is control.Host's: the running config file, secrets
// redacted.
func (h *host) ConfigText(ctx context.Context) ([]byte, error) {
	a := (*Agent)(h)
	if a.configPath == "" {
		return nil, ErrNoConfigFile
	}
	if err := a.reloadMu.LockCtx(ctx); err != nil {
		return nil, err
	}
	defer a.reloadMu.Unlock()
	return config.Redact(a.runningText), nil
}

// PushConfig is control.Host's: it checks, writes and applies a pushed
// config for an operator (see control.Plane.PushConfig).
func (h *host) PushConfig(ctx context.Context, c control.Caller, data []byte) (rep ReloadReport, err error) {
	a := (*Agent)(h)
	if a.configPath == "" {
		return rep, ErrNoConfigFile
	}
	if !a.reloadMu.TryLock() {
		return rep, ErrConfigBusy
	}
	defer a.reloadMu.Unlock()
	if left := a.push.left(); left > 0 {
		return rep, fmt.Errorf("%w: the last pushed config has %s left to get the agent online; push again after that", ErrConfigBusy, left.Round(time.Second))
	}
	switch {
	case len(data) > config.MaxFileSize:
		return rep, fmt.Errorf("%w: the config is %d bytes; the limit is %d", ErrBadConfig, len(data), config.MaxFileSize)
	case !utf8.Valid(data):
		return rep, fmt.Errorf("%w: the config is not UTF-8 text", ErrBadConfig)
	}
	data, err = config.Unredact(data, a.runningText, "pushed config")
	if err != nil {
		return rep, fmt.Errorf("%w: %w", ErrBadConfig, err)
	}
	cfg, err := config.LoadData(a.configPath, data, "pushed config")
	if err != nil {
		return rep, fmt.Errorf("%w: %w", ErrBadConfig, err)
	}
	if len(cfg.ACL.Operators) == 0 {
		return rep, fmt.Errorf("%w: acl.operators is empty: nobody could control this board or push a fix to it", ErrBadConfig)
	}
	if _, err := BuildDevices(cfg.Devices); err != nil {
		return rep, fmt.Errorf("%w: %w", ErrBadConfig, err)
	}
	probation := !sameXMPP(a.liveXMPP, cfg.XMPP)
	if _, err := tlsConfig(cfg.XMPP); err != nil && probation {
		return rep, fmt.Errorf("%w: %w", ErrBadConfig, err)
	}
	if cfg.Agent.StateDir != a.running.Agent.StateDir {
		// Taken at the next start only, where a directory the agent
		// cannot write stops it before it could get a fix.
		if err := writable(cfg.Agent.StateDir); err != nil {
			return rep, fmt.Errorf("%w: agent.state_dir: %w", ErrBadConfig, err)
		}
	}
	// Markers first, then the file: a crash in between leaves markers
	// that do not match the file that runs, which are ignored.
	if err := a.writePush(cfg, c.JID, data, probation); err != nil {
		a.push.end()
		return rep, fmt.Errorf("%w: %w", ErrDisk, err)
	}
	old, oldText := a.running, a.runningText
	a.pushApplying = true
	rep, err = a.apply(ctx, cfg, data, true)
	a.pushApplying = false
	if err == nil && len(rep.Failed) > 0 {
		// What failed here fails the next start, which cannot be
		// fixed from afar: go back now.
		err = fmt.Errorf("%w: could not start %s", ErrBadConfig, strings.Join(rep.Failed, ", "))
		a.push.end() // not on trial: refused (else the apply below reports it superseded)
		if _, aerr := a.apply(ctx, old, oldText, true); aerr != nil {
			a.log.Error("config push: the previous config could not be applied again", "err", aerr)
		}
	}
	if err != nil {
		// Put the old file back (.prev already holds it).
		if rerr := writeAtomic(a.configPath, oldText, fileMode(a.configPath)); rerr != nil {
			a.log.Error("config push: the previous file could not be put back", "err", rerr)
		}
		os.Remove(a.configPath + ".pushed")
		a.push.end()
		return rep, err
	}
	if probation {
		rep.Notes = append(rep.Notes, fmt.Sprintf("if the agent is not online with the new [xmpp] settings within %s, it goes back to the previous config and tells you",
			a.rollbackAfter()))
	}
	a.log.Info(rep.String(), "via", "push", "by", c.JID.String())
	return rep, nil
}

// writable checks that dir can be created and written, as a state
// directory must be.
func writable(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".stanzad-check-*")
	if err != nil {
		return err
	}
	_, err = f.Write([]byte("stanzad"))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if rerr := os.Remove(f.Name()); err == nil {
		err = rerr
	}
	return err
}

// A pushed file that never started: path.pushed holds its SHA-256 until
// the agent has started with it. If a start with it fails (anything a
// push cannot try without a restart: a state directory, an outbox, a
// device that is opened only then), the previous file (path.prev) comes
// back and the start is tried again with it: a push never leaves a board
// that cannot start, and so cannot be fixed from afar.

// fileSum is how markers name a config file: its SHA-256, in hex.
func fileSum(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// markPushed records data as the pushed file at path.
func markPushed(path string, data []byte) error {
	return writeAtomic(path+".pushed", []byte(fileSum(data)+"\n"), 0o640)
}

// pushedUnstarted reports whether the file at path is a pushed one that
// has not started yet.
func pushedUnstarted(path string) bool {
	mark, err := os.ReadFile(path + ".pushed")
	if err != nil {
		return false
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	return strings.TrimSpace(string(mark)) == fileSum(data)
}

// RevertUnstartedPush puts the previous config back at path if the file
// there is a pushed one that has never started, and reports whether it
// did. stanzad calls it when it cannot start.
func RevertUnstartedPush(path string) (bool, error) {
	if !pushedUnstarted(path) {
		return false, nil
	}
	prev, err := os.ReadFile(path + ".prev")
	if err != nil {
		return false, err
	}
	if err := writeAtomic(path, prev, fileMode(path)); err != nil {
		return false, err
	}
	os.Remove(path + ".pushed")
	return true, nil
}

// StartedWith records that the agent started with the file at path: a
// pushed file that did is one no longer to be reverted at a start.
func StartedWith(path string) {
	if pushedUnstarted(path) {
		os.Remove(path + ".pushed")
	}
}

// writePush saves the probation's marker (if on probation) and the
// pushed file's, then writes the file, keeping the running one as .prev.
func (a *Agent) writePush(cfg *config.Config, by xmpp.JID, data []byte, probation bool) error {
	if probation {
		if err := a.push.begin(cfg, by, data, a.rollbackAfter()); err != nil {
			return fmt.Errorf("the probation of the new [xmpp] settings cannot be saved: %w", err)
		}
	}
	if err := markPushed(a.configPath, data); err != nil {
		return err
	}
	return writeConfig(a.configPath, data, a.runningText)
}

func (a *Agent) rollbackAfter() time.Duration {
	if d := a.running.Agent.RollbackAfter.Duration; d > 0 {
		return d
	}
	return 2 * time.Minute
}

// writeConfig replaces the file at path with data atomically, keeping
// prev — the config that runs, which is what a rollback must restore,
// not whatever the file holds now (an edit a reload refused) — as
// path.prev: a crash leaves either the old or the new file, never a torn
// one.
func writeConfig(path string, data, prev []byte) error {
	mode := fileMode(path)
	if err := writeAtomic(path+".prev", prev, mode); err != nil {
		return err
	}
	return writeAtomic(path, data, mode)
}

// fileMode is the permission bits of the file at path, 0640 if it has
// none to go by.
func fileMode(path string) os.FileMode {
	if fi, err := os.Stat(path); err == nil {
		return fi.Mode().Perm()
	}
	return 0o640
}

// writeAtomic writes data to a temporary file next to path, syncs it and
// renames it over path, then syncs the directory.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// pushState follows a pushed config that changed [xmpp] until the agent
// is online with it, or rolls it back.
type pushState struct {
	mu      sync.Mutex
	pending *probation
	path    string        // the marker file of the probation, "" when none
	wake    chan struct{} // capacity 1: the watcher has news
	note    string        // the last push's outcome, for status
	state   string        // the same for machines: applied, rolled-back, failed, superseded
}

// probation is a pushed config waiting to get the agent online.
type probation struct {
	By     string    `json:"by"`     // the operator's JID
	At     time.Time `json:"at"`     // when it was pushed
	SHA256 string    `json:"sha256"` // of the pushed file, to know it on disk
	// Window is rollback_after when it was pushed (0 in markers written
	// before it was kept: then the running config's).
	Window   time.Duration `json:"window,omitempty"`
	deadline time.Time
	window   time.Duration // rollback_after
	link     *link         // the session of the pushed config, once it runs
	failed   error         // the login failed for good
}

// marker is the probation's file in the state directory of cfg: the
// pushed config's, where a restart with it looks.
func marker(cfg *config.Config) string {
	return filepath.Join(cfg.Agent.StateDir, "config-push.json")
}

func (p *pushState) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// load picks up a probation a restart interrupted: the agent runs the
// pushed file and has rollback_after from now to get online with it.
func (p *pushState) load(a *Agent) {
	p.wake = make(chan struct{}, 1)
	if a.configPath == "" {
		return
	}
	path := marker(a.running)
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	var pr probation
	if json.Unmarshal(b, &pr) != nil || pr.SHA256 != fileSum(a.runningText) {
		os.Remove(path) // not the file that runs: the push never took
		return
	}
	pr.window = pr.Window
	if pr.window <= 0 {
		pr.window = a.rollbackAfter()
	}
	pr.deadline = time.Now().Add(pr.window)
	pr.link = a.ln.Load()
	p.pending, p.path = &pr, path
	a.log.Warn("running a pushed config that has not been online yet; rolling back if it does not get online", "pushed_by", pr.By, "within", pr.window)
	p.signal()
}

// begin puts a push of cfg (the file data) on probation for window and
// saves the marker where a restart with cfg looks for it. The window is
// the running config's rollback_after, not the pushed one's: the config
// under trial does not set its own trial.
func (p *pushState) begin(cfg *config.Config, by xmpp.JID, data []byte, window time.Duration) error {
	pr := &probation{By: by.String(), At: time.Now().UTC(), SHA256: fileSum(data),
		Window: window, window: window, deadline: time.Now().Add(window)}
	path := marker(cfg)
	p.mu.Lock()
	p.pending, p.path = pr, path
	p.note, p.state = "", ""
	p.mu.Unlock()
	b, _ := json.Marshal(pr)
	if err := os.MkdirAll(cfg.Agent.StateDir, 0o750); err != nil {
		return err
	}
	return writeAtomic(path, b, 0o640)
}

// end drops the probation and its marker.
func (p *pushState) end() {
	p.mu.Lock()
	path := p.path
	p.pending, p.path = nil, ""
	p.mu.Unlock()
	if path != "" {
		os.Remove(path)
	}
}

// unswapped reports whether a pushed config is on probation whose
// session has not started yet.
func (p *pushState) unswapped() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pending != nil && p.pending.link == nil
}

// setNote sets the outcome status shows, in words and as a state.
func (p *pushState) setNote(note, state string) {
	p.mu.Lock()
	p.note, p.state = note, state
	p.mu.Unlock()
}

// left is the time a pushed config has left to get online; 0 when none
// is on probation.
func (p *pushState) left() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pending == nil {
		return 0
	}
	return max(time.Until(p.pending.deadline), time.Second)
}

// linkSwapped tells the probation which session is the pushed config's.
// A later swap (a local reload that changed [xmpp] again) supersedes the
// probation: rolling back at its deadline would undo that fix.
func (p *pushState) linkSwapped(l *link) {
	p.mu.Lock()
	superseded := p.pending != nil && p.pending.link != nil && p.pending.link != l
	if p.pending != nil && p.pending.link == nil {
		p.pending.link = l
	}
	p.mu.Unlock()
	if superseded {
		p.supersede()
	}
	p.signal()
}

// supersede ends a probation that a reload's [xmpp] replaced.
func (p *pushState) supersede() {
	p.end()
	p.setNote("a pushed [xmpp] change was superseded by a reload", "superseded")
}

// failed reports whether err (a login refused) ends a probation: then
// the watcher rolls back at once.
func (p *pushState) failed(err error) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pending == nil {
		return false
	}
	p.pending.failed = err
	p.signal()
	return true
}

// status is the last push's outcome, or the probation running now: in
// words, and as a state for scripts (waiting, applied, rolled-back,
// failed, superseded; "" when there was no push on probation).
func (p *pushState) status() (note, state string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pr := p.pending; pr != nil {
		return fmt.Sprintf("config pushed by %s at %s is waiting to get online (rolled back in %s if it does not)",
			pr.By, pr.At.Format(time.TimeOnly), max(time.Until(pr.deadline), 0).Round(time.Second)), "waiting"
	}
	return p.note, p.state
}

// watch confirms or rolls back pushed configs until ctx is done.
func (p *pushState) watch(ctx context.Context, a *Agent) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
		}
		p.mu.Lock()
		pr := p.pending
		var l *link
		if pr != nil {
			l = pr.link
		}
		p.mu.Unlock()
		if l == nil {
			continue
		}
		wctx, cancel := context.WithDeadline(ctx, pr.deadline)
		online := make(chan error, 1)
		go func() {
			_, err := l.client.WaitConnected(wctx)
			online <- err
		}()
		var why string
		waited := false
		select {
		case err := <-online:
			waited = true
			if err == nil {
				why = ""
			} else if ctx.Err() != nil {
				cancel()
				return
			} else {
				why = fmt.Sprintf("not online within %s with it", pr.window)
				if err := l.client.LastError(); err != nil {
					why += " (last error: " + err.Error() + ")"
				}
			}
		case <-p.wake:
			p.mu.Lock()
			err := pr.failed
			p.mu.Unlock()
			if err == nil {
				cancel()
				<-online
				p.signal() // look again
				continue
			}
			why = "the server refused the login: " + err.Error()
		}
		cancel()
		if !waited {
			<-online
		}
		if why == "" {
			p.confirm(ctx, a, pr)
		} else {
			p.rollback(ctx, a, pr, why)
		}
	}
}

// confirm ends a probation that got online.
func (p *pushState) confirm(ctx context.Context, a *Agent, pr *probation) {
	p.end()
	s := a.conn().Session()
	jid := a.me().String()
	if s != nil {
		jid = s.JID().String()
	}
	p.mu.Lock()
	p.note = fmt.Sprintf("config pushed by %s at %s is applied and online as %s", pr.By, pr.At.Format(time.TimeOnly), jid)
	p.state = "applied"
	p.mu.Unlock()
	a.log.Info("config push confirmed: online with the new [xmpp] settings", "pushed_by", pr.By, "jid", jid)
	a.tell(ctx, pr.By, "stanzad: online with the config you pushed at "+pr.At.Format(time.RFC3339)+" (as "+jid+")")
}

// rollback puts the previous file back and applies it.
func (p *pushState) rollback(ctx context.Context, a *Agent, pr *probation, why string) {
	a.reloadMu.Lock()
	state := "rolled-back"
	msg := func() string {
		defer a.reloadMu.Unlock()
		if !a.live || ctx.Err() != nil {
			// Shutting down: the marker stays, and the next start
			// gives the pushed config its window again.
			return ""
		}
		at := pr.At.Format(time.RFC3339)
		prev, err := os.ReadFile(a.configPath + ".prev")
		var cfg *config.Config
		if err == nil {
			cfg, err = config.LoadData(a.configPath, prev, a.configPath+".prev")
		}
		if err == nil {
			err = writeAtomic(a.configPath, prev, fileMode(a.configPath))
		}
		// The marker goes once the previous file is back (or cannot
		// be): a crash before leaves it for the next start.
		p.end()
		if err == nil {
			_, err = a.apply(ctx, cfg, prev, false)
		}
		if err != nil {
			a.log.Error("config push: rollback failed; still running the pushed config", "pushed_by", pr.By, "why", why, "err", err)
			state = "failed"
			return fmt.Sprintf("the config pushed by %s at %s is %s, and going back failed: %v", pr.By, at, why, err)
		}
		a.log.Error("config push rolled back: the previous config runs again", "pushed_by", pr.By, "why", why)
		return fmt.Sprintf("the config pushed by %s at %s was rolled back: %s; the previous config runs again", pr.By, at, why)
	}()
	if msg == "" {
		return
	}
	p.setNote(msg, state)
	a.tell(ctx, pr.By, "stanzad: "+msg)
}

// tell sends a chat message to an operator once the agent is online.
func (a *Agent) tell(ctx context.Context, to, text string) {
	j, err := xmpp.ParseJID(to)
	if err != nil {
		return
	}
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
		defer cancel()
		s, err := a.WaitConnected(wctx)
		if err != nil {
			return
		}
		m := xmpp.Stanza("message", "chat", j.Bare().String(), "")
		m.Add(xmpp.NewElement(xmpp.NSClient, "body").SetText(text))
		if err := s.Send(wctx, m); err != nil {
			a.log.Warn("operator not told", "to", to, "err", err)
		}
	}()
}
