package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Config is the whole stanzad configuration. Load and Parse fill in the
// documented default of every key the file leaves out; a key written with
// a zero value keeps it (keepalive = "0s" disables keepalives).
type Config struct {
	XMPP    XMPP     `toml:"xmpp"`
	Agent   Agent    `toml:"agent"`
	ACL     ACL      `toml:"acl"`
	Devices []Device `toml:"device"`
	Sinks   []Sink   `toml:"sink"`
	Actions []Action `toml:"action"`
	MQTT    *MQTT    `toml:"mqtt"` // nil when there is no [mqtt] table
	Alerts  []Alert  `toml:"alert"`

	// Warnings are problems that do not stop the agent, such as an inline
	// password.
	Warnings []string `toml:"-"`
}

// XMPP is the account and how to reach its server.
type XMPP struct {
	JID            string    `toml:"jid"`           // local@domain[/resource]
	Password       Secret    `toml:"password"`      // Load fills it from PasswordFile
	PasswordFile   string    `toml:"password_file"` // relative to the config file
	Server         Endpoints `toml:"server"`        // host:port, or a list tried in order; empty = DNS SRV, then domain:5222
	TLS            string    `toml:"tls"`           // "starttls" (default) or "direct" (XEP-0368)
	CAFile         string    `toml:"ca_file"`       // extra trusted roots
	ServerName     string    `toml:"server_name"`   // TLS name override
	PinSHA256      []string  `toml:"pin_sha256"`    // base64 SHA-256 of SPKI
	ClientCert     string    `toml:"client_cert"`   // with ClientKey: SASL EXTERNAL
	ClientKey      string    `toml:"client_key"`
	Keepalive      Duration  `toml:"keepalive"`       // default 30s; 0 disables
	PresenceStatus string    `toml:"presence_status"` // default "online"
}

// Agent holds process-wide settings.
type Agent struct {
	StateDir  string `toml:"state_dir"`  // default /var/lib/stanzad
	OutboxMax Size   `toml:"outbox_max"` // default 16MiB, at least 64KiB
	LogLevel  string `toml:"log_level"`  // debug, info (default), warn, error
	LogFormat string `toml:"log_format"` // text (default) or json
	// RollbackAfter is how long a pushed config that changes [xmpp] has
	// to get the agent online before the previous file is put back.
	// Default 2m.
	RollbackAfter Duration `toml:"rollback_after"`
	// MemoryLimit, if set, is the Go runtime's soft memory limit
	// (debug.SetMemoryLimit): the garbage collector works harder to stay
	// under it. 0 (default) leaves the runtime's own heap goal.
	MemoryLimit Size `toml:"memory_limit"`
	// HistoryMax bounds the local reading history on disk (history,
	// plot, XEP-0323 historical readout). Default 4MiB; 0 keeps none.
	HistoryMax Size `toml:"history_max"`
}

// ACL lists who may do what, by bare JID (domain lower-cased).
type ACL struct {
	Operators []string `toml:"operators"` // read, control, actions
	Viewers   []string `toml:"viewers"`   // read and status
	// CommandRate and CommandBurst are each sender's token bucket for
	// commands (ad-hoc, XEP-0323/0325, chat): CommandRate per second on
	// average, CommandBurst at once. Defaults (also for zero values) 2
	// and 20.
	CommandRate  float64 `toml:"command_rate"`
	CommandBurst int     `toml:"command_burst"`
}

