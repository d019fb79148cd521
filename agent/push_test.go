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
	if len(entries) != 2 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("files in the config dir: %v, want the config and .prev", names)
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
