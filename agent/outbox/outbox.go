package outbox

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

const (
	headerSize = 16
	// MaxRecord bounds one payload; larger appends are refused, and a
	// larger length on disk marks a corrupt record.
	MaxRecord = 1 << 20
	// compactAt: the log is rewritten once this many bytes of it are
	// acknowledged records and they are more than half of it.
	compactAt = 1 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrTooLarge is returned for a payload over MaxRecord.
var ErrTooLarge = errors.New("outbox: record too large")

// Options configure an Outbox.
type Options struct {
	// Max bounds the bytes of unacknowledged payloads; past it the oldest
	// records are dropped (counted, logged). Default 16 MiB.
	Max int64
	// SyncEvery is the fsync interval for appends. Default 1 s.
	SyncEvery time.Duration
	Logger    *slog.Logger
	// Retain keeps acknowledged records in memory this long (at most
	// RetainBytes of them, default 128 KiB), so that Rewind can take
	// back an acknowledgement: a message the server accepted and then
	// bounced. Zero keeps none.
	Retain      time.Duration
	RetainBytes int64
	// HealFirst is how long after a disk failure the outbox first tries
	// the disk again (default 10 s); each failed try doubles the wait, up
	// to 5 minutes.
	HealFirst time.Duration
}

// healMax bounds the wait between tries of a failed disk.
const healMax = 5 * time.Minute

// Record is one queued payload.
type Record struct {
	ID      uint64
	Payload []byte
}

// retained is an acknowledged record kept for Rewind.
type retained struct {
	Record
	at time.Time // when it was acknowledged
}

// Outbox is a persistent FIFO. It is safe for concurrent use.
type Outbox struct {
	dir  string
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	f        *os.File // nil in memory-only mode
	ackFile  *os.File
	size     int64 // bytes in the log file
	ackBytes int64 // bytes of acknowledged records at the head of the log
	pending  []Record
	retained []retained // acknowledged records kept for Rewind, oldest first
	retBytes int64      // payload bytes in retained
	bytes    int64      // payload bytes in pending
	next     uint64     // id of the next append
	acked    uint64
	dropped  uint64
	dirty    bool
	degraded error         // why the outbox is memory-only, if it is
	failedAt time.Time     // degraded: since when
	healAt   time.Time     // degraded: when to try the disk again
	healWait time.Duration // degraded: the wait after the next failed try
	closed   bool
}

// Open opens or creates the outbox in dir and loads what is pending.
func Open(dir string, opts Options) (*Outbox, error) {
	if opts.Max <= 0 {
		opts.Max = 16 << 20
	}
	if opts.SyncEvery <= 0 {
		opts.SyncEvery = time.Second
	}
	if opts.RetainBytes <= 0 {
		opts.RetainBytes = 128 << 10
	}
	if opts.HealFirst <= 0 {
		opts.HealFirst = 10 * time.Second
	}
	o := &Outbox{dir: dir, opts: opts, log: opts.Logger, next: 1}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	var err error
	if o.ackFile, err = os.OpenFile(filepath.Join(dir, "acked"), os.O_RDWR|os.O_CREATE, 0o640); err != nil {
		return nil, err
	}
	var b [8]byte
	if n, _ := o.ackFile.ReadAt(b[:], 0); n == 8 {
		o.acked = binary.BigEndian.Uint64(b[:])
		o.next = o.acked + 1
	}
	if o.f, err = os.OpenFile(filepath.Join(dir, "log"), os.O_RDWR|os.O_CREATE, 0o640); err != nil {
		o.ackFile.Close()
		return nil, err
	}
	if err := o.load(); err != nil {
		o.f.Close()
		o.ackFile.Close()
		return nil, err
	}
	return o, nil
}

// load reads the log, keeping records after the ack cursor and cutting a
// torn tail.
func (o *Outbox) load() error {
	r := bufio.NewReader(o.f)
	var off int64
	var hdr [headerSize]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if err != io.EOF {
				o.cut(off, "torn record header")
			}
			break
		}
		n := binary.BigEndian.Uint32(hdr[0:4])
		sum := binary.BigEndian.Uint32(hdr[4:8])
		id := binary.BigEndian.Uint64(hdr[8:16])
		if n > MaxRecord {
			o.cut(off, fmt.Sprintf("record length %d", n))
			break
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(r, payload); err != nil {
			o.cut(off, "torn record")
			break
		}
		if crc32.Update(crc32.Checksum(hdr[8:16], crcTable), crcTable, payload) != sum {
			o.cut(off, "checksum mismatch")
			break
		}
		off += headerSize + int64(n)
		if id <= o.acked {
			o.ackBytes = off
			continue
		}
		if len(o.pending) > 0 && id != o.next {
			o.cut(off-headerSize-int64(n), fmt.Sprintf("id %d where %d was due", id, o.next))
			off -= headerSize + int64(n)
			break
		}
		o.pending = append(o.pending, Record{ID: id, Payload: payload})
		o.bytes += int64(n)
		o.next = id + 1
	}
	o.size = off
	if _, err := o.f.Seek(off, io.SeekStart); err != nil {
		return err
	}
	if len(o.pending) > 0 {
		o.log.Info("outbox loaded", "pending", len(o.pending), "first_id", o.pending[0].ID)
	}
	return nil
}

