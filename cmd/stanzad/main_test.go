package main

import (
	"bytes"
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
