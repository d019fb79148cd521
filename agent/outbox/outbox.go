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
	"math"
	"os"
	"path/filepath"
	"sync"
	"syscall"
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
	// markEvery is the spacing of the index into the records held on
	// disk only: finding one reads at most this much of the log.
	markEvery = 16 << 10
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrTooLarge is returned for a payload over MaxRecord.
var ErrTooLarge = errors.New("outbox: record too large")

// Options configure an Outbox.
type Options struct {
	// Max bounds the bytes of unacknowledged payloads; past it the oldest
	// records are dropped (counted, logged). Default 16 MiB.
	Max int64
	// MemMax bounds the bytes of pending payloads also held in memory,
	// newest first (default 64 KiB). Older pending records are read
	// back from the log when they are sent, so memory does not grow
	// with a queue built up offline. In memory-only mode (a failed
	// disk) every pending record is in memory, bounded by Max.
	MemMax int64
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

// mark locates a record of the disk run in the log.
type mark struct {
	id  uint64
	off int64 // offset of its header
}

// Outbox is a persistent FIFO. It is safe for concurrent use.
//
// The pending records, ids acked+1 to next-1, are in two runs: the
// oldest on disk only (the disk run), the newest also in memory (mem).
// While the log is open it holds, in order, the acknowledged records
// (ackBytes), the disk run (up to diskEnd), and the records of mem
// (up to size). In memory-only mode the disk run is empty.
type Outbox struct {
	dir     string
	logPath string // dir/log
	opts    Options
	log     *slog.Logger

	mu       sync.Mutex
	f        *os.File // nil in memory-only mode
	ackFile  *os.File
	size     int64  // bytes in the log file
	ackBytes int64  // bytes of acknowledged records at the head of the log
	diskN    int    // records in the disk run
	diskEnd  int64  // offset after the disk run
	marks    []mark // the disk run's first record, then one every markEvery bytes
	mem      []Record
	memBytes int64      // payload bytes in mem
	retained []retained // acknowledged records kept for Rewind, oldest first
	retBytes int64      // payload bytes in retained
	bytes    int64      // payload bytes pending
	next     uint64     // id of the next append
	issued   uint64     // ids up to this may be handed out: the reservation on disk
	boot     uint64     // bootID at Open
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
	if opts.MemMax <= 0 {
		opts.MemMax = 64 << 10
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
	o := &Outbox{dir: dir, logPath: filepath.Join(dir, "log"), opts: opts, log: opts.Logger, next: 1, boot: bootID()}
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
	var b [cursorSize]byte
	n, _ := o.ackFile.ReadAt(b[:], 0)
	if n >= 8 {
		o.acked = binary.BigEndian.Uint64(b[:8])
		o.next = o.acked + 1
	}
	if o.f, err = os.OpenFile(o.logPath, os.O_RDWR|os.O_CREATE, 0o640); err != nil {
		o.ackFile.Close()
		return nil, err
	}
	if err := o.load(); err != nil {
		o.f.Close()
		o.ackFile.Close()
		return nil, err
	}
	if n == cursorSize {
		o.issued = binary.BigEndian.Uint64(b[8:16])
		if o.issued >= o.next && (o.boot == 0 || binary.BigEndian.Uint64(b[16:]) != o.boot) {
			// A restart of the machine that the last stop did not see
			// through (a power loss): the cursor and a truncated log
			// may be older than what was handed out. Ids go on after
			// the reservation; never one twice (decisions §4).
			o.log.Warn("outbox: the machine restarted without a clean stop; ids go on after those reserved, a receiver may see a gap",
				"dir", dir, "next_id", o.issued+1)
			o.next = o.issued + 1
		}
	}
	o.issued = o.next - 1
	return o, nil
}

// The cursor file, "acked": the ack cursor, then the reservation of ids
// and the boot it was made in. Ids up to the reservation may have been
// handed out; it is synced before an id past it is. After a process
// crash the cursor and the log in the page cache tell the next id
// exactly; after the machine went down uncleanly (another boot) they may
// be older than what receivers got, and ids go on after the reservation.
const (
	cursorSize = 8 + 8 + 8
	reserveIDs = 1024 // ids per reservation: a cursor sync per 512 to 1024 appends
)

// bootID tells this boot from others: a hash of the kernel's boot id
// (64-bit FNV-1a), zero if it cannot be read (every start then counts as
// after an unclean restart). A variable for tests.
//
// Not CRC-32 IEEE, as it was: on boards without CRC instructions (and on
// amd64) its first use builds an 8 KiB table, kept for the life of the
// process, in a size class nothing else uses. A cursor written with the
// old hash reads as another boot once: ids go on after the reservation.
var bootID = func() uint64 {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil || len(b) < 32 {
		return 0
	}
	h := uint64(14695981039346656037)
	for _, c := range b {
		h = (h ^ uint64(c)) * 1099511628211
	}
	return max(h, 1)
}

// reserve makes the reservation cover id before it is handed out:
// written and synced. The tick keeps it ahead (topUp), so this syncs on
// an append only when a burst outruns it. o.mu is held; on failure the
// outbox degrades.
func (o *Outbox) reserve(id uint64) {
	if id <= o.issued || o.ackFile == nil {
		return
	}
	o.issued = reserveFrom(id)
	if err := o.writeReservation(o.ackFile, o.issued, true); err != nil && o.f != nil {
		o.degrade(err)
	}
}

// reserveFrom is the reservation that covers reserveIDs ids from id,
// all the rest near 2^64 (a log's ids can be anything).
func reserveFrom(id uint64) uint64 {
	if r := id + reserveIDs - 1; r >= id {
		return r
	}
	return math.MaxUint64
}

// topUp moves the reservation ahead once half of it is handed out, with
// the sync outside the lock: appends at up to reserveIDs/2 a tick never
// wait for the disk.
func (o *Outbox) topUp() {
	o.mu.Lock()
	f, want := o.ackFile, reserveFrom(o.next)
	if f == nil || o.closed || o.issued >= o.next && o.issued-o.next >= reserveIDs/2 {
		o.mu.Unlock()
		return
	}
	err := o.writeReservation(f, want, false)
	o.mu.Unlock()
	if err == nil {
		err = f.Sync()
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case o.ackFile != f || o.closed:
	case err != nil:
		o.degrade(err)
	default:
		o.issued = max(o.issued, want)
	}
}

// writeReservation writes the reservation issued and this boot's id to
// the cursor file f, synced if asked.
func (o *Outbox) writeReservation(f *os.File, issued uint64, sync bool) error {
	var b [cursorSize - 8]byte
	binary.BigEndian.PutUint64(b[:8], issued)
	binary.BigEndian.PutUint64(b[8:], o.boot)
	_, err := f.WriteAt(b[:], 8)
	if err == nil && sync {
		err = f.Sync()
	}
	return err
}

// load reads the log, cutting a torn tail. The records after the ack
// cursor become the disk run: their payloads stay on disk.
func (o *Outbox) load() error {
	r := bufio.NewReader(o.f)
	var off int64
	var hdr [headerSize]byte
	var payload []byte
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
		if cap(payload) < int(n) {
			payload = make([]byte, n)
		}
		payload = payload[:n]
		if _, err := io.ReadFull(r, payload); err != nil {
			o.cut(off, "torn record")
			break
		}
		if crc32.Update(crc32.Checksum(hdr[8:16], crcTable), crcTable, payload) != sum {
			o.cut(off, "checksum mismatch")
			break
		}
		if o.diskN == 0 && id <= o.acked {
			off += headerSize + int64(n)
			o.ackBytes = off
			continue
		}
		if o.diskN > 0 && id != o.next {
			o.cut(off, fmt.Sprintf("id %d where %d was due", id, o.next))
			break
		}
		if o.diskN == 0 {
			// A cursor behind the log's first pending record: a crash
			// while the log was written afresh, before the cursor was.
			o.acked = id - 1
		}
		o.addDisk(id, off, int64(n))
		off += headerSize + int64(n)
		o.next = id + 1
	}
	o.size = off
	if _, err := o.f.Seek(off, io.SeekStart); err != nil {
		return err
	}
	if o.diskN > 0 {
		o.log.Info("outbox loaded", "pending", o.diskN, "first_id", o.marks[0].id)
	}
	return nil
}

// memOff is the offset in the log of the first record in mem. o.mu is
// held; o.f is open.
func (o *Outbox) memOff() int64 {
	if o.diskN > 0 {
		return o.diskEnd
	}
	return o.ackBytes
}

// addDisk appends the record id, at off with n payload bytes, to the
// disk run. o.mu is held (or the outbox is being opened).
func (o *Outbox) addDisk(id uint64, off, n int64) {
	if o.diskN == 0 {
		o.marks = append(o.marks[:0], mark{id, off})
	} else if off-o.marks[len(o.marks)-1].off >= markEvery {
		o.marks = append(o.marks, mark{id, off})
	}
	o.diskN++
	o.diskEnd = off + headerSize + n
	o.bytes += n
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

// pendingN is the number of pending records. o.mu is held.
func (o *Outbox) pendingN() int { return o.diskN + len(o.mem) }

// firstID is the id of the oldest pending record, if there is one.
func (o *Outbox) firstID() uint64 { return o.acked + 1 }

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
	o.reserve(id)
	o.next++
	// One allocation holds the on-disk record and the pending copy.
	buf := make([]byte, headerSize+len(payload))
	putHeader(buf, id, payload)
	copy(buf[headerSize:], payload)
	p := buf[headerSize:]
	o.mem = append(o.mem, Record{ID: id, Payload: p})
	o.memBytes += int64(len(p))
	o.bytes += int64(len(p))
	if o.f != nil {
		if _, err := o.f.Write(buf); err != nil {
			o.degrade(err)
		} else {
			o.size += int64(len(buf))
			o.dirty = true
		}
	}
	for o.bytes > o.opts.Max && o.pendingN() > 1 {
		o.dropOldest()
	}
	o.spill()
	return id, nil
}

// putHeader fills the header of the record id with payload into
// hdr[:headerSize].
func putHeader(hdr []byte, id uint64, payload []byte) {
	binary.BigEndian.PutUint32(hdr[0:4], uint32(len(payload)))
	binary.BigEndian.PutUint64(hdr[8:16], id)
	binary.BigEndian.PutUint32(hdr[4:8], crc32.Update(crc32.Checksum(hdr[8:16], crcTable), crcTable, payload))
}

// dropOldest drops the oldest pending record because the outbox is
// full. o.mu is held; something is pending.
func (o *Outbox) dropOldest() {
	id := o.firstID()
	if o.diskN > 0 {
		// Only its length is needed: the header says.
		var hdr [headerSize]byte
		if _, err := o.f.ReadAt(hdr[:], o.marks[0].off); err != nil || binary.BigEndian.Uint64(hdr[8:16]) != id {
			o.loseDiskRun(fmt.Errorf("reading record %d: %w", id, errOr(err, "wrong id")))
			return
		}
		n := int64(binary.BigEndian.Uint32(hdr[0:4]))
		o.bytes -= n
		o.ackBytes += headerSize + n
		o.advanceDisk(id+1, o.marks[0].off+headerSize+n)
	} else {
		r := o.mem[0]
		o.mem[0] = Record{}
		o.mem = o.mem[1:]
		o.memBytes -= int64(len(r.Payload))
		o.bytes -= int64(len(r.Payload))
		o.ackBytes += headerSize + int64(len(r.Payload))
	}
	o.dropped++
	o.setAcked(id)
	if o.dropped&(o.dropped-1) == 0 {
		o.log.Warn("outbox full: oldest reading dropped", "id", id, "dropped_total", o.dropped)
	}
}

// errOr is err, or an error saying what when err is nil.
func errOr(err error, what string) error {
	if err != nil {
		return err
	}
	return errors.New(what)
}

// advanceDisk removes the disk run's records before id, which starts
// at off. o.mu is held.
func (o *Outbox) advanceDisk(id uint64, off int64) {
	o.diskN -= int(id - o.marks[0].id)
	if o.diskN <= 0 {
		o.diskN, o.marks = 0, o.marks[:0]
		return
	}
	i := 0
	for i+1 < len(o.marks) && o.marks[i+1].id <= id {
		i++
	}
	o.marks = append(o.marks[:0], o.marks[i:]...)
	o.marks[0] = mark{id, off}
}

// spill lets go of the memory copies of the oldest records while mem
// holds more than MemMax: they join the disk run. o.mu is held.
func (o *Outbox) spill() {
	if o.f == nil {
		return
	}
	n := 0
	for n < len(o.mem)-1 && o.memBytes > o.opts.MemMax {
		r := o.mem[n]
		o.addDisk(r.ID, o.memOff(), int64(len(r.Payload)))
		o.bytes -= int64(len(r.Payload)) // addDisk counted it again
		o.memBytes -= int64(len(r.Payload))
		n++
	}
	if n > 0 {
		clear(o.mem[:n])
		o.mem = o.mem[n:]
	}
}

// scan reads the disk run's records from the one with id from on, in
// order, checking each, and calls fn with each id, its offset and its
// payload (valid only during the call) until fn returns false. It
// returns the id and offset of the record after the last one passed
// to fn. o.mu is held; the disk run holds from.
func (o *Outbox) scan(from uint64, fn func(id uint64, off int64, payload []byte) bool) (uint64, int64, error) {
	i := len(o.marks) - 1
	for o.marks[i].id > from {
		i--
	}
	id, off := o.marks[i].id, o.marks[i].off
	r := bufio.NewReaderSize(io.NewSectionReader(o.f, off, o.diskEnd-off), 16<<10)
	var hdr [headerSize]byte
	var payload []byte
	last := o.marks[0].id + uint64(o.diskN) - 1
	for id <= last {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return id, off, fmt.Errorf("reading record %d: %w", id, err)
		}
		n := binary.BigEndian.Uint32(hdr[0:4])
		if got := binary.BigEndian.Uint64(hdr[8:16]); got != id || n > MaxRecord {
			return id, off, fmt.Errorf("record %d at offset %d: the log holds id %d, length %d", id, off, got, n)
		}
		if id < from {
			if _, err := r.Discard(int(n)); err != nil {
				return id, off, fmt.Errorf("reading record %d: %w", id, err)
			}
		} else {
			if cap(payload) < int(n) {
				payload = make([]byte, n)
			}
			payload = payload[:n]
			if _, err := io.ReadFull(r, payload); err != nil {
				return id, off, fmt.Errorf("reading record %d: %w", id, err)
			}
			if crc32.Update(crc32.Checksum(hdr[8:16], crcTable), crcTable, payload) != binary.BigEndian.Uint32(hdr[4:8]) {
				return id, off, fmt.Errorf("record %d at offset %d: checksum mismatch", id, off)
			}
			if !fn(id, off, payload) {
				return id + 1, off + headerSize + int64(n), nil
			}
		}
		id++
		off += headerSize + int64(n)
	}
	return id, off, nil
}

