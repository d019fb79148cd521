package testserver

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// New starts a Prosody server for the test and stops it in tb.Cleanup. An
// empty opts.Dir becomes tb.TempDir(); a nil opts.Log logs harness steps
// with tb.Logf. If prosody is not installed, the test is skipped, or fails
// when the environment has CI=true.
func New(tb testing.TB, opts Options) *Server {
	tb.Helper()
	if opts.Dir == "" {
		opts.Dir = tb.TempDir()
	}
	if opts.Log == nil {
		opts.Log = tbWriter{tb}
	}
	s, err := Configure(opts)
	return startForTest(tb, "prosody", s, err)
}

// NewEjabberd starts an ejabberd node for the test and stops it in
// tb.Cleanup, with the same defaults and CI rule as New. It returns the
// same *Server as New, so helpers written for Prosody run against it.
// ejabberd must run as root (or as the "ejabberd" user); see
// ConfigureEjabberd.
func NewEjabberd(tb testing.TB, opts EjabberdOptions) *Server {
	tb.Helper()
	if opts.Dir == "" {
		opts.Dir = tb.TempDir()
	}
	if opts.Log == nil {
		opts.Log = tbWriter{tb}
	}
	s, err := ConfigureEjabberd(opts)
	return startForTest(tb, "ejabberd", s, err)
}

// startForTest starts a configured server (err: its configure error),
// stopped in tb.Cleanup, applying the CI rule to a missing server.
func startForTest(tb testing.TB, name string, s *Server, err error) *Server {
	tb.Helper()
	if err != nil {
		notInstalled(tb, err)
		tb.Fatalf("%v", err)
	}
	// Registered after TempDir's cleanup, so it runs before the removal.
	tb.Cleanup(func() {
		if err := s.Stop(); err != nil {
			tb.Errorf("stop %s: %v", name, err)
		}
	})
	if err := s.Start(tb.Context()); err != nil {
		tb.Fatalf("%v", err)
	}
	return s
}

// MustRegister registers user@s.Host or fails the test.
func MustRegister(tb testing.TB, s *Server, user, password string) {
	tb.Helper()
	if err := s.Register(user, password); err != nil {
		tb.Fatalf("%v", err)
	}
}

// NewMosquitto starts a mosquitto broker for the test and stops it in
// tb.Cleanup, with the same defaults and CI rule as New.
func NewMosquitto(tb testing.TB, opts MosquittoOptions) *Mosquitto {
	tb.Helper()
	if opts.Dir == "" {
		opts.Dir = tb.TempDir()
	}
	if opts.Log == nil {
		opts.Log = tbWriter{tb}
	}
	m, err := StartMosquitto(tb.Context(), opts)
	if err != nil {
		notInstalled(tb, err)
		tb.Fatalf("%v", err)
	}
	tb.Cleanup(func() {
		if err := m.Stop(); err != nil {
			tb.Errorf("stop mosquitto: %v", err)
		}
	})
	return m
}

// notInstalled skips the test if err is ErrNotInstalled, except in CI,
// where a missing server is a failure: a suite CI never runs does not
// exist.
func notInstalled(tb testing.TB, err error) {
	tb.Helper()
	if !errors.Is(err, ErrNotInstalled) {
		return
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("%v (CI=true: install it, e.g. make deps)", err)
	}
	tb.Skipf("%v (run make deps)", err)
}

// tbWriter turns harness progress lines into test log lines.
type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// NewProxy starts a Proxy to target and closes it in tb.Cleanup.
func NewProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	p, err := StartProxy(target)
	if err != nil {
		tb.Fatalf("proxy: %v", err)
	}
	tb.Cleanup(func() { p.Close() })
	return p
}

// Each runs f against a private Prosody configured by p and a private
// ejabberd configured by e, as parallel subtests "prosody" and
// "ejabberd": the protocol tests hold for both servers stanzad is tested
// with.
func Each(t *testing.T, p Options, e EjabberdOptions, f func(t *testing.T, srv *Server)) {
	t.Run("prosody", func(t *testing.T) {
		t.Parallel()
		f(t, New(t, p))
	})
	t.Run("ejabberd", func(t *testing.T) {
		t.Parallel()
		f(t, NewEjabberd(t, e))
	})
}
