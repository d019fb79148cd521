package agent

import (
	"os"
	"path/filepath"
	"testing"
	"time"

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
