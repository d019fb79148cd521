package config

import (
	"bytes"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, that a rejected document gets
// Errors that point inside it, and that an accepted one re-validates.
func FuzzParse(f *testing.F) {
	if b, err := os.ReadFile("../../systemd/stanzad.toml.example"); err == nil {
		f.Add(b)
	}
	for _, doc := range []string{
		head,
		dev + "[[device]]\nname = \"relay1\"\nkind = \"gpio-out\"\npin = \"GPIO17\"\nsafe = false\n",
		dev + "[[device]]\nname = \"m\"\nkind = \"serial\"\nport = \"/dev/ttyS0\"\nparse = \"regexp\"\npattern = \"(?P<t>[0-9.]+)\"\n",
		dev + "[[device]]\nname = \"t\"\nkind = \"sim\"\n[[sink]]\nkind = \"chat\"\nto = \"op@iot.test\"\ndevices = [\"t*\"]\n[[alert]]\ndevice = \"t\"\nfield = \"humidity\"\nabove = 80.5\n",
		head + "[mqtt]\nbroker = \"tcp://b:1883\"\nqos = 0\n[[mqtt.subscribe]]\ntopic = \"a/+/#\"\ndevice = \"x\"\n",
		"xmpp = {jid = \"a@b\", password = \"p\"}\ndevice = [{name = \"x\", kind = \"sim\"}]\n",
		"[xmpp]\njid = 1\nkeepalive = 30\ntls = \"plain\"\n[[device]]\nkind = \"sim-switch\"\nbaud = true\n",
		"[[device]]\n[[device.x]]\n[device]\n",
		dev + "[[device]]\nname = \"t\"\nkind = \"sim\"\n[[sink]]\nkind = \"pubsub\"\nservice = \"pubsub.iot.test\"\naccess_model = \"presence\"\n[[sink]]\nkind = \"pep\"\naccess_model = \"roster\"\n",
		"[a.b]\n[[a]]\n",
		"[xmpp]\njid = \"a@b\"\npassword_file = \"p\"\n[agent]\noutbox_max = \"1.5MiB\"\n[acl]\noperators = [\"A@B\", [1]]\n",
		"x = \"\\u0000\"\n\"\" = 1\n",
		head + "server = [\"10.0.0.5:5222\", \"[::1]:5223\"]\n",
		head + "server = [\"a:1\", [\"b:2\"], 3]\n",
	} {
		f.Add([]byte(doc))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, "f.toml")
		if err != nil {
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("Parse error %v (%T) is not a non-empty Errors", err, err)
			}
			lines := bytes.Count(data, []byte("\n")) + 1
			for _, e := range es {
				if e == nil || e.File != "f.toml" || e.Line < 0 || e.Line > lines || e.Msg == "" {
					t.Fatalf("bad problem %#v for a %d-line document", e, lines)
				}
			}
			if _, err2 := Parse(data, "f.toml"); err2 == nil || err2.Error() != err.Error() {
				t.Fatalf("Parse is not deterministic:\n%v\n---\n%v", err, err2)
			}
			return
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("Parse accepted %q but Validate says:\n%v", data, err)
		}
	})
}

// validName, validOneWireID and mismatch accept (and split) exactly what
// the regular expressions they replace do.
var (
	nameRE     = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)
	onewireRE  = regexp.MustCompile(`^[0-9a-f]{2}-[0-9a-f]{12}$`)
	mismatchRE = regexp.MustCompile(`^cannot decode TOML (.+?) into (?:.* of type )?(\S+)$`)
)

func checkAgainstExpressions(t *testing.T, s string) {
	if got, want := validName(s), nameRE.MatchString(s); got != want {
		t.Errorf("validName(%q) = %v, want %v", s, got, want)
	}
	if got, want := validOneWireID(s), onewireRE.MatchString(s); got != want {
		t.Errorf("validOneWireID(%q) = %v, want %v", s, got, want)
	}
	what, typ, ok := mismatch(s)
	m := mismatchRE.FindStringSubmatch(s)
	if ok != (m != nil) || ok && (what != m[1] || typ != m[2]) {
		t.Errorf("mismatch(%q) = %q, %q, %v; the expression says %q", s, what, typ, ok, m)
	}
}

func TestNameAndMismatchSyntax(t *testing.T) {
	for _, s := range []string{
		"", "a", "relay_1-b", strings.Repeat("a", 64), strings.Repeat("a", 65), "Relay", "a b", "é",
		"28-0316a2795dff", "28-0316A2795DFF", "28_0316a2795dff", "28-0316a2795df", "280-316a2795dff",
		"cannot decode TOML string into int",
		"cannot decode TOML string into struct field config.Device.Interval of type config.Duration",
		"cannot decode TOML array into a into b of type []string",
		"cannot decode TOML a into b into int",
		"cannot decode TOML  into int",
		"cannot decode TOML x into ",
		"cannot decode TOML x into y of type ",
		"cannot decode TOML x into y of type z w",
		"cannot decode TOML x\ny into int",
		"cannot decode TOML x into y\nz of type int",
		"cannot decode TOML x into of type of type int",
	} {
		checkAgainstExpressions(t, s)
	}
}

func FuzzNameAndMismatchSyntax(f *testing.F) {
	f.Add("cannot decode TOML string into struct field config.Device.Interval of type config.Duration")
	f.Add("cannot decode TOML a into b into c of type d")
	f.Add("28-0316a2795dff")
	f.Add("relay_1")
	f.Fuzz(checkAgainstExpressions)
}
