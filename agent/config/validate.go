package config

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stanzad/stanzad/xmpp"
)

var nameRE = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)

// deviceKeys lists, per device kind, the keys it accepts besides name and
// kind (DESIGN.md "Keys per kind").
var deviceKeys = map[string][]string{
	"sim":             {"interval"},
	"sim-switch":      {"initial"},
	"gpio-in":         {"pin", "pull", "edge", "debounce", "invert", "interval"},
	"gpio-out":        {"pin", "initial", "safe", "invert", "pulse"},
	"i2c-bme280":      {"bus", "address", "interval"},
	"i2c-sht3x":       {"bus", "address", "interval"},
	"onewire-ds18b20": {"id", "interval"},
	"system":          {"interval", "root"},
	"serial":          {"port", "baud", "parity", "data_bits", "stop_bits", "parse", "pattern", "max_line", "writable"},
	"file":            {"path", "parse", "max_size"},
}

// Kinds returns the device kinds the schema knows, sorted.
func Kinds() []string {
	out := make([]string, 0, len(deviceKeys))
	for k := range deviceKeys {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

var sinkKeys = map[string][]string{
	"chat":   {"to"},
	"muc":    {"room", "nick", "password", "password_file"},
	"pubsub": {"service", "node"},
	"pep":    {"node"},
}

var sinkCommonKeys = []string{"kind", "devices", "min_interval", "deadband", "max_silence"}

var baudRates = []int{50, 75, 110, 134, 150, 200, 300, 600, 1200, 1800, 2400, 4800, 9600, 19200,
	38400, 57600, 115200, 230400, 460800, 500000, 576000, 921600, 1000000, 1152000, 1500000,
	2000000, 2500000, 3000000, 3500000, 4000000}

var onewireIDRE = regexp.MustCompile(`^[0-9a-f]{2}-[0-9a-f]{12}$`)

func oneOf(c *collector, key, v string, allowed ...string) {
	if !slices.Contains(allowed, v) {
		c.add(key, "%q is not one of %s", v, strings.Join(allowed, ", "))
	}
}

// checkJID validates a JID; bare requires no resource.
func checkJID(c *collector, key, s string, bare bool) {
	j, err := xmpp.ParseJID(s)
	switch {
	case err != nil:
		c.add(key, "invalid JID %q: %v", s, err)
	case j.Local == "" && bare:
		c.add(key, "%q has no localpart (want user@domain)", s)
	case bare && j.Resource != "":
		c.add(key, "%q must be a bare JID (no /resource)", s)
	}
}

func (x *XMPP) validate(c *collector) {
	if x.JID == "" {
		c.add("xmpp.jid", "required (e.g. \"device@example.org/agent\")")
	} else {
		j, err := xmpp.ParseJID(x.JID)
		if err != nil {
			c.add("xmpp.jid", "invalid JID %q: %v", x.JID, err)
		} else if j.Local == "" {
			c.add("xmpp.jid", "%q has no localpart (want user@domain)", x.JID)
		}
	}
	hasCert := x.ClientCert != "" || x.ClientKey != ""
	switch {
	case x.Password != "" && x.PasswordFile != "":
		c.add("xmpp.password", "set password or password_file, not both")
	case x.Password == "" && x.PasswordFile == "" && !hasCert:
		c.add("xmpp.password_file", "required: password_file, password, or client_cert and client_key")
	}
	if (x.ClientCert == "") != (x.ClientKey == "") {
		c.add("xmpp.client_cert", "client_cert and client_key go together")
	}
	switch x.TLS {
	case "starttls", "direct":
	case "plain", "none", "off", "false", "disabled":
		c.add("xmpp.tls", "%q: plaintext is not supported; use \"starttls\" or \"direct\"", x.TLS)
	default:
		c.add("xmpp.tls", "%q is not one of starttls, direct", x.TLS)
	}
	for i, p := range x.PinSHA256 {
		if b, err := base64.StdEncoding.DecodeString(p); err != nil || len(b) != 32 {
			c.add("xmpp.pin_sha256", "entry %d: want base64 of a 32-byte SHA-256, got %q", i+1, p)
		}
	}
	if k := x.Keepalive.Duration; k != 0 && k < 5*time.Second {
		c.add("xmpp.keepalive", "%v is too short (minimum 5s; 0 disables)", k)
	}
	if x.Server != "" {
		if _, port, err := netSplit(x.Server); err != nil {
			c.add("xmpp.server", "%q: want host:port", x.Server)
		} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			c.add("xmpp.server", "%q: bad port", x.Server)
		}
	}
}

func netSplit(hostport string) (string, string, error) {
	i := strings.LastIndexByte(hostport, ':')
	if i <= 0 || i == len(hostport)-1 {
		return "", "", fmt.Errorf("missing port")
	}
	return strings.Trim(hostport[:i], "[]"), hostport[i+1:], nil
}

func (cfg *Config) validate(c *collector) {
	if c.ix.has("xmpp.password") {
		cfg.Warnings = append(cfg.Warnings, "xmpp.password is set in the config file; prefer password_file (mode 0640)")
	}
	cfg.XMPP.validate(c)

	a := cfg.Agent
	oneOf(c, "agent.log_level", a.LogLevel, "debug", "info", "warn", "error")
	oneOf(c, "agent.log_format", a.LogFormat, "text", "json")
	if a.OutboxMax < 64<<10 {
		c.add("agent.outbox_max", "%v is too small (minimum 64KiB)", a.OutboxMax)
	}

	for i, op := range cfg.ACL.Operators {
		checkJID(c, fmt.Sprintf("acl.operators[%d]", i), op, true)
	}
	for i, v := range cfg.ACL.Viewers {
		checkJID(c, fmt.Sprintf("acl.viewers[%d]", i), v, true)
	}

	names := make(map[string]bool)
	for i := range cfg.Devices {
		cfg.Devices[i].validate(c, fmt.Sprintf("device[%d]", i), names)
	}
	for i := range cfg.Sinks {
		cfg.Sinks[i].validate(c, fmt.Sprintf("sink[%d]", i), names)
	}
	actions := make(map[string]bool)
	for i, act := range cfg.Actions {
		key := fmt.Sprintf("action[%d]", i)
		switch {
		case !nameRE.MatchString(act.Name):
			c.add(key+".name", "%q: want 1-64 of a-z 0-9 _ -", act.Name)
		case actions[act.Name]:
			c.add(key+".name", "duplicate action %q", act.Name)
		}
		actions[act.Name] = true
		if len(act.Argv) == 0 {
			c.add(key+".argv", "required: the command and its arguments (no shell)")
		} else if !strings.HasPrefix(act.Argv[0], "/") {
			c.add(key+".argv", "%q: the program must be an absolute path", act.Argv[0])
		}
	}
	if m := cfg.MQTT; m != nil {
		m.validate(c, names)
	}
}

func (d *Device) validate(c *collector, key string, names map[string]bool) {
	label := key
	if d.Name != "" {
		label = fmt.Sprintf("%s (%s)", key, d.Name)
	}
	switch {
	case d.Name == "":
		c.add(key+".name", "required")
	case !nameRE.MatchString(d.Name):
		c.add(key+".name", "%q: want 1-64 of a-z 0-9 _ - (it appears in every wire format)", d.Name)
	case names[d.Name]:
		c.add(key+".name", "duplicate device %q", d.Name)
	}
	names[d.Name] = true
	allowed, ok := deviceKeys[d.Kind]
	if !ok {
		if d.Kind == "" {
			c.add(key+".kind", "%s: required (one of %s)", label, strings.Join(Kinds(), ", "))
		} else {
			c.add(key+".kind", "%s: unknown kind %q (one of %s)", label, d.Kind, strings.Join(Kinds(), ", "))
		}
		return
	}
	for _, k := range c.ix.keysUnder(key) {
		if k != "name" && k != "kind" && !slices.Contains(allowed, k) {
			c.add(key+"."+k, "%s: key %s does not apply to kind %s", label, k, d.Kind)
		}
	}
	need := func(k, v string) {
		if v == "" {
			c.add(key+"."+k, "%s: required for kind %s", label, d.Kind)
		}
	}
	if slices.Contains(allowed, "interval") && d.Kind != "gpio-in" && d.Interval.Duration < 100*time.Millisecond {
		c.add(key+".interval", "%s: %v is too short (minimum 100ms)", label, d.Interval.Duration)
	}
	switch d.Kind {
	case "gpio-in":
		need("pin", d.Pin)
		oneOf(c, key+".pull", d.Pull, "none", "up", "down")
		oneOf(c, key+".edge", d.Edge, "both", "rising", "falling")
		if i := d.Interval.Duration; i != 0 && i < 100*time.Millisecond {
			c.add(key+".interval", "%s: %v is too short (minimum 100ms; 0 = on change only)", label, i)
		}
	case "gpio-out":
		need("pin", d.Pin)
	case "i2c-bme280", "i2c-sht3x":
		if d.Address < 0x03 || d.Address > 0x77 {
			c.add(key+".address", "%s: %#x is outside the 7-bit range 0x03-0x77", label, d.Address)
		}
	case "onewire-ds18b20":
		need("id", d.ID)
		if d.ID != "" && !onewireIDRE.MatchString(d.ID) {
			c.add(key+".id", "%s: %q: want a sensor id like 28-0316a2795dff", label, d.ID)
		}
	case "serial":
		need("port", d.Port)
		if !slices.Contains(baudRates, d.Baud) {
			c.add(key+".baud", "%s: %d is not a standard baud rate", label, d.Baud)
		}
		oneOf(c, key+".parity", d.Parity, "none", "even", "odd")
		if d.DataBits < 5 || d.DataBits > 8 {
			c.add(key+".data_bits", "%s: %d: want 5 to 8", label, d.DataBits)
		}
		if d.StopBits != 1 && d.StopBits != 2 {
			c.add(key+".stop_bits", "%s: %d: want 1 or 2", label, d.StopBits)
		}
		oneOf(c, key+".parse", d.Parse, "line", "kv", "json", "regexp")
		d.validatePattern(c, key, label)
		if d.MaxLine < 16 || d.MaxLine > 1<<20 {
			c.add(key+".max_line", "%s: %v: want 16B to 1MiB", label, d.MaxLine)
		}
	case "file":
		need("path", d.Path)
		oneOf(c, key+".parse", d.Parse, "line", "kv", "json", "whole")
		if d.MaxSize < 16 || d.MaxSize > 16<<20 {
			c.add(key+".max_size", "%s: %v: want 16B to 16MiB", label, d.MaxSize)
		}
	}
}

func (d *Device) validatePattern(c *collector, key, label string) {
	switch {
	case d.Parse == "regexp" && d.Pattern == "":
		c.add(key+".pattern", "%s: required when parse = \"regexp\"", label)
	case d.Parse != "regexp" && d.Pattern != "":
		c.add(key+".pattern", "%s: only used with parse = \"regexp\"", label)
	case d.Pattern != "":
		re, err := regexp.Compile(d.Pattern)
		if err != nil {
			c.add(key+".pattern", "%s: %v", label, err)
			return
		}
		named := 0
		for _, n := range re.SubexpNames() {
			if n != "" {
				named++
			}
		}
		if named == 0 {
			c.add(key+".pattern", "%s: needs at least one named group, e.g. (?P<temp>[0-9.]+)", label)
		}
	}
}

func (s *Sink) validate(c *collector, key string, devices map[string]bool) {
	allowed, ok := sinkKeys[s.Kind]
	if !ok {
		c.add(key+".kind", "%q is not one of chat, muc, pubsub, pep", s.Kind)
		return
	}
	for _, k := range c.ix.keysUnder(key) {
		if !slices.Contains(sinkCommonKeys, k) && !slices.Contains(allowed, k) {
			c.add(key+"."+k, "key %s does not apply to sink kind %s", k, s.Kind)
		}
	}
	for i, pat := range s.Devices {
		k := fmt.Sprintf("%s.devices[%d]", key, i)
		if _, err := path.Match(pat, ""); err != nil {
			c.add(k, "bad pattern %q: %v", pat, err)
		} else if !strings.ContainsAny(pat, "*?[") && !devices[pat] {
			c.add(k, "no device named %q", pat)
		}
	}
	if s.Deadband < 0 {
		c.add(key+".deadband", "%v must not be negative", s.Deadband)
	}
	switch s.Kind {
	case "chat":
		if s.To == "" {
			c.add(key+".to", "required for a chat sink")
		} else {
			checkJID(c, key+".to", s.To, false)
		}
	case "muc":
		if s.Room == "" {
			c.add(key+".room", "required for a muc sink (room@conference.example)")
		} else {
			checkJID(c, key+".room", s.Room, true)
		}
		if s.Password != "" && s.PasswordFile != "" {
			c.add(key+".password", "set password or password_file, not both")
		}
	case "pubsub":
		if s.Service == "" {
			c.add(key+".service", "required for a pubsub sink (e.g. pubsub.example.org)")
		} else {
			checkJID(c, key+".service", s.Service, false)
		}
	}
}

func (m *MQTT) validate(c *collector, devices map[string]bool) {
	if m.Broker == "" {
		c.add("mqtt.broker", "required (e.g. \"tcp://127.0.0.1:1883\")")
	} else if u, err := url.Parse(m.Broker); err != nil || u.Host == "" {
		c.add("mqtt.broker", "%q: want scheme://host:port", m.Broker)
	} else {
		oneOf(c, "mqtt.broker", u.Scheme, "tcp", "ssl", "tls", "ws", "wss", "mqtt", "mqtts")
	}
	if q := *m.QoS; q < 0 || q > 2 {
		c.add("mqtt.qos", "%d: want 0, 1 or 2", q)
	}
	if (m.ClientCert == "") != (m.ClientKey == "") {
		c.add("mqtt.client_cert", "client_cert and client_key go together")
	}
	for i, s := range m.Subscribe {
		key := fmt.Sprintf("mqtt.subscribe[%d]", i)
		if s.Topic == "" {
			c.add(key+".topic", "required")
		}
		switch {
		case !nameRE.MatchString(s.Device):
			c.add(key+".device", "%q: want 1-64 of a-z 0-9 _ -", s.Device)
		case devices[s.Device]:
			c.add(key+".device", "%q is already a configured device", s.Device)
		}
		if s.Parse != "" {
			oneOf(c, key+".parse", s.Parse, "line", "kv", "json")
		}
	}
}
