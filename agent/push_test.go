package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/agent/control"
	"github.com/stanzad/stanzad/internal/tmpfs"
	"github.com/stanzad/stanzad/xmpp"
)

// pushAgent runs an agent (offline: no server) from a config file in dir
// and returns it with the file's text.
func pushAgent(t *testing.T, dir string) (*Agent, string) {
	t.Helper()
	path := filepath.Join(dir, "stanzad.toml")
	text := "[xmpp]\njid = \"device@iot.test/agent\"\npassword = \"secret-pw\"\nserver = \"127.0.0.1:1\"\n" +
		"[agent]\nstate_dir = \"" + filepath.Join(t.TempDir(), "state") + "\"\n" +
		"[acl]\noperators = [\"op@iot.test\"]\nviewers = [\"viewer@iot.test\"]\n" +
		"[[device]]\nname = \"relay1\"\nkind = \"sim-switch\"\n"
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return runFromFile(t, path), text
}

// runFromFile runs the agent of the config file at path until the test
// ends (offline when the file names no reachable server) and returns it
// once Run has started its units.
func runFromFile(t *testing.T, path string) *Agent {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Options{Config: cfg, ConfigPath: path})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for { // Run has started its units
		a.reloadMu.Lock()
		live := a.live
		a.reloadMu.Unlock()
		if live {
			break
		}
		time.Sleep(time.Millisecond)
	}
	return a
}

var op = Caller{JID: xmpp.MustParseJID("op@iot.test/laptop"), Role: RoleOperator, Via: "test"}

// Pushes that must change nothing: each is refused with the reason, the
// file and the running config stay as they were.
func TestPushConfigRefused(t *testing.T) {
	dir := t.TempDir()
	a, text := pushAgent(t, dir)
	path := filepath.Join(dir, "stanzad.toml")
	running := a.running
	for _, tt := range []struct {
		name   string
		caller Caller
		data   string
		want   error
		text   string
	}{
		{"viewer", Caller{JID: xmpp.MustParseJID("viewer@iot.test/x"), Role: RoleViewer}, text, ErrForbidden, ""},
		{"not UTF-8", op, text + "# \xff\xfe\n", ErrBadConfig, "not UTF-8"},
		{"huge", op, text + "#" + strings.Repeat("x", config.MaxFileSize) + "\n", ErrBadConfig, "the limit is"},
		{"unknown key", op, text + "colour = \"red\"\n", ErrBadConfig, "pushed config:"},
		{"no operators", op, strings.Replace(text, `operators = ["op@iot.test"]`, "operators = []", 1), ErrBadConfig, "acl.operators is empty"},
		{"placeholder without a secret", op, text + "[[sink]]\nkind = \"muc\"\nroom = \"r@conference.iot.test\"\npassword = \"<secret>\"\n", ErrBadConfig, "sink[0].password"},
		{"bad driver", op, text + "[[device]]\nname = \"m\"\nkind = \"serial\"\nport = \"/dev/null\"\nparse = \"regexp\"\npattern = \"(\"\n", ErrBadConfig, ""},
	} {
		_, err := a.PushConfig(t.Context(), tt.caller, []byte(tt.data))
		if !errors.Is(err, tt.want) || !strings.Contains(fmtErr(err), tt.text) {
			t.Errorf("%s: %v, want %v with %q", tt.name, err, tt.want, tt.text)
		}
		if b, _ := os.ReadFile(path); string(b) != text {
			t.Errorf("%s: the file changed", tt.name)
		}
		if a.running != running {
			t.Errorf("%s: the running config changed", tt.name)
		}
	}

	// While another reload or push is being applied: refused, not queued.
	a.reloadMu.Lock()
	_, err := a.PushConfig(t.Context(), op, []byte(text))
	a.reloadMu.Unlock()
	if !errors.Is(err, ErrConfigBusy) || control.StanzaError(err).Condition != "resource-constraint" {
		t.Errorf("push during a reload: %v", err)
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// A good push replaces the file atomically (no temporary left behind),
// keeps the old one as .prev and keeps the secret shown as "<secret>".
func TestPushConfigWrites(t *testing.T) {
	dir := t.TempDir()
	a, text := pushAgent(t, dir)
	shown, err := a.ConfigText(t.Context(), op)
	if err != nil || strings.Contains(string(shown), "secret-pw") {
		t.Fatalf("ConfigText: %v\n%s", err, shown)
	}
	rep, err := a.PushConfig(t.Context(), op, append(shown, "[[device]]\nname = \"relay2\"\nkind = \"sim-switch\"\n"...))
	if err != nil || !strings.Contains(rep.String(), "added: device relay2") {
		t.Fatalf("push: %v, %v", rep, err)
	}
	path := filepath.Join(dir, "stanzad.toml")
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), `password = "secret-pw"`) || !strings.Contains(string(b), "relay2") {
		t.Errorf("file after the push:\n%s", b)
	}
	if prev, _ := os.ReadFile(path + ".prev"); string(prev) != text {
		t.Errorf(".prev:\n%s", prev)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("files in the config dir: %v, want the config, .prev and .pushed", names)
	}
	if !pushedUnstarted(path) {
		t.Error("the pushed file is not marked as not started yet")
	}
	if _, ok := a.device("relay2"); !ok {
		t.Error("the pushed device does not run")
	}
}

