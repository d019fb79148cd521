//go:build integration

package testserver

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const streamHeader = `<?xml version='1.0'?><stream:stream to='iot.test' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>`

// readUntil reads from c until the data read so far contains marker.
func readUntil(t *testing.T, c net.Conn, marker string) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	var buf bytes.Buffer
	p := make([]byte, 4096)
	for !strings.Contains(buf.String(), marker) {
		n, err := c.Read(p)
		buf.Write(p[:n])
		if err != nil {
			t.Fatalf("read until %q: %v; got %q", marker, err, buf.String())
		}
	}
	return buf.String()
}

func write(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// checkStartTLS opens a c2s stream, expects STARTTLS, upgrades with the
// private CA and returns the SASL features offered over TLS.
func checkStartTLS(t *testing.T, s *Server) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.Addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", s.Addr, err)
	}
	defer c.Close()
	write(t, c, streamHeader)
	features := readUntil(t, c, "</stream:features>")
	if !strings.Contains(features, "<starttls") {
		t.Fatalf("features without <starttls: %q", features)
	}
	if strings.Contains(features, "<mechanisms") {
		t.Errorf("SASL offered before TLS despite c2s_require_encryption: %q", features)
	}
	write(t, c, "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
	readUntil(t, c, "<proceed")
	tc := tls.Client(c, &tls.Config{RootCAs: s.RootCAs(), ServerName: s.Host})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		t.Fatalf("STARTTLS handshake: %v", err)
	}
	write(t, tc, streamHeader)
	return readUntil(t, tc, "</stream:features>")
}

func TestIntegrationProsody(t *testing.T) {
	for _, hash := range []string{"SHA-256", "SHA-1"} {
		t.Run(hash, func(t *testing.T) {
			s := New(t, Options{PasswordHash: hash, DirectTLS: true, MUC: true, PubSub: true})
			MustRegister(t, s, "alice", "alice-secret")
			MustRegister(t, s, "bob", "bob secret with spaces")

			features := checkStartTLS(t, s)
			want := "<mechanism>SCRAM-" + hash + "</mechanism>"
			if !strings.Contains(features, want) {
				t.Errorf("features over TLS lack %s: %q", want, features)
			}
			other := map[string]string{"SHA-256": "SHA-1", "SHA-1": "SHA-256"}[hash]
			if strings.Contains(features, "<mechanism>SCRAM-"+other+"</mechanism>") {
				t.Errorf("features offer SCRAM-%s too: %q", other, features)
			}

			tc, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", s.DirectTLSAddr,
				&tls.Config{RootCAs: s.RootCAs(), ServerName: s.Host})
			if err != nil {
				t.Fatalf("direct TLS dial %s: %v", s.DirectTLSAddr, err)
			}
			defer tc.Close()
			write(t, tc, streamHeader)
			if f := readUntil(t, tc, "</stream:features>"); !strings.Contains(f, want) {
				t.Errorf("direct TLS features lack %s: %q", want, f)
			}

			for _, f := range []string{"prosody.cfg.lua", "prosody.pid", "prosody.log", "ca.pem", "server.crt", "server.key"} {
				if _, err := os.Stat(filepath.Join(s.Dir, f)); err != nil {
					t.Errorf("private dir: %v", err)
				}
			}
		})
	}
}

func TestIntegrationProsodyRegisterBeforeStart(t *testing.T) {
	s, err := Configure(Options{Dir: t.TempDir()})
	if errors.Is(err, ErrNotInstalled) {
		notInstalled(t, err)
	}
	if err != nil {
		t.Fatalf("Configure: %v", err)
	}
	t.Cleanup(func() { s.Stop() })
	if err := s.Register("early", "pw"); err != nil {
		t.Fatalf("Register before Start: %v", err)
	}
	if err := s.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := s.Register("late", "pw"); err != nil {
		t.Fatalf("Register after Start: %v", err)
	}
	if err := s.Register("bad\nname", "pw"); err == nil {
		t.Error("Register with a newline in the user name succeeded, want error")
	}
}

