package testserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"
)

const (
	// ejabberdStartTimeout bounds the wait for a node to be ready; 23.01
	// needs about 1.3 s until its ports accept, 2 s until status says
	// started.
	ejabberdStartTimeout = 30 * time.Second
	// ejabberdStopTimeout is how long Stop waits after "ejabberdctl stop"
	// before SIGKILL; a clean stop takes about 2.5 s.
	ejabberdStopTimeout = 10 * time.Second
	// ctlTimeout bounds one ejabberdctl call (each starts an Erlang VM,
	// about 0.5 s).
	ctlTimeout = 30 * time.Second
	// writeCache is how long ejabberd's storage may hold an acknowledged
	// write in memory: mnesia's transaction log (disk_log) flushes its
	// cache after 2 s, dets (disc_only_copies tables such as passwd and
	// offline_msg) after 3 s. A SIGKILL within that window loses the write.
	writeCache = 4 * time.Second
	// epmdAddr is where the Erlang port mapper listens (ERL_EPMD_PORT is
	// kept out of ejabberdctl's environment).
	epmdAddr = "127.0.0.1:4369"
)

// EjabberdOptions configures a private ejabberd node. The zero value is a
// node for "iot.test" with SCRAM-SHA-256 (and PLAIN, over TLS), a STARTTLS
// and a direct TLS c2s port, Debian's stock offline cap and c2s shaper,
// and no MUC or pubsub. Other stock rules stay: at most 10 sessions per
// account, and XEP-0198 (sm:2 and sm:3, resumption on; when a session
// times out unresumed, its unacknowledged stanzas are re-routed only if
// the account has no other session, into offline storage).
type EjabberdOptions struct {
	// Dir holds everything the node reads and writes. Empty means a new
	// os.MkdirTemp directory, removed by Close. As root, Dir and
	// everything in it is handed to the "ejabberd" user, which ejabberdctl
	// runs the node as; directories above Dir under os.TempDir() that
	// user cannot search get o+x (t.TempDir() makes its parent 0700).
	Dir string
	// Host is the virtual host; default "iot.test".
	Host string
	// PasswordHash selects the SCRAM hash ejabberd stores and so the one
	// SCRAM variant it offers (auth_scram_hash): "SHA-256" (default) or
	// "SHA-1". It applies to accounts registered after Configure.
	PasswordHash string
	// MUC adds mod_muc on "conference.<Host>" (XEP-0045); any local user
	// may create rooms.
	MUC bool
	// PubSub adds mod_pubsub on "pubsub.<Host>" (XEP-0060) with the flat
	// and pep plugins: 23.01 has no mod_pep, so PEP (XEP-0163) exists only
	// with PubSub. Any local user may create nodes, unless
	// PubSubAdminsCreate: then only Admins may, as on Prosody's component.
	PubSub             bool
	PubSubAdminsCreate bool
	// Admins are bare JIDs in the "admin" ACL: MUC admins, and treated
	// apart by the stock shaper and offline rules (see below).
	Admins []string
	// MaxOfflineMessages caps the messages mod_offline stores per user;
	// the next one bounces with <resource-constraint/> (type wait). 0 is
	// Debian's stock rule: 100, admins 5000. N > 0 is N for everyone.
	MaxOfflineMessages int
	// C2SShaper limits what each c2s connection may send, in bytes/s. 0
	// is Debian's stock rule: shaper "normal" (3000 B/s, bursts of 20000
	// bytes), admins unlimited — it slows bulk telemetry to a crawl.
	// N > 0 is N B/s (burst N) for everyone; -1 is no shaper.
	C2SShaper int
	// NodeName is the Erlang node name, NAME or NAME@localhost; default
	// "stanzadtest<c2s port>@localhost", unique among running nodes.
	NodeName string
	// Log, if set, receives one line per harness step (started, ready,
	// stopped). The node's own log is in Dir/logs; see Server.LogTail.
	Log io.Writer
	// Cluster, if set, is a node of the cluster this node joins at its
	// first start ("ejabberdctl join_cluster"): it serves the same Host
	// with the same CA and certificate, shares the Erlang cookie, and has
	// its own node name, ports and spool. Accounts, rosters, offline
	// messages, MUC rooms and pubsub nodes are the cluster's from then
	// on; Host is taken from the cluster and must not be set. The other
	// options should match the cluster's.
	Cluster *Server
}

