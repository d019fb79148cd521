package outbox

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// testMemMax is the MemMax that open gives an outbox whose options do
// not set one; eachMem runs a test with it at the default and at 1 byte.
var testMemMax int64

// eachMem runs f twice: with pending payloads held in memory (the
// default MemMax, more than these tests queue) and with every record but
// the newest read back from the log (MemMax 1 byte).
func eachMem(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	defer func() { testMemMax = 0 }()
	for _, m := range []struct {
		name string
		max  int64
	}{{"memory", 0}, {"disk", 1}} {
		testMemMax = m.max
		t.Run(m.name, f)
	}
}

func open(t *testing.T, dir string, opts Options) *Outbox {
	t.Helper()
	if opts.MemMax == 0 {
		opts.MemMax = testMemMax
	}
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
	eachMem(t, func(t *testing.T) {
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
	})
}

// A crash during a write leaves a torn record at the end: Open keeps
// everything before it, logs the loss and carries on.
func TestTornTail(t *testing.T) {
	eachMem(t, func(t *testing.T) {
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
	})
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
	eachMem(t, func(t *testing.T) {
		o := open(t, t.TempDir(), Options{Max: 3 * int64(len("reading 1"))})
		defer o.Close()
		appendN(t, o, 1, 5)
		ids(t, o, 3, 5)
		if st := o.Stats(); st.Dropped != 2 || st.Acked != 2 || st.Pending != 3 {
			t.Fatalf("Stats() = %+v", st)
		}
	})
}

func TestCompaction(t *testing.T) {
	eachMem(t, func(t *testing.T) {
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
	})
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
	eachMem(t, func(t *testing.T) {
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
	})
}

// A bounce after the acknowledgement takes records back: they are
// pending again with their ids, first in line, and survive a restart.
func TestRewind(t *testing.T) {
	eachMem(t, func(t *testing.T) {
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
	})
}

// Records the outbox no longer holds are reported lost, never invented.
func TestRewindLost(t *testing.T) {
	eachMem(t, func(t *testing.T) {
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
	})
}

// Retained records are let go after Retain.
func TestRetainExpires(t *testing.T) {
	eachMem(t, func(t *testing.T) {
		o := open(t, t.TempDir(), Options{Retain: 30 * time.Millisecond})
		defer o.Close()
		appendN(t, o, 1, 4)
		o.Ack(4)
		time.Sleep(60 * time.Millisecond)
		if restored, lost := o.Rewind(3); restored != 0 || lost != 2 {
			t.Fatalf("Rewind after Retain = %d restored, %d lost; want 0, 2", restored, lost)
		}
	})
}

// A queue built up offline stays on disk: memory holds at most MemMax
// of it (plus the index), however long the outage, and every record is
// read back intact, in order, as it is sent and acknowledged.
func TestOfflineQueueOnDisk(t *testing.T) {
	dir := t.TempDir()
	const memMax = 4 << 10
	o := open(t, dir, Options{MemMax: memMax, Max: 64 << 20})
	defer o.Close()
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const n = 100_000 // "reading N": ~1.1 MB of payload, 2.7 MB of log
	appendN(t, o, 1, n)
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	st := o.Stats()
	if st.Pending != n || st.InMemory > memMax {
		t.Fatalf("after %d appends: %+v; want all pending, at most %d bytes in memory", n, st, memMax)
	}
	// Before, the outbox held every payload in memory: 100,000 slices
	// of 16+~11 bytes and their headers, over 5 MB. Now the heap holds
	// the index (a mark per 16 KiB of log) and MemMax.
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 1<<20 {
		t.Errorf("live heap grew %d bytes queueing %d records; want it bounded by MemMax", grew, n)
	}
	if o.marks == nil || len(o.marks) > 300 {
		t.Errorf("%d marks for a 2.7 MB disk run", len(o.marks))
	}
	// A sink's loop: send a window, the server acknowledges it.
	var cursor uint64
	for cursor < n {
		rs := o.Pending(cursor, 250)
		if len(rs) == 0 {
			t.Fatalf("nothing pending after %d of %d", cursor, n)
		}
		for i, r := range rs {
			want := cursor + uint64(i) + 1
			if r.ID != want || string(r.Payload) != fmt.Sprintf("reading %d", want) {
				t.Fatalf("record %d = %d %q", want, r.ID, r.Payload)
			}
		}
		cursor = rs[len(rs)-1].ID
		o.Ack(cursor)
		if st := o.Stats(); st.Pending != n-int(cursor) || st.Acked != cursor {
			t.Fatalf("after acking %d: %+v", cursor, st)
		}
	}
	if st := o.Stats(); st.Bytes != 0 || st.InMemory != 0 || st.Dropped != 0 {
		t.Fatalf("all acknowledged: %+v", st)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "log")); fi.Size() != 0 {
		t.Errorf("log is %d bytes after everything was acknowledged", fi.Size())
	}
}

