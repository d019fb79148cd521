package config

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// base ends inside [xmpp], so an appended key lands there, on line 7.
const base = `[acl]
operators = ["operator@iot.test"]

[xmpp]
jid = "device@iot.test/agent"
password_file = "/run/pw"
`

func TestDefaults(t *testing.T) {
	cfg, err := Parse([]byte(base+`
[[device]]
name = "g"
kind = "sim"

[[device]]
name = "s"
kind = "serial"
port = "/dev/ttyUSB0"

[[sink]]
kind = "chat"
to = "operator@iot.test"

[mqtt]
broker = "tcp://127.0.0.1:1883"
`), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"tls", cfg.XMPP.TLS, "starttls"},
		{"keepalive", cfg.XMPP.Keepalive.Duration, 30 * time.Second},
		{"presence_status", cfg.XMPP.PresenceStatus, "online"},
		{"state_dir", cfg.Agent.StateDir, "/var/lib/stanzad"},
		{"outbox_max", cfg.Agent.OutboxMax, Size(16 << 20)},
		{"log_level", cfg.Agent.LogLevel, "info"},
		{"sim interval", cfg.Devices[0].Interval.Duration, 10 * time.Second},
		{"serial baud", cfg.Devices[1].Baud, 9600},
		{"serial max_line", cfg.Devices[1].MaxLine, Size(4096)},
		{"sink devices", fmt.Sprint(cfg.Sinks[0].Devices), "[*]"},
		{"mqtt qos", *cfg.MQTT.QoS, 1},
		{"mqtt retain", *cfg.MQTT.Retain, true},
		{"mqtt prefix", cfg.MQTT.TopicPrefix, "stanzad/{node}"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	cfg, err = Parse([]byte(base+"keepalive = \"0s\"\n"), "t.toml")
	if err != nil || cfg.XMPP.Keepalive.Duration != 0 {
		t.Fatalf("keepalive = \"0s\" gives %v, %v; want 0 (disabled)", cfg.XMPP.Keepalive.Duration, err)
	}
}

// Each case is a whole document; want lists "line:key" of every problem
// that must be reported, and the message must contain msg.
func TestErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string // "line:key:substring"
	}{
		{"unknown key in xmpp", "[xmpp]\njid = \"d@iot.test\"\npassword_file = \"/p\"\njidd = \"x\"\n",
			[]string{"4:xmpp.jidd:unknown key"}},
		{"unknown key in device", base + "\n[[device]]\nname = \"a\"\nkind = \"sim\"\n\n[[device]]\nname = \"b\"\nkind = \"sim\"\ncolour = \"red\"\n",
			[]string{"15:device[1].colour:unknown key"}},
		{"unknown table", base + "\n[agnet]\nlog_level = \"debug\"\n", []string{"8:agnet:unknown key"}},
		{"syntax error", base + "\n[[device]\nname = \"a\"\n", []string{"8::"}},
		{"bad duration", base + "keepalive = \"10 sec\"\n", []string{"7:xmpp.keepalive:invalid duration"}},
		{"type mismatch", base + "\n[[device]]\nname = \"r\"\nkind = \"sim-switch\"\ninitial = \"yes\"\n", []string{"11::"}},
		{"missing jid", "[xmpp]\npassword_file = \"/p\"\n", []string{"1:xmpp.jid:required"}},
		{"bad jid", "[xmpp]\njid = \"no domain@\"\npassword_file = \"/p\"\n", []string{"2:xmpp.jid:invalid JID"}},
		{"no credentials", "[xmpp]\njid = \"d@iot.test\"\n", []string{"1:xmpp.password_file:required"}},
		{"plaintext", base + "tls = \"plain\"\n", []string{"7:xmpp.tls:plaintext is not supported"}},
		{"half client cert", base + "client_cert = \"/c.pem\"\n", []string{"7:xmpp.client_cert:go together"}},
		{"bad pin", base + "pin_sha256 = [\"abc\"]\n", []string{"7:xmpp.pin_sha256:32-byte"}},
		{"short keepalive", base + "keepalive = \"1s\"\n", []string{"7:xmpp.keepalive:too short"}},
		{"acl resource", "[acl]\nviewers = [\"v@iot.test/phone\"]\n[xmpp]\njid = \"d@iot.test\"\npassword = \"x\"\n", []string{"2:acl.viewers[0]:bare JID"}},
		{"log level", base + "[agent]\nlog_level = \"loud\"\n", []string{"8:agent.log_level:not one of"}},
		{"small outbox", base + "[agent]\noutbox_max = \"1KiB\"\n", []string{"8:agent.outbox_max:too small"}},
		{"bad size", base + "[agent]\noutbox_max = \"lots\"\n", []string{"8:agent.outbox_max:invalid size"}},
		{"unknown kind", base + "\n[[device]]\nname = \"x\"\nkind = \"lava-lamp\"\n", []string{"10:device[0].kind:unknown kind \"lava-lamp\""}},
		{"key of another kind", base + "\n[[device]]\nname = \"relay1\"\nkind = \"sim-switch\"\nbaud = 9600\n",
			[]string{"11:device[0].baud:does not apply to kind sim-switch"}},
		{"missing pin", base + "\n[[device]]\nname = \"led\"\nkind = \"gpio-out\"\n", []string{"8:device[0].pin:(led): required"}},
		{"bad baud", base + "\n[[device]]\nname = \"s\"\nkind = \"serial\"\nport = \"/dev/ttyS0\"\nbaud = 12345\n",
			[]string{"12:device[0].baud:not a standard baud rate"}},
		{"regexp without groups", base + "\n[[device]]\nname = \"s\"\nkind = \"serial\"\nport = \"/dev/ttyS0\"\nparse = \"regexp\"\npattern = \"[0-9]+\"\n",
			[]string{"13:device[0].pattern:named group"}},
		{"regexp missing", base + "\n[[device]]\nname = \"s\"\nkind = \"serial\"\nport = \"/dev/ttyS0\"\nparse = \"regexp\"\n",
			[]string{"8:device[0].pattern:required"}},
		{"bad device name", base + "\n[[device]]\nname = \"Relay 1\"\nkind = \"sim-switch\"\n", []string{"9:device[0].name:a-z"}},
		{"duplicate device", base + "\n[[device]]\nname = \"a\"\nkind = \"sim\"\n[[device]]\nname = \"a\"\nkind = \"sim\"\n",
			[]string{"12:device[1].name:duplicate"}},
		{"i2c address", base + "\n[[device]]\nname = \"t\"\nkind = \"i2c-bme280\"\naddress = 0x80\n", []string{"11:device[0].address:7-bit"}},
		{"onewire id", base + "\n[[device]]\nname = \"t\"\nkind = \"onewire-ds18b20\"\nid = \"28-XYZ\"\n", []string{"11:device[0].id:28-"}},
		{"short interval", base + "\n[[device]]\nname = \"g\"\nkind = \"sim\"\ninterval = \"1ms\"\n", []string{"11:device[0].interval:too short"}},
		{"sink without to", base + "\n[[sink]]\nkind = \"chat\"\n", []string{"8:sink[0].to:required"}},
		{"sink unknown device", base + "\n[[sink]]\nkind = \"chat\"\nto = \"o@iot.test\"\ndevices = [\"ghost\", \"g*\"]\n",
			[]string{"11:sink[0].devices[0]:no device named \"ghost\""}},
		{"sink key of another kind", base + "\n[[sink]]\nkind = \"chat\"\nto = \"o@iot.test\"\nroom = \"r@conference.iot.test\"\n",
			[]string{"11:sink[0].room:does not apply to sink kind chat"}},
		{"sink kind", base + "\n[[sink]]\nkind = \"email\"\n", []string{"9:sink[0].kind:not one of"}},
		{"action relative argv", base + "\n[[action]]\nname = \"reboot\"\nargv = [\"reboot\"]\n", []string{"10:action[0].argv:absolute path"}},
		{"mqtt qos", base + "\n[mqtt]\nbroker = \"tcp://127.0.0.1:1883\"\nqos = 3\n", []string{"10:mqtt.qos:want 0, 1 or 2"}},
		{"mqtt scheme", base + "\n[mqtt]\nbroker = \"http://127.0.0.1\"\n", []string{"9:mqtt.broker:not one of"}},
		{"all problems at once", base + "tls = \"none\"\n[agent]\nlog_format = \"xml\"\n\n[[device]]\nname = \"x\"\nkind = \"gpio-in\"\npull = \"sideways\"\n",
			[]string{"7:xmpp.tls:", "9:agent.log_format:", "11:device[0].pin:required", "14:device[0].pull:sideways"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc), "t.toml")
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("Parse() = %v, want Errors", err)
			}
			if len(es) != len(tt.want) {
				t.Errorf("got %d problems, want %d:\n%v", len(es), len(tt.want), err)
			}
			for _, w := range tt.want {
				parts := strings.SplitN(w, ":", 3)
				found := false
				for _, e := range es {
					if fmt.Sprint(e.Line) == parts[0] && (parts[1] == "" || e.Key == parts[1]) && strings.Contains(e.Msg, parts[2]) {
						found = true
					}
				}
				if !found {
					t.Errorf("missing problem %q in:\n%v", w, err)
				}
			}
			if es != nil && !strings.HasPrefix(es[0].Error(), "t.toml:") {
				t.Errorf("error %q does not start with the file name", es[0])
			}
		})
	}
}

