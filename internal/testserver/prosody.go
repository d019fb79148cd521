package testserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"
	"time"
)

// Options configures a private Prosody server. The zero value is a server
// for "iot.test" with SCRAM-SHA-256, STARTTLS only and no components.
type Options struct {
	// Dir holds everything the server writes. Empty means a new
	// os.MkdirTemp directory, removed by Close.
	Dir string
	// Host is the virtual host; default "iot.test".
	Host string
	// PasswordHash selects the one SCRAM variant Prosody 0.12 offers:
	// "SHA-256" (default) or "SHA-1". It applies to accounts registered
	// after the server is configured.
	PasswordHash string
	// DirectTLS adds a XEP-0368 direct TLS port (DirectTLSAddr).
	DirectTLS bool
	// MUC adds the component "conference.<Host>" (XEP-0045).
	MUC bool
	// PubSub adds the component "pubsub.<Host>" (XEP-0060).
	PubSub bool
	// PubSubAway makes "pubsub.<Host>" an external component (XEP-0114)
	// that is never connected: Prosody answers what is sent to it with
	// wait/service-unavailable, as while a component restarts.
	PubSubAway bool
	// Admins are bare JIDs with server admin rights (on Prosody's pubsub
	// component only admins may create nodes).
	Admins []string
	// NoOffline leaves mod_offline out: a chat message to an account
	// with no online resource bounces with service-unavailable, as on a
	// server without offline storage.
	NoOffline bool
	// C2SRateKB, if > 0, loads mod_limits: Prosody reads each client
	// connection at that many kB/s (bursts of a second), like
	// ejabberd's c2s_shaper. (mod_limits' "b/s" unit is off by ten in
	// 0.12, so the rate is given in kB/s.)
	C2SRateKB int
	// Upload adds XEP-0363 HTTP File Upload: the component
	// "upload.<Host>" (mod_http_file_share) and plain HTTP on a port of
	// 127.0.0.1 (Server.UploadAddr). UploadSizeLimit bounds a file
	// (default Prosody's 10 MB).
	Upload          bool
	UploadSizeLimit int
	// Log, if set, receives one line per harness step (started, ready,
	// stopped). The server's own log is in Dir; see Server.LogTail.
	Log io.Writer
}

// Configure prepares a server without starting it: it creates the
// directory, the CA and server certificate, picks free ports and writes the
// configuration. Accounts may be registered before Start.
func Configure(opts Options) (*Server, error) {
	bin, err := lookBin("prosody", "/usr/bin/prosody")
	if err != nil {
		return nil, err
	}
	ctl, err := lookBin("prosodyctl", "/usr/bin/prosodyctl")
	if err != nil {
		return nil, err
	}
	if opts.Host == "" {
		opts.Host = "iot.test"
	}
	if strings.ContainsAny(opts.Host, " \t\r\n\"'\\/@") {
		return nil, fmt.Errorf("testserver: invalid host %q", opts.Host)
	}
	switch opts.PasswordHash {
	case "":
		opts.PasswordHash = "SHA-256"
	case "SHA-256", "SHA-1":
	default:
		return nil, fmt.Errorf("testserver: password hash %q: want SHA-256 or SHA-1", opts.PasswordHash)
	}

	s := &Server{Host: opts.Host}
	if opts.Dir == "" {
		dir, err := os.MkdirTemp("", "stanzad-prosody-")
		if err != nil {
			return nil, fmt.Errorf("testserver: %w", err)
		}
		opts.Dir, s.removeDir = dir, true
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("testserver: %w", err)
	}
	s.Dir = dir
	if err := s.configure(bin, ctl, opts); err != nil {
		if s.removeDir {
			os.RemoveAll(dir)
		}
		return nil, fmt.Errorf("testserver: configure prosody in %s: %w", dir, err)
	}
	return s, nil
}

