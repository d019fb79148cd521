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
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// startTimeout bounds how long Start waits for the ports to accept.
	startTimeout = 15 * time.Second
	// stopTimeout is how long Stop waits after SIGTERM before SIGKILL.
	stopTimeout = 5 * time.Second
)

var (
	// ErrNotInstalled reports that a server binary (prosody, prosodyctl or
	// mosquitto) was not found.
	ErrNotInstalled = errors.New("testserver: server binary not installed")
	// ErrNotRunning reports an operation that needs a running server.
	ErrNotRunning = errors.New("testserver: server not running")
)

// lookBin finds name on $PATH or at one of the fallback paths (/usr/sbin is
// often missing from a non-root $PATH).
func lookBin(name string, fallbacks ...string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, f := range fallbacks {
		if fi, err := os.Stat(f); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return f, nil
		}
	}
	return "", fmt.Errorf("%s: %w", name, ErrNotInstalled)
}

// freePort returns a port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// run is one started server process.
type run struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once cmd.Wait has returned
	err  error         // result of cmd.Wait; read only after done is closed
}

func (r *run) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// process starts, signals and reaps one server binary by PID. The same
// command line is reused for every (re)start.
type process struct {
	name     string    // "prosody", "mosquitto": for messages
	bin      string    // absolute path of the binary
	args     []string  // arguments, without the binary
	dir      string    // working directory
	logFile  string    // stdout and stderr are appended here
	addrs    []string  // TCP addresses that must accept before start returns
	progress io.Writer // optional harness progress lines

	mu  sync.Mutex
	cur *run
}

func (p *process) logf(format string, args ...any) {
	if p.progress != nil {
		fmt.Fprintf(p.progress, "testserver: "+format+"\n", args...)
	}
}

// start runs the binary and waits until every address accepts TCP
// connections, the process exits, startTimeout passes or ctx is done. ctx
// bounds only the wait; the process outlives it. On failure the process is
// killed and the error includes the tail of the log.
func (p *process) start(ctx context.Context) error {
	p.mu.Lock()
	if p.cur != nil && !p.cur.exited() {
		p.mu.Unlock()
		return fmt.Errorf("start %s: already running as pid %d", p.name, p.cur.cmd.Process.Pid)
	}
	logf, err := os.OpenFile(p.logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		p.mu.Unlock()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	cmd := exec.Command(p.bin, p.args...)
	cmd.Dir = p.dir
	// An *os.File is handed to the child directly: no copying goroutines,
	// and the output survives us. Messages printed before the server's own
	// logging is set up (config errors) end up in the log this way.
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = sysProcAttr()
	err = cmd.Start()
	logf.Close() // the child holds its own descriptor
	if err != nil {
		p.mu.Unlock()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	r := &run{cmd: cmd, done: make(chan struct{})}
	// Reaper: owned by p; it returns when the child exits, which stop and
	// kill guarantee (and Pdeathsig, on Linux, if this process dies first).
	go func() {
		r.err = cmd.Wait()
		close(r.done)
	}()
	p.cur = r
	p.mu.Unlock()
	p.logf("%s started, pid %d", p.name, cmd.Process.Pid)

	if err := waitAccept(ctx, p.addrs, r.done); err != nil {
		var exitErr error
		if r.exited() {
			exitErr = fmt.Errorf("exited during startup: %v", r.err)
			p.forget(r)
		} else {
			exitErr = err
			p.kill()
		}
		return fmt.Errorf("start %s: %w\n--- %s log tail ---\n%s", p.name, exitErr, p.name, logTail(p.logFile, 40))
	}
	p.logf("%s ready on %s", p.name, strings.Join(p.addrs, ", "))
	return nil
}

// waitAccept polls each address until a TCP connect succeeds.
func waitAccept(ctx context.Context, addrs []string, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	d := net.Dialer{Timeout: 250 * time.Millisecond}
	for _, addr := range addrs {
		for {
			c, err := d.DialContext(ctx, "tcp", addr)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-exited:
				return errors.New("exited during startup")
			case <-ctx.Done():
				return fmt.Errorf("%s not accepting connections: %w (last: %v)", addr, ctx.Err(), err)
			case <-tick.C:
			}
		}
	}
	return nil
}

func (p *process) current() *run {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur
}

func (p *process) pid() int {
	r := p.current()
	if r == nil || r.exited() {
		return 0
	}
	return r.cmd.Process.Pid
}

func (p *process) signal(sig os.Signal) error {
	r := p.current()
	if r == nil || r.exited() {
		return fmt.Errorf("signal %s: %w", p.name, ErrNotRunning)
	}
	if err := r.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %s pid %d: %w", p.name, r.cmd.Process.Pid, err)
	}
	return nil
}

// stop sends SIGTERM, waits up to stopTimeout, then SIGKILLs, and reaps the
// process. It is a no-op when nothing runs.
func (p *process) stop() error {
	r := p.current()
	if r == nil {
		return nil
	}
	if !r.exited() {
		pid := r.cmd.Process.Pid
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
		// A SIGSTOPped server would sit on the SIGTERM until SIGKILL.
		_ = r.cmd.Process.Signal(syscall.SIGCONT)
		t := time.NewTimer(stopTimeout)
		select {
		case <-r.done:
			t.Stop()
			p.logf("%s pid %d stopped", p.name, pid)
		case <-t.C:
			p.logf("%s pid %d ignored SIGTERM for %v; killing", p.name, pid, stopTimeout)
			_ = r.cmd.Process.Kill()
			<-r.done
		}
	}
	p.forget(r)
	return nil
}

// kill sends SIGKILL and reaps the process. It is a no-op when nothing runs.
func (p *process) kill() error {
	r := p.current()
	if r == nil {
		return nil
	}
	if !r.exited() {
		if err := r.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("kill %s pid %d: %w", p.name, r.cmd.Process.Pid, err)
		}
		<-r.done
		p.logf("%s pid %d killed", p.name, r.cmd.Process.Pid)
	}
	p.forget(r)
	return nil
}

func (p *process) forget(r *run) {
	p.mu.Lock()
	if p.cur == r {
		p.cur = nil
	}
	p.mu.Unlock()
}

// logTail returns the last n lines of the file at path, reading at most its
// last 256 KiB. Errors are returned as text: the result only ever decorates
// another error or a test failure.
func logTail(path string, n int) string {
	if n <= 0 {
		return ""
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer f.Close()
	const max = 256 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > max {
		if _, err := f.Seek(fi.Size()-max, io.SeekStart); err != nil {
			return fmt.Sprintf("(read log: %v)", err)
		}
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return fmt.Sprintf("(read log: %v)", err)
	}
	b = bytes.TrimRight(b, "\n")
	lines := bytes.Split(b, []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
