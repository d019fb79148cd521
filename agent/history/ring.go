package history

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

const (
	recHeader = 8
	// maxPayload bounds one record; a larger length on disk marks a
	// damaged record.
	maxPayload = 4 << 10
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ring is one log: segment files prefix-NNNNNN.log in dir, oldest first,
// the newest open for appends. It drops its oldest segment when its
// files together exceed max.
type ring struct {
	dir, prefix string
	max, segMax int64
	log         *slog.Logger

	segs []segment // oldest first; the last is f
	f    *os.File
	w    *bufio.Writer // over f; flushed by flush, scan, rotate and close
	buf  []byte
}

type segment struct {
	n    int // sequence number in the file name
	size int64
}

func (r *ring) path(n int) string {
	return filepath.Join(r.dir, fmt.Sprintf("%s-%06d.log", r.prefix, n))
}

// open finds the segments, cuts a damaged tail off the newest, and opens
// it for appends.
func (r *ring) open() error {
	entries, err := os.ReadDir(r.dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name, ok := strings.CutPrefix(e.Name(), r.prefix+"-")
		if !ok {
			continue
		}
		num, ok := strings.CutSuffix(name, ".log")
		n, err := strconv.Atoi(num)
		if !ok || err != nil || n <= 0 {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		r.segs = append(r.segs, segment{n: n, size: fi.Size()})
	}
	sort.Slice(r.segs, func(i, j int) bool { return r.segs[i].n < r.segs[j].n })
	if len(r.segs) == 0 {
		r.segs = []segment{{n: 1}}
	}
	last := &r.segs[len(r.segs)-1]
	f, err := os.OpenFile(r.path(last.n), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	good, err := validPrefix(f)
	if err != nil {
		f.Close()
		return err
	}
	if fi, err := f.Stat(); err == nil && fi.Size() > good {
		r.log.Warn("history: damaged record at the end of the log; cutting it off",
			"file", r.path(last.n), "offset", good, "bytes_lost", fi.Size()-good)
		if err := f.Truncate(good); err != nil {
			f.Close()
			return err
		}
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		f.Close()
		return err
	}
	last.size = good
	r.f = f
	r.w = bufio.NewWriterSize(f, 4<<10)
	r.trim()
	return nil
}

// validPrefix returns the length of the longest run of good records at
// the start of f.
func validPrefix(f *os.File) (int64, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	var off int64
	err := scanRecords(bufio.NewReader(f), func(p []byte) bool {
		off += recHeader + int64(len(p))
		return true
	})
	if err != nil && !errors.Is(err, errDamaged) {
		return 0, err
	}
	return off, nil
}

// errDamaged ends a scan at a torn or corrupt record.
var errDamaged = errors.New("history: damaged record")

// scanRecords calls fn with each record's payload (valid only during
// the call) until fn returns false, the input ends (nil), a record is
// damaged (errDamaged) or reading fails.
func scanRecords(r *bufio.Reader, fn func(payload []byte) bool) error {
	var hdr [recHeader]byte
	var p []byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if err == io.EOF {
				return nil
			}
			if err == io.ErrUnexpectedEOF {
				return errDamaged
			}
			return err
		}
		n := binary.BigEndian.Uint32(hdr[0:4])
		if n > maxPayload {
			return errDamaged
		}
		if cap(p) < int(n) {
			p = make([]byte, n, maxPayload)
		}
		p = p[:n]
		if _, err := io.ReadFull(r, p); err != nil {
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				return errDamaged
			}
			return err
		}
		if crc32.Checksum(p, crcTable) != binary.BigEndian.Uint32(hdr[4:8]) {
			return errDamaged
		}
		if !fn(p) {
			return nil
		}
	}
}

// append writes one record, starting a new segment when the current one
// is full, and drops the oldest segments over max.
func (r *ring) append(payload []byte) error {
	if r.f == nil {
		return os.ErrClosed
	}
	last := &r.segs[len(r.segs)-1]
	if last.size > 0 && last.size+recHeader+int64(len(payload)) > r.segMax {
		if err := r.rotate(); err != nil {
			return err
		}
		last = &r.segs[len(r.segs)-1]
	}
	r.buf = binary.BigEndian.AppendUint32(r.buf[:0], uint32(len(payload)))
	r.buf = binary.BigEndian.AppendUint32(r.buf, crc32.Checksum(payload, crcTable))
	r.buf = append(r.buf, payload...)
	if r.w.Available() < len(r.buf) {
		if err := r.flush(); err != nil {
			return err
		}
	}
	r.w.Write(r.buf) // fits: records are smaller than the buffer
	last.size += int64(len(r.buf))
	return nil
}

// flush writes the buffered records. A failed write leaves what the file
// holds (perhaps a torn record) cut back to the last whole record, and
// the buffered records are dropped: history is not the outbox.
func (r *ring) flush() error {
	if r.w.Buffered() == 0 {
		return nil
	}
	last := &r.segs[len(r.segs)-1]
	onDisk := last.size - int64(r.w.Buffered())
	if err := r.w.Flush(); err != nil {
		r.w.Reset(r.f)
		last.size = onDisk
		r.f.Truncate(onDisk)
		r.f.Seek(onDisk, io.SeekStart)
		return err
	}
	return nil
}

// rotate syncs and closes the current segment and opens the next.
func (r *ring) rotate() error {
	if err := errors.Join(r.flush(), r.f.Sync()); err != nil {
		return err
	}
	next := r.segs[len(r.segs)-1].n + 1
	f, err := os.OpenFile(r.path(next), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	r.f.Close()
	r.f = f
	r.w.Reset(f)
	r.segs = append(r.segs, segment{n: next})
	r.trim()
	return nil
}

// trim removes the oldest segments while the log is over max.
func (r *ring) trim() {
	total := int64(0)
	for _, s := range r.segs {
		total += s.size
	}
	for len(r.segs) > 1 && total > r.max {
		old := r.segs[0]
		if err := os.Remove(r.path(old.n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			r.log.Warn("history: cannot remove an old segment", "err", err)
			return
		}
		total -= old.size
		r.segs = r.segs[1:]
	}
}

// size is the bytes of the log's files.
func (r *ring) size() int64 {
	total := int64(0)
	for _, s := range r.segs {
		total += s.size
	}
	return total
}

// scan calls fn with every record's payload, oldest first, until fn
// returns false. A damaged record ends its segment (the newest may be
// being written). The newest segment is read up to what was written.
func (r *ring) scan(fn func(payload []byte) bool) error {
	if err := r.flush(); err != nil {
		return err
	}
	stop := false
	for i, s := range r.segs {
		var rd io.Reader
		if i == len(r.segs)-1 {
			rd = io.NewSectionReader(r.f, 0, s.size)
		} else {
			f, err := os.Open(r.path(s.n))
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			if err != nil {
				return err
			}
			defer f.Close()
			rd = f
		}
		err := scanRecords(bufio.NewReaderSize(rd, 16<<10), func(p []byte) bool {
			if !fn(p) {
				stop = true
			}
			return !stop
		})
		if err != nil && !errors.Is(err, errDamaged) {
			return err
		}
		if stop {
			return nil
		}
	}
	return nil
}

func (r *ring) close() error {
	if r.f == nil {
		return nil
	}
	err := errors.Join(r.flush(), r.f.Sync(), r.f.Close())
	r.f = nil
	return err
}
