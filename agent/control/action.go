package control

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/stanzad/stanzad/agent/config"
)

// Action errors.
var (
	ErrUnknownAction = errors.New("unknown action")
	ErrBusy          = errors.New("already running")
)

// maxActionOutput is how much of an action's output (stdout and stderr
// together) is kept: the tail, where the error usually is.
const maxActionOutput = 4 << 10

// ActionResult is how an action ended.
type ActionResult struct {
	ExitCode int // -1 when killed (timeout) or not started
	TimedOut bool
	Output   string // the last 4 KiB of stdout and stderr
	// Truncated reports that Output is a tail of longer output.
	Truncated bool
	Duration  time.Duration
}

// action is a configured [[action]] with its run lock: one run at a time.
type action struct {
	cfg  config.Action
	busy sync.Mutex
}

// run executes the action's argv directly (no shell) in its own process
// group, so a timeout kills everything it started. Its environment is
// minimal and says who asked.
func (act *action) run(ctx context.Context, caller string) (ActionResult, error) {
	if !act.busy.TryLock() {
		return ActionResult{ExitCode: -1}, fmt.Errorf("action %q: %w", act.cfg.Name, ErrBusy)
	}
	defer act.busy.Unlock()

	ctx, cancel := context.WithTimeout(ctx, act.cfg.Timeout.Duration)
	defer cancel()
	var out tailBuffer
	cmd := exec.CommandContext(ctx, act.cfg.Argv[0], act.cfg.Argv[1:]...)
	cmd.Dir = "/"
	cmd.Env = []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LANG=C.UTF-8",
		"STANZAD_ACTION=" + act.cfg.Name,
		"STANZAD_CALLER=" + caller,
	}
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	// Children that keep the output pipe open must not hold Wait forever.
	cmd.WaitDelay = time.Second

	start := time.Now()
	err := cmd.Run()
	res := ActionResult{ExitCode: -1, Duration: time.Since(start)}
	res.Output, res.Truncated = out.String()
	if cmd.ProcessState != nil {
		res.ExitCode = cmd.ProcessState.ExitCode()
	}
	var exitErr *exec.ExitError
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		res.TimedOut, res.ExitCode = true, -1
		return res, nil
	case err == nil, errors.As(err, &exitErr), errors.Is(err, exec.ErrWaitDelay):
		return res, nil
	default: // could not start: missing binary, permissions
		return res, fmt.Errorf("action %q: %w", act.cfg.Name, err)
	}
}

// tailBuffer keeps the last maxActionOutput bytes written to it.
type tailBuffer struct {
	mu    sync.Mutex
	buf   []byte
	total int64
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.total += int64(len(p))
	if len(p) >= maxActionOutput {
		t.buf = append(t.buf[:0], p[len(p)-maxActionOutput:]...)
		return len(p), nil
	}
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*maxActionOutput {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-maxActionOutput:]...)
	}
	return len(p), nil
}

// String returns the kept tail, starting at a whole UTF-8 character, and
// whether output was cut.
func (t *tailBuffer) String() (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buf
	if len(b) > maxActionOutput {
		b = b[len(b)-maxActionOutput:]
	}
	cut := int64(len(b)) < t.total
	if cut {
		for n := 0; n < utf8.UTFMax && len(b) > 0 && !utf8.RuneStart(b[0]); n++ {
			b = b[1:]
		}
	}
	return string(b), cut
}
