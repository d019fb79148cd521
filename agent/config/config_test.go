package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// head is a valid [xmpp] table on lines 1-3; tests append to it, so what
// they add starts on line 4 (still inside [xmpp] until the next header).
const head = `[xmpp]
jid = "device@iot.test/agent"
password_file = "pw"
`

// dev is head plus a blank line: a [[device]] appended starts on line 5.
const dev = head + "\n"

// findErr returns the problem with key on line, failing t if err does
// not hold one.
func findErr(t *testing.T, err error, key string, line int) *Error {
	t.Helper()
	var es Errors
	if !errors.As(err, &es) || len(es) == 0 {
		t.Fatalf("error = %v (%T), want non-empty Errors", err, err)
	}
	for _, e := range es {
		if e.Key == key && e.Line == line {
			return e
		}
	}
	t.Fatalf("no problem for key %q on line %d in:\n%v", key, line, err)
	return nil
}

func TestParseDefaults(t *testing.T) {
	cfg, err := Parse([]byte(head+`
[acl]
operators = ["Op@IoT.Test"]

[[device]]
name = "greenhouse"
kind = "sim"

[[device]]
name = "button"
kind = "gpio-in"
pin = "GPIO4"

[[device]]
name = "relay1"
kind = "gpio-out"
pin = "GPIO17"

[[device]]
name = "climate"
kind = "i2c-bme280"

[[device]]
name = "shed"
kind = "i2c-sht3x"

[[device]]
name = "probe"
kind = "onewire-ds18b20"
id = "28-0316a2795dff"

[[device]]
name = "host"
kind = "system"

[[device]]
name = "meter"
kind = "serial"
port = "/dev/ttyUSB0"

[[device]]
name = "log"
kind = "file"
path = "/var/log/x"

[[sink]]
kind = "muc"
room = "room@conference.iot.test"

[[sink]]
kind = "pep"

[[action]]
name = "reboot"
argv = ["/usr/sbin/reboot"]

[mqtt]
broker = "tcp://127.0.0.1:1883"

[[mqtt.subscribe]]
topic = "outside/temp"
device = "outside"
`), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	s, ms := time.Second, time.Millisecond
	x := cfg.XMPP
	if x.TLS != "starttls" || x.Keepalive.Duration != 30*s || x.PresenceStatus != "" || x.PasswordFile != "pw" {
		t.Errorf("XMPP = %+v, want defaults", x)
	}
	if a := cfg.Agent; a != (Agent{StateDir: "/var/lib/stanzad", OutboxMax: 16 << 20, LogLevel: "info", LogFormat: "text", RollbackAfter: Duration{2 * time.Minute}, HistoryMax: 4 << 20}) {
		t.Errorf("Agent = %+v, want defaults", a)
	}
	if got := cfg.ACL.Operators[0]; got != "Op@iot.test" {
		t.Errorf("ACL operator = %q, want domain lower-cased", got)
	}
	want := []Device{
		{Name: "greenhouse", Kind: "sim", Interval: Duration{10 * s}},
		{Name: "button", Kind: "gpio-in", Pin: "GPIO4", Pull: "none", Edge: "both", Debounce: Duration{20 * ms}},
		{Name: "relay1", Kind: "gpio-out", Pin: "GPIO17"},
		{Name: "climate", Kind: "i2c-bme280", Bus: "1", Address: 0x76, Interval: Duration{10 * s}},
		{Name: "shed", Kind: "i2c-sht3x", Bus: "1", Address: 0x44, Interval: Duration{10 * s}},
		{Name: "probe", Kind: "onewire-ds18b20", ID: "28-0316a2795dff", Root: "/", Interval: Duration{10 * s}},
		{Name: "host", Kind: "system", Interval: Duration{60 * s}, Root: "/"},
		{Name: "meter", Kind: "serial", Port: "/dev/ttyUSB0", Baud: 9600, Parity: "none", DataBits: 8, StopBits: 1, Parse: "line", MaxLine: 4 << 10},
		{Name: "log", Kind: "file", Path: "/var/log/x", Parse: "line", MaxSize: 64 << 10},
	}
	if !reflect.DeepEqual(cfg.Devices, want) {
		t.Errorf("Devices =\n%+v\nwant\n%+v", cfg.Devices, want)
	}
	wantSinks := []Sink{
		{Kind: "muc", Room: "room@conference.iot.test", Nick: "device", Batch: 32, Devices: []string{"*"}},
		{Kind: "pep", Node: "urn:xmpp:iot:sensordata/{device}", MaxItems: 10, AccessModel: "presence", Devices: []string{"*"}},
	}
	if !reflect.DeepEqual(cfg.Sinks, wantSinks) {
		t.Errorf("Sinks = %+v, want %+v", cfg.Sinks, wantSinks)
	}
	if got := cfg.Actions[0].Timeout.Duration; got != 30*s {
		t.Errorf("action timeout = %v, want 30s", got)
	}
	m := cfg.MQTT
	if m == nil || m.QoS != 1 || !m.Retain || m.Keepalive.Duration != 30*s || m.TopicPrefix != "stanzad/{node}" || m.Subscribe[0].Parse != "line" {
		t.Errorf("MQTT = %+v, want defaults", m)
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("Warnings = %q, want none", cfg.Warnings)
	}
}

func TestParseExplicitZeros(t *testing.T) {
	cfg, err := Parse([]byte(head+`keepalive = "0s"

[[device]]
name = "button"
kind = "gpio-in"
pin = "GPIO4"
debounce = "0s"

[mqtt]
broker = "mqtts://broker.iot.test:8883"
qos = 0
retain = false
`), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.XMPP.Keepalive.Duration != 0 || cfg.Devices[0].Debounce.Duration != 0 || cfg.MQTT.QoS != 0 || cfg.MQTT.Retain {
		t.Errorf("written zeros were replaced by defaults: %+v %+v %+v", cfg.XMPP, cfg.Devices[0], cfg.MQTT)
	}
	if cfg.MQTT == nil {
		t.Fatal("MQTT = nil with an [mqtt] table")
	}
	if cfg, err := Parse([]byte(head), "t.toml"); err != nil || cfg.MQTT != nil {
		t.Errorf("Parse(no [mqtt]) = %+v, %v; want MQTT nil", cfg, err)
	}
}

func TestParseErrors(t *testing.T) {
	pin := "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=" // 32 bytes
	tests := []struct {
		name string
		doc  string
		key  string
		line int
		msg  string
	}{
		// syntax, types, unknown keys
		{"syntax", head + "tls = \"starttls\n", "", 4, "new lines"},
		{"syntax header", dev + "[[device]\n", "", 5, ""},
		{"duplicate key", head + "jid = \"b@iot.test\"\n", "xmpp.jid", 4, "already defined"},
		{"wrong type", head + "presence_status = 1\n", "xmpp.presence_status", 4, "got a TOML integer, want a string"},
		{"unknown key in xmpp", head + "passwrd = \"x\"\n", "xmpp.passwrd", 4, "unknown key"},
		{"unknown table", head + "[xmmp]\njid = 1\n", "xmmp", 4, "unknown table"},
		{"unknown key in device", dev + "[[device]]\nname = \"a\"\nkind = \"sim\"\n[[device]]\nname = \"b\"\nkind = \"sim\"\n[[device]]\nname = \"relay\"\nkind = \"gpio-out\"\npinn = \"GPIO17\"\n", "device[2].pinn", 14, "unknown key"},
		{"unknown key in subscribe", head + "[mqtt]\nbroker = \"tcp://b:1883\"\n[[mqtt.subscribe]]\ntopic = \"t\"\ndevice = \"t\"\nqos = 1\n", "mqtt.subscribe[0].qos", 9, "unknown key"},

		// [xmpp]
		{"jid missing", "[xmpp]\npassword_file = \"pw\"\n", "xmpp.jid", 1, "required"},
		{"jid space", "[xmpp]\npassword_file = \"pw\"\njid = \"no body@iot.test\"\n", "xmpp.jid", 3, "space"},
		{"jid no local", "[xmpp]\npassword_file = \"pw\"\njid = \"iot.test\"\n", "xmpp.jid", 3, "no localpart"},
		{"jid empty resource", "[xmpp]\npassword_file = \"pw\"\njid = \"a@iot.test/\"\n", "xmpp.jid", 3, "empty resource"},
		{"jid too long", "[xmpp]\npassword_file = \"pw\"\njid = \"a@" + strings.Repeat("x", 3070) + "\"\n", "xmpp.jid", 3, "longer than 3071"},
		{"no auth", "[xmpp]\njid = \"a@iot.test\"\n", "xmpp.password_file", 1, "required"},
		{"password and file", head + "password = \"pw\"\n", "xmpp.password", 4, "only one"},
		{"file and cert", head + "client_cert = \"c.pem\"\nclient_key = \"k.pem\"\n", "xmpp.password_file", 3, "only one"},
		{"cert without key", "[xmpp]\njid = \"a@iot.test\"\nclient_cert = \"c.pem\"\n", "xmpp.client_key", 1, "required with client_cert"},
		{"key without cert", "[xmpp]\njid = \"a@iot.test\"\nclient_key = \"k.pem\"\n", "xmpp.client_cert", 1, "required with client_key"},
		{"empty password_file", "[xmpp]\njid = \"a@iot.test\"\npassword_file = \"\"\n", "xmpp.password_file", 3, "must not be empty"},
		{"tls plain", head + "tls = \"plain\"\n", "xmpp.tls", 4, "plaintext is not supported"},
		{"tls none", head + "tls = \"none\"\n", "xmpp.tls", 4, "plaintext is not supported"},
		{"tls unknown", head + "tls = \"ssl\"\n", "xmpp.tls", 4, "not one of starttls, direct"},
		{"pin bad", head + "pin_sha256 = [\n  \"" + pin + "\",\n  \"abc\",\n]\n", "xmpp.pin_sha256[1]", 6, "32-byte"},
		{"pin short", head + "pin_sha256 = [\"" + pin[:40] + "\"]\n", "xmpp.pin_sha256[0]", 4, "32-byte"},
		{"keepalive short", head + "keepalive = \"2s\"\n", "xmpp.keepalive", 4, "minimum 5s"},
		{"keepalive invalid", head + "keepalive = \"10 sec\"\n", "xmpp.keepalive", 4, `invalid duration "10 sec"`},
		{"keepalive integer", head + "keepalive = 30\n", "xmpp.keepalive", 4, `invalid duration "30"`},
		{"interval integer after others", dev + "[[device]]\nname = \"a\"\nkind = \"sim\"\ninterval = \"1s\"\n[[device]]\nname = \"b\"\nkind = \"sim\"\ninterval = 10\n", "device[1].interval", 12, `invalid duration "10"`},
		{"keepalive negative", head + "keepalive = \"-5s\"\n", "xmpp.keepalive", 4, "negative duration"},
		{"server no port", head + "server = \"iot.test\"\n", "xmpp.server", 4, "host:port"},
		{"server list no port", head + "server = [\"10.0.0.5:5222\", \"10.0.0.6\"]\n", "xmpp.server", 4, `"10.0.0.6": want host:port`},
		{"server list twice", head + "server = [\"a:5222\", \"a:5222\"]\n", "xmpp.server", 4, "listed twice"},
		{"server list empty", head + "server = []\n", "xmpp.server", 4, "leave server out"},
		{"server integer", head + "server = 5222\n", "xmpp.server", 4, "host:port"},
		{"server list of integers", head + "server = [5222]\n", "xmpp.server", 4, "host:port"},

		// [agent], [acl]
		{"log_level", head + "[agent]\nlog_level = \"verbose\"\n", "agent.log_level", 5, `"verbose" is not one of debug, info, warn, error`},
		{"log_format", head + "[agent]\nlog_format = \"xml\"\n", "agent.log_format", 5, "text, json"},
		{"rate zero", head + "[acl]\ncommand_rate = 0.0\n", "acl.command_rate", 5, "above 0"},
		{"rate negative", head + "[acl]\ncommand_rate = -1.0\n", "acl.command_rate", 5, "above 0"},
		{"burst zero", head + "[acl]\ncommand_burst = 0\n", "acl.command_burst", 5, "between 1 and"},
		{"outbox small", head + "[agent]\noutbox_max = \"32KiB\"\n", "agent.outbox_max", 5, "minimum of 64KiB"},
		{"outbox zero", head + "[agent]\noutbox_max = 0\n", "agent.outbox_max", 5, "minimum of 64KiB"},
		{"memory limit small", head + "[agent]\nmemory_limit = \"1MiB\"\n", "agent.memory_limit", 5, "minimum of 2MiB"},
		{"history max small", head + "[agent]\nhistory_max = \"10KiB\"\n", "agent.history_max", 5, "minimum of 64KiB"},
		{"rollback short", head + "[agent]\nrollback_after = \"0s\"\n", "agent.rollback_after", 5, "minimum of 1s"},
		{"outbox invalid", head + "[agent]\noutbox_max = \"lots\"\n", "agent.outbox_max", 5, "invalid size"},
		{"outbox negative", head + "[agent]\noutbox_max = -1\n", "agent.outbox_max", 5, "below the minimum"},
		{"outbox negative string", head + "[agent]\noutbox_max = \"-1KiB\"\n", "agent.outbox_max", 5, "invalid size"},
		{"max_line negative", dev + "[[device]]\nname = \"m\"\nkind = \"serial\"\nport = \"/dev/ttyS0\"\nmax_line = -5\n", "device[0].max_line", 9, "1B to 1MiB"},
		{"state_dir empty", head + "[agent]\nstate_dir = \"\"\n", "agent.state_dir", 5, "must not be empty"},
		{"acl resource", head + "[acl]\noperators = [\n  \"op@iot.test\",\n  \"op@iot.test/phone\",\n]\n", "acl.operators[1]", 7, "must be a bare JID"},
		{"acl no local", head + "[acl]\nviewers = [\"iot.test\"]\n", "acl.viewers[0]", 5, "no localpart"},
		{"acl invalid", head + "[acl]\nviewers = [\"a@\"]\n", "acl.viewers[0]", 5, "empty domain"},

		// [[device]]
		{"device name", dev + "[[device]]\nname = \"Relay 1\"\nkind = \"sim\"\n", "device[0].name", 6, "a-z, 0-9"},
		{"device name long", dev + "[[device]]\nname = \"" + strings.Repeat("a", 65) + "\"\nkind = \"sim\"\n", "device[0].name", 6, "1 to 64"},
		{"device name missing", dev + "[[device]]\nkind = \"sim\"\n", "device[0].name", 5, "required"},
		{"device duplicate", dev + "[[device]]\nname = \"a\"\nkind = \"sim\"\n[[device]]\nname = \"a\"\nkind = \"sim-switch\"\n", "device[1].name", 9, `duplicate device name "a"`},
		{"kind unknown", dev + "[[device]]\nname = \"relay\"\nkind = \"relay\"\n", "device[0].kind", 7, `unknown kind "relay" (device "relay"); want one of gpio-in, gpio-out,`},
		{"kind missing", dev + "[[device]]\nname = \"relay\"\n", "device[0].kind", 5, "required"},
		{"key not for kind", dev + "[[device]]\nname = \"relay1\"\nkind = \"sim-switch\"\nbaud = 9600\n", "device[0].baud", 8, `does not apply to kind sim-switch (device "relay1")`},
		{"zero key not for kind", dev + "[[device]]\nname = \"t\"\nkind = \"sim\"\ninvert = false\n", "device[0].invert", 8, "does not apply to kind sim"},
		{"gpio-out pin", dev + "[[device]]\nname = \"relay1\"\nkind = \"gpio-out\"\n", "device[0].pin", 5, "required for kind gpio-out"},
		{"gpio-in pin", dev + "[[device]]\nname = \"b\"\nkind = \"gpio-in\"\n", "device[0].pin", 5, "required for kind gpio-in"},
		{"gpio-in pull", dev + "[[device]]\nname = \"b\"\nkind = \"gpio-in\"\npin = \"4\"\npull = \"sideways\"\n", "device[0].pull", 9, "none, up, down"},
		{"gpio-in edge", dev + "[[device]]\nname = \"b\"\nkind = \"gpio-in\"\npin = \"4\"\nedge = \"up\"\n", "device[0].edge", 9, "both, rising, falling"},
		{"gpio-in interval", dev + "[[device]]\nname = \"b\"\nkind = \"gpio-in\"\npin = \"4\"\ninterval = \"50ms\"\n", "device[0].interval", 9, "minimum 100ms"},
		{"sim interval zero", dev + "[[device]]\nname = \"t\"\nkind = \"sim\"\ninterval = \"0s\"\n", "device[0].interval", 8, "too short"},
		{"i2c address", dev + "[[device]]\nname = \"t\"\nkind = \"i2c-bme280\"\naddress = 0x78\n", "device[0].address", 8, "0x03-0x77"},
		{"i2c address low", dev + "[[device]]\nname = \"t\"\nkind = \"i2c-sht3x\"\naddress = 2\n", "device[0].address", 8, "0x03-0x77"},
		{"i2c address string", dev + "[[device]]\nname = \"t\"\nkind = \"i2c-sht3x\"\naddress = \"0x44\"\n", "device[0].address", 8, "want an integer"},
		{"i2c bus", dev + "[[device]]\nname = \"t\"\nkind = \"i2c-sht3x\"\nbus = \"i2c\"\n", "device[0].bus", 8, "/dev/i2c-1"},
		{"onewire id missing", dev + "[[device]]\nname = \"t\"\nkind = \"onewire-ds18b20\"\n", "device[0].id", 5, "required"},
		{"onewire id bad", dev + "[[device]]\nname = \"t\"\nkind = \"onewire-ds18b20\"\nid = \"28-XYZ\"\n", "device[0].id", 8, "28-0316a2795dff"},
		{"serial port", dev + "[[device]]\nname = \"m\"\nkind = \"serial\"\n", "device[0].port", 5, "required for kind serial"},
		{"serial baud", dev + "[[device]]\nname = \"m\"\nkind = \"serial\"\nport = \"/dev/ttyS0\"\nbaud = 12345\n", "device[0].baud", 9, "standard baud rate"},
		{"serial parity", dev + "[[device]]\nname = \"m\"\nkind = \"serial\"\nport = \"/dev/ttyS0\"\nparity = \"mark\"\n", "device[0].parity", 9, "none, even, odd"},
		{"serial data_bits", dev + "[[device]]\nname = \"m\"\nkind = \"serial\"\nport = \"/dev/ttyS0\"\ndata_bits = 9\n", "device[0].data_bits", 9, "5 to 8"},
		{"serial stop_bits", dev + "[[device]]\nname = \"m\"\nkind = \"serial\"\nport = \"/dev/ttyS0\"\nstop_bits = 3\n", "device[0].stop_bits", 9, "1 or 2"},
		{"serial parse", dev + "[[device]]\nname = \"m\"\nkind = \"serial\"\nport = \"/dev/ttyS0\"\nparse = \"xml\"\n", "device[0].parse", 9, "line, kv, json, regexp"},
		{"regexp without pattern", dev + "[[device]]\nname = \"m\"\nkind = \"serial\"\nport = \"/dev/ttyS0\"\nparse = \"regexp\"\n", "device[0].pattern", 5, "required"},
		{"pattern without regexp", dev + "[[device]]\nname = \"m\"\nkind = \"serial\"\nport = \"/dev/ttyS0\"\npattern = \"(?P<t>.*)\"\n", "device[0].pattern", 9, "only used with"},
		{"pattern invalid", dev + "[[device]]\nname = \"m\"\nkind = \"serial\"\nport = \"/dev/ttyS0\"\nparse = \"regexp\"\npattern = \"(\"\n", "device[0].pattern", 10, "missing closing )"},
		{"pattern unnamed", dev + "[[device]]\nname = \"m\"\nkind = \"serial\"\nport = \"/dev/ttyS0\"\nparse = \"regexp\"\npattern = \"[0-9]+\"\n", "device[0].pattern", 10, "named group"},
		{"serial max_line", dev + "[[device]]\nname = \"m\"\nkind = \"serial\"\nport = \"/dev/ttyS0\"\nmax_line = \"2MiB\"\n", "device[0].max_line", 9, "1MiB"},
		{"file path", dev + "[[device]]\nname = \"f\"\nkind = \"file\"\n", "device[0].path", 5, "required for kind file"},
		{"file parse", dev + "[[device]]\nname = \"f\"\nkind = \"file\"\npath = \"/x\"\nparse = \"regexp\"\n", "device[0].parse", 9, "line, kv, json, whole"},
		{"file max_size", dev + "[[device]]\nname = \"f\"\nkind = \"file\"\npath = \"/x\"\nmax_size = 0\n", "device[0].max_size", 9, "16MiB"},

		// [[sink]]
		{"sink kind", dev + "[[sink]]\nkind = \"email\"\n", "sink[0].kind", 6, "chat, muc, pubsub, pep"},
		{"chat to missing", dev + "[[sink]]\nkind = \"chat\"\n", "sink[0].to", 5, "required"},
		{"chat to bad", dev + "[[sink]]\nkind = \"chat\"\nto = \"op@\"\n", "sink[0].to", 7, "empty domain"},
		{"sink key not for kind", dev + "[[sink]]\nkind = \"chat\"\nto = \"op@iot.test\"\nroom = \"r@c.iot.test\"\n", "sink[0].room", 8, "does not apply to sink kind chat"},
		{"muc room missing", dev + "[[sink]]\nkind = \"muc\"\n", "sink[0].room", 5, "required"},
		{"two sinks to one JID", dev + "[[sink]]\nkind = \"chat\"\nto = \"op@iot.test\"\n[[sink]]\nkind = \"chat\"\nto = \"Op@IoT.test\"\n", "sink[1]", 8, "same chat as sink[0]"},
		{"two sinks to one room", dev + "[[sink]]\nkind = \"muc\"\nroom = \"lab@c.iot.test\"\n[[sink]]\nkind = \"muc\"\nroom = \"lab@c.iot.test\"\nnick = \"other\"\n", "sink[1]", 8, "same muc as sink[0]"},
		{"muc room resource", dev + "[[sink]]\nkind = \"muc\"\nroom = \"r@c.iot.test/nick\"\n", "sink[0].room", 7, "must be a bare JID"},
		{"muc nick empty", dev + "[[sink]]\nkind = \"muc\"\nroom = \"r@c.iot.test\"\nnick = \"\"\n", "sink[0].nick", 8, "required"},
		{"muc both passwords", dev + "[[sink]]\nkind = \"muc\"\nroom = \"r@c.iot.test\"\npassword = \"x\"\npassword_file = \"f\"\n", "sink[0].password", 8, "not both"},
		{"pubsub service", dev + "[[sink]]\nkind = \"pubsub\"\n", "sink[0].service", 5, "required"},
		{"sink no such device", dev + "[[sink]]\nkind = \"chat\"\nto = \"op@iot.test\"\ndevices = [\"greenhouse\"]\n", "sink[0].devices[0]", 8, `no device named "greenhouse"`},
		{"sink bad glob", dev + "[[sink]]\nkind = \"chat\"\nto = \"op@iot.test\"\ndevices = [\"[a-\"]\n", "sink[0].devices[0]", 8, "bad pattern"},
		{"sink empty devices", dev + "[[sink]]\nkind = \"chat\"\nto = \"op@iot.test\"\ndevices = []\n", "sink[0].devices", 8, "names no device"},
		{"deadband", dev + "[[sink]]\nkind = \"pep\"\ndeadband = -0.5\n", "sink[0].deadband", 7, ">= 0"},
		{"deadband nan", dev + "[[sink]]\nkind = \"pep\"\ndeadband = nan\n", "sink[0].deadband", 7, ">= 0"},

		// [[action]]
		{"action name", dev + "[[action]]\nname = \"Reboot!\"\nargv = [\"/sbin/reboot\"]\n", "action[0].name", 6, "a-z"},
		{"action duplicate", dev + "[[action]]\nname = \"r\"\nargv = [\"/sbin/reboot\"]\n[[action]]\nname = \"r\"\nargv = [\"/sbin/reboot\"]\n", "action[1].name", 9, "duplicate action"},
		{"action argv missing", dev + "[[action]]\nname = \"r\"\n", "action[0].argv", 5, "required"},
		{"action argv relative", dev + "[[action]]\nname = \"r\"\nargv = [\"systemctl\", \"restart\"]\n", "action[0].argv", 7, "absolute path"},
		{"action timeout", dev + "[[action]]\nname = \"r\"\nargv = [\"/bin/true\"]\ntimeout = \"0s\"\n", "action[0].timeout", 8, "positive"},

		// [mqtt]
		{"mqtt broker missing", head + "[mqtt]\nqos = 1\n", "mqtt.broker", 4, "required"},
		{"mqtt scheme", head + "[mqtt]\nbroker = \"http://b:1883\"\n", "mqtt.broker", 5, `scheme "http"`},
		{"mqtt broker no host", head + "[mqtt]\nbroker = \"127.0.0.1:1883\"\n", "mqtt.broker", 5, "scheme://host:port"},
		{"mqtt qos", head + "[mqtt]\nbroker = \"tcp://b:1883\"\nqos = 3\n", "mqtt.qos", 6, "0, 1 or 2"},
		{"mqtt client cert alone", head + "[mqtt]\nbroker = \"ssl://b:8883\"\nclient_cert = \"c.pem\"\n", "mqtt.client_key", 4, "go together"},
		{"mqtt device status", head + "[[device]]\nname = \"status\"\nkind = \"sim\"\n[mqtt]\nbroker = \"tcp://b:1883\"\n", "mqtt", 7, "status topic"},
		{"mqtt prefix", head + "[mqtt]\nbroker = \"tcp://b:1883\"\ntopic_prefix = \"a/#\"\n", "mqtt.topic_prefix", 6, "wildcards"},
		{"mqtt filter", head + "[mqtt]\nbroker = \"tcp://b:1883\"\n[[mqtt.subscribe]]\ntopic = \"a/#/b\"\ndevice = \"x\"\n", "mqtt.subscribe[0].topic", 7, "topic filter"},
		{"mqtt device clash", dev + "[[device]]\nname = \"t\"\nkind = \"sim\"\n[mqtt]\nbroker = \"tcp://b:1883\"\n[[mqtt.subscribe]]\ntopic = \"a\"\ndevice = \"t\"\nparse = \"xml\"\n", "mqtt.subscribe[0].device", 12, "already a [[device]]"},
		{"mqtt parse", head + "[mqtt]\nbroker = \"tcp://b:1883\"\n[[mqtt.subscribe]]\ntopic = \"a\"\ndevice = \"x\"\nparse = \"xml\"\n", "mqtt.subscribe[0].parse", 9, "line, kv, json"},

		// [[alert]]
		{"alert device", dev + "[[alert]]\ndevice = \"nosuch\"\nfield = \"temperature\"\nabove = 30.0\n", "alert[0].device", 6, `no device named "nosuch"`},
		{"alert field", dev + "[[device]]\nname = \"t\"\nkind = \"sim\"\n[[alert]]\ndevice = \"t\"\nfield = \"pressure\"\nabove = 1\n", "alert[0].field", 10, "reports temperature, humidity"},
		{"alert threshold", dev + "[[device]]\nname = \"t\"\nkind = \"sim\"\n[[alert]]\ndevice = \"t\"\nfield = \"humidity\"\n", "alert[0].above", 8, "above, below or both"},
		{"alert band", dev + "[[device]]\nname = \"t\"\nkind = \"sim\"\n[[alert]]\ndevice = \"t\"\nfield = \"humidity\"\nabove = 30\nbelow = 40\n", "alert[0].below", 12, "less than above"},
		{"alert sinks", dev + "[[device]]\nname = \"t\"\nkind = \"sim\"\n[[alert]]\ndevice = \"t\"\nfield = \"humidity\"\nabove = 30\nsinks = [\"chat\", \"email\"]\n", "alert[0].sinks[1]", 12, "not a sink kind"},
		{"alert sink kind unused", dev + "[[device]]\nname = \"t\"\nkind = \"sim\"\n[[alert]]\ndevice = \"t\"\nfield = \"humidity\"\nabove = 30\nsinks = [\"muc\"]\n", "alert[0].sinks[0]", 12, `no muc sink takes readings of device "t"`},
		{"alert to pubsub", dev + "[[device]]\nname = \"t\"\nkind = \"sim\"\n[[alert]]\ndevice = \"t\"\nfield = \"humidity\"\nabove = 30\nsinks = [\"pep\"]\n", "alert[0].sinks[0]", 12, "messages to people"},
		{"alert without sink", dev + "[[device]]\nname = \"t\"\nkind = \"sim\"\n[[alert]]\ndevice = \"t\"\nfield = \"humidity\"\nabove = 30\n", "alert[0].sinks", 8, "no chat or muc sink"},
		{"decimals", dev + "[[device]]\nname = \"t\"\nkind = \"sim\"\ndecimals = 12\n", "device[0].decimals", 8, "want 0 to 9"},
		{"max_items", dev + "[[device]]\nname = \"t\"\nkind = \"sim\"\n[[sink]]\nkind = \"pep\"\nmax_items = 0\n", "sink[0].max_items", 10, "want 1 to 10000"},
		{"access_model", dev + "[[device]]\nname = \"t\"\nkind = \"sim\"\n[[sink]]\nkind = \"pubsub\"\nservice = \"pubsub.iot.test\"\naccess_model = \"closed\"\n", "sink[0].access_model", 11, `"closed" is not one of open, presence, roster, authorize, whitelist`},
		{"access_model empty", dev + "[[device]]\nname = \"t\"\nkind = \"sim\"\n[[sink]]\nkind = \"pep\"\naccess_model = \"\"\n", "sink[0].access_model", 10, "is not one of"},
		{"access_model on muc", dev + "[[device]]\nname = \"t\"\nkind = \"sim\"\n[[sink]]\nkind = \"muc\"\nroom = \"r@c.b\"\naccess_model = \"open\"\n", "sink[0].access_model", 11, "does not apply"},
		{"max_items on chat", dev + "[[device]]\nname = \"t\"\nkind = \"sim\"\n[[sink]]\nkind = \"chat\"\nto = \"a@b\"\nmax_items = 3\n", "sink[0].max_items", 11, "does not apply"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.doc), "stanzad.toml")
			if err == nil {
				t.Fatalf("Parse(%q) = %+v, nil; want an error for %s on line %d", tt.doc, cfg, tt.key, tt.line)
			}
			e := findErr(t, err, tt.key, tt.line)
			if !strings.Contains(e.Msg, tt.msg) {
				t.Errorf("Parse(%q): %v; want message containing %q", tt.doc, e, tt.msg)
			}
			prefix := fmt.Sprintf("stanzad.toml:%d: ", tt.line)
			if tt.key != "" {
				prefix += tt.key + ": "
			}
			if !strings.Contains(err.Error(), prefix) {
				t.Errorf("Parse(%q) error\n%v\nlacks %q", tt.doc, err, prefix)
			}
		})
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	doc := `[xmpp]
jid = "device@iot.test"
tls = "plain"
keepalive = "10 sec"
presence_status = 7

[agent]
log_level = "loud"

[[device]]
name = "relay1"
kind = "sim-switch"
baud = 9600
colour = "red"

[[device]]
name = "relay1"
kind = "gpio-out"

[[sink]]
kind = "chat"
to = "operator@iot.test"
devices = ["nosuch"]
`
	_, err := Parse([]byte(doc), "s.toml")
	want := []struct {
		key  string
		line int
	}{
		{"xmpp.password_file", 1},
		{"xmpp.tls", 3},
		{"xmpp.keepalive", 4},
		{"xmpp.presence_status", 5},
		{"agent.log_level", 8},
		{"device[0].baud", 13},
		{"device[0].colour", 14},
		{"device[1].pin", 16},
		{"device[1].name", 17},
		{"sink[0].devices[0]", 23},
	}
	var es Errors
	if !errors.As(err, &es) || len(es) != len(want) {
		t.Fatalf("Parse = %v\nwant %d problems", err, len(want))
	}
	for i, w := range want {
		if es[i].Key != w.key || es[i].Line != w.line || es[i].File != "s.toml" {
			t.Errorf("problem %d = %v, want key %s on line %d", i, es[i], w.key, w.line)
		}
	}
	if n := strings.Count(err.Error(), "\n"); n != len(want)-1 {
		t.Errorf("Error() has %d lines, want one per problem:\n%v", n+1, err)
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		e    Error
		want string
	}{
		{Error{File: "a.toml", Line: 7, Key: "xmpp.tls", Msg: "bad"}, "a.toml:7: xmpp.tls: bad"},
		{Error{File: "a.toml", Key: "xmpp.jid", Msg: "required"}, "a.toml: xmpp.jid: required"},
		{Error{File: "a.toml", Line: 3, Msg: "syntax"}, "a.toml:3: syntax"},
		{Error{Key: "device[0].name", Msg: "required"}, "device[0].name: required"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestParseWarnings(t *testing.T) {
	cfg, err := Parse([]byte(`[xmpp]
jid = "device@iot.test"
password = "pw-inline"

[[device]]
name = "a"
kind = "sim"

[[sink]]
kind = "chat"
to = "op@iot.test"
devices = ["b*"]
`), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(cfg.Warnings, "\n")
	for _, want := range []string{"password in config file; prefer password_file", `pattern "b*" matches no device`} {
		if !strings.Contains(got, want) {
			t.Errorf("Warnings = %q, want one containing %q", cfg.Warnings, want)
		}
	}
}

func TestErrorsNeverShowPassword(t *testing.T) {
	const pw = "hunter2-secret"
	for _, doc := range []string{
		"[xmpp]\njid = \"a@iot.test\"\npassword = \"" + pw + "\"\npassword = \"" + pw + "\"\n",
		"[xmpp]\njid = \"a@iot.test\"\npassword = \"" + pw + "\"\npassword_file = \"f\"\ntls = 1\n",
		"[xmpp]\njid = \"a@iot.test\"\npassword = \"" + pw + "\\q\"\n",
		"[xmpp]\njid = \"a@iot.test\"\npassword = \"" + pw + "\n",
		"[xmpp]\njid = \"" + pw + "@iot.test\"\npassword = \"" + pw + "\"\ntls = \"x\"\n",
		"[xmpp]\njid = \"a@iot.test\"\npassword = '''" + pw + "'''\n[[sink]]\nkind = \"muc\"\npassword = \"" + pw + "\"\n",
	} {
		_, err := Parse([]byte(doc), "t.toml")
		if err == nil {
			t.Fatalf("Parse(%q) = nil error, want one", doc)
		}
		if strings.Contains(err.Error(), pw) {
			t.Errorf("Parse error shows the password:\n%v", err)
		}
	}
}

func TestValidate(t *testing.T) {
	cfg, err := Parse([]byte(dev+"[[device]]\nname = \"a\"\nkind = \"sim\"\n"), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate() of a parsed config = %v", err)
	}
	cfg.Devices[0].Name = "A!"
	cfg.Devices[0].Baud = 9600
	cfg.XMPP.TLS = ""
	err = cfg.Validate()
	for _, key := range []string{"device[0].name", "device[0].baud", "xmpp.tls"} {
		findErr(t, err, key, 0)
	}
}

// writeFile writes body to dir/name with mode perm (umask aside).
func writeFile(t *testing.T, dir, name, body string, perm os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, perm); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoad(t *testing.T) {
	body := `[xmpp]
jid = "device@iot.test"
password_file = "secrets/pw"
ca_file = "ca.pem"

[agent]
state_dir = "state"

[[device]]
name = "room"
kind = "sim"

[[sink]]
kind = "muc"
room = "room@conference.iot.test"
password_file = "/nonexistent/muc-pw"

[mqtt]
broker = "tcp://127.0.0.1:1883"
password_file = "mqtt-pw"
`
	tests := []struct {
		name     string
		pwMode   os.FileMode
		cfgBody  string
		wantErr  []string // key@line
		wantWarn string
	}{
		{"ok", 0o600, strings.Replace(body, "/nonexistent/muc-pw", "secrets/pw", 1), nil, ""},
		{"world-readable password file", 0o644, strings.Replace(body, "/nonexistent/muc-pw", "secrets/pw", 1), nil, "world-readable"},
		{"missing files", 0o600, strings.Replace(body, "mqtt-pw", "nope", 1), []string{"sink[0].password_file@16", "mqtt.password_file@20"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.Mkdir(filepath.Join(dir, "secrets"), 0o700); err != nil {
				t.Fatal(err)
			}
			writeFile(t, dir, "secrets/pw", "s3cret\r\n\n", tt.pwMode)
			writeFile(t, dir, "mqtt-pw", "mq\n", 0o600)
			path := writeFile(t, dir, "stanzad.toml", tt.cfgBody, 0o600)
			cfg, err := Load(path)
			if tt.wantErr != nil {
				for _, ke := range tt.wantErr {
					key, line, _ := strings.Cut(ke, "@")
					var n int
					fmt.Sscan(line, &n)
					findErr(t, err, key, n)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load = %v", err)
			}
			x := cfg.XMPP
			if x.Password.Reveal() != "s3cret" || cfg.Sinks[0].Password.Reveal() != "s3cret" || cfg.MQTT.Password.Reveal() != "mq" {
				t.Errorf("passwords not read or not trimmed: %q %q %q", x.Password.Reveal(), cfg.Sinks[0].Password.Reveal(), cfg.MQTT.Password.Reveal())
			}
			if x.PasswordFile != filepath.Join(dir, "secrets/pw") || x.CAFile != filepath.Join(dir, "ca.pem") || cfg.Agent.StateDir != filepath.Join(dir, "state") {
				t.Errorf("paths not resolved against %s: %+v %+v", dir, x, cfg.Agent)
			}
			if warn := strings.Join(cfg.Warnings, "\n"); tt.wantWarn == "" && warn != "" || !strings.Contains(warn, tt.wantWarn) {
				t.Errorf("Warnings = %q, want %q", cfg.Warnings, tt.wantWarn)
			}
			if err := cfg.Validate(); err != nil {
				t.Errorf("Validate() after Load = %v", err)
			}
		})
	}
}

func TestLoadInlinePasswordWorldReadable(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "stanzad.toml", "[xmpp]\njid = \"a@iot.test\"\npassword = \"pw-inline\"\n", 0o644)
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(cfg.Warnings, "\n")
	if !strings.Contains(got, "prefer password_file") || !strings.Contains(got, "world-readable") || strings.Contains(got, "pw-inline") {
		t.Errorf("Warnings = %q, want inline-password and world-readable warnings", cfg.Warnings)
	}
	if cfg.XMPP.Password.Reveal() != "pw-inline" {
		t.Errorf("Password = %q", cfg.XMPP.Password.Reveal())
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "none.toml")
	_, err := Load(path)
	var es Errors
	if !errors.As(err, &es) || len(es) != 1 || !strings.HasPrefix(err.Error(), path+": ") {
		t.Fatalf("Load(missing) = %v, want one problem naming the file", err)
	}
}

func TestLoadClient(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "op-pw", "opsecret\n", 0o600)
	tests := []struct {
		name, body string
		key        string
		line       int
	}{
		{"ok", "to = \"device@iot.test/agent\"\n\n[xmpp]\njid = \"operator@iot.test\"\npassword_file = \"op-pw\"\n", "", 0},
		{"no to", "[xmpp]\njid = \"operator@iot.test\"\npassword_file = \"op-pw\"\n", "", 0},
		{"bad to", "to = \"device@\"\n[xmpp]\njid = \"operator@iot.test\"\npassword_file = \"op-pw\"\n", "to", 1},
		{"agent table", "[xmpp]\njid = \"operator@iot.test\"\npassword_file = \"op-pw\"\n[agent]\nlog_level = \"info\"\n", "agent", 4},
		{"xmpp rules", "[xmpp]\njid = \"operator@iot.test\"\npassword_file = \"op-pw\"\ntls = \"plain\"\n", "xmpp.tls", 4},
		{"missing password file", "[xmpp]\njid = \"operator@iot.test\"\npassword_file = \"nope\"\n", "xmpp.password_file", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cc, err := LoadClient(writeFile(t, dir, "op.toml", tt.body, 0o600))
			if tt.key != "" {
				findErr(t, err, tt.key, tt.line)
				return
			}
			if err != nil {
				t.Fatalf("LoadClient = %v", err)
			}
			if cc.XMPP.Password.Reveal() != "opsecret" || cc.XMPP.TLS != "starttls" || cc.XMPP.PasswordFile != filepath.Join(dir, "op-pw") {
				t.Errorf("LoadClient = %+v, want password read and defaults", cc)
			}
			if strings.HasPrefix(tt.body, "to") && cc.To != "device@iot.test/agent" {
				t.Errorf("To = %q", cc.To)
			}
		})
	}
}

func TestExampleConfig(t *testing.T) {
	const path = "../../systemd/stanzad.toml.example"
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse(data, path)
	if err != nil {
		t.Fatalf("the shipped example config does not parse:\n%v", err)
	}
	if len(cfg.Devices) == 0 || cfg.XMPP.JID == "" {
		t.Errorf("Parse(example) = %+v, want devices and a JID", cfg)
	}
	// What the example shows commented out must be valid too.
	commented := regexp.MustCompile(`(?m)^# (\[|[a-z_]+ = )`)
	all := commented.ReplaceAllString(string(data), "$1")
	cfg, err = Parse([]byte(all), path+" (uncommented)")
	if err != nil {
		t.Fatalf("the example's commented keys do not parse:\n%v", err)
	}
	if len(cfg.Sinks) != 3 || len(cfg.Alerts) != 1 || len(cfg.Actions) != 1 || cfg.Sinks[0].MinInterval.Duration == 0 ||
		cfg.MQTT == nil || len(cfg.MQTT.Subscribe) != 1 {
		t.Errorf("uncommented example: %d sinks, %d alerts, %d actions, %+v", len(cfg.Sinks), len(cfg.Alerts), len(cfg.Actions), cfg.Sinks[0])
	}
}

// Telemetry defaults: max_silence comes with a deadband, batch with
// message sinks, and an alert goes to every chat and muc sink, with a
// holdoff.
func TestTelemetryDefaults(t *testing.T) {
	cfg, err := Parse([]byte(`
[xmpp]
jid = "device@iot.test/agent"
password_file = "pw"
[[device]]
name = "t"
kind = "sim"
[[sink]]
kind = "chat"
to = "op@iot.test"
deadband = 0.5
[[sink]]
kind = "muc"
room = "lab@conference.iot.test"
[[sink]]
kind = "pubsub"
service = "pubsub.iot.test"
[[alert]]
device = "t"
field = "temperature"
above = 30
`), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.Sinks[0]; s.MaxSilence.Duration != 15*time.Minute || s.Batch != 32 {
		t.Errorf("chat sink: %+v", s)
	}
	if s := cfg.Sinks[1]; s.MaxSilence.Duration != 0 || s.Batch != 32 || s.Nick != "device" {
		t.Errorf("muc sink: %+v", s)
	}
	if s := cfg.Sinks[2]; s.Batch != 0 || s.MaxItems != 10 || s.AccessModel != "whitelist" {
		t.Errorf("pubsub sink: %+v", s)
	}
	if al := cfg.Alerts[0]; al.Holdoff.Duration != 30*time.Second || !slices.Equal(al.Sinks, []string{"chat", "muc"}) {
		t.Errorf("alert: %+v", al)
	}
	if _, err := Parse([]byte(`
[xmpp]
jid = "device@iot.test/agent"
password_file = "pw"
[[device]]
name = "t"
kind = "sim"
[[sink]]
kind = "chat"
to = "op@iot.test"
batch = 0
`), "t.toml"); err == nil || !strings.Contains(err.Error(), "sink[0].batch") {
		t.Errorf("batch = 0: %v", err)
	}
}

func TestParseServerForms(t *testing.T) {
	for _, tc := range []struct {
		doc  string
		want Endpoints
	}{
		{head, nil},
		{head + "server = \"10.0.0.5:5222\"\n", Endpoints{"10.0.0.5:5222"}},
		{head + "server = [\"10.0.0.5:5222\", \"[::1]:5223\",\n  \"xmpp.example.org:443\"]\n", Endpoints{"10.0.0.5:5222", "[::1]:5223", "xmpp.example.org:443"}},
	} {
		cfg, err := Parse([]byte(tc.doc+dev[len(head):]), "t.toml")
		if err != nil {
			t.Fatalf("%q: %v", tc.doc, err)
		}
		if !slices.Equal(cfg.XMPP.Server, tc.want) {
			t.Errorf("%q: server = %q, want %q", tc.doc, cfg.XMPP.Server, tc.want)
		}
	}
}