// cut truncates the log at off after a damaged record. Records after it
// cannot be trusted: the write order means they were never complete.
func (o *Outbox) cut(off int64, why string) {
	fi, _ := o.f.Stat()
	lost := int64(0)
	if fi != nil {
		lost = fi.Size() - off
	}
	o.log.Warn("outbox: damaged record at the end of the log; cutting it off", "reason", why, "offset", off, "bytes_lost", lost)
	if err := o.f.Truncate(off); err != nil {
		o.log.Warn("outbox: cannot truncate log", "err", err)
	}
}

// Append queues payload and returns its id. When the outbox is over its
// bound, the oldest records are dropped first. A disk error degrades the
// outbox to memory; Append itself fails only for oversize payloads or
// after Close.
func (o *Outbox) Append(payload []byte) (uint64, error) {
	if len(payload) > MaxRecord {
		return 0, ErrTooLarge
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return 0, os.ErrClosed
	}
	id := o.next
	o.next++
	// One allocation holds the on-disk record and the pending copy.
	buf := make([]byte, headerSize+len(payload))
	binary.BigEndian.PutUint32(buf[0:4], uint32(len(payload)))
	binary.BigEndian.PutUint64(buf[8:16], id)
	copy(buf[headerSize:], payload)
	binary.BigEndian.PutUint32(buf[4:8], crc32.Checksum(buf[8:], crcTable))
	p := buf[headerSize:]
	o.pending = append(o.pending, Record{ID: id, Payload: p})
	o.bytes += int64(len(p))
	if o.f != nil {
		if _, err := o.f.Write(buf); err != nil {
			o.degrade(err)
		} else {
			o.size += int64(len(buf))
			o.dirty = true
		}
	}
	for o.bytes > o.opts.Max && len(o.pending) > 1 {
		r := o.pending[0]
		o.pending = o.pending[1:]
		o.bytes -= int64(len(r.Payload))
		o.ackBytes += headerSize + int64(len(r.Payload))
		o.dropped++
		o.setAcked(r.ID)
		if o.dropped&(o.dropped-1) == 0 {
			o.log.Warn("outbox full: oldest reading dropped", "id", r.ID, "dropped_total", o.dropped)
		}
	}
	return id, nil
}

// degrade switches to memory-only operation until heal succeeds. o.mu
// is held.
func (o *Outbox) degrade(err error) {
	if o.f == nil {
		return
	}
	o.log.Error("outbox: cannot write to disk; keeping readings in memory only until it works again (they will not survive a restart)",
		"dir", o.dir, "err", err, "retry_in", o.opts.HealFirst)
	o.degraded = err
	o.f.Close()
	o.f = nil
	// The cursor file too: it may be on a filesystem going read-only, or
	// in a deleted directory. Heal writes it afresh.
	o.ackFile.Close()
	o.ackFile = nil
	o.failedAt = time.Now()
	o.healAt, o.healWait = o.failedAt.Add(o.opts.HealFirst), min(2*o.opts.HealFirst, healMax)
}

