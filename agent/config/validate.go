package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

func itoa(i int) string { return strconv.Itoa(i) }

// kindSpec is what DESIGN.md "Keys per kind" says about a device kind.
type kindSpec struct {
	keys   []string // besides name and kind
	fields []string // what it reports; nil when the file or line decides
}

var deviceKinds = map[string]kindSpec{
	"gpio-in":         {[]string{"pin", "pull", "edge", "debounce", "invert", "interval"}, []string{"state"}},
	"gpio-out":        {[]string{"pin", "initial", "safe", "invert", "pulse"}, []string{"state"}},
	"i2c-bme280":      {[]string{"bus", "address", "interval"}, []string{"temperature", "humidity", "pressure"}},
	"i2c-sht3x":       {[]string{"bus", "address", "interval"}, []string{"temperature", "humidity"}},
	"onewire-ds18b20": {[]string{"id", "interval", "root"}, []string{"temperature"}},
	"system":          {[]string{"interval", "root"}, []string{"cpu_temp", "load1", "mem_available", "disk_free", "uptime", "wifi_signal"}},
	"serial":          {[]string{"port", "baud", "parity", "data_bits", "stop_bits", "parse", "pattern", "max_line", "writable"}, nil},
	"file":            {[]string{"path", "parse", "max_size"}, nil},
	"sim":             {[]string{"interval"}, []string{"temperature", "humidity"}},
	"sim-switch":      {[]string{"initial"}, []string{"state"}},
}

const kindList = "gpio-in, gpio-out, i2c-bme280, i2c-sht3x, onewire-ds18b20, system, serial, file, sim, sim-switch"

var sinkKeys = map[string][]string{
	"chat":   {"to", "batch"},
	"muc":    {"room", "nick", "password", "password_file", "batch"},
	"pubsub": {"service", "node", "max_items", "access_model"},
	"pep":    {"node", "max_items", "access_model"},
}

// accessModels are the XEP-0060 §4.5 access models, loosest first.
var accessModels = []string{"open", "presence", "roster", "authorize", "whitelist"}

// The rates Linux termios has a B constant for.
var baudRates = []int{50, 75, 110, 134, 150, 200, 300, 600, 1200, 1800, 2400, 4800, 9600,
	19200, 38400, 57600, 115200, 230400, 460800, 500000, 576000, 921600, 1000000, 1152000,
	1500000, 2000000, 2500000, 3000000, 3500000, 4000000}