// A disk that refuses the write: an error, the old file and the old
// config still in place.
func TestPushConfigDiskFull(t *testing.T) {
	dir := tmpfs.Mount(t, 64<<10)
	a, text := pushAgent(t, dir)
	if err := tmpfs.Fill(filepath.Join(dir, "filler")); err != nil {
		t.Fatal(err)
	}
	running := a.running
	_, err := a.PushConfig(t.Context(), op, []byte(text+"[[device]]\nname = \"relay2\"\nkind = \"sim-switch\"\n"))
	if !errors.Is(err, ErrDisk) || control.StanzaError(err).Condition != "internal-server-error" {
		t.Fatalf("push on a full disk: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "stanzad.toml")); string(b) != text {
		t.Errorf("the file changed:\n%s", b)
	}
	if a.running != running {
		t.Error("the running config changed")
	}
}

// A push that moves state_dir where the agent cannot write is refused:
// it would take effect at the next start only, which would then fail.
func TestPushRefusesUnwritableStateDir(t *testing.T) {
	dir := t.TempDir()
	a, text := pushAgent(t, dir)
	blocker := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	pushed := strings.Replace(text, a.running.Agent.StateDir, filepath.Join(blocker, "state"), 1)
	_, err := a.PushConfig(t.Context(), op, []byte(pushed))
	if !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), "agent.state_dir") {
		t.Fatalf("push to an unwritable state_dir: %v", err)
	}
	path := filepath.Join(dir, "stanzad.toml")
	if b, _ := os.ReadFile(path); string(b) != text {
		t.Errorf("file after the refused push:\n%s", b)
	}
	if _, err := os.Stat(path + ".pushed"); err == nil {
		t.Error("a refused push left its marker")
	}
}

// A push whose new sink cannot start (its outbox directory refused) is
// undone: the next start would fail on it, and nobody could push a fix
// to a board that does not start.
func TestPushWithFailedSinkGoesBack(t *testing.T) {
	dir := t.TempDir()
	a, text := pushAgent(t, dir)
	state := a.running.Agent.StateDir
	if err := os.MkdirAll(state, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, "outbox"), nil, 0o600); err != nil {
		t.Fatal(err) // no outbox directory can be made under a file
	}
	pushed := text + "[[sink]]\nkind = \"chat\"\nto = \"op@iot.test\"\n"
	rep, err := a.PushConfig(t.Context(), op, []byte(pushed))
	if !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), "could not start") {
		t.Fatalf("push with a sink that cannot start: %v, %v", rep, err)
	}
	path := filepath.Join(dir, "stanzad.toml")
	if b, _ := os.ReadFile(path); string(b) != text {
		t.Errorf("file after the undone push:\n%s", b)
	}
	a.reloadMu.Lock()
	sinks, running := len(a.running.Sinks), string(a.runningText)
	a.reloadMu.Unlock()
	if sinks != 0 || running != text {
		t.Errorf("running config after the undone push: %d sinks\n%s", sinks, running)
	}
	if pushedUnstarted(path) {
		t.Error("the undone push is marked as the pushed file")
	}

	// With an [xmpp] change too: refused, so not on trial, nor reported
	// as superseded by the previous config applied again.
	pushed = strings.Replace(pushed, "127.0.0.1:1", "127.0.0.1:2", 1)
	if _, err := a.PushConfig(t.Context(), op, []byte(pushed)); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("push with [xmpp] and a sink that cannot start: %v", err)
	}
	if note, state := a.push.status(); state != "" || a.push.left() != 0 {
		t.Errorf("after the undone push the probation says %q (%s), %s left; want none", note, state, a.push.left())
	}
	if _, err := os.Stat(filepath.Join(state, "config-push.json")); err == nil {
		t.Error("the undone push left its probation marker")
	}
}