func TestSecretNeverPrinted(t *testing.T) {
	cfg, err := Parse([]byte("[xmpp]\njid = \"d@iot.test\"\npassword = \"hunter2\"\n"), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.XMPP.Password.Reveal() != "hunter2" {
		t.Fatal("Reveal lost the password")
	}
	if len(cfg.Warnings) == 0 {
		t.Error("inline password gave no warning")
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "%v %+v %#v %s %q", cfg.XMPP, cfg, cfg.XMPP, cfg.XMPP.Password, cfg.XMPP.Password)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "xmpp", cfg.XMPP, "pw", cfg.XMPP.Password)
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "xmpp", cfg.XMPP, "pw", cfg.XMPP.Password)
	if strings.Contains(buf.String(), "hunter2") {
		t.Fatalf("password printed: %s", buf.String())
	}
	// Errors about the password never quote it.
	_, err = Parse([]byte("[xmpp]\njid = \"d@iot.test\"\npassword = \"hunter2\"\npassword_file = \"/p\"\n"), "t.toml")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("Parse() = %v", err)
	}
}

func TestLoadPasswordFile(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "pw"), []byte("s3cret\n"), 0o640)
	os.WriteFile(filepath.Join(dir, "open"), []byte("s3cret"), 0o644)
	write := func(name, pwfile string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte("[xmpp]\njid = \"d@iot.test\"\npassword_file = \""+pwfile+"\"\n[agent]\nstate_dir = \"state\"\n"), 0o600)
		return p
	}
	cfg, err := Load(write("a.toml", "pw"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.XMPP.Password.Reveal() != "s3cret" {
		t.Errorf("password %q, want trailing newline trimmed", cfg.XMPP.Password.Reveal())
	}
	if cfg.Agent.StateDir != filepath.Join(dir, "state") {
		t.Errorf("state_dir %q not resolved against the config dir", cfg.Agent.StateDir)
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("warnings %q for a private password file", cfg.Warnings)
	}
	cfg, err = Load(write("b.toml", "open"))
	if err != nil || len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0], "world-readable") {
		t.Errorf("world-readable password file: %v %q", err, cfg.Warnings)
	}
	_, err = Load(write("c.toml", "missing"))
	if err == nil || !strings.Contains(err.Error(), "c.toml:3: xmpp.password_file:") {
		t.Errorf("missing password file: %v", err)
	}
	_, err = Load(filepath.Join(dir, "nope.toml"))
	if err == nil || !strings.Contains(err.Error(), "nope.toml") {
		t.Errorf("missing config: %v", err)
	}
}

