package config

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// Config is the whole stanzad configuration. Zero values of optional keys
// are replaced by the documented defaults during loading.
type Config struct {
	XMPP    XMPP     `toml:"xmpp"`
	Agent   Agent    `toml:"agent"`
	ACL     ACL      `toml:"acl"`
	Devices []Device `toml:"device"`
	Sinks   []Sink   `toml:"sink"`
	Actions []Action `toml:"action"`
	MQTT    *MQTT    `toml:"mqtt"` // nil when there is no [mqtt] table

	// Warnings are problems that do not stop the agent, such as an inline
	// password. Loading never fails because of them.
	Warnings []string `toml:"-"`
}

// XMPP is the account and how to reach its server.
type XMPP struct {
	JID            string   `toml:"jid"`
	Password       Secret   `toml:"password"`
	PasswordFile   string   `toml:"password_file"`
	Server         string   `toml:"server"`      // host:port; "" = DNS SRV, then domain
	TLS            string   `toml:"tls"`         // "starttls" (default) or "direct"
	CAFile         string   `toml:"ca_file"`     // extra trusted roots
	ServerName     string   `toml:"server_name"` // TLS name override
	PinSHA256      []string `toml:"pin_sha256"`  // base64 SPKI SHA-256 pins
	ClientCert     string   `toml:"client_cert"`
	ClientKey      string   `toml:"client_key"`
	Keepalive      Duration `toml:"keepalive"` // default 30s; 0 disables
	PresenceStatus string   `toml:"presence_status"`
}

// Agent holds process-wide settings.
type Agent struct {
	StateDir  string `toml:"state_dir"`  // default /var/lib/stanzad
	OutboxMax Size   `toml:"outbox_max"` // default 16MiB
	LogLevel  string `toml:"log_level"`  // debug, info (default), warn, error
	LogFormat string `toml:"log_format"` // text (default) or json
}

// ACL lists who may do what, by bare JID.
type ACL struct {
	Operators []string `toml:"operators"` // read, control, actions
	Viewers   []string `toml:"viewers"`   // read and status
}

// Device is one [[device]]. Which keys apply depends on Kind; see
// DESIGN.md "Keys per kind" and docs/devices.md.
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
	Safe     *bool    `toml:"safe"` // nil: leave the output as it is
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
}

// Sink is one [[sink]]: where readings go.
type Sink struct {
	Kind         string   `toml:"kind"`
	Devices      []string `toml:"devices"` // names or globs; default ["*"]
	MinInterval  Duration `toml:"min_interval"`
	Deadband     float64  `toml:"deadband"`
	MaxSilence   Duration `toml:"max_silence"`
	To           string   `toml:"to"`
	Room         string   `toml:"room"`
	Nick         string   `toml:"nick"`
	Password     Secret   `toml:"password"`
	PasswordFile string   `toml:"password_file"`
	Service      string   `toml:"service"`
	Node         string   `toml:"node"`
}

// Action is one [[action]]: a fixed command operators may run.
type Action struct {
	Name    string   `toml:"name"`
	Argv    []string `toml:"argv"`
	Timeout Duration `toml:"timeout"` // default 30s
}

// MQTT configures the optional bridge.
type MQTT struct {
	Broker        string          `toml:"broker"`
	ClientID      string          `toml:"client_id"`
	Username      string          `toml:"username"`
	PasswordFile  string          `toml:"password_file"`
	Password      Secret          `toml:"-"` // read from PasswordFile by Load
	CAFile        string          `toml:"ca_file"`
	ClientCert    string          `toml:"client_cert"`
	ClientKey     string          `toml:"client_key"`
	QoS           *int            `toml:"qos"`    // default 1
	Retain        *bool           `toml:"retain"` // default true
	Keepalive     Duration        `toml:"keepalive"`
	TopicPrefix   string          `toml:"topic_prefix"` // default "stanzad/{node}"
	AllowCommands bool            `toml:"allow_commands"`
	Subscribe     []MQTTSubscribe `toml:"subscribe"`
}