// ConfigureEjabberd prepares an ejabberd node without starting it: it
// creates the directory, the CA and server certificate (cert and key in
// one PEM, as ejabberd's certfiles want), picks free ports, and writes
// ejabberd.yml, a private ejabberdctl.cfg and inetrc. It needs
// ejabberdctl (Debian's ejabberd package) and must run as root or as the
// "ejabberd" user, the only users ejabberdctl accepts; otherwise the error
// is ErrNotInstalled, so the test helpers skip (or fail, with CI=true).
func ConfigureEjabberd(opts EjabberdOptions) (*Server, error) {
	ctl, err := lookBin("ejabberdctl", "/usr/sbin/ejabberdctl")
	if err != nil {
		return nil, err
	}
	epmd, err := lookBin("epmd", "/usr/bin/epmd")
	if err != nil {
		return nil, err
	}
	owner, err := ejabberdOwner()
	if err != nil {
		return nil, err
	}
	var peer *ejabberdNode
	if opts.Cluster != nil {
		var ok bool
		if peer, ok = opts.Cluster.eng.(*ejabberdNode); !ok {
			return nil, errors.New("testserver: Cluster is not an ejabberd node")
		}
		if opts.Host != "" && opts.Host != peer.host {
			return nil, fmt.Errorf("testserver: host %q: a cluster node serves the cluster's host %q", opts.Host, peer.host)
		}
		opts.Host = peer.host
	}
	if opts.Host == "" {
		opts.Host = "iot.test"
	}
	if !validName(opts.Host, ".-") {
		return nil, fmt.Errorf("testserver: invalid host %q", opts.Host)
	}
	if err := checkEjabberdOptions(&opts); err != nil {
		return nil, fmt.Errorf("testserver: %w", err)
	}

	s := &Server{Host: opts.Host}
	if opts.Dir == "" {
		dir, err := os.MkdirTemp("", "stanzad-ejabberd-")
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
	if err := s.configureEjabberd(ctl, epmd, owner, opts, peer); err != nil {
		if s.removeDir {
			os.RemoveAll(dir)
		}
		return nil, fmt.Errorf("testserver: configure ejabberd in %s: %w", dir, err)
	}
	return s, nil
}

// checkEjabberdOptions validates and completes opts, except Dir and Host.
// Everything that ends up in the YAML file or ejabberdctl.cfg is limited
// to characters that need no quoting there.
func checkEjabberdOptions(opts *EjabberdOptions) error {
	var errs []error
	switch opts.PasswordHash {
	case "":
		opts.PasswordHash = "SHA-256"
	case "SHA-256", "SHA-1":
	default:
		errs = append(errs, fmt.Errorf("password hash %q: want SHA-256 or SHA-1", opts.PasswordHash))
	}
	for _, a := range opts.Admins {
		local, domain, ok := strings.Cut(a, "@")
		if !ok || !validName(local, ".-_+") || !validName(domain, ".-") {
			errs = append(errs, fmt.Errorf("admin %q: want a bare JID user@host", a))
		}
	}
	if opts.MaxOfflineMessages < 0 {
		errs = append(errs, fmt.Errorf("max offline messages %d: want 0 (stock) or more", opts.MaxOfflineMessages))
	}
	if opts.C2SShaper < -1 {
		errs = append(errs, fmt.Errorf("c2s shaper %d: want -1 (none), 0 (stock) or bytes/s", opts.C2SShaper))
	}
	if opts.NodeName != "" {
		name, host, ok := strings.Cut(opts.NodeName, "@")
		if !validName(name, "-_") || ok && host != "localhost" {
			errs = append(errs, fmt.Errorf("node name %q: want NAME or NAME@localhost", opts.NodeName))
		} else {
			opts.NodeName = name + "@localhost"
		}
	}
	return errors.Join(errs...)
}

// validName reports whether s is non-empty and holds only ASCII letters,
// digits and the given punctuation.
func validName(s, punct string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune(punct, r)) {
			return false
		}
	}
	return true
}

// checkEjabberdDir refuses directory names ejabberdctl cannot carry: it
// splits its paths on blanks (cd ${SPOOL_DIR}, an unquoted EJABBERD_OPTS),
// globs them, and hands the spool to Erlang as a quoted term.
func checkEjabberdDir(dir string) error {
	for _, r := range dir {
		if r < 0x20 || r == 0x7f || strings.ContainsRune(" \"'\\`*?[]", r) {
			return fmt.Errorf("directory name %q: ejabberdctl cannot use %q in a path", dir, r)
		}
	}
	return nil
}

// ejabberdUser is the account ejabberdctl runs the node as.
type ejabberdUser struct {
	uid, gid int
	chown    bool // we are root: files must be handed over
}

// ejabberdOwner finds the "ejabberd" user. ejabberdctl refuses every
// other user except root (exit 7), which it switches to "ejabberd" with
// su; so the harness works as root or as that user and reports
// ErrNotInstalled otherwise.
func ejabberdOwner() (ejabberdUser, error) {
	u, err := user.Lookup("ejabberd")
	if err != nil {
		return ejabberdUser{}, fmt.Errorf("ejabberd system user: %v: %w", err, ErrNotInstalled)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return ejabberdUser{}, fmt.Errorf("ejabberd system user: %w", err)
	}
	switch os.Geteuid() {
	case 0:
		return ejabberdUser{uid: uid, gid: gid, chown: true}, nil
	case uid:
		return ejabberdUser{uid: uid, gid: gid}, nil
	}
	return ejabberdUser{}, fmt.Errorf("ejabberdctl runs only as root or the ejabberd user, not uid %d: %w", os.Geteuid(), ErrNotInstalled)
}