func TestLoadClient(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "pw"), []byte("x"), 0o600)
	p := filepath.Join(dir, "op.toml")
	os.WriteFile(p, []byte("to = \"device@iot.test/agent\"\n\n[xmpp]\njid = \"op@iot.test\"\npassword_file = \"pw\"\n"), 0o600)
	cc, err := LoadClient(p)
	if err != nil || cc.To != "device@iot.test/agent" || cc.XMPP.Password.Reveal() != "x" || cc.XMPP.TLS != "starttls" {
		t.Fatalf("LoadClient() = %+v, %v", cc, err)
	}
	os.WriteFile(p, []byte("to = \"@@\"\n[xmpp]\njid = \"op@iot.test\"\npassword_file = \"pw\"\nverbose = true\n"), 0o600)
	_, err = LoadClient(p)
	if err == nil || !strings.Contains(err.Error(), ":5: xmpp.verbose: unknown key") {
		t.Fatalf("LoadClient(bad) = %v", err)
	}
}

func TestSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Size
		ok   bool
	}{
		{"16MiB", 16 << 20, true}, {"4KiB", 4096, true}, {"64KB", 64000, true}, {"1.5MiB", 3 << 19, true},
		{"512", 512, true}, {"10B", 10, true}, {"1GiB", 1 << 30, true},
		{"", 0, false}, {"MiB", 0, false}, {"-1KiB", 0, false}, {"1e30GiB", 0, false}, {"12 parsecs", 0, false}, {"NaN", 0, false},
	} {
		var s Size
		err := s.UnmarshalText([]byte(tt.in))
		if (err == nil) != tt.ok || (tt.ok && s != tt.want) {
			t.Errorf("Size(%q) = %d, %v; want %d ok=%v", tt.in, s, err, tt.want, tt.ok)
		}
	}
}

func TestExampleConfig(t *testing.T) {
	data, err := os.ReadFile("../../systemd/stanzad.toml.example")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(data, "stanzad.toml.example"); err != nil {
		t.Fatal(err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(base))
	f.Add([]byte(base + "\n[[device]]\nname = \"s\"\nkind = \"serial\"\nport = \"/dev/x\"\nparse = \"regexp\"\npattern = \"(?P<t>\\\\d+)\"\n"))
	f.Add([]byte(base + "\n[[sink]]\nkind = \"muc\"\nroom = \"r@c.iot.test\"\n[mqtt]\nbroker = \"tcp://h:1\"\n[[mqtt.subscribe]]\ntopic = \"a/#\"\ndevice = \"x\"\n"))
	f.Add([]byte("[xmpp]\njid = 3\n[[device]\n"))
	f.Add([]byte("a.b.c = 1\n[a]\n[[a.b]]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, "f.toml")
		if err != nil {
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("Parse error %T %v is not a non-empty Errors", err, err)
			}
			return
		}
		if cfg.XMPP.JID == "" || cfg.XMPP.TLS == "" {
			t.Fatalf("accepted config without jid or tls: %+v", cfg.XMPP)
		}
	})
}
