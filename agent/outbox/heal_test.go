package outbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stanzad/stanzad/internal/tmpfs"
)

// healed ticks the outbox until it is back on disk, or fails.
func healed(t *testing.T, o *Outbox) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for o.Stats().Degraded != nil {
		if time.Now().After(deadline) {
			t.Fatalf("still in memory only: %v", o.Stats().Degraded)
		}
		time.Sleep(10 * time.Millisecond)
		o.tick(time.Now())
	}
}

// reopened closes o and returns the outbox read back from dir: what a
// restart after a crash would find.
func reopened(t *testing.T, o *Outbox, dir string) *Outbox {
	t.Helper()
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	return open(t, dir, Options{})
}

// fillDisk fills the tmpfs at mnt with a file, then appends after record
// n until o goes to memory. It returns the file and the last id appended.
func fillDisk(t *testing.T, o *Outbox, mnt string, n int) (string, int) {
	t.Helper()
	filler := filepath.Join(mnt, "filler")
	if err := tmpfs.Fill(filler); err != nil {
		t.Fatal(err)
	}
	for o.Stats().Degraded == nil {
		n++
		appendN(t, o, n, n)
		if n > 10000 {
			t.Fatal("appends to a full disk never failed")
		}
	}
	return filler, n
}

// A log that is gone from under the outbox: a deleted state directory
// (writes to the open log would go to a file nobody reads again), or a
// log replaced (a restore from a backup, another process). The outbox
// notices at the next tick, makes the directory again if need be and
// writes what is pending to a log of its own, with the same ids.
func TestHealLostLog(t *testing.T) {
	for _, tt := range []struct {
		name string
		lose func(t *testing.T, o *Outbox, dir string)
		last int // the last id pending
		err  string
	}{
		{"deleted dir", func(t *testing.T, o *Outbox, dir string) {
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			appendN(t, o, 6, 7) // written to the deleted log without an error
		}, 7, "no such file"},
		{"replaced log", func(t *testing.T, o *Outbox, dir string) {
			other := filepath.Join(dir, "other")
			if err := os.WriteFile(other, []byte("not a log"), 0o640); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(other, filepath.Join(dir, "log")); err != nil {
				t.Fatal(err)
			}
		}, 5, "was replaced"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			eachMem(t, func(t *testing.T) {
				dir := filepath.Join(t.TempDir(), "outbox")
				o := open(t, dir, Options{HealFirst: 10 * time.Millisecond})
				appendN(t, o, 1, 5)
				o.Ack(2)
				if err := o.lost(); err != nil {
					t.Fatalf("lost() on the outbox's own log: %v", err)
				}
				tt.lose(t, o, dir)
				if err := o.lost(); err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("lost() = %v, want %q", err, tt.err)
				}
				o.tick(time.Now())
				if st := o.Stats(); st.Degraded != nil {
					t.Fatalf("not healed at once: %v", st.Degraded)
				}
				o = reopened(t, o, dir)
				defer o.Close()
				ids(t, o, 3, tt.last)
			})
		})
	}
}

// lost runs on every tick of every outbox: it must not allocate more
// than the C string of the log's path.
func TestLostAllocations(t *testing.T) {
	o := open(t, t.TempDir(), Options{})
	defer o.Close()
	appendN(t, o, 1, 1)
	if n := testing.AllocsPerRun(100, func() {
		if err := o.lost(); err != nil {
			t.Fatal(err)
		}
	}); n > 1 {
		t.Errorf("lost() allocates %v times per call; want at most 1 (the path as a C string)", n)
	}
}

// A full disk: the outbox keeps readings in memory, tries the disk again
// with backoff, and when space comes back writes them all out, in order,
// with their ids — also when a try fails in between.
func TestHealFullDisk(t *testing.T) {
	eachMem(t, func(t *testing.T) {
		mnt := tmpfs.Mount(t, 64<<10)
		dir := filepath.Join(mnt, "outbox")
		o := open(t, dir, Options{HealFirst: 20 * time.Millisecond})
		appendN(t, o, 1, 10)
		o.Ack(3)
		filler, n := fillDisk(t, o, mnt, 10)
		appendN(t, o, n+1, n+20) // in memory
		n += 20
		time.Sleep(30 * time.Millisecond)
		o.tick(time.Now()) // a try while the disk is still full
		if st := o.Stats(); st.Degraded == nil {
			t.Fatal("healed while the disk is still full")
		}
		if o.healWait <= 20*time.Millisecond {
			t.Errorf("the wait after a failed try is %v; want it to grow", o.healWait)
		}
		os.Remove(filler)
		o.Ack(5)
		healed(t, o)
		appendN(t, o, n+1, n+5) // on disk again
		o = reopened(t, o, dir)
		defer o.Close()
		ids(t, o, 6, n+5)
	})
}

