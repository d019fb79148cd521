package main

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The notifier speaks to a real unixgram socket as systemd would provide.
func TestNotifier(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", "200000") // 200 ms: a ping every 100 ms
	t.Setenv("WATCHDOG_PID", "")
	n := newNotifier()
	if n.watchdog != 100*time.Millisecond {
		t.Fatalf("watchdog interval %v, want 100ms", n.watchdog)
	}
	connected := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	status := "offline"
	go func() {
		defer close(done)
		n.run(ctx, connected, time.Hour, func() string { return status }, func() bool { return true })
	}()
	read := func() string {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 512)
		k, err := conn.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		return string(buf[:k])
	}
	close(connected)
	if got := read(); got != "READY=1\nSTATUS=offline" {
		t.Fatalf("first notification %q", got)
	}
	if got := read(); !strings.Contains(got, "WATCHDOG=1") {
		t.Fatalf("no watchdog ping: %q", got)
	}
	cancel()
	<-done
	for {
		if got := read(); got == "STOPPING=1" {
			break
		}
	}
}

func TestNotifierOutsideSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n := newNotifier()
	n.send("READY=1") // must not panic or block
	n.run(context.Background(), nil, time.Hour, nil, nil)
}
