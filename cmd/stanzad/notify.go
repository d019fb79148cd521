package main

import (
	"context"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// notifier speaks systemd's notify protocol (sd_notify(3)): one datagram
// of "KEY=value" lines to the socket in $NOTIFY_SOCKET. Outside systemd
// it does nothing.
type notifier struct {
	addr     *net.UnixAddr
	watchdog time.Duration // half of WatchdogSec; 0 when not asked for
}

func newNotifier() *notifier {
	n := &notifier{}
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return n
	}
	if strings.HasPrefix(path, "@") { // abstract namespace
		path = "\x00" + path[1:]
	}
	n.addr = &net.UnixAddr{Name: path, Net: "unixgram"}
	if usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64); err == nil && usec > 0 {
		if pid := os.Getenv("WATCHDOG_PID"); pid == "" || pid == strconv.Itoa(os.Getpid()) {
			n.watchdog = time.Duration(usec) * time.Microsecond / 2
		}
	}
	return n
}

// send writes one notification; errors are ignored as sd_notify does.
func (n *notifier) send(state string) {
	if n.addr == nil {
		return
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return
	}
	defer c.Close()
	c.SetWriteDeadline(time.Now().Add(time.Second))
	c.Write([]byte(state))
}

// run sends READY=1 once the first session is up (or after readyWait, so a
// board booting without network does not hold up systemd), then STATUS=
// lines on every change and WATCHDOG=1 while healthy() holds.
func (n *notifier) run(ctx context.Context, connected <-chan struct{}, readyWait time.Duration, status func() string, healthy func() bool) {
	if n.addr == nil {
		return
	}
	select {
	case <-connected:
	case <-time.After(readyWait):
	case <-ctx.Done():
		return
	}
	n.send("READY=1\nSTATUS=" + status())
	tick := 5 * time.Second
	if n.watchdog > 0 && n.watchdog < tick {
		tick = n.watchdog
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	last := ""
	for {
		select {
		case <-ctx.Done():
			n.send("STOPPING=1")
			return
		case <-t.C:
		}
		msg := ""
		if s := status(); s != last {
			msg, last = "STATUS="+s+"\n", s
		}
		if n.watchdog > 0 && healthy() {
			msg += "WATCHDOG=1\n"
		}
		if msg != "" {
			n.send(msg)
		}
	}
}