// Pending reads records from the middle of the disk run (a sink that
// resumes after the ones it has in flight), through the marks.
func TestPendingFromDisk(t *testing.T) {
	o := open(t, t.TempDir(), Options{MemMax: 1})
	defer o.Close()
	const n = 5000
	appendN(t, o, 1, n)
	o.Ack(1234)
	for _, after := range []uint64{0, 1000, 1234, 1235, 2047, 4000, n - 2, n - 1, n} {
		rs := o.Pending(after, 3)
		first := max(after, 1234) + 1
		want := min(3, n-int(first)+1)
		if len(rs) != want {
			t.Fatalf("Pending(%d, 3) = %d records, want %d", after, len(rs), want)
		}
		for i, r := range rs {
			if id := first + uint64(i); r.ID != id || string(r.Payload) != fmt.Sprintf("reading %d", id) {
				t.Fatalf("Pending(%d, 3)[%d] = %d %q", after, i, r.ID, r.Payload)
			}
		}
	}
}

// A record on disk that no longer reads back right (a failing card, a
// log changed under the agent): the disk run is reported lost, counted
// as dropped and logged; the outbox goes on in memory with the newer
// records, and their ids stay contiguous.
func TestDiskRunDamaged(t *testing.T) {
	dir := t.TempDir()
	var logs bytes.Buffer
	o := open(t, dir, Options{MemMax: 40, Logger: slog.New(slog.NewTextHandler(&logs, nil)), HealFirst: time.Hour})
	defer o.Close()
	appendN(t, o, 1, 20)
	st := o.Stats()
	inMem := int(st.InMemory) / len("reading 20")
	// Flip a payload byte of record 2 in the page cache, as another
	// writer (or a bad block) would.
	f, err := os.OpenFile(filepath.Join(dir, "log"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	off := int64(headerSize + len("reading 1") + headerSize)
	if _, err := f.WriteAt([]byte{'X'}, off); err != nil {
		t.Fatal(err)
	}
	f.Close()
	rs := o.Pending(0, 1<<30)
	if len(rs) == 0 || rs[0].ID != 1 {
		t.Fatalf("Pending after damage: %d records from %v", len(rs), rs)
	}
	st = o.Stats()
	if st.Degraded == nil || st.Dropped != uint64(20-inMem) || st.Pending != inMem {
		t.Fatalf("after a damaged record: %+v; want %d dropped, %d pending, degraded", st, 20-inMem, inMem)
	}
	if !strings.Contains(logs.String(), "cannot be read back") {
		t.Errorf("no log line about the lost records: %s", logs.String())
	}
	ids(t, o, 20-inMem+1, 20)
	appendN(t, o, 21, 22)
	ids(t, o, 20-inMem+1, 22)
}

// payloadOf is the payload FuzzOps appends as record id: its length
// varies with the id, so record sizes differ.
func payloadOf(id uint64) []byte {
	return fmt.Appendf(nil, "r%d%s", id, strings.Repeat("-", int(id*7%53)))
}

// FuzzOps runs random sequences of appends, acknowledgements, sends,
// rewinds, compactions and restarts with a small MemMax, and checks
// after each step what must always hold: the pending records are
// contiguous from the cursor, each with its own payload, their count
// and bytes are what Stats says, memory holds at most MemMax of them,
// and a restart gives back the same queue.
func FuzzOps(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 1, 2, 3, 4, 5, 0, 0, 6, 7})
	f.Add([]byte{0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 3, 3, 0, 2, 200, 4, 2, 5, 6, 0, 2, 9})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 128, 3, 4, 0, 0, 5, 250, 6, 3, 0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 400 {
			ops = ops[:400]
		}
		dir := t.TempDir()
		opts := Options{MemMax: 150, Max: 2000, Retain: time.Hour, RetainBytes: 300}
		if len(ops) > 0 && ops[0]&0x80 != 0 {
			opts.Retain = 0 // pubsub and MQTT sinks: acks read headers only
		}
		o, err := Open(dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { o.Close() }()
		check := func(step int) {
			t.Helper()
			st := o.Stats()
			rs := o.Pending(0, 1<<30)
			if len(rs) != st.Pending {
				t.Fatalf("step %d: Pending returned %d, Stats %+v", step, len(rs), st)
			}
			var bytes int64
			for i, r := range rs {
				if r.ID != st.Acked+1+uint64(i) || string(r.Payload) != string(payloadOf(r.ID)) {
					t.Fatalf("step %d: pending[%d] = %d %q after acked %d", step, i, r.ID, r.Payload, st.Acked)
				}
				bytes += int64(len(r.Payload))
			}
			if bytes != st.Bytes || st.Bytes > opts.Max && st.Pending > 1 {
				t.Fatalf("step %d: payload bytes %d, Stats %+v", step, bytes, st)
			}
			if st.Degraded == nil && st.InMemory > opts.MemMax+64 {
				t.Fatalf("step %d: %d bytes in memory, MemMax %d", step, st.InMemory, opts.MemMax)
			}
		}
		var cursor uint64
		for i := 0; i < len(ops); i++ {
			arg := func() int {
				if i+1 < len(ops) {
					i++
					return int(ops[i])
				}
				return 0
			}
			st := o.Stats()
			switch ops[i] % 7 {
			case 0, 1:
				id, err := o.Append(payloadOf(st.Acked + uint64(st.Pending) + 1))
				if err != nil || id != st.Acked+uint64(st.Pending)+1 {
					t.Fatalf("Append = %d, %v; stats %+v", id, err, st)
				}
			case 2: // the server acknowledges some
				o.Ack(st.Acked + uint64(arg()%(st.Pending+1)))
			case 3: // a sink sends a window
				if cursor < st.Acked {
					cursor = st.Acked
				}
				rs := o.Pending(cursor, 1+arg()%20)
				for j, r := range rs {
					if r.ID != cursor+1+uint64(j) || string(r.Payload) != string(payloadOf(r.ID)) {
						t.Fatalf("Pending(%d)[%d] = %d %q", cursor, j, r.ID, r.Payload)
					}
				}
				if len(rs) > 0 {
					cursor = rs[len(rs)-1].ID
				}
			case 4: // a bounce
				back := uint64(arg() % 8)
				if st.Acked > back {
					restored, lost := o.Rewind(st.Acked - back)
					if restored+lost != int(back)+1 {
						t.Fatalf("Rewind(%d) = %d + %d", st.Acked-back, restored, lost)
					}
					cursor = 0
				}
			case 5:
				o.mu.Lock()
				o.compact()
				o.mu.Unlock()
				o.tick(time.Now())
			case 6: // a restart
				before := o.Pending(0, 1<<30)
				if err := o.Close(); err != nil {
					t.Fatal(err)
				}
				if o, err = Open(dir, opts); err != nil {
					t.Fatal(err)
				}
				after := o.Pending(0, 1<<30)
				if len(after) != len(before) || len(after) > 0 && after[0].ID != before[0].ID {
					t.Fatalf("restart: %d records from %v, before %d", len(after), after, len(before))
				}
				cursor = 0
			}
			check(i)
		}
	})
}

