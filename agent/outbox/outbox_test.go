package outbox

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func open(t *testing.T, dir string, opts Options) *Outbox {
	t.Helper()
	o, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func appendN(t *testing.T, o *Outbox, from, to int) {
	t.Helper()
	for i := from; i <= to; i++ {
		id, err := o.Append(fmt.Appendf(nil, "reading %d", i))
		if err != nil || id != uint64(i) {
			t.Fatalf("Append #%d = %d, %v", i, id, err)
		}
	}
}

// ids checks that the pending records are exactly from..to, in order, with
// the payloads appendN wrote.
func ids(t *testing.T, o *Outbox, from, to int) {
	t.Helper()
	rs := o.Pending(0, 1<<30)
	if len(rs) != to-from+1 {
		t.Fatalf("pending %d records, want %d..%d", len(rs), from, to)
	}
	for i, r := range rs {
		want := uint64(from + i)
		if r.ID != want || string(r.Payload) != fmt.Sprintf("reading %d", want) {
			t.Fatalf("pending[%d] = %d %q, want %d", i, r.ID, r.Payload, want)
		}
	}
}

func TestAppendAckReopen(t *testing.T) {
	dir := t.TempDir()
	o := open(t, dir, Options{})
	appendN(t, o, 1, 10)
	o.Ack(4)
	ids(t, o, 5, 10)
	if rs := o.Pending(7, 2); len(rs) != 2 || rs[0].ID != 8 || rs[1].ID != 9 {
		t.Fatalf("Pending(7, 2) = %v", rs)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	o = open(t, dir, Options{})
	ids(t, o, 5, 10)
	appendN(t, o, 11, 12) // ids continue after a restart
	o.Ack(12)
	ids(t, o, 13, 12)
	o.Close()
	o = open(t, dir, Options{})
	defer o.Close()
	appendN(t, o, 13, 13)
}

// A crash during a write leaves a torn record at the end: Open keeps
// everything before it, logs the loss and carries on.
func TestTornTail(t *testing.T) {
	for _, cut := range []int{1, 5, headerSize, headerSize + 3} {
		t.Run(fmt.Sprint(cut), func(t *testing.T) {
			dir := t.TempDir()
			o := open(t, dir, Options{})
			appendN(t, o, 1, 5)
			o.Close()
			path := filepath.Join(dir, "log")
			fi, _ := os.Stat(path)
			last := int64(headerSize + len("reading 5"))
			if err := os.Truncate(path, fi.Size()-last+int64(cut)); err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			o = open(t, dir, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			defer o.Close()
			ids(t, o, 1, 4)
			if !strings.Contains(logs.String(), "damaged record") {
				t.Errorf("no log line about the torn record: %q", logs.String())
			}
			appendN(t, o, 5, 6) // the lost id is reused: it was never sent
		})
	}
}

func TestCorruptRecord(t *testing.T) {
	dir := t.TempDir()
	o := open(t, dir, Options{})
	appendN(t, o, 1, 3)
	o.Close()
	path := filepath.Join(dir, "log")
	b, _ := os.ReadFile(path)
	second := headerSize + len("reading 1")
	b[second+headerSize] ^= 0xff // flip a payload byte of record 2
	os.WriteFile(path, b, 0o640)
	o = open(t, dir, Options{})
	defer o.Close()
	ids(t, o, 1, 1)
}

func TestBoundDropsOldest(t *testing.T) {
	o := open(t, t.TempDir(), Options{Max: 3 * int64(len("reading 1"))})
	defer o.Close()
	appendN(t, o, 1, 5)
	ids(t, o, 3, 5)
	if st := o.Stats(); st.Dropped != 2 || st.Acked != 2 || st.Pending != 3 {
		t.Fatalf("Stats() = %+v", st)
	}
}

func TestCompaction(t *testing.T) {
	dir := t.TempDir()
	o := open(t, dir, Options{})
	payload := bytes.Repeat([]byte("x"), 1000)
	for range 3000 {
		if _, err := o.Append(payload); err != nil {
			t.Fatal(err)
		}
	}
	o.Ack(2500)
	o.mu.Lock()
	o.compact() // what Run does every SyncEvery
	o.mu.Unlock()
	fi, _ := os.Stat(filepath.Join(dir, "log"))

	if want := int64(500 * (headerSize + 1000)); fi.Size() != want {
		t.Fatalf("log is %d bytes after compaction, want %d", fi.Size(), want)
	}
	o.Append(payload)
	o.Close()
	o = open(t, dir, Options{})
	defer o.Close()
	rs := o.Pending(0, 1<<30)
	if len(rs) != 501 || rs[0].ID != 2501 || rs[500].ID != 3001 {
		t.Fatalf("after compaction and reopen: %d records from %d", len(rs), rs[0].ID)
	}
	// Everything acknowledged: the log is emptied.
	o.Ack(3001)
	if fi, _ := os.Stat(filepath.Join(dir, "log")); fi.Size() != 0 {
		t.Errorf("log is %d bytes after everything was acknowledged", fi.Size())
	}
}

// A disk that fails (full, read-only, pulled) degrades to memory: appends
// still succeed and nothing already queued is lost.
func TestDiskFailureDegrades(t *testing.T) {
	o := open(t, t.TempDir(), Options{})
	defer o.Close()
	appendN(t, o, 1, 2)
	o.mu.Lock()
	o.f.Close() // every further write fails
	o.mu.Unlock()
	appendN(t, o, 3, 4)
	ids(t, o, 1, 4)
	if o.Stats().Degraded == nil {
		t.Fatal("Stats().Degraded is nil after a write failure")
	}
	o.Ack(3)
	ids(t, o, 4, 4)
}

func TestOversize(t *testing.T) {
	o := open(t, t.TempDir(), Options{})
	defer o.Close()
	if _, err := o.Append(make([]byte, MaxRecord+1)); err != ErrTooLarge {
		t.Fatalf("Append(oversize) = %v", err)
	}
}

// FuzzOpen feeds arbitrary log files to Open: it must never fail or panic,
// and what it loads must be contiguous.
func FuzzOpen(f *testing.F) {
	dir := f.TempDir()
	o, _ := Open(dir, Options{})
	o.Append([]byte("a"))
	o.Append([]byte("bc"))
	o.Close()
	seed, _ := os.ReadFile(filepath.Join(dir, "log"))
	f.Add(seed)
	f.Add(seed[:len(seed)-1])
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "log"), data, 0o640)
		o, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		rs := o.Pending(0, 1<<30)
		for i := 1; i < len(rs); i++ {
			if rs[i].ID != rs[i-1].ID+1 {
				t.Fatalf("ids %d then %d", rs[i-1].ID, rs[i].ID)
			}
		}
		if id, err := o.Append([]byte("z")); err != nil || (len(rs) > 0 && id != rs[len(rs)-1].ID+1) {
			t.Fatalf("Append after load = %d, %v", id, err)
		}
	})
}

