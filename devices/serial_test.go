package devices

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.bug.st/serial"

	"github.com/stanzad/stanzad/internal/ptytest"
)

func TestSerial(t *testing.T) {
	master, slave := ptytest.Open(t)
	// The port is a symlink, like /dev/serial/by-id/...: unplugging and
	// replugging the adapter is closing the pty and pointing the link at
	// a new one.
	link := filepath.Join(t.TempDir(), "ttyUSB-meter")
	if err := os.Symlink(slave, link); err != nil {
		t.Fatal(err)
	}
	kv, _ := NewParser("kv", "")
	s := NewSerial(SerialConfig{Name: "meter", Port: link, Parse: kv, MaxLine: 64,
		Mode: serial.Mode{BaudRate: 9600, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit}})
	w := WritableSerial{s}
	c := newCollector()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, c.emit) }()
	waitOpen(t, s)

	write := func(s string) {
		t.Helper()
		if _, err := master.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	write("temp=21.5 hum=40\r\n")
	if r := c.next(t); r.Err != nil || fieldString(r.Fields) != "temp=21.5 hum=40" {
		t.Fatalf("reading %+v", r)
	}
	write("temp=\xff\x00garbage\n")
	if r := c.next(t); r.Err == nil {
		t.Errorf("garbage line gave %+v, want an error reading", r)
	}
	write(strings.Repeat("x", 100) + "\n" + "after=1\n")
	if r := c.next(t); r.Err == nil || !strings.Contains(r.Err.Error(), "longer than 64") {
		t.Errorf("overlong line gave %+v", r)
	}
	if r := c.next(t); r.Err != nil || fieldString(r.Fields) != "after=1" {
		t.Errorf("line after the overlong one: %+v", r)
	}

	// Writes go out as one line.
	if _, err := w.Set(ctx, "PING"); err != nil {
		t.Fatal(err)
	}
	master.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(master).ReadString('\n')
	if err != nil || line != "PING\n" {
		t.Errorf("master read %q, %v; want PING", line, err)
	}
	if _, err := w.Set(ctx, "two\nlines"); err == nil {
		t.Error("a value with a newline was sent")
	}

	// Unplug: Run ends with an error (the agent retries with backoff).
	master.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Run returned nil after the port vanished")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not notice the port vanish")
	}
	if _, err := w.Set(ctx, "x"); err == nil {
		t.Error("Set while unplugged succeeded")
	}

	// Replug: the next Run opens the new port behind the same name.
	master2, slave2 := ptytest.Open(t)
	defer master2.Close()
	os.Remove(link)
	os.Symlink(slave2, link)
	go func() { done <- s.Run(ctx, c.emit) }()
	waitOpen(t, s)
	for range 50 {
		master2.Write([]byte("back=1\n"))
		select {
		case r := <-c.ch:
			if r.Err != nil || fieldString(r.Fields) != "back=1" {
				t.Fatalf("after replug: %+v", r)
			}
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run after cancel = %v", err)
			}
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatal("no reading after replug")
}

// waitOpen waits until Run has opened and configured the port: what is
// written before would be lost (or echoed by the pty's cooked mode), as
// on a real port.
func waitOpen(t *testing.T, s *Serial) {
	t.Helper()
	for range 500 {
		s.mu.Lock()
		open := s.port != nil
		s.mu.Unlock()
		if open {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("port not opened within 5s")
}

func TestFramer(t *testing.T) {
	var got []string
	f := framer{max: 5}
	out := func(line []byte, tooLong bool) {
		if tooLong {
			got = append(got, "<long>")
			return
		}
		got = append(got, string(line))
	}
	for _, chunk := range []string{"ab", "c\nde", "\r\n\n", "123456", "78\nok\n", "12345\n"} {
		f.feed([]byte(chunk), out)
	}
	if want := "abc de <long> ok 12345"; strings.Join(got, " ") != want {
		t.Errorf("lines %q, want %q", strings.Join(got, " "), want)
	}
}

// Serial lines are untrusted: the framer holds at most max bytes and
// never emits a line longer than that.
func FuzzFramer(f *testing.F) {
	f.Add([]byte("a=1\r\nb=2\n"), uint8(3))
	f.Fuzz(func(t *testing.T, b []byte, split uint8) {
		fr := framer{max: 16}
		n := max(1, int(split))
		for i := 0; i < len(b); i += n {
			fr.feed(b[i:min(i+n, len(b))], func(line []byte, tooLong bool) {
				if len(line) > 16 || (tooLong && line != nil) {
					t.Fatalf("line %q (tooLong %v)", line, tooLong)
				}
			})
			if len(fr.line) > 16 {
				t.Fatalf("holding %d bytes", len(fr.line))
			}
		}
	})
}
