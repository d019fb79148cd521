package devices

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

// inotifyFDs counts the process's inotify instances (-1 where /proc does
// not tell).
func inotifyFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && strings.Contains(l, "inotify") {
			n++
		}
	}
	return n
}

// nextEvent waits for an event on w about name.
func nextEvent(t *testing.T, w *DirWatch, name string) fsnotify.Event {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case ev := <-w.Events():
			if filepath.Base(ev.Name) == name {
				return ev
			}
		case err := <-w.Errors():
			t.Fatalf("watch error: %v", err)
		case <-deadline:
			t.Fatalf("no event for %s", name)
		}
	}
}

// noEvent fails if w gets an event within a short while.
func noEvent(t *testing.T, w *DirWatch) {
	t.Helper()
	select {
	case ev := <-w.Events():
		t.Fatalf("unexpected event %v", ev)
	case <-time.After(200 * time.Millisecond):
	}
}

func TestWatchDirShared(t *testing.T) {
	before := inotifyFDs(t)
	t.Logf("inotify instances before: %d", before)
	a, b := t.TempDir(), t.TempDir()
	wa1, err := WatchDir(a)
	if err != nil {
		t.Fatal(err)
	}
	wa2, err := WatchDir(a + "/") // the same directory, spelled differently
	if err != nil {
		t.Fatal(err)
	}
	wb, err := WatchDir(b)
	if err != nil {
		t.Fatal(err)
	}
	if before >= 0 {
		if got := inotifyFDs(t); got != before+1 {
			t.Errorf("inotify instances: %d, want %d (one shared watcher)", got, before+1)
		}
	}

	if err := os.WriteFile(filepath.Join(a, "x"), []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, w := range []*DirWatch{wa1, wa2} {
		if ev := nextEvent(t, w, "x"); ev.Op&(fsnotify.Create|fsnotify.Write) == 0 {
			t.Errorf("event %v, want a create or write", ev)
		}
	}
	noEvent(t, wb)

	// One subscriber leaving keeps the directory watched for the other.
	wa1.Close()
	wa1.Close() // twice is harmless
	if err := os.WriteFile(filepath.Join(a, "y"), []byte("2"), 0o644); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, wa2, "y")

	// The directory itself going away reaches its subscriber.
	wa2.Close()
	wc, err := WatchDir(a)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(a); err != nil {
		t.Fatal(err)
	}
	for deadline := time.After(5 * time.Second); ; {
		select {
		case ev := <-wc.Events():
			if filepath.Clean(ev.Name) != filepath.Clean(a) {
				continue // the files inside
			}
		case <-deadline:
			t.Fatal("no event for the removed directory")
		}
		break
	}
	wc.Close()
	wb.Close()

	// The last one out stops the watcher; the next subscriber starts one.
	hub.mu.Lock()
	stopped := hub.w == nil
	hub.mu.Unlock()
	if !stopped {
		t.Error("watcher still running with no subscribers")
	}
	if before >= 0 {
		if got := inotifyFDs(t); got != before {
			t.Errorf("inotify instances after the last Close: %d, want %d", got, before)
		}
	}
	wd, err := WatchDir(b)
	if err != nil {
		t.Fatal(err)
	}
	defer wd.Close()
	if err := os.WriteFile(filepath.Join(b, "z"), []byte("3"), 0o644); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, wd, "z")
}

// A subscriber that does not read loses events to ErrWatchOverflow; one
// that reads gets every event all the same.
func TestWatchDirSlowSubscriber(t *testing.T) {
	dir := t.TempDir()
	slow, err := WatchDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fast, err := WatchDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()
	// Each file is created, then waited for on the reading subscriber:
	// the other's buffer fills meanwhile.
	for i := range watchBuffer + 8 {
		name := fmt.Sprintf("f%03d", i)
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if ev := nextEvent(t, fast, name); ev.Op&fsnotify.Create == 0 {
			t.Fatalf("first event for %s: %v, want a create", name, ev)
		}
	}
	select {
	case err := <-slow.Errors():
		if !errors.Is(err, ErrWatchOverflow) {
			t.Errorf("slow subscriber's error: %v, want ErrWatchOverflow", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("the slow subscriber was not told it lost events")
	}
}

func TestWatchDirMissing(t *testing.T) {
	_, err := WatchDir(filepath.Join(t.TempDir(), "nope"))
	if err == nil {
		t.Fatal("watching a missing directory succeeded")
	}
	hub.mu.Lock()
	defer hub.mu.Unlock()
	if hub.w != nil && len(hub.subs) == 0 {
		t.Error("a failed first subscription left the watcher running")
	}
}