func BenchmarkAppendAck(b *testing.B) {
	o, _ := Open(b.TempDir(), Options{})
	defer o.Close()
	payload := bytes.Repeat([]byte("x"), 120)
	b.ReportAllocs()
	for b.Loop() {
		id, _ := o.Append(payload)
		o.Ack(id)
	}
}

// Run compacts the log in the background, so Ack never rewrites it.
func TestRunCompacts(t *testing.T) {
	dir := t.TempDir()
	o := open(t, dir, Options{SyncEvery: 10 * time.Millisecond})
	defer o.Close()
	payload := bytes.Repeat([]byte("x"), 1000)
	for range 3000 {
		o.Append(payload)
	}
	o.Ack(2500)
	path := filepath.Join(dir, "log")
	if fi, _ := os.Stat(path); fi.Size() < 3000*1000 {
		t.Fatalf("Ack rewrote the log (%d bytes)", fi.Size())
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); o.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if fi, _ := os.Stat(path); fi.Size() == 500*(headerSize+1000) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run did not compact the log within 5s")
		}
	}
	ids := o.Pending(0, 1<<30)
	if len(ids) != 500 || ids[0].ID != 2501 {
		t.Fatalf("after compaction: %d records from %d", len(ids), ids[0].ID)
	}
}

// A bounce after the acknowledgement takes records back: they are
// pending again with their ids, first in line, and survive a restart.
func TestRewind(t *testing.T) {
	dir := t.TempDir()
	o := open(t, dir, Options{Retain: time.Minute})
	appendN(t, o, 1, 10)
	o.Ack(8)
	if restored, lost := o.Rewind(9); restored != 0 || lost != 0 {
		t.Fatalf("Rewind of a pending record = %d, %d; want nothing done", restored, lost)
	}
	if restored, lost := o.Rewind(5); restored != 4 || lost != 0 {
		t.Fatalf("Rewind(5) = %d restored, %d lost; want 4, 0", restored, lost)
	}
	ids(t, o, 5, 10)
	if st := o.Stats(); st.Acked != 4 || st.Pending != 6 {
		t.Fatalf("after Rewind(5): %+v", st)
	}
	appendN(t, o, 11, 11) // ids go on from where they were
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	o = open(t, dir, Options{Retain: time.Minute})
	defer o.Close()
	ids(t, o, 5, 11)
	// Acknowledged again and taken back again: the same records.
	o.Ack(11)
	if restored, _ := o.Rewind(10); restored != 2 {
		t.Fatalf("second Rewind(10) restored %d, want 2", restored)
	}
	ids(t, o, 10, 11)
}