// A filesystem that is read-only when the outbox tries again (the
// kernel remounts one read-only after an I/O error): it stays in memory
// until the filesystem is writable again. (A tmpfs cannot be remounted
// read-only under an open writer, as the kernel does after an error;
// the outbox holds no file open while in memory, so the remount here
// happens after a full disk put it there. A write that fails with EROFS
// takes the same path as one that fails with ENOSPC.)
func TestHealReadOnly(t *testing.T) {
	eachMem(t, func(t *testing.T) {
		mnt := tmpfs.Mount(t, 64<<10)
		dir := filepath.Join(mnt, "outbox")
		o := open(t, dir, Options{HealFirst: 20 * time.Millisecond})
		appendN(t, o, 1, 5)
		filler := filepath.Join(mnt, "filler")
		if err := tmpfs.Fill(filler); err != nil {
			t.Fatal(err)
		}
		n := 5
		for o.Stats().Degraded == nil && n < 10000 {
			n++
			appendN(t, o, n, n)
		}
		os.Remove(filler)
		if out, err := exec.Command("mount", "-o", "remount,ro", mnt).CombinedOutput(); err != nil {
			t.Fatalf("remount ro (the outbox must hold no file open for writing while in memory): %v: %s", err, out)
		}
		time.Sleep(30 * time.Millisecond)
		o.tick(time.Now())
		if err := o.Stats().Degraded; err == nil {
			t.Fatal("healed on a read-only filesystem")
		}
		if out, err := exec.Command("mount", "-o", "remount,rw", mnt).CombinedOutput(); err != nil {
			t.Fatalf("remount rw: %v: %s", err, out)
		}
		healed(t, o)
		o = reopened(t, o, dir)
		defer o.Close()
		ids(t, o, 1, n)
	})
}

// In memory, the outbox is bounded like on disk: oldest dropped, counted.
func TestDegradedBounded(t *testing.T) {
	eachMem(t, func(t *testing.T) {
		o := open(t, t.TempDir(), Options{Max: 100, HealFirst: time.Hour})
		defer o.Close()
		o.mu.Lock()
		o.degrade(errors.New("test: disk gone"))
		o.mu.Unlock()
		appendN(t, o, 1, 50) // "reading NN": 10 bytes each
		st := o.Stats()
		if st.Degraded == nil || st.Bytes > 100 || st.Pending != 10 || st.Dropped != 40 {
			t.Fatalf("degraded after 50 appends of 10 bytes with Max 100: %+v; want 10 pending, 40 dropped", st)
		}
		ids(t, o, 41, 50)
	})
}

// Closing while in memory only (a full disk) tries the disk once more
// before the next try was due: space freed since, the readings are
// written out and a restart finds them; a disk still full is an error
// that says how many readings are lost.
func TestCloseDegraded(t *testing.T) {
	for _, freed := range []bool{true, false} {
		t.Run(map[bool]string{true: "space freed", false: "still full"}[freed], func(t *testing.T) {
			mnt := tmpfs.Mount(t, 64<<10)
			dir := filepath.Join(mnt, "outbox")
			o := open(t, dir, Options{HealFirst: time.Hour})
			appendN(t, o, 1, 4)
			o.Ack(2)
			filler, n := fillDisk(t, o, mnt, 4)
			appendN(t, o, n+1, n+3) // in memory only
			n += 3
			if freed {
				os.Remove(filler)
			}
			err := o.Close()
			if freed {
				if err != nil {
					t.Fatalf("Close after space came back: %v", err)
				}
				o = open(t, dir, Options{})
				defer o.Close()
				ids(t, o, 3, n)
				return
			}
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%d readings", n-2)) {
				t.Errorf("Close on a full disk = %v, want the %d readings lost named", err, n-2)
			}
		})
	}
}

// A directory deleted after everything was acknowledged and the log
// emptied, then an append, then a clean stop before the next tick: the
// stop writes the pending record afresh with the cursor, so the next
// start neither loses it nor hands out its id again.
func TestCloseNoticesDeletedDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "outbox")
	o := open(t, dir, Options{})
	appendN(t, o, 1, 4)
	o.Ack(4)
	o.tick(time.Now()) // the all-acknowledged log is emptied
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	appendN(t, o, 5, 5) // into the deleted log, without an error
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	o = open(t, dir, Options{})
	defer o.Close()
	ids(t, o, 5, 5)
	if id, err := o.Append([]byte("reading 6")); err != nil || id != 6 {
		t.Errorf("next id after the restart = %d, %v; want 6", id, err)
	}
}