func (s *Server) configureEjabberd(ctl, epmd string, owner ejabberdUser, opts EjabberdOptions, peer *ejabberdNode) error {
	if err := checkEjabberdDir(s.Dir); err != nil {
		return err
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return err
	}
	for _, d := range []string{"logs", "spool", "modules/conf"} {
		if err := os.MkdirAll(filepath.Join(s.Dir, d), 0o700); err != nil {
			return err
		}
	}
	var c certs
	var err error
	if peer != nil {
		// Every node of a cluster is the same server to its clients.
		c = peer.certs
	} else {
		names := []string{s.Host, "conference." + s.Host, "pubsub." + s.Host}
		if c, err = newCerts(names, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Now()); err != nil {
			return err
		}
	}
	if s.roots, err = c.pool(); err != nil {
		return err
	}
	caFile, _, _, err := c.write(s.Dir)
	if err != nil {
		return err
	}
	s.CAFile = caFile
	// ejabberd's certfiles take certificate and key in one PEM file.
	pemFile := filepath.Join(s.Dir, "server.pem")
	if err := os.WriteFile(pemFile, slices.Concat(c.certPEM, c.keyPEM), 0o600); err != nil {
		return err
	}

	cfg := ejabberdConfig{
		Dir:          s.Dir,
		Host:         s.Host,
		CertFile:     pemFile,
		CAFile:       caFile,
		ScramHash:    map[string]string{"SHA-256": "sha256", "SHA-1": "sha"}[opts.PasswordHash],
		MUC:          opts.MUC,
		PubSub:       opts.PubSub,
		AdminsCreate: opts.PubSubAdminsCreate,
		Admins:       opts.Admins,
		MaxOffline:   opts.MaxOfflineMessages,
		C2SShaper:    opts.C2SShaper,
		PIDFile:      filepath.Join(s.Dir, "ejabberd.pid"),
		ModulesPath:  filepath.Join(s.Dir, "modules"),
	}
	if cfg.C2SPort, err = freePort(); err != nil {
		return err
	}
	if cfg.DirectTLSPort, err = freePort(); err != nil {
		return err
	}
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.C2SPort))
	s.DirectTLSAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.DirectTLSPort))
	s.Node = opts.NodeName
	if s.Node == "" {
		s.Node = fmt.Sprintf("stanzadtest%d@localhost", cfg.C2SPort)
	}
	// A private cookie on the command line (ERL_OPTIONS -setcookie) keeps
	// Erlang from reading or creating ~/.erlang.cookie, which would be
	// /var/lib/ejabberd's: su resets HOME, so a private HOME cannot work.
	if peer != nil {
		cfg.Cookie = peer.cookie // nodes of one cluster share the cookie
	} else {
		cookie := make([]byte, 16)
		rand.Read(cookie)
		cfg.Cookie = hex.EncodeToString(cookie)
	}

	s.ConfigFile = filepath.Join(s.Dir, "ejabberd.yml")
	ctlConfig := filepath.Join(s.Dir, "ejabberdctl.cfg")
	for _, f := range []struct {
		path string
		tmpl *template.Template
	}{
		{s.ConfigFile, ejabberdTemplate},
		{ctlConfig, ejabberdctlTemplate},
	} {
		var buf bytes.Buffer
		if err := f.tmpl.Execute(&buf, cfg); err != nil {
			return err
		}
		if err := os.WriteFile(f.path, buf.Bytes(), 0o600); err != nil {
			return err
		}
	}
	// ejabberdctl points ERL_INETRC at --config-dir; without the file
	// Erlang resolves "localhost" (the node's host) through the system.
	inetrc := "{lookup,[\"file\",\"native\"]}.\n{host,{127,0,0,1},[\"localhost\"]}.\n"
	if err := os.WriteFile(filepath.Join(s.Dir, "inetrc"), []byte(inetrc), 0o644); err != nil {
		return err
	}
	if owner.chown {
		if err := chownTree(s.Dir, owner.uid, owner.gid); err != nil {
			return err
		}
		if err := letSearch(s.Dir, owner, opts.Log); err != nil {
			return err
		}
	}

	s.LogFile = filepath.Join(s.Dir, "logs", "ejabberd.log")
	s.eng = &ejabberdNode{
		ctl:  ctl,
		epmd: epmd,
		args: []string{
			"--config-dir", s.Dir,
			"--config", s.ConfigFile,
			"--ctl-config", ctlConfig,
			"--logs", filepath.Join(s.Dir, "logs"),
			"--spool", filepath.Join(s.Dir, "spool"),
			"--node", s.Node,
		},
		node:       s.Node,
		dir:        s.Dir,
		host:       s.Host,
		pidFile:    cfg.PIDFile,
		logFile:    s.LogFile,
		addr:       s.Addr,
		directAddr: s.DirectTLSAddr,
		tls:        &tls.Config{RootCAs: s.roots, ServerName: s.Host, MinVersion: tls.VersionTLS12},
		progress:   opts.Log,
		certs:      c,
		cookie:     cfg.Cookie,
	}
	if peer != nil {
		s.eng.(*ejabberdNode).join = peer.node
	}
	return nil
}

