package devices

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeReplace(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp~"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestFileWatch(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "status.txt")
	os.WriteFile(path, []byte("old=1\nstate=boot\n"), 0o644)
	f := NewFile(FileConfig{Name: "status", Path: path, Parse: "kv"})
	c := newCollector()
	stop := run(t, f, c.emit)

	if r := c.next(t); r.Err != nil || fieldString(r.Fields) != "state=boot" {
		t.Fatalf("initial reading %+v: want the last line", r)
	}
	// Appending a line (a logger).
	fh, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	fh.WriteString("state=running load=0.5\n")
	fh.Close()
	if r := c.next(t); r.Err != nil || fieldString(r.Fields) != "state=running load=0.5" {
		t.Fatalf("after append %+v", r)
	}
	// The editor dance: write a new file, rename it over the old one.
	writeReplace(t, path, "state=edited\n")
	if r := c.next(t); r.Err != nil || fieldString(r.Fields) != "state=edited" {
		t.Fatalf("after rename-replace %+v", r)
	}
	// Deleted and created again.
	os.Remove(path)
	os.WriteFile(path, []byte("state=new\n"), 0o644)
	if r := c.next(t); r.Err != nil || fieldString(r.Fields) != "state=new" {
		t.Fatalf("after delete/create %+v", r)
	}
	// Other files in the directory are not this device's business.
	os.WriteFile(filepath.Join(dir, "other.txt"), []byte("x=1\n"), 0o644)
	c.none(t, 200*time.Millisecond)
	// Garbage is an error reading, not a crash.
	os.WriteFile(path, []byte("\x00\xff\xfe\n"), 0o644)
	if r := c.next(t); r.Err == nil {
		t.Errorf("garbage gave %+v", r)
	}
	if r, err := f.Read(context.Background()); err == nil {
		t.Errorf("Read of garbage = %+v", r)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestFileWholeAndLimits(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "motd")
	os.WriteFile(path, []byte("hello\nworld\n"), 0o644)
	whole := NewFile(FileConfig{Name: "motd", Path: path, Parse: "whole", MaxSize: 16})
	if r, err := whole.Read(context.Background()); err != nil || r.Fields[0].Str != "hello\uFFFDworld\uFFFD" {
		t.Errorf("whole = %+v, %v", r, err)
	}
	os.WriteFile(path, []byte(strings.Repeat("x", 17)), 0o644)
	if _, err := whole.Read(context.Background()); err == nil || !strings.Contains(err.Error(), "max_size") {
		t.Errorf("oversize whole file: %v", err)
	}
	line := NewFile(FileConfig{Name: "log", Path: path, Parse: "line", MaxSize: 8})
	os.WriteFile(path, []byte(strings.Repeat("y", 100)+"\nshort\n"), 0o644)
	if r, err := line.Read(context.Background()); err != nil || r.Fields[0].Str != "short" {
		t.Errorf("tail of a big file = %+v, %v", r, err)
	}
	os.WriteFile(path, []byte(strings.Repeat("z", 100)), 0o644)
	if _, err := line.Read(context.Background()); err == nil {
		t.Error("a last line longer than max_size was read")
	}
}

func TestFileDirectory(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "spool")
	os.Mkdir(dir, 0o755)
	f := NewFile(FileConfig{Name: "spool", Path: dir, Parse: "json"})
	c := newCollector()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx, c.emit) }()
	if r := untilReading(t, c, func() { os.WriteFile(filepath.Join(dir, "a.json"), []byte(`{"t":1}`), 0o644) }); r.Err != nil || fieldString(r.Fields) != "file=a.json t=1" {
		t.Fatalf("reading %+v", r)
	}
	// The directory goes away: Run ends with an error...
	os.RemoveAll(dir)
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Run returned nil after its directory was removed")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not notice the directory go")
	}
	// ...and fails while it is missing; once it is back, a new Run works.
	if err := f.Run(ctx, c.emit); err == nil {
		t.Fatal("Run on a missing directory returned nil")
	}
	os.Mkdir(dir, 0o755)
	go func() { done <- f.Run(ctx, c.emit) }()
	if r := untilReading(t, c, func() { os.WriteFile(filepath.Join(dir, "b.json"), []byte(`{"t":2}`), 0o644) }); r.Err != nil || fieldString(r.Fields) != "file=b.json t=2" {
		t.Fatalf("after recreate: %+v", r)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run after cancel: %v", err)
	}
}

// untilReading repeats write until a reading arrives: a write made before
// Run has set up its watch is not seen, which is how it should be.
func untilReading(t *testing.T, c *collector, write func()) Reading {
	t.Helper()
	for range 50 {
		write()
		select {
		case r := <-c.ch:
			return r
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatal("no reading within 5s")
	return Reading{}
}