// loseDiskRun drops the disk run after its records could not be read
// back (a failing disk, or a log changed under the outbox): they are
// lost, counted as dropped, and the outbox goes on in memory. o.mu is
// held.
func (o *Outbox) loseDiskRun(err error) {
	if o.diskN == 0 {
		return
	}
	n := o.diskN
	o.log.Error("outbox: queued readings cannot be read back from disk; they are lost", "dir", o.dir, "records", n,
		"first_id", o.marks[0].id, "err", err)
	o.bytes -= o.diskEnd - o.marks[0].off - int64(n)*headerSize
	o.ackBytes = o.diskEnd
	o.dropped += uint64(n)
	last := o.marks[0].id + uint64(n) - 1
	o.diskN, o.marks = 0, o.marks[:0]
	o.setAcked(last)
	o.degrade(err)
}

// degrade switches to memory-only operation until heal succeeds: the
// disk run is read into memory first. o.mu is held.
func (o *Outbox) degrade(err error) {
	if o.f == nil {
		return
	}
	if o.diskN > 0 {
		back := make([]Record, 0, o.diskN+len(o.mem))
		_, _, rerr := o.scan(o.marks[0].id, func(id uint64, _ int64, p []byte) bool {
			back = append(back, Record{ID: id, Payload: append([]byte(nil), p...)})
			return true
		})
		if rerr != nil {
			o.loseDiskRun(errors.Join(err, rerr)) // calls degrade again, with an empty disk run
			return
		}
		for _, r := range back {
			o.memBytes += int64(len(r.Payload))
		}
		o.mem = append(back, o.mem...)
		o.diskN, o.marks = 0, o.marks[:0]
	}
	o.log.Error("outbox: cannot write to disk; keeping readings in memory only until it works again (they will not survive a restart)",
		"dir", o.dir, "err", err, "retry_in", o.opts.HealFirst)
	o.degraded = err
	o.f.Close()
	o.f = nil
	// The cursor file too: it may be on a filesystem going read-only, or
	// in a deleted directory. Heal writes it afresh.
	if o.ackFile != nil {
		o.ackFile.Close()
		o.ackFile = nil
	}
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
	o.log.Info("outbox: disk writable again; queued readings are back on disk", "dir", o.dir, "pending", o.pendingN(),
		"failed_for", now.Sub(o.failedAt).Round(time.Second))
	o.degraded = nil
	o.spill()
}