// chownTree hands dir and everything below it to uid:gid.
func chownTree(dir string, uid, gid int) error {
	return filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
}

// letSearch makes sure the ejabberd user can reach dir: every directory
// above it must grant that user search (x) permission. One below
// os.TempDir() that does not — t.TempDir() creates its per-test parent
// 0700 — gets o+x (search, not list); any other is an error, since
// loosening it is not the harness's business.
func letSearch(dir string, owner ejabberdUser, log io.Writer) error {
	tmp, err := filepath.Abs(os.TempDir())
	if err != nil {
		return err
	}
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if !searchable(fi, owner) {
			if !strings.HasPrefix(p, tmp+string(filepath.Separator)) {
				return fmt.Errorf("%s: the ejabberd user (uid %d) cannot enter it; use a Dir below %s", p, owner.uid, tmp)
			}
			if err := os.Chmod(p, fi.Mode().Perm()|0o001); err != nil {
				return err
			}
			if log != nil {
				fmt.Fprintf(log, "testserver: chmod o+x %s so the ejabberd user can reach %s\n", p, dir)
			}
		}
		if parent := filepath.Dir(p); parent == p {
			return nil
		}
	}
}

func searchable(fi fs.FileInfo, owner ejabberdUser) bool {
	perm := fi.Mode().Perm()
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !ok:
		return perm&0o001 != 0
	case int(st.Uid) == owner.uid:
		return perm&0o100 != 0
	case int(st.Gid) == owner.gid:
		return perm&0o010 != 0
	}
	return perm&0o001 != 0
}

// account is a registration waiting for the node to run.
type account struct{ user, password string }

// ejabberdNode is the ejabberd engine: an Erlang node that ejabberdctl
// starts detached (as the "ejabberd" user), so it is not our child. Its
// beam.smp PID comes from EJABBERD_PID_PATH; every use checks that the PID
// still names our node, since init reaps it and may hand the PID on.
type ejabberdNode struct {
	ctl, epmd  string
	args       []string // ejabberdctl's global options, ending in --node
	node       string
	dir, host  string
	pidFile    string
	logFile    string
	addr       string // STARTTLS c2s
	directAddr string // direct TLS c2s
	tls        *tls.Config
	progress   io.Writer
	certs      certs  // the CA and the server certificate, shared by a cluster
	cookie     string // the Erlang cookie, shared by a cluster
	join       string // node of the cluster to join at the first start; empty once joined

	mu         sync.Mutex
	beam       beamProc  // beam.smp of the running node; zero if none
	ownEPMD    bool      // epmd was not running before our start, and is now
	pending    []account // registered before the node ran
	registered time.Time // last successful registration
}

func (e *ejabberdNode) logf(format string, args ...any) {
	if e.progress != nil {
		fmt.Fprintf(e.progress, "testserver: "+format+"\n", args...)
	}
}

// run runs one ejabberdctl command and returns its trimmed output.
func (e *ejabberdNode) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), ctlTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.ctl, append(slices.Clone(e.args), args...)...)
	cmd.Dir = e.dir
	cmd.Env = ctlEnv()
	cmd.SysProcAttr = sysProcAttr()
	// ejabberdctl runs su, which runs erl: on timeout kill the whole
	// group, and do not wait for a straggler holding the output pipe.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	out, err := cmd.CombinedOutput()
	return string(bytes.TrimSpace(out)), err
}

// ctlEnv is our environment without the variables that would make
// ejabberdctl or erl use another epmd, port or flags than ours.
func ctlEnv() []string {
	env := os.Environ()
	return slices.DeleteFunc(env, func(kv string) bool {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "ERL_DIST_PORT", "ERL_EPMD_PORT", "ERL_EPMD_ADDRESS", "ERL_FLAGS", "ERL_AFLAGS", "ERL_ZFLAGS", "ERL_LIBS":
			return true
		}
		return false
	})
}

