package testserver

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Server is a private XMPP server, Prosody (Configure) or ejabberd
// (ConfigureEjabberd): the same type for both, so every test helper that
// takes a *Server runs against either. Its exported fields are set by the
// configure function and must not be changed.
type Server struct {
	Host          string // virtual host, e.g. "iot.test"
	Addr          string // c2s (STARTTLS) address, "127.0.0.1:port"
	DirectTLSAddr string // direct TLS c2s address; empty for Prosody unless Options.DirectTLS
	UploadAddr    string // HTTP address of the upload service (Prosody Options.Upload), "127.0.0.1:port"
	CAFile        string // PEM file of the private CA that signed the server certificate
	Dir           string // private directory holding config, data, log and certificates

	ConfigFile string // the generated configuration (prosody.cfg.lua, ejabberd.yml)
	LogFile    string // the server's main log
	Node       string // ejabberd's Erlang node name (name@localhost); empty for Prosody

	roots     *x509.CertPool
	removeDir bool
	eng       engine
}

// engine is one server implementation behind Server: Prosody runs as our
// child process, ejabberd as a detached Erlang node driven by ejabberdctl.
type engine interface {
	start(ctx context.Context) error
	stop() error
	kill() error
	signal(sig os.Signal) error
	pid() int
	register(user, password string) error
}

// Start runs the server and waits until it is ready (Prosody: its ports
// accept TCP connections, at most 15 s; ejabberd: its ports complete a TLS
// handshake and ejabberdctl status says started, at most 30 s). ctx bounds
// only that wait. On failure the error includes the tail of the server log.
func (s *Server) Start(ctx context.Context) error {
	if err := s.eng.start(ctx); err != nil {
		return fmt.Errorf("testserver: %w", err)
	}
	return nil
}

// Restart stops the server if it runs, then starts it again with the same
// configuration, ports and data, so accounts persist.
func (s *Server) Restart(ctx context.Context) error {
	if err := s.Stop(); err != nil {
		return err
	}
	return s.Start(ctx)
}

// Stop stops the server and waits for it to exit. Prosody gets SIGTERM
// (and SIGCONT, in case it is stopped), then SIGKILL after 5 s; ejabberd
// gets SIGCONT and "ejabberdctl stop", then SIGKILL after 10 s. Stopping a
// server that does not run is a no-op. The directory stays; see Close.
func (s *Server) Stop() error { return s.eng.stop() }

// Kill sends SIGKILL and waits for the process to be gone. ejabberd keeps
// its last 2–3 s of writes in memory; so that a kill does not undo the
// test's set-up, Kill (and Signal with SIGKILL) first waits until the
// last Register is 4 s old.
func (s *Server) Kill() error { return s.eng.kill() }

// Signal sends sig to the server process (ejabberd: its beam.smp), for
// tests that SIGSTOP, SIGCONT or SIGKILL it behind the harness's back.
func (s *Server) Signal(sig os.Signal) error { return s.eng.signal(sig) }

// PID returns the server's process ID (ejabberd: its beam.smp), or 0 if it
// does not run.
func (s *Server) PID() int { return s.eng.pid() }

// RootCAs returns a pool holding only the private CA, for tls.Config.
func (s *Server) RootCAs() *x509.CertPool { return s.roots }

// LogTail returns the last n lines of the server log.
func (s *Server) LogTail(n int) string { return logTail(s.LogFile, n) }

// Close stops the server and removes the directory if the configure
// function created it.
func (s *Server) Close() error {
	err := s.Stop()
	if s.removeDir {
		err = errors.Join(err, os.RemoveAll(s.Dir))
	}
	return err
}

// Register creates the account user@Host with password, or sets the
// password of an existing one (as prosodyctl does). Prosody accepts it
// before or after Start; ejabberd needs its node running, so accounts
// registered before Start are created by Start.
func (s *Server) Register(user, password string) error {
	if user == "" || strings.ContainsAny(user, " \t\r\n@/") {
		return fmt.Errorf("testserver: register %q: invalid user name", user)
	}
	if password == "" || strings.ContainsAny(password, "\r\n") {
		return fmt.Errorf("testserver: register %s: password must be non-empty, without line breaks", user)
	}
	return s.eng.register(user, password)
}