// Records the outbox no longer holds are reported lost, never invented.
func TestRewindLost(t *testing.T) {
	for _, tt := range []struct {
		name         string
		opts         Options
		ack, rewind  uint64
		restored     int
		lost         int
		pendingFirst int
	}{
		{"nothing retained", Options{}, 6, 3, 0, 4, 7},
		{"retained bytes bound", Options{Retain: time.Minute, RetainBytes: 20}, 6, 3, 2, 2, 5},
		{"rewind before the first id", Options{Retain: time.Minute}, 6, 1, 6, 0, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := open(t, t.TempDir(), tt.opts)
			defer o.Close()
			appendN(t, o, 1, 8)
			o.Ack(tt.ack)
			restored, lost := o.Rewind(tt.rewind)
			if restored != tt.restored || lost != tt.lost {
				t.Fatalf("Rewind(%d) = %d restored, %d lost; want %d, %d", tt.rewind, restored, lost, tt.restored, tt.lost)
			}
			ids(t, o, tt.pendingFirst, 8)
		})
	}
	// Records dropped because the outbox was full leave a hole: only
	// the unbroken run up to the cursor comes back.
	o := open(t, t.TempDir(), Options{Retain: time.Minute, Max: 40})
	defer o.Close()
	appendN(t, o, 1, 3)
	o.Ack(2)
	appendN(t, o, 4, 8) // 10 bytes each: 3 and 4 are dropped as the outbox fills
	o.Ack(7)
	if restored, lost := o.Rewind(1); restored != 3 || lost != 4 {
		t.Fatalf("Rewind across dropped records = %d restored, %d lost; want 3 (5-7), 4 (1-4)", restored, lost)
	}
	ids(t, o, 5, 8)
}

// Retained records are let go after Retain.
func TestRetainExpires(t *testing.T) {
	o := open(t, t.TempDir(), Options{Retain: 30 * time.Millisecond})
	defer o.Close()
	appendN(t, o, 1, 4)
	o.Ack(4)
	time.Sleep(60 * time.Millisecond)
	if restored, lost := o.Rewind(3); restored != 0 || lost != 2 {
		t.Fatalf("Rewind after Retain = %d restored, %d lost; want 0, 2", restored, lost)
	}
}