// heal tries the disk again once its time has come: a fresh log holding
// everything pending, in order and with its ids, and the cursor, both
// synced; then the outbox is on disk again. A failed try leaves it in
// memory and doubles the wait. o.mu is held.
func (o *Outbox) heal(now time.Time) {
	if o.f != nil || o.closed || now.Before(o.healAt) {
		return
	}
	if err := o.reopen(); err != nil {
		o.log.Warn("outbox: disk still not writable; readings stay in memory", "dir", o.dir, "err", err, "retry_in", o.healWait)
		o.healAt, o.healWait = now.Add(o.healWait), min(2*o.healWait, healMax)
		return
	}
	o.log.Info("outbox: disk writable again; queued readings are back on disk", "dir", o.dir, "pending", len(o.pending),
		"failed_for", now.Sub(o.failedAt).Round(time.Second))
	o.degraded = nil
}

// reopen recreates the directory if it is gone and writes the log and the
// cursor afresh. o.mu is held; o.f is nil.
func (o *Outbox) reopen() error {
	if err := os.MkdirAll(o.dir, 0o750); err != nil {
		return err
	}
	// The log first: a crash before the cursor is written leaves a new
	// log of pending records and an older cursor, which load reads right.
	f, size, err := o.writeLog()
	if err != nil {
		return err
	}
	ack, err := os.OpenFile(filepath.Join(o.dir, "acked"), os.O_RDWR|os.O_CREATE, 0o640)
	if err == nil {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], o.acked)
		if _, err = ack.WriteAt(b[:], 0); err == nil {
			err = ack.Sync()
		}
		if err != nil {
			ack.Close()
		}
	}
	if err != nil {
		f.Close()
		return err
	}
	if o.ackFile != nil {
		o.ackFile.Close()
	}
	o.ackFile = ack
	o.f, o.size, o.ackBytes, o.dirty = f, size, 0, false
	return nil
}

// lost reports whether the log on disk is no longer the file the outbox
// writes to: its directory was deleted or replaced, so writes that
// succeed go nowhere anyone will read. o.mu is held; o.f is open.
func (o *Outbox) lost() error {
	fi, err := o.f.Stat()
	if err != nil {
		return err
	}
	onDisk, err := os.Stat(filepath.Join(o.dir, "log"))
	if err != nil {
		return err
	}
	if !os.SameFile(fi, onDisk) {
		return fmt.Errorf("%s was replaced", filepath.Join(o.dir, "log"))
	}
	return nil
}

// Ack marks every record with an id up to id as delivered.
func (o *Outbox) Ack(id uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if id <= o.acked || o.closed {
		return
	}
	n := 0
	now := time.Now()
	for n < len(o.pending) && o.pending[n].ID <= id {
		o.bytes -= int64(len(o.pending[n].Payload))
		o.ackBytes += headerSize + int64(len(o.pending[n].Payload))
		if o.opts.Retain > 0 {
			o.retained = append(o.retained, retained{o.pending[n], now})
			o.retBytes += int64(len(o.pending[n].Payload))
		}
		n++
	}
	o.trimRetained(now)
	clear(o.pending[:n])
	o.pending = o.pending[n:]
	o.setAcked(id)
	if len(o.pending) == 0 {
		o.compact() // cheap: truncates an all-acknowledged log
	}
}

// trimRetained lets go of retained records that are too old or too
// many. o.mu is held.
func (o *Outbox) trimRetained(now time.Time) {
	n := 0
	for n < len(o.retained) && (o.retBytes > o.opts.RetainBytes || now.Sub(o.retained[n].at) > o.opts.Retain) {
		o.retBytes -= int64(len(o.retained[n].Payload))
		n++
	}
	if n > 0 {
		clear(o.retained[:n])
		o.retained = o.retained[n:]
	}
}

