package config

import (
	"bytes"
	"errors"
	"os"
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