// validName reports whether s is 1 to 64 of a-z, 0-9, _ and -: a device
// or action name, safe in every wire format and topic. (Plain functions
// here and below rather than regular expressions: a compiled expression
// lives for the whole process; {1,64} alone is 22 KB.)
func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := range len(s) {
		if c := s[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// validOneWireID reports whether s is a 1-Wire sensor id as the kernel
// names it: family code, a dash, 12 hex digits, lower case
// (28-0316a2795dff).
func validOneWireID(s string) bool {
	if len(s) != 15 || s[2] != '-' {
		return false
	}
	for i := range len(s) {
		if c := s[i]; i != 2 && !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

const minInterval = 100 * time.Millisecond

// parseJID splits local@domain/resource (RFC 7622) and checks the syntax
// a config file gets wrong in practice; the xmpp package does the rest.
func parseJID(s string) (local, domain, resource string, err error) {
	switch {
	case len(s) > 3071:
		return "", "", "", errors.New("JID longer than 3071 bytes")
	case !utf8.ValidString(s):
		return "", "", "", fmt.Errorf("JID %q is not UTF-8", s)
	case strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return "", "", "", fmt.Errorf("JID %q contains a space or control character", s)
	}
	rest, resource, hasRes := strings.Cut(s, "/")
	local, domain, hasLocal := strings.Cut(rest, "@")
	if !hasLocal {
		local, domain = "", rest
	}
	switch {
	case hasRes && resource == "":
		err = errors.New("empty resource after '/'")
	case hasLocal && local == "":
		err = errors.New("empty localpart before '@'")
	case domain == "" || domain == ".":
		err = errors.New("empty domain")
	case strings.ContainsAny(local, `"&'/:<>@`):
		err = errors.New(`localpart contains one of " & ' / : < > @`)
	case strings.ContainsAny(domain, `@/<>&'"`):
		err = errors.New("domain contains a forbidden character")
	case len(local) > 1023 || len(domain) > 1023 || len(resource) > 1023:
		err = errors.New("a part is longer than 1023 bytes")
	}
	if err != nil {
		return "", "", "", fmt.Errorf("invalid JID %q: %w", s, err)
	}
	return local, domain, resource, nil
}

// checkJID reports s unless it is a JID; account requires a localpart,
// bare forbids a resource.
func (c *checker) checkJID(key, s string, account, bare bool) {
	local, _, res, err := parseJID(s)
	switch {
	case err != nil:
		c.add(key, "%v", err)
	case account && local == "":
		c.add(key, "%q has no localpart (want user@domain)", s)
	case bare && res != "":
		c.add(key, "%q must be a bare JID (no /resource)", s)
	}
}

func (cfg *Config) check(c *checker) {
	cfg.XMPP.check(c)
	a := cfg.Agent
	if a.StateDir == "" {
		c.add("agent.state_dir", "must not be empty")
	}
	if a.HistoryMax != 0 && a.HistoryMax < 64<<10 {
		c.add("agent.history_max", "%v is below the minimum of 64KiB (0 keeps no history)", a.HistoryMax)
	}
	if a.OutboxMax < 64<<10 {
		c.add("agent.outbox_max", "%v is below the minimum of 64KiB", a.OutboxMax)
	}
	c.oneOf("agent.log_level", a.LogLevel, "debug", "info", "warn", "error")
	c.oneOf("agent.log_format", a.LogFormat, "text", "json")
	if a.MemoryLimit != 0 && a.MemoryLimit < 2<<20 {
		c.add("agent.memory_limit", "%v is below the minimum of 2MiB", a.MemoryLimit)
	}
	if (a.RollbackAfter.Duration != 0 || c.has("agent.rollback_after")) && a.RollbackAfter.Duration < time.Second {
		c.add("agent.rollback_after", "%v is below the minimum of 1s", a.RollbackAfter)
	}
	for i, s := range cfg.ACL.Operators {
		c.checkJID("acl.operators["+itoa(i)+"]", s, true, true)
	}
	for i, s := range cfg.ACL.Viewers {
		c.checkJID("acl.viewers["+itoa(i)+"]", s, true, true)
	}
	if r := cfg.ACL.CommandRate; !(r > 0) || r > 1e6 {
		c.add("acl.command_rate", "%v: want commands per second per sender, above 0 and at most 1000000", r)
	}
	if b := cfg.ACL.CommandBurst; b < 1 || b > 1e6 {
		c.add("acl.command_burst", "%d: want between 1 and 1000000", b)
	}

	kinds := make(map[string]string) // device name -> kind
	for i := range cfg.Devices {
		cfg.Devices[i].check(c, i, kinds)
	}
	if cfg.MQTT != nil {
		cfg.MQTT.check(c, kinds)
	}
	dests := make(map[string]int) // destination -> first sink sending to it
	for i := range cfg.Sinks {
		cfg.Sinks[i].check(c, i, kinds)
		d := cfg.Sinks[i].destination()
		if j, ok := dests[d]; ok {
			// Each sink has an outbox named by its destination: two
			// would write one log at once and lose readings.
			c.add("sink["+itoa(i)+"]", "sends to the same %s as sink[%d]; use one sink (its devices may name several devices)", cfg.Sinks[i].Kind, j)
			continue
		}
		dests[d] = i
	}
	actions := make(map[string]bool)
	for i, act := range cfg.Actions {
		key := "action[" + itoa(i) + "]"
		c.checkName(key+".name", "action", act.Name, actions[act.Name])
		actions[act.Name] = true
		switch {
		case len(act.Argv) == 0:
			c.add(key+".argv", "required: the program and its arguments (no shell)")
		case !strings.HasPrefix(act.Argv[0], "/"):
			c.add(key+".argv", "%q: the program must be an absolute path", act.Argv[0])
		}
		if act.Timeout.Duration <= 0 {
			c.add(key+".timeout", "must be positive")
		}
	}
	for i, al := range cfg.Alerts {
		al.check(c, i, kinds, cfg.Sinks)
	}
}

func (x *XMPP) check(c *checker) {
	if x.JID == "" {
		c.add("xmpp.jid", `required, e.g. "device@example.org/agent"`)
	} else {
		c.checkJID("xmpp.jid", x.JID, true, false)
	}

	// Exactly one way to authenticate. After Load a password read from
	// password_file sits beside it; only Parse knows what the file said.
	inline := x.Password != "" && (c.ix != nil || x.PasswordFile == "")
	cert := x.ClientCert != "" || x.ClientKey != ""
	if c.has("xmpp.password") && x.Password == "" {
		c.add("xmpp.password", "must not be empty")
	}
	if c.has("xmpp.password_file") && x.PasswordFile == "" {
		c.add("xmpp.password_file", "must not be empty")
	}
	switch n := btoi(inline) + btoi(x.PasswordFile != "") + btoi(cert); {
	case n == 0:
		c.add("xmpp.password_file", "required: set password_file, password, or client_cert and client_key")
	case n > 1 && inline:
		c.add("xmpp.password", "set only one of password, password_file, or client_cert and client_key")
	case n > 1:
		c.add("xmpp.password_file", "set only one of password_file or client_cert and client_key")
	}
	if inline {
		c.warnf("xmpp.password: password in config file; prefer password_file")
	}
	switch {
	case x.ClientCert != "" && x.ClientKey == "":
		c.add("xmpp.client_key", "required with client_cert")
	case x.ClientCert == "" && x.ClientKey != "":
		c.add("xmpp.client_cert", "required with client_key")
	}

	switch x.TLS {
	case "starttls", "direct":
	case "plain", "plaintext", "none", "off", "false", "no", "disabled":
		c.add("xmpp.tls", "%q: plaintext is not supported; use \"starttls\" or \"direct\"", x.TLS)
	default:
		c.add("xmpp.tls", "%q is not one of starttls, direct", x.TLS)
	}
	for i, p := range x.PinSHA256 {
		if b, err := base64.StdEncoding.DecodeString(p); err != nil || len(b) != 32 {
			c.add("xmpp.pin_sha256["+itoa(i)+"]", "%q is not the base64 of a 32-byte SHA-256", p)
		}
	}
	if k := x.Keepalive.Duration; k != 0 && k < 5*time.Second {
		c.add("xmpp.keepalive", "%v is too short (minimum 5s; 0s disables)", k)
	}
	if x.Server != nil && len(x.Server) == 0 {
		c.add("xmpp.server", "empty list: leave server out to use DNS SRV")
	}
	if len(x.Server) > 16 {
		c.add("xmpp.server", "%d endpoints; at most 16", len(x.Server))
	}
	for i, s := range x.Server {
		host, port, err := net.SplitHostPort(s)
		if n, perr := strconv.Atoi(port); err != nil || perr != nil || host == "" || n < 1 || n > 65535 {
			c.add("xmpp.server", "%q: want host:port", s)
		}
		if slices.Contains(x.Server[:i], s) {
			c.add("xmpp.server", "%q is listed twice", s)
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// checkName checks a device or action name: unique, and safe in every
// wire format and topic.
func (c *checker) checkName(key, what, name string, dup bool) {
	switch {
	case name == "":
		c.add(key, "required")
	case !validName(name):
		c.add(key, "%q: want 1 to 64 of a-z, 0-9, _ and -", name)
	case dup:
		c.add(key, "duplicate %s name %q", what, name)
	}
}

func (d *Device) check(c *checker, i int, kinds map[string]string) {
	key := "device[" + itoa(i) + "]"
	k := func(name string) string { return key + "." + name }
	_, dup := kinds[d.Name]
	c.checkName(k("name"), "device", d.Name, dup)
	if !dup {
		kinds[d.Name] = d.Kind
	}
	who := fmt.Sprintf("device %q", d.Name)
	spec, ok := deviceKinds[d.Kind]
	switch {
	case d.Kind == "":
		c.add(k("kind"), "required (%s); one of %s", who, kindList)
		return
	case !ok:
		c.add(k("kind"), "unknown kind %q (%s); want one of %s", d.Kind, who, kindList)
		return
	}
	if d.Decimals != nil && (*d.Decimals < 0 || *d.Decimals > 9) {
		c.add(k("decimals"), "%d: want 0 to 9", *d.Decimals)
	}
	for _, name := range c.setKeys(key, *d) {
		if name != "name" && name != "kind" && name != "decimals" && !slices.Contains(spec.keys, name) {
			c.add(k(name), "does not apply to kind %s (%s)", d.Kind, who)
		}
	}
	required := func(name, v string) {
		if v == "" {
			c.add(k(name), "required for kind %s (%s)", d.Kind, who)
		}
	}
	if iv := d.Interval.Duration; slices.Contains(spec.keys, "interval") && iv < minInterval &&
		!(d.Kind == "gpio-in" && iv == 0) {
		c.add(k("interval"), "%v is too short (minimum %v)", iv, minInterval)
	}
	switch d.Kind {
	case "gpio-in":
		required("pin", d.Pin)
		c.oneOf(k("pull"), d.Pull, "none", "up", "down")
		c.oneOf(k("edge"), d.Edge, "both", "rising", "falling")
	case "gpio-out":
		required("pin", d.Pin)
	case "i2c-bme280", "i2c-sht3x":
		if _, err := strconv.Atoi(d.Bus); err != nil && !strings.HasPrefix(d.Bus, "/dev/") {
			c.add(k("bus"), `%q: want a bus number such as "1" or a device such as "/dev/i2c-1"`, d.Bus)
		}
		if d.Address < 0x03 || d.Address > 0x77 {
			c.add(k("address"), "%#x is outside the 7-bit range 0x03-0x77", d.Address)
		}
	case "onewire-ds18b20":
		required("id", d.ID)
		if d.ID != "" && !validOneWireID(d.ID) {
			c.add(k("id"), "%q: want a sensor id such as 28-0316a2795dff", d.ID)
		}
	case "system":
		required("root", d.Root)
	case "serial":
		required("port", d.Port)
		if !slices.Contains(baudRates, d.Baud) {
			c.add(k("baud"), "%d is not a standard baud rate (9600, 19200, 115200, ...)", d.Baud)
		}
		c.oneOf(k("parity"), d.Parity, "none", "even", "odd")
		if d.DataBits < 5 || d.DataBits > 8 {
			c.add(k("data_bits"), "%d: want 5 to 8", d.DataBits)
		}
		if d.StopBits != 1 && d.StopBits != 2 {
			c.add(k("stop_bits"), "%d: want 1 or 2", d.StopBits)
		}
		c.oneOf(k("parse"), d.Parse, "line", "kv", "json", "regexp")
		d.checkPattern(c, k("pattern"))
		if d.MaxLine < 1 || d.MaxLine > 1<<20 {
			c.add(k("max_line"), "%v: want 1B to 1MiB", d.MaxLine)
		}
	case "file":
		required("path", d.Path)
		c.oneOf(k("parse"), d.Parse, "line", "kv", "json", "whole")
		if d.MaxSize < 1 || d.MaxSize > 16<<20 { // the whole file is held in RAM
			c.add(k("max_size"), "%v: want 1B to 16MiB", d.MaxSize)
		}
	}
}

func (d *Device) checkPattern(c *checker, key string) {
	switch {
	case d.Parse == "regexp" && d.Pattern == "":
		c.add(key, `required with parse = "regexp"`)
	case d.Parse != "regexp" && d.Pattern != "":
		c.add(key, `only used with parse = "regexp"`)
	case d.Pattern != "":
		re, err := regexp.Compile(d.Pattern)
		if err != nil {
			c.add(key, "%v", err)
		} else if !slices.ContainsFunc(re.SubexpNames(), func(n string) bool { return n != "" }) {
			c.add(key, "needs at least one named group such as (?P<temp>[0-9.]+)")
		}
	}
}

func (s *Sink) check(c *checker, i int, kinds map[string]string) {
	key := "sink[" + itoa(i) + "]"
	k := func(name string) string { return key + "." + name }
	allowed, ok := sinkKeys[s.Kind]
	if !ok {
		c.add(k("kind"), "%q is not one of chat, muc, pubsub, pep", s.Kind)
		return
	}
	for _, name := range c.setKeys(key, *s) {
		switch name {
		case "kind", "devices", "min_interval", "max_silence", "deadband":
		default:
			if !slices.Contains(allowed, name) {
				c.add(k(name), "does not apply to sink kind %s", s.Kind)
			}
		}
	}
	if len(s.Devices) == 0 {
		c.add(k("devices"), `names no device (leave it out, or write ["*"], for all)`)
	}
	for j, pat := range s.Devices {
		if _, err := path.Match(pat, ""); err != nil {
			c.add(k("devices["+itoa(j)+"]"), "bad pattern %q", pat)
			continue
		}
		if !strings.ContainsAny(pat, `*?[\`) {
			if _, ok := kinds[pat]; !ok {
				c.add(k("devices["+itoa(j)+"]"), "no device named %q", pat)
			}
			continue
		}
		if !matchesAny(pat, kinds) {
			c.warnf("%s: pattern %q matches no device", k("devices["+itoa(j)+"]"), pat)
		}
	}
	if !(s.Deadband >= 0) || math.IsInf(s.Deadband, 0) {
		c.add(k("deadband"), "%v: want a finite number >= 0", s.Deadband)
	}
	switch s.Kind {
	case "chat":
		if s.To == "" {
			c.add(k("to"), "required for a chat sink")
		} else {
			c.checkJID(k("to"), s.To, false, false)
		}
	case "muc":
		if s.Room == "" {
			c.add(k("room"), "required for a muc sink (room@conference.example.org)")
		} else {
			c.checkJID(k("room"), s.Room, true, true)
		}
		if s.Nick == "" {
			c.add(k("nick"), "required (default: the localpart of xmpp.jid)")
		}
		inline := s.Password != "" && (c.ix != nil || s.PasswordFile == "")
		if inline && s.PasswordFile != "" {
			c.add(k("password"), "set password or password_file, not both")
		}
		if inline {
			c.warnf("%s: password in config file; prefer password_file", k("password"))
		}
	case "pubsub":
		if s.Service == "" {
			c.add(k("service"), "required for a pubsub sink (e.g. pubsub.example.org)")
		} else {
			c.checkJID(k("service"), s.Service, false, true)
		}
	}
	if (s.Kind == "pubsub" || s.Kind == "pep") && s.Node == "" {
		c.add(k("node"), "must not be empty")
	}
	if (s.Kind == "pubsub" || s.Kind == "pep") && (s.MaxItems < 1 || s.MaxItems > 10000) {
		c.add(k("max_items"), "%d: want 1 to 10000", s.MaxItems)
	}
	if (s.Kind == "pubsub" || s.Kind == "pep") && !slices.Contains(accessModels, s.AccessModel) {
		c.add(k("access_model"), "%q is not one of %s", s.AccessModel, strings.Join(accessModels, ", "))
	}
	if (s.Kind == "chat" || s.Kind == "muc") && (s.Batch < 1 || s.Batch > 256) {
		c.add(k("batch"), "%d: want 1 to 256 readings per stanza", s.Batch)
	}
	if s.MinInterval.Duration < 0 {
		c.add(k("min_interval"), "must not be negative")
	}
	if s.MaxSilence.Duration < 0 {
		c.add(k("max_silence"), "must not be negative")
	}
}

// destination names where a sink sends, without case: the server
// compares the localpart and domain of a JID so (two sinks to one JID
// whose resources differ only in case are refused too). A sink has only
// its own kind's keys (check), so the others are empty.
func (s Sink) destination() string {
	return s.Kind + " " + strings.ToLower(s.To+s.Room+s.Service) + " " + s.Node
}

// wantsDevice reports whether s selects device name.
func wantsDevice(s Sink, name string) bool {
	for _, pat := range s.Devices {
		if ok, _ := path.Match(pat, name); ok || pat == name {
			return true
		}
	}
	return false
}

func matchesAny(pattern string, names map[string]string) bool {
	for n := range names {
		if ok, _ := path.Match(pattern, n); ok {
			return true
		}
	}
	return false
}

var mqttSchemes = []string{"tcp", "ssl", "tls", "ws", "wss", "mqtt", "mqtts"}

func (m *MQTT) check(c *checker, kinds map[string]string) {
	if m.Broker == "" {
		c.add("mqtt.broker", `required, e.g. "tcp://127.0.0.1:1883"`)
	} else if u, err := url.Parse(m.Broker); err != nil || u.Host == "" {
		c.add("mqtt.broker", "%q: want scheme://host:port", m.Broker)
	} else if !slices.Contains(mqttSchemes, u.Scheme) {
		c.add("mqtt.broker", "scheme %q is not one of %s", u.Scheme, strings.Join(mqttSchemes, ", "))
	}
	if m.QoS < 0 || m.QoS > 2 {
		c.add("mqtt.qos", "%d: want 0, 1 or 2", m.QoS)
	}
	if m.TopicPrefix == "" || strings.ContainsAny(m.TopicPrefix, "+#") {
		c.add("mqtt.topic_prefix", "%q: want a topic without wildcards", m.TopicPrefix)
	}
	if m.Discovery && (m.DiscoveryPrefix == "" || strings.ContainsAny(m.DiscoveryPrefix, "+#") || strings.HasSuffix(m.DiscoveryPrefix, "/")) {
		c.add("mqtt.discovery_prefix", "%q: want a topic without wildcards or a trailing /", m.DiscoveryPrefix)
	}
	if (m.ClientCert == "") != (m.ClientKey == "") {
		c.add("mqtt.client_key", "client_cert and client_key go together")
	}
	if _, ok := kinds["status"]; ok {
		c.add("mqtt", `a device named "status" would publish on {prefix}/status, the agent's own status topic; rename it`)
	}
	for i, s := range m.Subscribe {
		key := "mqtt.subscribe[" + itoa(i) + "]"
		if !validFilter(s.Topic) {
			c.add(key+".topic", "%q is not a valid MQTT topic filter", s.Topic)
		}
		switch kind, dup := kinds[s.Device]; {
		case s.Device == "":
			c.add(key+".device", "required")
		case !validName(s.Device):
			c.add(key+".device", "%q: want 1 to 64 of a-z, 0-9, _ and -", s.Device)
		case dup && kind != "mqtt":
			c.add(key+".device", "%q is already a [[device]]", s.Device)
		}
		if _, dup := kinds[s.Device]; !dup {
			kinds[s.Device] = "mqtt"
		}
		c.oneOf(key+".parse", s.Parse, "line", "kv", "json")
	}
}

// validFilter checks an MQTT topic filter: # only as the whole last
// level, + only as a whole level (MQTT 3.1.1 §4.7.1).
func validFilter(f string) bool {
	if f == "" || len(f) > 65535 || !utf8.ValidString(f) || strings.ContainsRune(f, 0) {
		return false
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) ||
			strings.Contains(l, "+") && l != "+" {
			return false
		}
	}
	return true
}

func (al *Alert) check(c *checker, i int, kinds map[string]string, sinks []Sink) {
	key := "alert[" + itoa(i) + "]"
	kind, ok := kinds[al.Device]
	switch {
	case al.Device == "":
		c.add(key+".device", "required")
	case !ok:
		c.add(key+".device", "no device named %q", al.Device)
	}
	fields := deviceKinds[kind].fields
	switch {
	case al.Field == "":
		c.add(key+".field", "required")
	case fields != nil && !slices.Contains(fields, al.Field):
		c.add(key+".field", "device %q (kind %s) reports no %q; it reports %s", al.Device, kind, al.Field, strings.Join(fields, ", "))
	}
	finite := func(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }
	switch {
	case al.Above == nil && al.Below == nil:
		c.add(key+".above", "set above, below or both")
	case al.Above != nil && !finite(*al.Above):
		c.add(key+".above", "want a finite number")
	case al.Below != nil && !finite(*al.Below):
		c.add(key+".below", "want a finite number")
	case al.Above != nil && al.Below != nil && *al.Below >= *al.Above:
		c.add(key+".below", "%v must be less than above (%v)", *al.Below, *al.Above)
	}
	if !(al.Hysteresis >= 0) || math.IsInf(al.Hysteresis, 0) {
		c.add(key+".hysteresis", "%v: want a finite number >= 0", al.Hysteresis)
	}
	if al.Holdoff.Duration < 0 {
		c.add(key+".holdoff", "must not be negative")
	}
	if len(al.Sinks) == 0 {
		c.add(key+".sinks", "no chat or muc sink to send the alert to")
	}
	for j, kind := range al.Sinks {
		k := key + ".sinks[" + itoa(j) + "]"
		switch {
		case kind == "pubsub" || kind == "pep":
			c.add(k, "alerts are messages to people: chat or muc (machines on %s get every reading)", kind)
		case kind != "chat" && kind != "muc":
			c.add(k, "%q is not a sink kind for alerts (chat, muc)", kind)
		case !slices.ContainsFunc(sinks, func(s Sink) bool { return s.Kind == kind && wantsDevice(s, al.Device) }):
			c.add(k, "no %s sink takes readings of device %q", kind, al.Device)
		}
	}
}
