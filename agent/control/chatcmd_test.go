package control

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseChatCommand(t *testing.T) {
	tests := []struct {
		in      string
		verb    string
		args    []string
		wantErr string // substring of the error; "" means success
	}{
		{in: "help", verb: "help"},
		{in: "  STATUS \n", verb: "status"},
		{in: "/read", verb: "read"},
		{in: "read greenhouse relay1", verb: "read", args: []string{"greenhouse", "relay1"}},
		{in: "!set relay1 on", verb: "set", args: []string{"relay1", "on"}},
		{in: "set\trelay1\u00a0off", verb: "set", args: []string{"relay1", "off"}},
		{in: "", wantErr: "empty"},
		{in: "   ", wantErr: "empty"},
		{in: "set relay1", wantErr: "usage: set <device> <value>"},
		{in: "set relay1 on now", wantErr: "usage: set <device> <value>"},
		{in: "status please", wantErr: "takes no arguments"},
		{in: "run restart-modem", verb: "run", args: []string{"restart-modem"}},
		{in: "run", wantErr: "usage: run <action>"},
		{in: "run a b", wantErr: "usage: run <action>"},
		{in: "reboot", wantErr: `unknown command "reboot"; try "help"`},
		{in: "read \xff", wantErr: "not UTF-8"},
		{in: "read " + strings.Repeat("x ", 600), wantErr: "longer than"},
		{in: "read" + strings.Repeat(" d", 40), wantErr: "more than 32 arguments"},
		{in: "history greenhouse", verb: "history", args: []string{"greenhouse"}},
		{in: "history greenhouse temperature 12h", verb: "history", args: []string{"greenhouse", "temperature", "12h"}},
		{in: "history greenhouse 7d", verb: "history", args: []string{"greenhouse", "7d"}},
		{in: "history", wantErr: "usage: history <device> [field] [duration]"},
		{in: "history greenhouse temperature soon", wantErr: `"soon" is not a duration`},
		{in: "history greenhouse temperature -3h", wantErr: "must be more than 0"},
		{in: "history greenhouse temperature 400d", wantErr: "at most a year"},
		{in: "history a b c d", wantErr: "usage: history"},
	}
	for _, tt := range tests {
		got, err := ParseChatCommand(tt.in)
		if tt.wantErr != "" {
			if !errors.Is(err, ErrChatSyntax) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseChatCommand(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got.Verb != tt.verb || !slices.Equal(got.Args, tt.args) {
			t.Errorf("ParseChatCommand(%q) = %+v, %v; want %s %q", tt.in, got, err, tt.verb, tt.args)
		}
	}
}

func FuzzParseChatCommand(f *testing.F) {
	for _, s := range []string{"help", "read a b", "set relay1 on", "/status", "set x", "\xff", "run reboot", "history g t 7d", "history g 1h30m"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseChatCommand(s)
		if err != nil {
			if !errors.Is(err, ErrChatSyntax) {
				t.Fatalf("error %v does not wrap ErrChatSyntax", err)
			}
			return
		}
		if len(s) > maxChatCommand || !utf8.ValidString(s) {
			t.Fatalf("accepted invalid input %q", s)
		}
		if c.Verb == "set" && len(c.Args) != 2 {
			t.Fatalf("set with %d args accepted", len(c.Args))
		}
		for _, a := range c.Args {
			if a == "" || strings.ContainsAny(a, " \t\n") {
				t.Fatalf("bad argument %q from %q", a, s)
			}
		}
	})
}