func (s *Server) configure(bin, ctl string, opts Options) error {
	dataDir := filepath.Join(s.Dir, "data")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	// Prosody indexes a certificate directory even with explicit ssl
	// settings and logs an error if it is missing.
	certDir := filepath.Join(s.Dir, "certs")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return err
	}
	names := []string{s.Host, "conference." + s.Host, "pubsub." + s.Host, "upload." + s.Host}
	c, err := newCerts(names, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Now())
	if err != nil {
		return err
	}
	if s.roots, err = c.pool(); err != nil {
		return err
	}
	caFile, certFile, keyFile, err := c.write(s.Dir)
	if err != nil {
		return err
	}
	s.CAFile = caFile

	cfg := prosodyConfig{
		Dir:          s.Dir,
		RunAsRoot:    os.Geteuid() == 0,
		PIDFile:      filepath.Join(s.Dir, "prosody.pid"),
		DataDir:      dataDir,
		LogFile:      filepath.Join(s.Dir, "prosody.log"),
		CertDir:      certDir,
		CertFile:     certFile,
		KeyFile:      keyFile,
		Host:         s.Host,
		PasswordHash: opts.PasswordHash,
		MUC:          opts.MUC,
		PubSub:       opts.PubSub,
		PubSubAway:   opts.PubSubAway,
		Admins:       opts.Admins,
		NoOffline:    opts.NoOffline,
		C2SRateKB:    opts.C2SRateKB,
		UploadLimit:  opts.UploadSizeLimit,
	}
	if cfg.C2SPort, err = freePort(); err != nil {
		return err
	}
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.C2SPort))
	addrs := []string{s.Addr}
	if opts.DirectTLS {
		if cfg.DirectTLSPort, err = freePort(); err != nil {
			return err
		}
		s.DirectTLSAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.DirectTLSPort))
		addrs = append(addrs, s.DirectTLSAddr)
	}
	if opts.Upload {
		if cfg.HTTPPort, err = freePort(); err != nil {
			return err
		}
		s.UploadAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.HTTPPort))
		addrs = append(addrs, s.UploadAddr)
	}
	var buf bytes.Buffer
	if err := prosodyTemplate.Execute(&buf, cfg); err != nil {
		return err
	}
	s.ConfigFile = filepath.Join(s.Dir, "prosody.cfg.lua")
	if err := os.WriteFile(s.ConfigFile, buf.Bytes(), 0o600); err != nil {
		return err
	}
	s.LogFile = cfg.LogFile
	s.eng = &prosody{
		process: process{
			name: "prosody",
			bin:  bin,
			// -F: stay in the foreground (0.12 deprecates the "daemonize"
			// option in favour of -D/-F), so the PID we start is the server.
			args:     []string{"--config", s.ConfigFile, "-F"},
			dir:      s.Dir,
			logFile:  cfg.LogFile,
			addrs:    addrs,
			progress: opts.Log,
		},
		ctl:        ctl,
		configFile: s.ConfigFile,
		dir:        s.Dir,
		host:       s.Host,
	}
	return nil
}

// Start configures and starts a server; see Configure and Server.Start.
func Start(ctx context.Context, opts Options) (*Server, error) {
	s, err := Configure(opts)
	if err != nil {
		return nil, err
	}
	if err := s.Start(ctx); err != nil {
		return nil, errors.Join(err, s.Close())
	}
	return s, nil
}

// prosody is the Prosody engine: a foreground child process.
type prosody struct {
	process
	ctl        string // prosodyctl
	configFile string
	dir        string
	host       string
}

// register runs "prosodyctl --config FILE register USER HOST" and answers
// the password prompt twice on stdin, which prosodyctl 0.12 reads without
// a terminal (it only fails to turn off echo), so the password never
// appears in argv. As root, prosodyctl honours run_as_root from the config
// and does not switch to the "prosody" user. It writes the account straight
// into data_path, so a running server sees it at once, and a stopped one
// at its next start.
func (p *prosody) register(user, password string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.ctl, "--config", p.configFile, "register", user, p.host)
	cmd.Dir = p.dir
	cmd.Stdin = strings.NewReader(password + "\n" + password + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("testserver: prosodyctl register %s@%s: %w: %s", user, p.host, err, bytes.TrimSpace(out))
	}
	return nil
}

