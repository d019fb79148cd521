package main

import (
	"bytes"
	"io"
	"slices"
	"strings"
	"testing"
)

func TestParseFleet(t *testing.T) {
	for _, tt := range []struct {
		args       []string
		jids       []string
		cmd, bad   string
		cargs      []string
		parallel   int
		canary     int
		match, grp string
	}{
		{args: nil, cmd: "status", parallel: 8},
		{args: []string{"-group", "site", "-parallel", "3", "read", "a", "b"}, cmd: "read", cargs: []string{"a", "b"}, parallel: 3, grp: "site"},
		{args: []string{"a@x/agent", "b@x", "set", "relay1", "on"}, jids: []string{"a@x/agent", "b@x"}, cmd: "set", cargs: []string{"relay1", "on"}, parallel: 8},
		{args: []string{"-canary", "2", "config", "push", "f.toml"}, cmd: "config", cargs: []string{"push", "f.toml"}, parallel: 8, canary: 2},
		{args: []string{"-match", "gh-*@x", "exec", "status", "k=v"}, cmd: "exec", cargs: []string{"status", "k=v"}, parallel: 8, match: "gh-*@x"},
		{args: []string{"set", "relay1"}, bad: "bad command"},
		{args: []string{"exec", "status", "novalue"}, bad: "not var=value"},
		{args: []string{"-canary", "1", "status"}, bad: "-canary is for config push"},
		{args: []string{"-parallel", "0"}, bad: "at least 1"},
		{args: []string{"-match", "[", "status"}, bad: "-match"},
		{args: []string{"@bad", "status"}, bad: "@bad"},
		{args: []string{"config", "pull", "f"}, bad: "bad command"},
	} {
		opts, jids, cmd, cargs, err := parseFleet(tt.args, io.Discard)
		if tt.bad != "" {
			if err == nil || !strings.Contains(err.Error(), tt.bad) {
				t.Errorf("%v: err %v, want %q", tt.args, err, tt.bad)
			}
			continue
		}
		if err != nil || cmd != tt.cmd || !slices.Equal(jids, tt.jids) || !slices.Equal(cargs, tt.cargs) ||
			opts.parallel != tt.parallel || opts.canary != tt.canary || opts.match != tt.match || opts.group != tt.grp {
			t.Errorf("%v: %+v %v %q %v %v", tt.args, opts, jids, cmd, cargs, err)
		}
	}
}

func TestPrintFleet(t *testing.T) {
	rows := []fleetRow{
		{Agent: "a@x/agent", OK: true, Result: "greenhouse:\n  temperature = 21", MS: 4},
		{Agent: "b@x", Condition: "offline", Text: "not online"},
	}
	var b bytes.Buffer
	printFleet(&b, rows, false)
	want := "AGENT      RESULT      TIME  DETAIL\n" +
		"a@x/agent  ok           4ms  greenhouse:; temperature = 21\n" +
		"b@x        offline        -  not online\n"
	if b.String() != want {
		t.Errorf("table:\n%q\nwant\n%q", b.String(), want)
	}
	b.Reset()
	printFleet(&b, rows, true)
	if lines := strings.Split(strings.TrimSpace(b.String()), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[1], `{"agent":"b@x","ok":false,"error":"offline"`) {
		t.Errorf("json: %q", b.String())
	}
}
