package agent

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/stanzad/stanzad/devices"
	"github.com/stanzad/stanzad/xmpp"
)

// A config file replaced the way editors do it (write a new file, rename
// it over the old one) is reloaded; a broken one is not.
func TestWatchConfigReloads(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "stanzad.toml")
	write := func(operator string) {
		t.Helper()
		tmp := filepath.Join(dir, ".stanzad.toml.swp")
		body := "[xmpp]\njid = \"device@iot.test/agent\"\npassword = \"x\"\nserver = \"127.0.0.1:1\"\n[agent]\nstate_dir = \"" + dir + "\"\n" +
			"[acl]\noperators = [\"" + operator + "\"]\n"
		if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write("alice@iot.test")
	a := runFromFile(t, path) // offline: no server

	bob := xmpp.MustParseJID("bob@iot.test/phone")
	// change writes the file until the watcher has applied it (the first
	// write may come before the watch is set up).
	change := func(operator string, want Role) {
		t.Helper()
		for range 20 {
			write(operator)
			for range 50 {
				if a.ctl.Role(bob) == want {
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		t.Fatalf("bob's role is %v, want %v", a.ctl.Role(bob), want)
	}
	change("bob@iot.test", RoleOperator)

	// A broken file leaves the running ACL alone; the next good one applies.
	os.WriteFile(path, []byte("[acl]\noperators = 7\n"), 0o600)
	time.Sleep(2 * configSettle)
	if got := a.ctl.Role(bob); got != RoleOperator {
		t.Fatalf("a broken config changed bob's role to %v", got)
	}
	change("carol@iot.test", RoleNone)
}

// When the watcher lost events (ErrWatchOverflow), the file is looked at
// again: a change among the lost events is reloaded. The config here is
// a symlink into another directory and is changed in place there, so the
// agent's own watch (on the symlink's directory) sees nothing of it: only
// the overflow, fed to followConfig, can make it reload.
func TestWatchConfigOverflowLooksAgain(t *testing.T) {
	dir, real := t.TempDir(), t.TempDir()
	target := filepath.Join(real, "config.toml")
	body := func(operator string) []byte {
		return []byte("[xmpp]\njid = \"device@iot.test/agent\"\npassword = \"x\"\nserver = \"127.0.0.1:1\"\n[agent]\nstate_dir = \"" + dir + "\"\n" +
			"[acl]\noperators = [\"" + operator + "\"]\n")
	}
	if err := os.WriteFile(target, body("alice@iot.test"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "stanzad.toml")
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	a := runFromFile(t, path)
	bob := xmpp.MustParseJID("bob@iot.test/phone")
	if err := os.WriteFile(target, body("bob@iot.test"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * configSettle)
	if got := a.ctl.Role(bob); got != RoleNone {
		t.Fatalf("bob is %v before any event: the test's change was seen by the watch", got)
	}

	events, errs := make(chan fsnotify.Event), make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.followConfig(ctx, "stanzad.toml", events, errs)
	errs <- devices.ErrWatchOverflow
	for range 100 {
		if a.ctl.Role(bob) == RoleOperator {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("after a lost-events error bob is %v, want operator (the changed file reloaded)", a.ctl.Role(bob))
}