// Rewind takes back the acknowledgement of records from id on: they are
// pending again, first in line, with their ids, and on disk again (the
// log is rewritten). It returns how many records were restored, and how
// many acknowledged records from id on it no longer had (too old, or
// dropped because the outbox was full): those are lost. Rewinding to a
// record still pending does nothing.
func (o *Outbox) Rewind(id uint64) (restored, lost int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed || id > o.acked || id == 0 {
		return 0, 0
	}
	o.trimRetained(time.Now())
	i := len(o.retained)
	for i > 0 && o.retained[i-1].ID >= id {
		i--
	}
	// Only an unbroken run up to the cursor can be restored: ids are
	// contiguous in the outbox.
	back := o.retained[i:]
	for j := len(back) - 1; j >= 0; j-- {
		if back[j].ID != o.acked-uint64(len(back)-1-j) {
			back = back[j+1:]
			break
		}
	}
	if len(back) == 0 {
		return 0, int(o.acked - id + 1)
	}
	first := back[0].ID
	lost = int(first - id)
	i = len(o.retained) - len(back)
	restore := make([]Record, 0, len(back)+len(o.pending))
	for _, r := range back {
		restore = append(restore, r.Record)
		o.bytes += int64(len(r.Payload))
		o.retBytes -= int64(len(r.Payload))
	}
	o.pending = append(restore, o.pending...)
	clear(o.retained[i:])
	o.retained = o.retained[:i]
	o.setAcked(first - 1)
	if o.f != nil {
		o.rewrite()
	}
	o.log.Info("outbox: acknowledged records taken back", "from_id", first, "records", len(restore), "lost", lost)
	return len(restore), lost
}

// setAcked persists the ack cursor (in memory only while degraded).
// o.mu is held.
func (o *Outbox) setAcked(id uint64) {
	o.acked = id
	if o.ackFile == nil {
		return
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], id)
	if _, err := o.ackFile.WriteAt(b[:], 0); err != nil && o.f != nil {
		o.degrade(err)
	}
}

// compact empties or rewrites the log once acknowledged records dominate.
// o.mu is held.
func (o *Outbox) compact() {
	if o.f == nil || o.ackBytes < compactAt && (len(o.pending) > 0 || o.ackBytes < compactAt/16) {
		return
	}
	if len(o.pending) == 0 {
		if err := o.f.Truncate(0); err != nil {
			o.degrade(err)
			return
		}
		o.f.Seek(0, io.SeekStart)
		o.size, o.ackBytes = 0, 0
		return
	}
	if o.ackBytes*2 < o.size {
		return
	}
	o.rewrite()
}

// rewrite writes the pending records to a new log that replaces the old
// one atomically. o.mu is held and o.f is open.
func (o *Outbox) rewrite() {
	f, size, err := o.writeLog()
	if err != nil {
		o.degrade(err)
		return
	}
	o.f.Close()
	o.f, o.size, o.ackBytes, o.dirty = f, size, 0, false
}

// writeLog writes the pending records to log.tmp, syncs it and renames it
// to log, and returns it open at its end. o.mu is held.
func (o *Outbox) writeLog() (*os.File, int64, error) {
	tmp := filepath.Join(o.dir, "log.tmp")
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return nil, 0, err
	}
	w := bufio.NewWriter(f)
	var size int64
	var hdr [headerSize]byte
	for _, r := range o.pending {
		binary.BigEndian.PutUint32(hdr[0:4], uint32(len(r.Payload)))
		binary.BigEndian.PutUint64(hdr[8:16], r.ID)
		binary.BigEndian.PutUint32(hdr[4:8], crc32.Update(crc32.Checksum(hdr[8:16], crcTable), crcTable, r.Payload))
		w.Write(hdr[:])
		w.Write(r.Payload)
		size += headerSize + int64(len(r.Payload))
	}
	err = errors.Join(w.Flush(), f.Sync())
	if err == nil {
		err = os.Rename(tmp, filepath.Join(o.dir, "log"))
	}
	if err == nil {
		_, err = f.Seek(size, io.SeekStart)
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, 0, err
	}
	return f, size, nil
}

// SetMax changes the bytes the outbox may hold before it drops the
// oldest records (a reload that changes outbox_max or the number of
// sinks sharing it). Nothing is dropped until the next Append.
func (o *Outbox) SetMax(n int64) {
	if n <= 0 {
		return
	}
	o.mu.Lock()
	o.opts.Max = n
	o.mu.Unlock()
}

