package xmpp

import (
	"errors"
	"testing"
)

func TestParseJID(t *testing.T) {
	tests := []struct {
		in   string
		want JID
		bad  bool
	}{
		{in: "device@iot.test/agent", want: JID{"device", "iot.test", "agent"}},
		{in: "device@IOT.test", want: JID{"device", "iot.test", ""}},
		{in: "iot.test", want: JID{"", "iot.test", ""}},
		{in: "a@b/c/d@e", want: JID{"a", "b", "c/d@e"}},
		{in: "a@b.", want: JID{"a", "b", ""}},
		{in: "", bad: true},
		{in: "@iot.test", bad: true},
		{in: "a@", bad: true},
		{in: "a@b/", bad: true},
		{in: "a b@c", bad: true},
		{in: "a@b c", bad: true},
		{in: "a@b/\xff", bad: true},
		{in: "a<@b", bad: true},
	}
	for _, tt := range tests {
		got, err := ParseJID(tt.in)
		if tt.bad {
			if !errors.Is(err, ErrBadJID) {
				t.Errorf("ParseJID(%q) = %v, %v; want ErrBadJID", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseJID(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
		if err == nil && tt.in[len(tt.in)-1] != '.' {
			if back, _ := ParseJID(got.String()); back != got {
				t.Errorf("round trip of %q = %+v", tt.in, back)
			}
		}
	}
	if k := MustParseJID("Op@IOT.test/x").BareKey(); k != "op@iot.test" {
		t.Errorf("BareKey = %q", k)
	}
}

func FuzzParseJID(f *testing.F) {
	for _, s := range []string{"a@b/c", "b", "a@b", "@", "/", "a@b/c@d/e"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		j, err := ParseJID(s)
		if err != nil {
			return
		}
		back, err := ParseJID(j.String())
		if err != nil || back != j {
			t.Fatalf("ParseJID(%q) = %+v; re-parse of %q = %+v, %v", s, j, j.String(), back, err)
		}
	})
}