// MQTTSubscribe maps a foreign topic to a virtual device.
type MQTTSubscribe struct {
	Topic  string `toml:"topic"`
	Device string `toml:"device"`
	Parse  string `toml:"parse"`
}

// ClientConfig is the operator CLI's file: the agent to talk to and the
// operator's own account.
type ClientConfig struct {
	To   string `toml:"to"`
	XMPP XMPP   `toml:"xmpp"`
}

// Load reads, decodes and validates the config file at path. Relative
// paths in it (password_file, ca_file, state_dir, ...) are relative to the
// file's directory. Secrets named by *_file keys are read here.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, Errors{{File: path, Msg: err.Error()}}
	}
	cfg, ix, c := parse(data, path)
	if cfg == nil {
		return nil, c.err()
	}
	cfg.resolve(filepath.Dir(path))
	cfg.readSecrets(c)
	if cfg.XMPP.Password != "" && ix.has("xmpp.password") {
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o004 != 0 {
			cfg.Warnings = append(cfg.Warnings, fmt.Sprintf("%s holds a password and is world-readable; chmod o-r it or use password_file", path))
		}
	}
	if err := c.err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Parse decodes and validates a config document without touching the
// file system: *_file keys are checked for presence but not read. name is
// used in error messages.
func Parse(data []byte, name string) (*Config, error) {
	cfg, _, c := parse(data, name)
	if err := c.err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// maxSize bounds a config file. Real ones are a few KiB; the bound keeps
// a runaway file (or fuzz input) from costing seconds of parsing.
const maxSize = 256 << 10

func parse(data []byte, name string) (*Config, *index, *collector) {
	if len(data) > maxSize {
		ix := &index{}
		c := &collector{file: name, ix: ix}
		c.errs = append(c.errs, &Error{File: name, Msg: fmt.Sprintf("file is %d bytes; the limit is %d", len(data), maxSize)})
		return nil, ix, c
	}
	ix := newIndex(data)
	c := &collector{file: name, ix: ix}
	var cfg Config
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		c.decodeErrors(err)
		return nil, ix, c
	}
	cfg.defaults(ix)
	cfg.validate(c)
	return &cfg, ix, c
}

// LoadClient reads an operator CLI config: top-level `to` and an [xmpp]
// table with the same keys and rules as the agent's.
func LoadClient(path string) (*ClientConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, Errors{{File: path, Msg: err.Error()}}
	}
	ix := newIndex(data)
	c := &collector{file: path, ix: ix}
	var cc ClientConfig
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cc); err != nil {
		c.decodeErrors(err)
		return nil, c.err()
	}
	cc.XMPP.defaults()
	cc.XMPP.validate(c)
	if cc.To != "" {
		checkJID(c, "to", cc.To, false)
	}
	full := Config{XMPP: cc.XMPP}
	full.resolve(filepath.Dir(path))
	full.readSecrets(c)
	cc.XMPP = full.XMPP
	if err := c.err(); err != nil {
		return nil, err
	}
	return &cc, nil
}

func (x *XMPP) defaults() {
	if x.TLS == "" {
		x.TLS = "starttls"
	}
	if x.PresenceStatus == "" {
		x.PresenceStatus = "online"
	}
}