// A pushed file that never started is reverted to .prev when a start
// fails, once; one that started, or a file edited since, is not.
func TestRevertUnstartedPush(t *testing.T) {
	dir := t.TempDir()
	a, text := pushAgent(t, dir)
	path := filepath.Join(dir, "stanzad.toml")
	pushed := text + "[[device]]\nname = \"relay2\"\nkind = \"sim-switch\"\n"
	if _, err := a.PushConfig(t.Context(), op, []byte(pushed)); err != nil {
		t.Fatal(err)
	}
	if ok, err := RevertUnstartedPush(path); !ok || err != nil {
		t.Fatalf("revert of the unstarted push = %v, %v", ok, err)
	}
	if b, _ := os.ReadFile(path); string(b) != text {
		t.Errorf("file after the revert:\n%s", b)
	}
	if ok, _ := RevertUnstartedPush(path); ok {
		t.Error("reverted twice")
	}

	// Started with: not reverted.
	if _, err := a.PushConfig(t.Context(), op, []byte(pushed)); err != nil {
		t.Fatal(err)
	}
	StartedWith(path)
	if ok, _ := RevertUnstartedPush(path); ok {
		t.Error("a pushed file the agent started with was reverted")
	}

	// Edited on the board since the push: the marker is stale.
	if err := markPushed(path, []byte(pushed+"# edited\n")); err != nil {
		t.Fatal(err)
	}
	if ok, _ := RevertUnstartedPush(path); ok {
		t.Error("a file that is not the pushed one was reverted")
	}
}

// A rollback that finds the agent stopping leaves the probation's marker
// (and the pushed file) for the next start, which gives the pushed config
// its window again: the marker going first would let a restart run the
// pushed file with no probation at all.
func TestRollbackWhileStoppingKeepsMarker(t *testing.T) {
	dir := t.TempDir()
	a, text := pushAgent(t, dir)
	pushed := strings.Replace(text, "127.0.0.1:1", "127.0.0.1:2", 1)
	if _, err := a.PushConfig(t.Context(), op, []byte(pushed)); err != nil {
		t.Fatal(err)
	}
	mark := marker(a.running)
	if _, err := os.Stat(mark); err != nil {
		t.Fatalf("no probation marker after an [xmpp] push: %v", err)
	}
	a.push.mu.Lock()
	pr := a.push.pending
	a.push.mu.Unlock()
	a.reloadMu.Lock()
	a.live = false // as Run does when it stops
	a.reloadMu.Unlock()
	a.push.rollback(t.Context(), a, pr, "not online")
	a.reloadMu.Lock()
	a.live = true
	a.reloadMu.Unlock()
	if _, err := os.Stat(mark); err != nil {
		t.Errorf("the marker went with the agent stopping: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "stanzad.toml")); string(b) != pushed {
		t.Errorf("file after a rollback while stopping:\n%s", b)
	}
}

// The probation of a push lasts the running config's rollback_after: the
// config on trial does not set its own trial.
func TestPushProbationWindowIsTheRunningConfigs(t *testing.T) {
	dir := t.TempDir()
	a, text := pushAgent(t, dir)
	pushed := strings.Replace(text, "127.0.0.1:1", "127.0.0.1:2", 1)
	pushed = strings.Replace(pushed, "[acl]", "rollback_after = \"720h\"\n[acl]", 1)
	if _, err := a.PushConfig(t.Context(), op, []byte(pushed)); err != nil {
		t.Fatal(err)
	}
	if left := a.push.left(); left > 2*time.Minute {
		t.Errorf("probation of %s, want the running config's 2m", left)
	}
	b, err := os.ReadFile(marker(a.running))
	if err != nil || !strings.Contains(string(b), `"window":120000000000`) {
		t.Errorf("marker %s (%v): want the window kept for a restart", b, err)
	}
}

// A local reload that changes [xmpp] again while a push's [xmpp] is on
// probation supersedes the probation: at its deadline it would otherwise
// put the file from before the push back over the local fix.
func TestLocalReloadSupersedesProbation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "stanzad.toml")
	text := "[xmpp]\njid = \"device@iot.test/agent\"\npassword = \"secret-pw\"\nserver = \"127.0.0.1:1\"\n" +
		"[agent]\nstate_dir = \"" + filepath.Join(t.TempDir(), "state") + "\"\nrollback_after = \"3s\"\n" +
		"[acl]\noperators = [\"op@iot.test\"]\n"
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	a := runFromFile(t, path)
	pushed := strings.Replace(text, "127.0.0.1:1", "127.0.0.1:2", 1)
	if _, err := a.PushConfig(t.Context(), op, []byte(pushed)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(sessionSwapDelay + 300*time.Millisecond) // the pushed session runs
	local := strings.Replace(text, "127.0.0.1:1", "127.0.0.1:3", 1)
	if err := os.WriteFile(path, []byte(local), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Reload(t.Context(), Caller{Role: RoleOperator, Via: "test"}); err != nil {
		t.Fatal(err)
	}
	if _, state := a.push.status(); state != "superseded" {
		t.Errorf("probation after a local [xmpp] reload: %q, want superseded", state)
	}
	time.Sleep(3 * time.Second) // past the pushed config's deadline
	if b, _ := os.ReadFile(path); string(b) != local {
		t.Errorf("the local fix was rolled back:\n%s", b)
	}
}