// Device is one [[device]]. Which keys apply, and their defaults, depend
// on Kind: see DESIGN.md "Keys per kind".
type Device struct {
	Name     string   `toml:"name"`
	Kind     string   `toml:"kind"`
	Interval Duration `toml:"interval"`
	Initial  bool     `toml:"initial"`
	Pin      string   `toml:"pin"`
	Pull     string   `toml:"pull"`
	Edge     string   `toml:"edge"`
	Debounce Duration `toml:"debounce"`
	Invert   bool     `toml:"invert"`
	Safe     *bool    `toml:"safe"` // state on shutdown; nil leaves the output as it is
	Pulse    Duration `toml:"pulse"`
	Bus      string   `toml:"bus"`
	Address  uint16   `toml:"address"`
	ID       string   `toml:"id"`
	Root     string   `toml:"root"`
	Port     string   `toml:"port"`
	Baud     int      `toml:"baud"`
	Parity   string   `toml:"parity"`
	DataBits int      `toml:"data_bits"`
	StopBits int      `toml:"stop_bits"`
	Parse    string   `toml:"parse"`
	Pattern  string   `toml:"pattern"`
	MaxLine  Size     `toml:"max_line"`
	Writable bool     `toml:"writable"`
	Path     string   `toml:"path"`
	MaxSize  Size     `toml:"max_size"`
	// Decimals, if set, rounds every numeric field of the device to this
	// many decimals in what is sent (body and XEP-0323 value); any kind.
	Decimals *int `toml:"decimals"`
}

// Sink is one [[sink]]: where readings go.
type Sink struct {
	Kind         string   `toml:"kind"`    // chat, muc, pubsub, pep
	Devices      []string `toml:"devices"` // names or path.Match globs; default ["*"]
	MinInterval  Duration `toml:"min_interval"`
	MaxSilence   Duration `toml:"max_silence"`
	Deadband     float64  `toml:"deadband"`
	To           string   `toml:"to"`   // chat
	Room         string   `toml:"room"` // muc
	Nick         string   `toml:"nick"` // muc; default the JID's localpart
	Password     Secret   `toml:"password"`
	PasswordFile string   `toml:"password_file"`
	Service      string   `toml:"service"`   // pubsub
	Node         string   `toml:"node"`      // pubsub, pep; default urn:xmpp:iot:sensordata/{device}
	MaxItems     int      `toml:"max_items"` // pubsub, pep: items a node keeps when stanzad creates it; default 10
	// AccessModel is who may read the nodes stanzad creates (XEP-0060
	// §4.5): open, presence, roster, authorize or whitelist. Default
	// whitelist for pubsub (the ACL's operators and viewers are the
	// members), presence for pep.
	AccessModel string `toml:"access_model"`
	// Batch is the most readings one chat or groupchat stanza carries when
	// they arrive together; default 32, 1 sends each on its own.
	Batch int `toml:"batch"`
}

// Action is one [[action]]: a fixed command operators may run, no shell.
type Action struct {
	Name    string   `toml:"name"`
	Argv    []string `toml:"argv"`    // argv[0] is an absolute path
	Timeout Duration `toml:"timeout"` // default 30s
}

// MQTT configures the optional bridge.
type MQTT struct {
	Broker        string   `toml:"broker"` // scheme://host:port
	ClientID      string   `toml:"client_id"`
	Username      string   `toml:"username"`
	PasswordFile  string   `toml:"password_file"`
	Password      Secret   `toml:"-"` // read from PasswordFile by Load
	CAFile        string   `toml:"ca_file"`
	ClientCert    string   `toml:"client_cert"` // with client_key: TLS client authentication
	ClientKey     string   `toml:"client_key"`
	QoS           int      `toml:"qos"`          // default 1
	Retain        bool     `toml:"retain"`       // for state topics; default true
	Keepalive     Duration `toml:"keepalive"`    // default 30s
	TopicPrefix   string   `toml:"topic_prefix"` // default "stanzad/{node}"
	AllowCommands bool     `toml:"allow_commands"`
	// Discovery publishes Home Assistant MQTT discovery configs
	// (retained) under DiscoveryPrefix (default "homeassistant").
	Discovery       bool            `toml:"discovery"`
	DiscoveryPrefix string          `toml:"discovery_prefix"`
	Subscribe       []MQTTSubscribe `toml:"subscribe"`
}