// start runs "ejabberdctl start" and waits until the node is ready: its
// PID file names a live beam.smp, both c2s ports complete a TLS handshake
// with the private CA, and "ejabberdctl status" says started. Accounts
// registered before are created then.
func (e *ejabberdNode) start(ctx context.Context) error {
	if pid := e.pid(); pid != 0 {
		return fmt.Errorf("start ejabberd: already running as pid %d", pid)
	}
	t0 := time.Now()
	hadEPMD := epmdRunning()
	// A PID file left by a killed node must not pass for this start's.
	if err := os.Remove(e.pidFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("start ejabberd: %w", err)
	}
	if out, err := e.run("start"); err != nil {
		return fmt.Errorf("start ejabberd: ejabberdctl start: %w: %s\n--- ejabberd log tail ---\n%s", err, out, logTail(e.logFile, 40))
	}
	beam, err := e.waitReady(ctx)
	e.mu.Lock()
	e.ownEPMD = e.ownEPMD || !hadEPMD && epmdRunning()
	e.mu.Unlock()
	if err != nil {
		if beam.pid == 0 {
			beam = findBeam(e.node)
		}
		if beam.pid != 0 {
			syscall.Kill(beam.pid, syscall.SIGKILL)
			beam.waitGone(5 * time.Second)
		}
		e.stopEPMD()
		return fmt.Errorf("start ejabberd node %s: %w\n--- ejabberd log tail ---\n%s", e.node, err, logTail(e.logFile, 40))
	}
	e.mu.Lock()
	e.beam = beam
	pending := e.pending
	e.pending = nil
	e.mu.Unlock()
	e.logf("ejabberd node %s started, pid %d, ready on %s, %s in %v", e.node, beam.pid, e.addr, e.directAddr, time.Since(t0).Round(time.Millisecond))
	if e.join != "" {
		if err := e.joinCluster(ctx); err != nil {
			return err
		}
	}
	for _, a := range pending {
		if err := e.registerNow(a.user, a.password); err != nil {
			return err
		}
	}
	return nil
}

// joinCluster runs "ejabberdctl join_cluster": the node stops ejabberd,
// drops its own database, copies the cluster's tables and starts again.
// It waits until the node is ready again and lists both nodes as running.
func (e *ejabberdNode) joinCluster(ctx context.Context) error {
	t0 := time.Now()
	if out, err := e.run("join_cluster", e.join); err != nil {
		return fmt.Errorf("ejabberd node %s: join_cluster %s: %w: %s\n--- ejabberd log tail ---\n%s", e.node, e.join, err, out, logTail(e.logFile, 40))
	}
	if _, err := e.waitReady(ctx); err != nil {
		return fmt.Errorf("ejabberd node %s after join_cluster: %w\n--- ejabberd log tail ---\n%s", e.node, err, logTail(e.logFile, 40))
	}
	out, err := e.run("list_cluster")
	if err != nil || !strings.Contains(out, e.join) || !strings.Contains(out, e.node) {
		return fmt.Errorf("ejabberd node %s: list_cluster after join_cluster %s: %v: %s", e.node, e.join, err, out)
	}
	e.logf("ejabberd node %s joined the cluster of %s in %v", e.node, e.join, time.Since(t0).Round(time.Millisecond))
	e.join = ""
	return nil
}