func TestIntegrationProsodyKillRestartStop(t *testing.T) {
	s := New(t, Options{DirectTLS: true})
	MustRegister(t, s, "alice", "pw")
	accounts := filepath.Join(s.Dir, "data", "iot%2etest", "accounts", "alice.dat")
	if _, err := os.Stat(accounts); err != nil {
		t.Fatalf("account file: %v", err)
	}

	pid := s.PID()
	if err := s.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	assertGone(t, pid)
	if c, err := net.DialTimeout("tcp", s.Addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("%s accepts after Kill", s.Addr)
	}
	if err := s.Signal(syscall.SIGTERM); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Signal after Kill = %v, want ErrNotRunning", err)
	}

	if err := s.Restart(t.Context()); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if s.PID() == 0 || s.PID() == pid {
		t.Errorf("PID after Restart = %d, want a new one (old %d)", s.PID(), pid)
	}
	checkStartTLS(t, s)
	if _, err := os.Stat(accounts); err != nil {
		t.Errorf("account lost across restart: %v", err)
	}

	// Killed behind the harness's back, then restarted.
	if err := s.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("Signal(SIGKILL): %v", err)
	}
	if err := s.Restart(t.Context()); err != nil {
		t.Fatalf("Restart after SIGKILL: %v", err)
	}
	checkStartTLS(t, s)

	// A stopped (SIGSTOP) server still stops promptly: Stop sends SIGCONT.
	if err := s.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("Signal(SIGSTOP): %v", err)
	}
	pid = s.PID()
	start := time.Now()
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("Stop of a SIGSTOPped server took %v", d)
	}
	assertGone(t, pid)
	if got := s.PID(); got != 0 {
		t.Errorf("PID after Stop = %d, want 0", got)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if tail := s.LogTail(1); !strings.Contains(tail, "Shutdown complete") {
		t.Errorf("LogTail(1) = %q, want the clean shutdown", tail)
	}
}

func TestIntegrationProsodyBadConfigReportsLog(t *testing.T) {
	s, err := Configure(Options{Dir: t.TempDir()})
	if err != nil {
		notInstalled(t, err)
		t.Fatalf("Configure: %v", err)
	}
	t.Cleanup(func() { s.Stop() })
	if err := os.WriteFile(s.ConfigFile, []byte("this is not lua {\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err = s.Start(t.Context())
	if err == nil {
		t.Fatal("Start with a broken config succeeded")
	}
	if !strings.Contains(err.Error(), "log tail") {
		t.Errorf("Start error lacks the log tail: %v", err)
	}
	t.Logf("expected error: %v", err)
}

func TestIntegrationMosquitto(t *testing.T) {
	m := NewMosquitto(t, MosquittoOptions{})
	mqttConnect(t, m.Addr)

	pid := m.PID()
	if err := m.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	assertGone(t, pid)
	if err := m.Restart(t.Context()); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	mqttConnect(t, m.Addr)

	pid = m.PID()
	if err := m.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	assertGone(t, pid)
	if c, err := net.DialTimeout("tcp", m.Addr, time.Second); err == nil {
		c.Close()
		t.Errorf("%s accepts after Stop", m.Addr)
	}
}

// mqttConnect sends an MQTT 3.1.1 CONNECT and expects CONNACK accepted.
func mqttConnect(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	connect := []byte{
		0x10, 13, // CONNECT, remaining length
		0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, // protocol 3.1.1, clean session, keepalive 60 s
		0, 1, 't', // client ID
	}
	if _, err := c.Write(connect); err != nil {
		t.Fatalf("write CONNECT: %v", err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil {
		t.Fatalf("read CONNACK: %v", err)
	}
	if want := []byte{0x20, 2, 0, 0}; !bytes.Equal(ack, want) {
		t.Errorf("CONNACK = % x, want % x", ack, want)
	}
}

// assertGone checks that no process has the given PID any more.
func assertGone(t *testing.T, pid int) {
	t.Helper()
	if pid == 0 {
		t.Fatal("PID was 0")
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("kill(%d, 0) = %v, want ESRCH: process still exists", pid, err)
	}
}