// MQTTSubscribe feeds a foreign topic into the agent as a virtual device.
type MQTTSubscribe struct {
	Topic  string `toml:"topic"`  // may hold + and # wildcards
	Device string `toml:"device"` // a name no [[device]] has
	Parse  string `toml:"parse"`  // line (default), kv, json
}

// Alert is one [[alert]]: a message when a field crosses a threshold.
type Alert struct {
	Device     string   `toml:"device"`
	Field      string   `toml:"field"`
	Above      *float64 `toml:"above"`      // fire when the value rises above
	Below      *float64 `toml:"below"`      // fire when the value falls below
	Hysteresis float64  `toml:"hysteresis"` // clear only this far back inside
	Sinks      []string `toml:"sinks"`      // chat and/or muc; default both
	// Holdoff is the least time between two messages of the rule; a
	// change within it is reported when it ends, if it still holds.
	// Default 30s.
	Holdoff Duration `toml:"holdoff"`
}

// ClientConfig is stanzactl's file: the agent to talk to and the
// operator's own account, with the same [xmpp] keys and rules.
type ClientConfig struct {
	XMPP     XMPP     `toml:"xmpp"`
	To       string   `toml:"to"` // optional; the -to flag overrides it
	Warnings []string `toml:"-"`
}

// Load reads, decodes and validates the config file at path. Relative
// paths of files it names (password files, CA, client certificate,
// state_dir) are taken relative to the file's directory, and password
// files are read into their Secret. The error, if any, is Errors.
func Load(path string) (*Config, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return LoadData(path, data, path)
}