// prosodyConfig fills prosodyTemplate.
type prosodyConfig struct {
	Dir           string
	RunAsRoot     bool
	PIDFile       string
	DataDir       string
	LogFile       string
	CertDir       string
	CertFile      string
	KeyFile       string
	C2SPort       int
	DirectTLSPort int // 0: none
	Host          string
	PasswordHash  string
	MUC           bool
	PubSub        bool
	PubSubAway    bool
	Admins        []string
	NoOffline     bool
	C2SRateKB     int
	HTTPPort      int // 0: no HTTP, no upload component
	UploadLimit   int
}

var prosodyTemplate = template.Must(template.New("prosody").Funcs(template.FuncMap{"lua": luaQuote}).Parse(
	`-- Generated by stanzad internal/testserver: a private Prosody 0.12 for tests.
-- Everything it reads and writes is in {{lua .Dir}}.
{{if .RunAsRoot}}run_as_root = true -- tests run as root in containers; never the system service
{{end -}}
pidfile = {{lua .PIDFile}}
data_path = {{lua .DataDir}}
log = {
	{ levels = { min = "info" }, to = "file", filename = {{lua .LogFile}}, timestamps = true };
}

-- Loopback only, our ports only; no s2s or external components, HTTP
-- only for the upload component when asked for.
interfaces = { "127.0.0.1" }
c2s_ports = { {{.C2SPort}} }
c2s_direct_tls_ports = { {{if .DirectTLSPort}}{{.DirectTLSPort}}{{end}} }
legacy_ssl_ports = { }
s2s_ports = { }
s2s_direct_tls_ports = { }
component_ports = { }
http_ports = { {{if .HTTPPort}}{{.HTTPPort}}{{end}} }
http_interfaces = { "127.0.0.1" }
https_ports = { }
{{- if .HTTPPort}}
http_external_url = "http://127.0.0.1:{{.HTTPPort}}/"
-- Requests name 127.0.0.1, not the component: route them to it.
http_default_host = {{lua (printf "upload.%s" .Host)}}
{{- end}}
-- Without TCP_NODELAY every round trip can stall ~40 ms (Nagle + delayed ACK).
network_settings = { nagle = false }

certificates = {{lua .CertDir}} -- empty; the ssl block below is what counts
ssl = {
	certificate = {{lua .CertFile}};
	key = {{lua .KeyFile}};
}
c2s_require_encryption = true
allow_registration = false
authentication = "internal_hashed"
-- Prosody 0.12 stores and offers exactly one SCRAM variant, chosen here.
password_hash = {{lua .PasswordHash}}
storage = "internal"
admins = { {{range .Admins}}{{lua .}}; {{end}}}

-- mod_limits is absent unless asked for: no c2s rate limiting under load tests.
modules_enabled = {
	"roster"; "saslauth"; "tls"; "disco"; "ping"; "time"; "version";
	"smacks"; "carbons"; "pep"; "private"; "blocklist"; "vcard4"; "vcard_legacy";
{{- if not .NoOffline}}
	"offline"; -- chat to an offline account is stored, as on a real server
{{- end}}
{{- if .C2SRateKB}}
	"limits";
{{- end}}
}
{{- if .C2SRateKB}}
limits = { c2s = { rate = "{{.C2SRateKB}}kb/s"; burst = "1s" } }
{{- end}}
-- s2s, s2s_auth_certs and offline are autoloaded unless disabled.
modules_disabled = { "s2s"; "s2s_auth_certs"{{if .NoOffline}}; "offline"{{end}} }

VirtualHost {{lua .Host}}
{{- if .MUC}}

Component {{lua (printf "conference.%s" .Host)}} "muc"
{{- end}}
{{- if .PubSub}}

Component {{lua (printf "pubsub.%s" .Host)}} "pubsub"
{{- else if .PubSubAway}}

Component {{lua (printf "pubsub.%s" .Host)}}
	component_secret = "never-connected"
{{- end}}
{{- if .HTTPPort}}

Component {{lua (printf "upload.%s" .Host)}} "http_file_share"
{{- if .UploadLimit}}
	http_file_share_size_limit = {{.UploadLimit}}
{{- end}}
{{- end}}
`))

// luaQuote returns s as a Lua string literal; every byte outside printable
// ASCII, and the quote and backslash, become decimal escapes.
func luaQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			fmt.Fprintf(&b, "\\%03d", c)
			continue
		}
		b.WriteByte(c)
	}
	b.WriteByte('"')
	return b.String()
}
