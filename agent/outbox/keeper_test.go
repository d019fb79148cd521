package outbox

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// logSize is the size of the outbox log in dir.
func logSize(t *testing.T, dir string) int64 {
	t.Helper()
	fi, err := os.Stat(filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// Outboxes kept with Keep get their upkeep from the one upkeep
// goroutine, each on its own schedule (here: a mostly acknowledged log
// is compacted, as in TestRunCompacts); a stopped one is left alone, and
// the goroutine ends with the last.
func TestKeepShared(t *testing.T) {
	payload := bytes.Repeat([]byte("x"), 1000)
	var dirs []string
	var boxes []*Outbox
	for _, every := range []time.Duration{10 * time.Millisecond, 30 * time.Millisecond, 10 * time.Millisecond} {
		dir := t.TempDir()
		o := open(t, dir, Options{SyncEvery: every})
		defer o.Close()
		for range 3000 {
			o.Append(payload)
		}
		o.Ack(2500)
		dirs, boxes = append(dirs, dir), append(boxes, o)
	}
	stopped := boxes[2].Keep(context.Background())
	stopped()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop0 := boxes[0].Keep(ctx)
	defer stop0()
	boxes[1].Keep(ctx) // ends with ctx

	const all, want = 3000 * (headerSize + 1000), 500 * (headerSize + 1000)
	for deadline := time.Now().Add(5 * time.Second); logSize(t, dirs[0]) != want || logSize(t, dirs[1]) != want; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("kept outboxes not compacted within 5s: %d, %d bytes, want %d", logSize(t, dirs[0]), logSize(t, dirs[1]), want)
		}
	}
	if got := logSize(t, dirs[2]); got != all {
		t.Errorf("a stopped outbox was kept: %d bytes, want them all", got)
	}

	// With ctx done and stop0 called, nothing is kept and the goroutine
	// ends.
	cancel()
	stop0()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		upkeep.mu.Lock()
		n, running := len(upkeep.boxes), upkeep.running
		upkeep.mu.Unlock()
		if n == 0 && !running {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("upkeep still keeps %d outboxes (running %v)", n, running)
		}
	}

	// A new Keep starts it again.
	stop2 := boxes[2].Keep(context.Background())
	defer stop2()
	for deadline := time.Now().Add(5 * time.Second); logSize(t, dirs[2]) != want; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("outbox kept again not compacted: %d bytes", logSize(t, dirs[2]))
		}
	}
}