func (cfg *Config) defaults(ix *index) {
	cfg.XMPP.defaults()
	if !ix.has("xmpp.keepalive") {
		cfg.XMPP.Keepalive.Duration = 30 * time.Second
	}
	a := &cfg.Agent
	if a.StateDir == "" {
		a.StateDir = "/var/lib/stanzad"
	}
	if a.OutboxMax == 0 {
		a.OutboxMax = 16 << 20
	}
	if a.LogLevel == "" {
		a.LogLevel = "info"
	}
	if a.LogFormat == "" {
		a.LogFormat = "text"
	}
	for i := range cfg.Devices {
		cfg.Devices[i].defaults()
	}
	for i := range cfg.Sinks {
		s := &cfg.Sinks[i]
		if s.Devices == nil {
			s.Devices = []string{"*"}
		}
		if (s.Kind == "pubsub" || s.Kind == "pep") && s.Node == "" {
			s.Node = "urn:xmpp:iot:sensordata/{device}"
		}
		if s.Kind == "muc" && s.Nick == "" {
			local, _, _ := strings.Cut(cfg.XMPP.JID, "@")
			s.Nick = local
		}
	}
	for i := range cfg.Actions {
		if cfg.Actions[i].Timeout.Duration == 0 {
			cfg.Actions[i].Timeout.Duration = 30 * time.Second
		}
	}
	if m := cfg.MQTT; m != nil {
		if m.QoS == nil {
			m.QoS = new(int)
			*m.QoS = 1
		}
		if m.Retain == nil {
			m.Retain = new(bool)
			*m.Retain = true
		}
		if m.TopicPrefix == "" {
			m.TopicPrefix = "stanzad/{node}"
		}
		if m.Keepalive.Duration == 0 {
			m.Keepalive.Duration = 30 * time.Second
		}
	}
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

func (d *Device) defaults() {
	switch d.Kind {
	case "sim":
		setDefault(&d.Interval.Duration, 10*time.Second)
	case "gpio-in":
		setDefault(&d.Pull, "none")
		setDefault(&d.Edge, "both")
		setDefault(&d.Debounce.Duration, 20*time.Millisecond)
	case "i2c-bme280":
		setDefault(&d.Bus, "1")
		setDefault(&d.Address, 0x76)
		setDefault(&d.Interval.Duration, 10*time.Second)
	case "i2c-sht3x":
		setDefault(&d.Bus, "1")
		setDefault(&d.Address, 0x44)
		setDefault(&d.Interval.Duration, 10*time.Second)
	case "onewire-ds18b20":
		setDefault(&d.Interval.Duration, 10*time.Second)
	case "system":
		setDefault(&d.Interval.Duration, 60*time.Second)
		setDefault(&d.Root, "/")
	case "serial":
		setDefault(&d.Baud, 9600)
		setDefault(&d.Parity, "none")
		setDefault(&d.DataBits, 8)
		setDefault(&d.StopBits, 1)
		setDefault(&d.Parse, "line")
		setDefault(&d.MaxLine, 4<<10)
	case "file":
		setDefault(&d.Parse, "line")
		setDefault(&d.MaxSize, 64<<10)
	}
}

// resolve makes relative paths relative to the config file's directory.
func (cfg *Config) resolve(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	abs(&cfg.XMPP.PasswordFile)
	abs(&cfg.XMPP.CAFile)
	abs(&cfg.XMPP.ClientCert)
	abs(&cfg.XMPP.ClientKey)
	abs(&cfg.Agent.StateDir)
	for i := range cfg.Sinks {
		abs(&cfg.Sinks[i].PasswordFile)
	}
	if m := cfg.MQTT; m != nil {
		abs(&m.PasswordFile)
		abs(&m.CAFile)
		abs(&m.ClientCert)
		abs(&m.ClientKey)
	}
}

// readSecrets reads every *password_file into its Secret.
func (cfg *Config) readSecrets(c *collector) {
	read := func(key, path string, dst *Secret) {
		if path == "" {
			return
		}
		b, err := os.ReadFile(path)
		if err != nil {
			c.add(key, "%v", err)
			return
		}
		v := strings.TrimRight(string(b), "\r\n")
		if v == "" {
			c.add(key, "%s is empty", path)
			return
		}
		*dst = Secret(v)
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o004 != 0 {
			cfg.Warnings = append(cfg.Warnings, fmt.Sprintf("%s: password file %s is world-readable; chmod o-r it", key, path))
		}
	}
	read("xmpp.password_file", cfg.XMPP.PasswordFile, &cfg.XMPP.Password)
	for i := range cfg.Sinks {
		read(fmt.Sprintf("sink[%d].password_file", i), cfg.Sinks[i].PasswordFile, &cfg.Sinks[i].Password)
	}
	if m := cfg.MQTT; m != nil {
		read("mqtt.password_file", m.PasswordFile, &m.Password)
	}
}