// Pending returns up to max pending records with ids greater than after,
// oldest first. The payloads must not be modified.
func (o *Outbox) Pending(after uint64, max int) []Record {
	o.mu.Lock()
	defer o.mu.Unlock()
	i := 0
	if len(o.pending) > 0 && after >= o.pending[0].ID {
		i = int(after - o.pending[0].ID + 1) // ids are contiguous
	}
	if i >= len(o.pending) {
		return nil
	}
	end := min(len(o.pending), i+max)
	return append([]Record(nil), o.pending[i:end]...)
}

// Stats describe the outbox for status reports.
type Stats struct {
	Pending  int    // records not yet acknowledged
	Bytes    int64  // their payload bytes
	Dropped  uint64 // records dropped because the outbox was full
	Acked    uint64 // highest acknowledged id
	Degraded error  // non-nil when the outbox runs in memory only
}

// Stats returns the current figures.
func (o *Outbox) Stats() Stats {
	o.mu.Lock()
	defer o.mu.Unlock()
	return Stats{Pending: len(o.pending), Bytes: o.bytes, Dropped: o.dropped, Acked: o.acked, Degraded: o.degraded}
}

// Run fsyncs appended records every SyncEvery until ctx is done. Without
// Run, records reach the disk only through the page cache and Close.
func (o *Outbox) Run(ctx context.Context) {
	t := time.NewTicker(o.opts.SyncEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			o.tick(now)
		}
	}
}

// tick is Run's work every SyncEvery: on disk, an all-acknowledged log is
// emptied, appended records are synced and the log compacted, and a log
// whose directory was deleted is noticed; in memory, the disk is tried
// again when its time has come. Rewriting the log happens here, not in
// Ack: Ack runs on the XMPP session's reader and must stay quick.
func (o *Outbox) tick(now time.Time) {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return
	}
	if o.f == nil {
		o.heal(now)
		o.mu.Unlock()
		return
	}
	if err := o.lost(); err != nil {
		o.degrade(err)
		o.healAt = now
		o.heal(now) // at once: a deleted directory is simply made again
		o.mu.Unlock()
		return
	}
	if len(o.pending) == 0 && o.size > 0 {
		// Everything written since the last tick is acknowledged: drop
		// it before it is synced. Truncating cancels the page cache's
		// unwritten pages, so a board that is online writes almost
		// nothing to its SD card.
		if err := o.f.Truncate(0); err != nil {
			o.degrade(err)
			o.mu.Unlock()
			return
		}
		o.f.Seek(0, io.SeekStart)
		o.size, o.ackBytes, o.dirty = 0, 0, false
	}
	o.mu.Unlock()
	o.Sync()
	o.mu.Lock()
	if !o.closed {
		o.compact()
	}
	o.mu.Unlock()
}

// Sync flushes appended records to stable storage. A failed sync means
// the kernel may have lost them (ENOSPC, EIO): the outbox goes to memory
// and writes them out afresh when the disk works again.
func (o *Outbox) Sync() error {
	o.mu.Lock()
	f, dirty := o.f, o.dirty
	o.dirty = false
	o.mu.Unlock()
	if f == nil || !dirty {
		return nil
	}
	// fsync outside the lock: appends continue meanwhile. A concurrent
	// compaction may close f; the error is then harmless.
	if err := f.Sync(); err != nil && !errors.Is(err, os.ErrClosed) {
		o.mu.Lock()
		if o.f == f {
			o.degrade(err)
		}
		o.mu.Unlock()
		return err
	}
	return nil
}

// Close syncs and closes the outbox.
func (o *Outbox) Close() error {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return nil
	}
	o.closed = true
	defer o.mu.Unlock()
	var errs []error
	if o.f != nil {
		errs = append(errs, o.f.Sync(), o.f.Close())
	}
	if o.ackFile != nil {
		errs = append(errs, o.ackFile.Sync(), o.ackFile.Close())
	}
	return errors.Join(errs...)
}