func (e *ejabberdNode) waitReady(ctx context.Context) (beam beamProc, err error) {
	ctx, cancel := context.WithTimeout(ctx, ejabberdStartTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	last := errors.New("no PID file yet")
	for {
		if beam.pid == 0 {
			if pid := readPID(e.pidFile); pid != 0 {
				// The PID file is written before the configuration is
				// read, so a bad one shows as a node gone with its file
				// left.
				var ok bool
				if beam, ok = findProc(pid, e.node); !ok {
					return beamProc{}, errors.New("exited during startup")
				}
			}
		}
		if beam.pid != 0 {
			if !beam.running() {
				return beamProc{}, errors.New("exited during startup")
			}
			if last = probeTLS(ctx, e.host, e.addr, e.directAddr, e.tls); last == nil {
				out, err := e.run("status")
				if err == nil && strings.Contains(out, "status: started") {
					return beam, nil
				}
				last = fmt.Errorf("ejabberdctl status: %v: %s", err, out)
			}
		}
		select {
		case <-ctx.Done():
			return beam, fmt.Errorf("not ready: %w (last: %v)", ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// stop sends SIGCONT (a SIGSTOPped node would not answer), runs
// "ejabberdctl stop", waits up to ejabberdStopTimeout for the beam to
// exit, then SIGKILLs it. Then it stops the epmd our start started, if no
// other node uses it.
func (e *ejabberdNode) stop() error {
	var err error
	if beam, ok := e.current(); ok {
		t0 := time.Now()
		_ = syscall.Kill(beam.pid, syscall.SIGCONT)
		if out, err := e.run("stop"); err != nil {
			e.logf("ejabberdctl stop: %v: %s", err, out)
		}
		if beam.waitGone(ejabberdStopTimeout) {
			e.logf("ejabberd node %s pid %d stopped in %v", e.node, beam.pid, time.Since(t0).Round(time.Millisecond))
		} else {
			e.logf("ejabberd node %s pid %d still there %v after ejabberdctl stop; killing", e.node, beam.pid, ejabberdStopTimeout)
			err = killBeam(beam)
		}
	}
	e.forget()
	e.stopEPMD()
	return err
}

// kill sends SIGKILL and waits until the beam is gone. epmd drops the
// node's name as its connection closes; stop() deals with epmd.
func (e *ejabberdNode) kill() error {
	beam, ok := e.current()
	if !ok {
		e.forget()
		return nil
	}
	e.settle()
	if err := killBeam(beam); err != nil {
		return err
	}
	e.logf("ejabberd node %s pid %d killed", e.node, beam.pid)
	e.forget()
	return nil
}

// killBeam sends SIGKILL and waits until the process has exited: until
// then it may still hold its listening sockets.
func killBeam(b beamProc) error {
	if err := syscall.Kill(b.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill ejabberd pid %d: %w", b.pid, err)
	}
	if !b.waitGone(5 * time.Second) {
		return fmt.Errorf("kill ejabberd pid %d: still there after SIGKILL", b.pid)
	}
	return nil
}

func (e *ejabberdNode) forget() {
	e.mu.Lock()
	e.beam = beamProc{}
	e.mu.Unlock()
}

func (e *ejabberdNode) signal(sig os.Signal) error {
	pid := e.pid()
	if pid == 0 {
		return fmt.Errorf("signal ejabberd: %w", ErrNotRunning)
	}
	if sig == syscall.SIGKILL {
		e.settle()
	}
	p, err := os.FindProcess(pid)
	if err == nil {
		err = p.Signal(sig)
		p.Release()
	}
	if err != nil {
		return fmt.Errorf("signal ejabberd pid %d: %w", pid, err)
	}
	return nil
}

// settle waits until the accounts registered last are on disk (see
// writeCache): a test that kills the server means to crash it, not to
// lose its own set-up. What the test's clients stored meanwhile (offline
// messages, roster, pubsub items) is not waited for; losing that is how
// ejabberd crashes.
func (e *ejabberdNode) settle() {
	e.mu.Lock()
	at := e.registered
	e.mu.Unlock()
	if d := time.Until(at.Add(writeCache)); d > 0 {
		e.logf("waiting %v for the last registration to reach the disk before SIGKILL", d.Round(time.Millisecond))
		time.Sleep(d)
	}
}

// current returns the node's beam.smp if it runs.
func (e *ejabberdNode) current() (beamProc, bool) {
	e.mu.Lock()
	b := e.beam
	e.mu.Unlock()
	return b, b.pid != 0 && b.running()
}

func (e *ejabberdNode) pid() int {
	if b, ok := e.current(); ok {
		return b.pid
	}
	return 0
}

// stopEPMD runs "epmd -kill" if our start started epmd. epmd refuses it
// while any node is registered (it runs without -relaxed_command_check),
// so a node started meanwhile by another test process keeps its epmd; the
// retries cover the ejabberdctl node of our own stop, which unregisters
// as it exits.
func (e *ejabberdNode) stopEPMD() {
	e.mu.Lock()
	own := e.ownEPMD
	e.ownEPMD = false
	e.mu.Unlock()
	if !own {
		return
	}
	var out []byte
	for range 10 {
		var err error
		out, err = exec.Command(e.epmd, "-kill").CombinedOutput()
		if err == nil && bytes.Contains(out, []byte("Killed")) {
			e.logf("epmd stopped")
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	e.logf("epmd left running: %s", bytes.TrimSpace(out))
}

// register creates the account now if the node runs, else at start.
func (e *ejabberdNode) register(user, password string) error {
	if e.pid() == 0 {
		e.mu.Lock()
		e.pending = append(e.pending, account{user, password})
		e.mu.Unlock()
		return nil
	}
	return e.registerNow(user, password)
}

// registerNow runs "ejabberdctl register USER HOST PASS", or
// change_password if the account exists, which is what prosodyctl
// register does. The password is in ejabberdctl's argv (it has no other
// way), visible to local users while it runs: test passwords only.
func (e *ejabberdNode) registerNow(user, password string) error {
	out, err := e.run("register", user, e.host, password)
	if err != nil && strings.Contains(out, "already registered") {
		out, err = e.run("change_password", user, e.host, password)
	}
	if err != nil {
		return fmt.Errorf("testserver: ejabberdctl register %s@%s: %w: %s", user, e.host, err, out)
	}
	e.mu.Lock()
	e.registered = time.Now()
	e.mu.Unlock()
	return nil
}

// epmdRunning reports whether something accepts on epmd's port.
func epmdRunning() bool {
	c, err := net.DialTimeout("tcp", epmdAddr, 500*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// readPID returns the PID in file, or 0.
func readPID(file string) int {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// beamProc identifies one process: a PID and its start time, since a
// detached beam's PID is init's to reap and may be handed on.
type beamProc struct {
	pid   int
	start uint64 // /proc/PID/stat field 22, in clock ticks since boot
}

// procStat returns the state and start time of pid from /proc/PID/stat.
func procStat(pid int) (state byte, start uint64, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// The fields after the command name in parentheses, which may itself
	// hold ")", start with the state (field 3); starttime is field 22.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, false
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, 0, false
	}
	return f[0][0], start, true
}

// exited reports whether pid has exited: it is gone, or a zombie (state
// Z or X) with no thread left. The beam is multi-threaded, and its leader
// turns zombie while other threads may still be exiting with the
// descriptors (listening sockets) open; its command line empties even
// earlier.
func exited(pid int) bool {
	state, _, ok := procStat(pid)
	return !ok || zombie(pid, state)
}

func zombie(pid int, state byte) bool {
	if state != 'Z' && state != 'X' {
		return false
	}
	tasks, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	return err != nil || len(tasks) <= 1
}

// findProc returns pid as a beamProc if it is a live process whose
// command line names node.
func findProc(pid int, node string) (beamProc, bool) {
	state, start, ok := procStat(pid)
	if !ok || state == 'Z' || state == 'X' {
		return beamProc{}, false
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil || !bytes.Contains(cmdline, []byte("\x00"+node+"\x00")) {
		return beamProc{}, false
	}
	return beamProc{pid: pid, start: start}, true
}

// running reports whether b's process has not exited (stopped counts).
func (b beamProc) running() bool {
	state, start, ok := procStat(b.pid)
	return ok && start == b.start && !zombie(b.pid, state)
}

// waitGone polls until b has exited or timeout passes.
func (b beamProc) waitGone(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for b.running() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// findBeam returns the beam.smp running node: the fallback when a failed
// start left no PID file.
func findBeam(node string) beamProc {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return beamProc{}
	}
	for _, d := range entries {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		if comm, _ := os.ReadFile("/proc/" + d.Name() + "/comm"); !strings.HasPrefix(string(comm), "beam") {
			continue
		}
		if b, ok := findProc(pid, node); ok {
			return b
		}
	}
	return beamProc{}
}

// probeTLS negotiates STARTTLS on addr and a TLS handshake on direct: the
// listeners run, with our certificate.
func probeTLS(ctx context.Context, host, addr, direct string, cfg *tls.Config) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	header := "<?xml version='1.0'?><stream:stream to='" + host +
		"' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
	if _, err := io.WriteString(c, header); err != nil {
		return err
	}
	if err := readFor(c, "</stream:features>"); err != nil {
		return fmt.Errorf("%s: stream features: %w", addr, err)
	}
	if _, err := io.WriteString(c, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"); err != nil {
		return err
	}
	if err := readFor(c, "<proceed"); err != nil {
		return fmt.Errorf("%s: starttls: %w", addr, err)
	}
	if err := tls.Client(c, cfg).HandshakeContext(ctx); err != nil {
		return fmt.Errorf("%s: STARTTLS handshake: %w", addr, err)
	}
	dc, err := (&tls.Dialer{NetDialer: &d, Config: cfg}).DialContext(ctx, "tcp", direct)
	if err != nil {
		return fmt.Errorf("%s: direct TLS: %w", direct, err)
	}
	return dc.Close()
}

// readFor reads from c until what was read contains marker.
func readFor(c net.Conn, marker string) error {
	var buf []byte
	p := make([]byte, 4096)
	for !bytes.Contains(buf, []byte(marker)) {
		n, err := c.Read(p)
		buf = append(buf, p[:n]...)
		if err != nil {
			return fmt.Errorf("%w after %q", err, buf)
		}
		if len(buf) > 64<<10 {
			return fmt.Errorf("no %q in the first 64 KiB", marker)
		}
	}
	return nil
}

// ejabberdConfig fills ejabberdTemplate and ejabberdctlTemplate. Every
// string in it was checked to need no quoting (checkEjabberdOptions,
// checkEjabberdDir).
type ejabberdConfig struct {
	Dir           string
	Host          string
	CertFile      string
	CAFile        string
	ScramHash     string // auth_scram_hash: sha256 or sha
	C2SPort       int
	DirectTLSPort int
	MUC           bool
	PubSub        bool
	AdminsCreate  bool // pubsub_createnode: admin only
	Admins        []string
	MaxOffline    int // 0: stock
	C2SShaper     int // 0: stock, -1: none
	PIDFile       string
	ModulesPath   string
	Cookie        string
}

var ejabberdTemplate = template.Must(template.New("ejabberd").Parse(
	`# Generated by stanzad internal/testserver: a private ejabberd 23.01 for tests.
# Everything it reads and writes is in "{{.Dir}}"; it is started with
# ejabberdctl --config-dir/--ctl-config there, never as the system service.
loglevel: info
log_rotate_count: 0

hosts:
  - "{{.Host}}"

# Certificate and key in one PEM; ca_file makes ejabberd_pkix accept our CA.
certfiles:
  - "{{.CertFile}}"
ca_file: "{{.CAFile}}"

# Debian's stock TLS options. (ejabberd's YAML has no anchors and aliases:
# an alias arrives as a string.)
define_macro:
  TLS_OPTIONS:
    - "no_sslv3"
    - "no_tlsv1"
    - "no_tlsv1_1"
    - "cipher_server_preference"
    - "no_compression"

# Loopback only, our two c2s ports only: no s2s, HTTP, STUN or MQTT
# listeners, and no outgoing s2s either.
listen:
  -
    port: {{.C2SPort}}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    max_stanza_size: 262144
    shaper: c2s_shaper
    access: c2s
    starttls_required: true
    protocol_options: TLS_OPTIONS
  -
    port: {{.DirectTLSPort}}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    max_stanza_size: 262144
    shaper: c2s_shaper
    access: c2s
    tls: true
    protocol_options: TLS_OPTIONS
s2s_access: none

auth_method: internal
# SCRAM hashes are stored, so exactly one SCRAM variant is offered.
auth_password_format: scram
auth_scram_hash: {{.ScramHash}}
disable_sasl_mechanisms:
  - "digest-md5"
  - "X-OAUTH2"

acl:
  admin:
    user:
{{- range .Admins}}
      - "{{.}}"
{{- else}}
      - "" # nobody
{{- end}}
  local:
    user_regexp: ""

access_rules:
  local:
    allow: local
  c2s:
    allow: all
  muc_create:
    allow: local
  pubsub_createnode:
{{- if .AdminsCreate}}
    allow: admin
{{- else}}
    allow: local
{{- end}}

api_permissions:
  "console commands":
    from:
      - ejabberd_ctl
    who: all
    what: "*"

shaper:
  # Debian's stock shapers.
  normal:
    rate: 3000
    burst_size: 20000
  fast: 200000
{{- if gt .C2SShaper 0}}
  c2s_test: {{.C2SShaper}}
{{- end}}

shaper_rules:
  max_user_sessions: 10
{{- if gt .MaxOffline 0}}
  max_user_offline_messages: {{.MaxOffline}}
{{- else}}
  max_user_offline_messages: # Debian's stock rule
    5000: admin
    100: all
{{- end}}
{{- if gt .C2SShaper 0}}
  c2s_shaper: c2s_test
{{- else if lt .C2SShaper 0}}
  c2s_shaper: none
{{- else}}
  c2s_shaper: # Debian's stock rule
    none: admin
    normal: all
{{- end}}

modules:
  mod_admin_extra: {} # ejabberdctl change_password
  mod_caps: {}
  mod_disco: {}
  mod_ping: {}
  mod_roster:
    versioning: true
  mod_offline:
    access_max_user_messages: max_user_offline_messages
  mod_stream_mgmt:
    resend_on_timeout: if_offline
{{- if .MUC}}
  mod_muc:
    host: "conference.@HOST@"
    access:
      - allow
    access_admin:
      - allow: admin
    access_create: muc_create
    access_persistent: muc_create
{{- end}}
{{- if .PubSub}}
  mod_pubsub:
    host: "pubsub.@HOST@"
    access_createnode: pubsub_createnode
    plugins:
      - flat
      - pep
{{- end}}
`))

// ejabberdctlTemplate replaces Debian's /etc/default/ejabberd, which sets
// EJABBERD_CONFIG_PATH and EJABBERD_PID_PATH itself: ejabberdctl sources
// this file (as root, in bash) after parsing --config, so both must point
// into our directory here. ERL_EPMD_ADDRESS keeps an epmd that our node
// starts on loopback; inet_dist_use_interface does that for the node's
// distribution port.
var ejabberdctlTemplate = template.Must(template.New("ejabberdctl").Parse(
	`# Generated by stanzad internal/testserver; sourced by ejabberdctl instead of /etc/default/ejabberd.
ERL_OPTIONS='-env ERL_CRASH_DUMP_BYTES 0 -setcookie {{.Cookie}} -kernel inet_dist_use_interface {127,0,0,1}'
EJABBERD_CONFIG_PATH='{{.Dir}}/ejabberd.yml'
EJABBERD_PID_PATH='{{.PIDFile}}'
CONTRIB_MODULES_PATH='{{.ModulesPath}}'
CONTRIB_MODULES_CONF_DIR='{{.ModulesPath}}/conf'
ERL_EPMD_ADDRESS=127.0.0.1
EJABBERD_BYPASS_WARNINGS=true
`))