// LoadData is Load of data, a document meant to be the file at path (a
// file as read, or a config pushed to replace it): relative paths are
// resolved and password files read as Load does; problems are reported
// under name.
func LoadData(path string, data []byte, name string) (*Config, error) {
	if err := checkSize(data, name); err != nil {
		return nil, err
	}
	cfg, c := parse(data, name)
	if cfg != nil {
		cfg.resolve(filepath.Dir(path), c)
		if cfg.XMPP.Password != "" && c.has("xmpp.password") && worldReadable(path) {
			c.warnf("%s: password in config file, and the file is world-readable; chmod o-r it or use password_file", path)
		}
		cfg.Warnings = c.warn
	}
	if err := c.result(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Parse decodes and validates a config document; name is used in error
// messages. It reads no files: password_file is checked but not read, and
// relative paths stay as written. The error, if any, is Errors.
func Parse(data []byte, name string) (*Config, error) {
	if err := checkSize(data, name); err != nil {
		return nil, err
	}
	cfg, c := parse(data, name)
	if err := c.result(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func parse(data []byte, name string) (*Config, *checker) {
	c := newChecker(data, name)
	cfg := new(Config)
	if !c.decode(data, cfg) {
		return nil, c
	}
	cfg.setDefaults(c.has)
	cfg.check(c)
	cfg.Warnings = c.warn
	return cfg, c
}

// Validate reports every problem in cfg as Errors, without lines. It
// expects defaults filled in, as Load and Parse leave them (and they have
// already validated); use it on a Config built or changed in code.
func (cfg *Config) Validate() error {
	c := &checker{}
	cfg.check(c)
	return c.result()
}

// LoadClient reads stanzactl's config file: an optional top-level `to`
// and an [xmpp] table, validated and resolved as Load does.
func LoadClient(path string) (*ClientConfig, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	c := newChecker(data, path)
	cc := new(ClientConfig)
	if c.decode(data, cc) {
		cc.XMPP.setDefaults(c.has)
		cc.XMPP.check(c)
		if cc.To != "" {
			if _, _, _, err := parseJID(cc.To); err != nil {
				c.add("to", "%v", err)
			}
		}
		cc.XMPP.resolve(filepath.Dir(path), c)
		cc.Warnings = c.warn
	}
	if err := c.result(); err != nil {
		return nil, err
	}
	return cc, nil
}

func readFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, Errors{{File: path, Msg: err.Error()}}
	}
	if err := checkSize(data, path); err != nil {
		return nil, err
	}
	return data, nil
}

// dflt sets *p to v unless key is written in the file.
func dflt[T any](has func(string) bool, key string, p *T, v T) {
	if !has(key) {
		*p = v
	}
}

func (x *XMPP) setDefaults(has func(string) bool) {
	dflt(has, "xmpp.tls", &x.TLS, "starttls")
	dflt(has, "xmpp.keepalive", &x.Keepalive, Duration{30 * time.Second})
	dflt(has, "xmpp.presence_status", &x.PresenceStatus, "")
}

func (cfg *Config) setDefaults(has func(string) bool) {
	cfg.XMPP.setDefaults(has)
	a := &cfg.Agent
	dflt(has, "agent.state_dir", &a.StateDir, "/var/lib/stanzad")
	dflt(has, "agent.outbox_max", &a.OutboxMax, 16<<20)
	dflt(has, "agent.log_level", &a.LogLevel, "info")
	dflt(has, "agent.log_format", &a.LogFormat, "text")
	dflt(has, "agent.rollback_after", &a.RollbackAfter, Duration{2 * time.Minute})
	dflt(has, "agent.history_max", &a.HistoryMax, 4<<20)
	dflt(has, "acl.command_rate", &cfg.ACL.CommandRate, 2)
	dflt(has, "acl.command_burst", &cfg.ACL.CommandBurst, 20)
	for _, list := range [][]string{cfg.ACL.Operators, cfg.ACL.Viewers} {
		for i, s := range list {
			if local, domain, res, err := parseJID(s); err == nil && local != "" && res == "" {
				list[i] = local + "@" + strings.ToLower(domain)
			}
		}
	}
	for i := range cfg.Devices {
		d, p := &cfg.Devices[i], "device["+itoa(i)+"]."
		d.setDefaults(func(k string) bool { return has(p + k) })
	}
	local, _, _, _ := parseJID(cfg.XMPP.JID)
	for i := range cfg.Sinks {
		s, p := &cfg.Sinks[i], "sink["+itoa(i)+"]."
		dflt(has, p+"devices", &s.Devices, []string{"*"})
		if s.Deadband > 0 {
			dflt(has, p+"max_silence", &s.MaxSilence, Duration{15 * time.Minute})
		}
		switch s.Kind {
		case "chat", "muc":
			dflt(has, p+"batch", &s.Batch, 32)
		}
		switch s.Kind {
		case "muc":
			dflt(has, p+"nick", &s.Nick, local)
		case "pubsub", "pep":
			dflt(has, p+"node", &s.Node, "urn:xmpp:iot:sensordata/{device}")
			dflt(has, p+"max_items", &s.MaxItems, 10)
			dflt(has, p+"access_model", &s.AccessModel, map[string]string{"pubsub": "whitelist", "pep": "presence"}[s.Kind])
		}
	}
	for i := range cfg.Alerts {
		al, p := &cfg.Alerts[i], "alert["+itoa(i)+"]."
		dflt(has, p+"holdoff", &al.Holdoff, Duration{30 * time.Second})
		var kinds []string
		for _, s := range cfg.Sinks {
			if (s.Kind == "chat" || s.Kind == "muc") && !slices.Contains(kinds, s.Kind) {
				kinds = append(kinds, s.Kind)
			}
		}
		dflt(has, p+"sinks", &al.Sinks, kinds)
	}
	for i := range cfg.Actions {
		dflt(has, "action["+itoa(i)+"].timeout", &cfg.Actions[i].Timeout, Duration{30 * time.Second})
	}
	if m := cfg.MQTT; m != nil {
		dflt(has, "mqtt.qos", &m.QoS, 1)
		dflt(has, "mqtt.retain", &m.Retain, true)
		dflt(has, "mqtt.keepalive", &m.Keepalive, Duration{30 * time.Second})
		dflt(has, "mqtt.topic_prefix", &m.TopicPrefix, "stanzad/{node}")
		dflt(has, "mqtt.discovery_prefix", &m.DiscoveryPrefix, "homeassistant")
		for i := range m.Subscribe {
			dflt(has, "mqtt.subscribe["+itoa(i)+"].parse", &m.Subscribe[i].Parse, "line")
		}
	}
}

func (d *Device) setDefaults(has func(string) bool) {
	interval := func(v time.Duration) { dflt(has, "interval", &d.Interval, Duration{v}) }
	switch d.Kind {
	case "sim":
		interval(10 * time.Second)
	case "gpio-in":
		dflt(has, "pull", &d.Pull, "none")
		dflt(has, "edge", &d.Edge, "both")
		dflt(has, "debounce", &d.Debounce, Duration{20 * time.Millisecond})
	case "i2c-bme280", "i2c-sht3x":
		interval(10 * time.Second)
		dflt(has, "bus", &d.Bus, "1")
		dflt(has, "address", &d.Address, map[string]uint16{"i2c-bme280": 0x76, "i2c-sht3x": 0x44}[d.Kind])
	case "onewire-ds18b20":
		interval(10 * time.Second)
		dflt(has, "root", &d.Root, "/")
	case "system":
		interval(60 * time.Second)
		dflt(has, "root", &d.Root, "/")
	case "serial":
		dflt(has, "baud", &d.Baud, 9600)
		dflt(has, "parity", &d.Parity, "none")
		dflt(has, "data_bits", &d.DataBits, 8)
		dflt(has, "stop_bits", &d.StopBits, 1)
		dflt(has, "parse", &d.Parse, "line")
		dflt(has, "max_line", &d.MaxLine, 4<<10)
	case "file":
		dflt(has, "parse", &d.Parse, "line")
		dflt(has, "max_size", &d.MaxSize, 64<<10)
	}
}

// resolve makes file paths relative to dir and reads password files.
func (cfg *Config) resolve(dir string, c *checker) {
	cfg.XMPP.resolve(dir, c)
	abs(dir, &cfg.Agent.StateDir)
	for i := range cfg.Sinks {
		s := &cfg.Sinks[i]
		abs(dir, &s.PasswordFile)
		readSecret(c, "sink["+itoa(i)+"].password_file", s.PasswordFile, &s.Password)
	}
	if m := cfg.MQTT; m != nil {
		abs(dir, &m.CAFile)
		abs(dir, &m.ClientCert)
		abs(dir, &m.ClientKey)
		abs(dir, &m.PasswordFile)
		readSecret(c, "mqtt.password_file", m.PasswordFile, &m.Password)
	}
}

func (x *XMPP) resolve(dir string, c *checker) {
	for _, p := range []*string{&x.PasswordFile, &x.CAFile, &x.ClientCert, &x.ClientKey} {
		abs(dir, p)
	}
	readSecret(c, "xmpp.password_file", x.PasswordFile, &x.Password)
}

func abs(dir string, p *string) {
	if *p != "" && !filepath.IsAbs(*p) {
		*p = filepath.Join(dir, *p)
	}
}

// readSecret reads a password file into dst; the trailing newline that
// editors and `echo` add is not part of the password.
func readSecret(c *checker, key, path string, dst *Secret) {
	if path == "" {
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		c.add(key, "cannot read %s: %v", path, err)
		return
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		c.add(key, "%s is empty", path)
		return
	}
	*dst = Secret(v)
	if worldReadable(path) {
		c.warnf("%s: password file %s is world-readable; chmod o-r it", key, path)
	}
}

func worldReadable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().Perm()&0o004 != 0
}

// MaxFileSize bounds a config file. Real ones are a few KiB; go-toml's
// strict mode does work proportional to the file for every unknown key, so
// an unbounded file could take minutes to reject.
const MaxFileSize = 256 << 10

func checkSize(data []byte, name string) error {
	if len(data) > MaxFileSize {
		return Errors{{File: name, Msg: fmt.Sprintf("file is %d bytes; the limit is %d", len(data), MaxFileSize)}}
	}
	return nil
}
