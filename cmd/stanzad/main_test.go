package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stanzad/stanzad/agent"
	"github.com/stanzad/stanzad/bridge"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "password"), []byte("pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "stanzad.toml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const goodConfig = `[xmpp]
jid = "device@iot.test/agent"
password_file = "password"

[agent]
state_dir = "state"

[acl]
operators = ["operator@iot.test"]

[[device]]
name = "relay1"
kind = "sim-switch"
`

func TestRunExitCodes(t *testing.T) {
	good := writeConfig(t, goodConfig)
	bad := writeConfig(t, strings.Replace(goodConfig, `kind = "sim-switch"`, `kind = "sim-switch"
colour = "red"`, 1))
	tests := []struct {
		name string
		args []string
		code int
		want string // in stderr
	}{
		{"version", []string{"-version"}, 0, "stanzad "},
		{"unknown flag", []string{"-nope"}, 2, "flag provided but not defined"},
		{"stray argument", []string{"-config", good, "extra"}, 2, "unexpected arguments"},
		{"check ok", []string{"-config", good, "-check"}, 0, "ok"},
		{"check unknown key", []string{"-config", bad, "-check"}, 2, ":14: device[0].colour: unknown key"},
		{"run with bad config", []string{"-config", bad}, 2, "colour"},
		{"missing config", []string{"-config", filepath.Join(t.TempDir(), "none.toml")}, 2, "none.toml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if code := run(tt.args, &stderr); code != tt.code || !strings.Contains(stderr.String(), tt.want) {
				t.Fatalf("run(%q) = %d, stderr %q; want %d and %q", tt.args, code, stderr.String(), tt.code, tt.want)
			}
		})
	}
}

// TestCheckOptionalParts: -check says when the config needs a part this
// build left out (make test runs it with -tags nomqtt,nogpio too).
func TestCheckOptionalParts(t *testing.T) {
	mqtt := writeConfig(t, goodConfig+"\n[mqtt]\nbroker = \"tcp://127.0.0.1:1883\"\n")
	gpio := writeConfig(t, goodConfig+"\n[[device]]\nname = \"door\"\nkind = \"gpio-in\"\npin = \"GPIO4\"\n")
	for _, tc := range []struct {
		name, path string
		built      bool
		tag        string
	}{
		{"mqtt", mqtt, bridge.Built, "-tags nomqtt"},
		{"gpio", gpio, agent.GPIOBuilt, "-tags nogpio"},
	} {
		var stderr bytes.Buffer
		code := run([]string{"-config", tc.path, "-check"}, &stderr)
		if tc.built && code != 0 || !tc.built && (code != 2 || !strings.Contains(stderr.String(), tc.tag)) {
			t.Errorf("%s: -check = %d, %q (built: %v)", tc.name, code, stderr.String(), tc.built)
		}
	}
}

// A pushed config that never started and cannot start (its state_dir is
// under a file) gives way to the previous one, once; a file without the
// push's mark is not touched.
func TestRunRevertsPushThatDoesNotStart(t *testing.T) {
	blocker := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// Neither starts (a sink's outbox cannot be made), so that run ends:
	// the previous one's state_dir is under the file too.
	withSink := goodConfig + "\n[[sink]]\nkind = \"chat\"\nto = \"operator@iot.test\"\n"
	prev := strings.Replace(withSink, `state_dir = "state"`, `state_dir = "`+filepath.Join(blocker, "prev")+`"`, 1)
	pushed := strings.Replace(withSink, `state_dir = "state"`, `state_dir = "`+filepath.Join(blocker, "pushed")+`"`, 1)
	path := writeConfig(t, pushed)
	if err := os.WriteFile(path+".prev", []byte(prev), 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(pushed))
	if err := os.WriteFile(path+".pushed", []byte(hex.EncodeToString(sum[:])+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	if code := run([]string{"-config", path}, &stderr); code != 1 {
		t.Errorf("exit code %d, want 1 (neither config starts)", code)
	}
	if b, _ := os.ReadFile(path); string(b) != prev {
		t.Errorf("config after the failed start:\n%s\nwant the previous one", b)
	}
	if _, err := os.Stat(path + ".pushed"); err == nil {
		t.Error("the push's mark stayed")
	}
	if n := strings.Count(stderr.String(), "putting the previous config back: done"); n != 1 {
		t.Errorf("reverted %d times, want once; stderr:\n%s", n, stderr.String())
	}

	// Not a pushed file (or one that started): left as it is.
	os.WriteFile(path, []byte(pushed), 0o600)
	stderr.Reset()
	if code := run([]string{"-config", path}, &stderr); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if b, _ := os.ReadFile(path); string(b) != pushed || strings.Contains(stderr.String(), "previous config") {
		t.Errorf("an unmarked config was reverted; stderr:\n%s", stderr.String())
	}
}