// The boot id is read and hashed the same way each time: a start in the
// same boot must not count as after an unclean reboot.
func TestBootID(t *testing.T) {
	if _, err := os.Stat("/proc/sys/kernel/random/boot_id"); err != nil {
		t.Skip("no boot id here")
	}
	a, b := bootID(), bootID()
	if a == 0 || a != b {
		t.Fatalf("bootID() = %#x, then %#x; want one non-zero value", a, b)
	}
}

// Ids are never handed out twice, whatever a stop leaves on disk: after
// a process crash (the same boot) the cursor and log in the page cache
// give the next id exactly; after the machine went down uncleanly (a
// power loss: another boot, a cursor older than what was handed out, the
// log emptied) ids go on after the reservation — a gap, never a repeat;
// after a clean stop, exactly, in any boot.
func TestIDsNeverReused(t *testing.T) {
	realBoot := bootID
	defer func() { bootID = realBoot }()
	otherBoot := func() uint64 { return 12345 }

	crashed := func(t *testing.T) (string, *Outbox) {
		dir := t.TempDir()
		o := open(t, dir, Options{})
		appendN(t, o, 1, 5)
		o.Ack(5)
		o.tick(time.Now()) // everything acknowledged: the log is emptied
		return dir, o      // not closed: a crash
	}
	next := func(t *testing.T, dir string) uint64 {
		o := open(t, dir, Options{})
		defer o.Close()
		id, err := o.Append([]byte("after"))
		if err != nil {
			t.Fatal(err)
		}
		return id
	}

	t.Run("process crash", func(t *testing.T) {
		dir, _ := crashed(t)
		if id := next(t, dir); id != 6 {
			t.Errorf("next id after a process crash = %d, want 6", id)
		}
	})
	t.Run("power loss", func(t *testing.T) {
		dir, _ := crashed(t)
		// The cursor's last writes never reached the disk.
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], 2)
		f, err := os.OpenFile(filepath.Join(dir, "acked"), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteAt(b[:], 0)
		f.Close()
		bootID = otherBoot
		defer func() { bootID = realBoot }()
		if id := next(t, dir); id <= 5 {
			t.Errorf("next id after a power loss = %d: ids 3..5 handed out again", id)
		}
	})
	t.Run("cursor file of before the reservation", func(t *testing.T) {
		dir, o := crashed(t)
		o.Close()
		if err := os.Truncate(filepath.Join(dir, "acked"), 8); err != nil {
			t.Fatal(err)
		}
		bootID = otherBoot
		defer func() { bootID = realBoot }()
		if id := next(t, dir); id != 6 {
			t.Errorf("next id from an 8-byte cursor file = %d, want 6", id)
		}
	})
	t.Run("boot id unreadable", func(t *testing.T) {
		// Every start then counts as after an unclean restart: a gap
		// after a process crash, never a repeat.
		bootID = func() uint64 { return 0 }
		defer func() { bootID = realBoot }()
		dir, _ := crashed(t)
		if id := next(t, dir); id <= 5 {
			t.Errorf("next id without a boot id = %d: handed out again", id)
		}
	})
	t.Run("clean stop", func(t *testing.T) {
		dir, o := crashed(t)
		if err := o.Close(); err != nil {
			t.Fatal(err)
		}
		bootID = otherBoot
		defer func() { bootID = realBoot }()
		if id := next(t, dir); id != 6 {
			t.Errorf("next id after a clean stop and a reboot = %d, want 6", id)
		}
	})
}

// The tick keeps the reservation of ids ahead of appends, so that an
// append syncs the cursor file only when a burst outruns it.
func TestReservationToppedUp(t *testing.T) {
	o := open(t, t.TempDir(), Options{})
	defer o.Close()
	half := reserveIDs/2 + 1
	appendN(t, o, 1, half)
	if o.issued != reserveIDs {
		t.Fatalf("reservation after the first append: %d, want %d", o.issued, reserveIDs)
	}
	o.tick(time.Now())
	want := uint64(half + reserveIDs)
	if o.issued != want {
		t.Errorf("reservation after a tick: %d, want %d", o.issued, want)
	}
	appendN(t, o, half+1, half+10)
	o.tick(time.Now())
	if o.issued != want {
		t.Errorf("a tick with more than half the reservation left moved it to %d", o.issued)
	}
}