// reopen recreates the directory if it is gone and writes the log and the
// cursor afresh. o.mu is held; o.f is nil, so everything pending is in
// mem.
func (o *Outbox) reopen() error {
	if err := os.MkdirAll(o.dir, 0o750); err != nil {
		return err
	}
	if err := syncDir(filepath.Dir(o.dir)); err != nil {
		return err // a directory made again, through a power loss
	}
	// The log first: a crash before the cursor is written leaves a new
	// log of pending records and an older cursor, which load reads right.
	f, size, err := o.writeLog(nil)
	if err != nil {
		return err
	}
	ack, err := os.OpenFile(filepath.Join(o.dir, "acked"), os.O_RDWR|os.O_CREATE, 0o640)
	if err == nil {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], o.acked)
		if _, err = ack.WriteAt(b[:], 0); err == nil {
			o.issued = max(o.issued, o.next-1)
			err = o.writeReservation(ack, o.issued, true)
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

// syncDir makes the entries of dir (a rename, a file or directory made
// in it) survive a power loss.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// lost reports whether the log on disk is no longer the file the outbox
// writes to: its directory was deleted or replaced, so writes that
// succeed go nowhere anyone will read. o.mu is held; o.f is open.
func (o *Outbox) lost() error {
	// Every kept outbox asks this on every tick, so it compares device
	// and inode numbers itself: os.Stat and File.Stat allocate a
	// FileInfo each, and were a sixth of what an idle agent allocated.
	path := o.logPath
	var open, onDisk syscall.Stat_t
	if err := syscall.Fstat(int(o.f.Fd()), &open); err != nil {
		return &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if err := syscall.Stat(path, &onDisk); err != nil {
		return &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if open.Dev != onDisk.Dev || open.Ino != onDisk.Ino {
		return fmt.Errorf("%s was replaced", path)
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
	id = min(id, o.next-1)
	now := time.Now()
	keep := o.opts.Retain > 0
	if o.diskN > 0 {
		// Records acknowledged from the disk run: their bytes, and the
		// payloads to retain, come from the log. Without retaining, only
		// the headers up to the last one are read (from the nearest
		// mark), not every payload.
		last := min(id, o.marks[0].id+uint64(o.diskN)-1)
		start, from := o.marks[0].off, last
		if keep {
			from = o.marks[0].id
		}
		next, off, err := o.scan(from, func(rid uint64, _ int64, p []byte) bool {
			if keep {
				o.retain(Record{rid, append([]byte(nil), p...)}, now)
			}
			return rid < last
		})
		if err != nil {
			o.loseDiskRun(err)
		} else {
			o.bytes -= off - start - int64(next-o.marks[0].id)*headerSize
			o.ackBytes = off
			o.advanceDisk(next, off)
		}
	}
	n := 0
	for n < len(o.mem) && o.mem[n].ID <= id {
		r := o.mem[n]
		o.bytes -= int64(len(r.Payload))
		o.memBytes -= int64(len(r.Payload))
		o.ackBytes += headerSize + int64(len(r.Payload))
		if keep {
			o.retain(r, now)
		}
		n++
	}
	o.trimRetained(now)
	clear(o.mem[:n])
	o.mem = o.mem[n:]
	o.setAcked(max(id, o.acked))
	if o.pendingN() == 0 {
		o.compact() // cheap: truncates an all-acknowledged log
	}
}

// retain keeps an acknowledged record for Rewind. o.mu is held.
func (o *Outbox) retain(r Record, now time.Time) {
	o.retained = append(o.retained, retained{r, now})
	o.retBytes += int64(len(r.Payload))
	if o.retBytes > 2*o.opts.RetainBytes {
		o.trimRetained(now)
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
	restore := make([]Record, 0, len(back))
	for _, r := range back {
		restore = append(restore, r.Record)
		o.bytes += int64(len(r.Payload))
		o.retBytes -= int64(len(r.Payload))
	}
	clear(o.retained[i:])
	o.retained = o.retained[:i]
	o.setAcked(first - 1)
	if o.f != nil && o.ackFile != nil {
		// The lowered cursor on disk before the log that holds the
		// records again: a cursor left higher would have the next
		// start take them for acknowledged. A crash in between leaves
		// a cursor behind the log, which load reads right.
		if err := o.ackFile.Sync(); err != nil {
			o.degrade(err)
		}
	}
	if o.f != nil {
		o.rewrite(restore)
	} else {
		o.prependMem(restore)
	}
	o.log.Info("outbox: acknowledged records taken back", "from_id", first, "records", len(restore), "lost", lost)
	return len(restore), lost
}

// prependMem puts rs, which come just before the pending records, in
// front of them in memory. o.mu is held; the disk run is empty.
func (o *Outbox) prependMem(rs []Record) {
	for _, r := range rs {
		o.memBytes += int64(len(r.Payload))
	}
	o.mem = append(rs, o.mem...)
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
	if o.f == nil || o.ackBytes < compactAt && (o.pendingN() > 0 || o.ackBytes < compactAt/16) {
		return
	}
	if o.pendingN() == 0 {
		o.truncate()
		return
	}
	if o.ackBytes*2 < o.size {
		return
	}
	o.rewrite(nil)
}

// truncate empties an all-acknowledged log. o.mu is held; o.f is open.
func (o *Outbox) truncate() {
	if err := o.f.Truncate(0); err != nil {
		o.degrade(err)
		return
	}
	o.f.Seek(0, io.SeekStart)
	o.size, o.ackBytes, o.dirty = 0, 0, false
}

// rewrite replaces the log atomically with one of prefix, records that
// come just before the pending ones, and the pending records. o.mu is
// held and o.f is open. The prefix and the disk run become the new disk
// run; on failure the outbox degrades with every record in memory.
func (o *Outbox) rewrite(prefix []Record) {
	f, size, err := o.writeLog(prefix)
	if err != nil {
		o.degrade(err)
		switch {
		case len(prefix) == 0:
		case o.acked+1 == prefix[0].ID:
			o.prependMem(prefix)
		default: // the disk run after it was lost
			o.dropped += uint64(len(prefix))
			for _, r := range prefix {
				o.bytes -= int64(len(r.Payload))
			}
		}
		return
	}
	var pre int64
	for _, r := range prefix {
		pre += headerSize + int64(len(r.Payload))
	}
	// The disk run moves from ackBytes to pre.
	shift := pre - o.ackBytes
	for i := range o.marks {
		o.marks[i].off += shift
	}
	if o.diskN > 0 {
		o.diskEnd += shift
	} else {
		o.diskEnd = pre
	}
	if len(prefix) > 0 {
		o.marks = append([]mark{{prefix[0].ID, 0}}, o.marks...)
		o.diskN += len(prefix)
	}
	o.f.Close()
	o.f, o.size, o.ackBytes, o.dirty = f, size, 0, false
}

// writeLog writes prefix, the disk run (copied from the log as it is)
// and mem to log.tmp, syncs it and renames it to log, and returns it
// open at its end. o.mu is held.
func (o *Outbox) writeLog(prefix []Record) (*os.File, int64, error) {
	tmp := filepath.Join(o.dir, "log.tmp")
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return nil, 0, err
	}
	w := bufio.NewWriter(f)
	var size int64
	var hdr [headerSize]byte
	put := func(rs []Record) {
		for _, r := range rs {
			putHeader(hdr[:], r.ID, r.Payload)
			w.Write(hdr[:])
			w.Write(r.Payload)
			size += headerSize + int64(len(r.Payload))
		}
	}
	put(prefix)
	var copyErr error
	if o.diskN > 0 {
		n, err := w.ReadFrom(io.NewSectionReader(o.f, o.marks[0].off, o.diskEnd-o.marks[0].off))
		size += n
		if err == nil && n != o.diskEnd-o.marks[0].off {
			err = io.ErrUnexpectedEOF
		}
		copyErr = err
	}
	put(o.mem)
	err = errors.Join(copyErr, w.Flush(), f.Sync())
	if err == nil {
		err = os.Rename(tmp, o.logPath)
	}
	if err == nil {
		err = syncDir(o.dir) // the rename itself, through a power loss
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
// oldest first. The payloads must not be modified. Records held on disk
// only are read back from the log.
func (o *Outbox) Pending(after uint64, max int) []Record {
	o.mu.Lock()
	defer o.mu.Unlock()
	from := after + 1
	if from <= o.acked {
		from = o.firstID()
	}
	if from >= o.next || max <= 0 {
		return nil
	}
	out := make([]Record, 0, min(max, int(o.next-from)))
	if o.diskN > 0 && from < o.marks[0].id+uint64(o.diskN) {
		_, _, err := o.scan(from, func(id uint64, _ int64, p []byte) bool {
			out = append(out, Record{id, append([]byte(nil), p...)})
			return len(out) < max
		})
		if err != nil {
			o.loseDiskRun(err)
			// What was read is still returned: its ids are acknowledged
			// as dropped now, so the caller's acks for them are no-ops.
		}
		if len(out) == max || len(o.mem) == 0 {
			return out
		}
		from = o.mem[0].ID
	}
	if len(o.mem) == 0 || from < o.mem[0].ID {
		return out
	}
	i := int(from - o.mem[0].ID) // ids are contiguous
	if i >= len(o.mem) {
		return out
	}
	end := min(len(o.mem), i+max-len(out))
	return append(out, o.mem[i:end]...)
}

// Stats describe the outbox for status reports.
type Stats struct {
	Pending  int    // records not yet acknowledged
	Bytes    int64  // their payload bytes
	InMemory int64  // payload bytes of pending records also held in memory
	Dropped  uint64 // records dropped because the outbox was full
	Acked    uint64 // highest acknowledged id
	Degraded error  // non-nil when the outbox runs in memory only
}

// Stats returns the current figures.
func (o *Outbox) Stats() Stats {
	o.mu.Lock()
	defer o.mu.Unlock()
	return Stats{Pending: o.pendingN(), Bytes: o.bytes, InMemory: o.memBytes, Dropped: o.dropped, Acked: o.acked, Degraded: o.degraded}
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
	// An empty log that nothing was appended to has nothing to lose: an
	// idle board's tick makes no system call. The first append to a
	// deleted directory's log is noticed at the next tick.
	if o.size == 0 && !o.dirty {
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
	if o.pendingN() == 0 && o.size > 0 {
		// Everything written since the last tick is acknowledged: drop
		// it before it is synced. Truncating cancels the page cache's
		// unwritten pages, so a board that is online writes almost
		// nothing to its SD card.
		o.truncate()
		if o.f == nil {
			o.mu.Unlock()
			return
		}
	}
	o.mu.Unlock()
	o.Sync()
	o.topUp()
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
	// A directory deleted or replaced since the last tick: what is
	// pending is written afresh below.
	if o.f != nil {
		if err := o.lost(); err != nil {
			o.degrade(err)
		}
	}
	// Memory only (a full disk, maybe freed since): what is pending
	// lives nowhere else. The disk is tried once more, whenever the next
	// try was due.
	if o.f == nil {
		if err := o.reopen(); err != nil && o.pendingN() > 0 {
			o.log.Error("outbox: closing with readings in memory only; they are lost", "dir", o.dir,
				"records", o.pendingN(), "first_id", o.firstID(), "err", err)
			errs = append(errs, fmt.Errorf("outbox: %d readings lost: %w", o.pendingN(), err))
		}
	}
	if o.f != nil {
		errs = append(errs, o.f.Sync(), o.f.Close())
	}
	if o.ackFile != nil {
		// A clean stop: the next start goes on from the exact id.
		errs = append(errs, o.writeReservation(o.ackFile, o.next-1, false), o.ackFile.Sync(), o.ackFile.Close())
	}
	return errors.Join(errs...)
}
