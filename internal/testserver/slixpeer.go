package testserver

import (
	"bufio"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

//go:embed slixpeer.py
var slixpeerPy []byte

// SlixPeer is a slixmpp client process (Debian's python3-slixmpp) that
// answers the XEP-0050 "status" command and pings: the peer DESIGN.md
// measures stanzad against.
type SlixPeer struct {
	JID   string
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string // stdout after "ready"
}

// Python is the interpreter with python3-slixmpp (Debian's).
const Python = "/usr/bin/python3"

// NewSlixPeer registers user on s, starts the peer logged in as
// user@host/peer and stops it in tb.Cleanup. Without python3-slixmpp it
// skips, or fails when CI=true.
func NewSlixPeer(tb testing.TB, s *Server, user, password string) *SlixPeer {
	tb.Helper()
	if out, err := exec.Command(Python, "-c", "import slixmpp").CombinedOutput(); err != nil {
		notInstalled(tb, fmt.Errorf("%w: python3-slixmpp: %v %s", ErrNotInstalled, err, out))
		tb.Fatal(err)
	}
	MustRegister(tb, s, user, password)
	script := filepath.Join(tb.TempDir(), "slixpeer.py")
	if err := os.WriteFile(script, slixpeerPy, 0o600); err != nil {
		tb.Fatal(err)
	}
	host, port, err := net.SplitHostPort(s.Addr)
	if err != nil {
		tb.Fatal(err)
	}
	p := &SlixPeer{JID: user + "@" + s.Host + "/peer", lines: make(chan string, 16)}
	p.cmd = exec.Command(Python, script, p.JID, password, host, port, s.CAFile)
	p.cmd.Stderr = tbWriter{tb}
	if p.in, err = p.cmd.StdinPipe(); err != nil {
		tb.Fatal(err)
	}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		p.in.Close() // the peer disconnects and exits
		done := make(chan error, 1)
		go func() { done <- p.cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			p.cmd.Process.Kill()
			<-done
		}
	})
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.TrimSpace(sc.Text()) == "ready" {
				ready <- nil
				for sc.Scan() {
					select {
					case p.lines <- strings.TrimSpace(sc.Text()):
					default:
					}
				}
				return
			}
		}
		ready <- errors.New("slixmpp peer exited before its session started")
	}()
	select {
	case err := <-ready:
		if err != nil {
			tb.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		tb.Fatal("slixmpp peer: no session within 20s")
	}
	return p
}

// PID is the peer's process id, for CPU accounting.
func (p *SlixPeer) PID() int { return p.cmd.Process.Pid }

// Flood makes the peer send n reading messages to to, as fast as it can
// (see slixpeer.py), and waits until it has handed the last one to its
// transport.
func (p *SlixPeer) Flood(to string, n int, timeout time.Duration) error {
	if _, err := fmt.Fprintf(p.in, "flood %s %d\n", to, n); err != nil {
		return err
	}
	select {
	case line := <-p.lines:
		if line != fmt.Sprintf("flooded %d", n) {
			return fmt.Errorf("slixmpp peer: %q", line)
		}
		return nil
	case <-time.After(timeout):
		return errors.New("slixmpp peer: flood not finished in time")
	}
}
