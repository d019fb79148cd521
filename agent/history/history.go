package history

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/stanzad/stanzad/devices"
)

// Options configure a Store.
type Options struct {
	// Max bounds the bytes on disk of both logs together; default 4 MiB,
	// at least 64 KiB. A quarter holds raw readings, the rest buckets.
	Max    int64
	Logger *slog.Logger
}

// Bucket is the width of the downsampled buckets.
const Bucket = time.Minute

// Point is a reading or a bucket of readings of one field.
type Point struct {
	T             time.Time // the reading's time, or the bucket's start
	Min, Avg, Max float64
	N             int // readings in it (1 for a raw reading)
}

// Series names one device's field.
type Series struct {
	Device, Field, Unit string
}

// Store is a board's local history. It is safe for concurrent use.
type Store struct {
	log *slog.Logger

	mu     sync.Mutex
	raw    *ring
	min    *ring
	open   map[seriesKey]*bucket // the minute being summed, per series
	series map[seriesKey]string  // every series seen → its unit
	rawAt  time.Time             // the oldest raw reading on disk
	rawSeg int                   // the raw log's oldest segment when rawAt was read
	failed bool                  // the last write failed (logged once)
	buf    []byte
}

type seriesKey struct{ device, field string }

type bucket struct {
	start         time.Time
	min, max, sum float64
	n             int
	unit          string
}

// Open opens or creates the history in dir.
func Open(dir string, opts Options) (*Store, error) {
	if opts.Max <= 0 {
		opts.Max = 4 << 20
	}
	opts.Max = max(opts.Max, 64<<10)
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	rawMax := opts.Max / 4
	s := &Store{
		log:    log,
		raw:    &ring{dir: dir, prefix: "raw", max: rawMax, segMax: max(rawMax/8, 8<<10), log: log},
		min:    &ring{dir: dir, prefix: "min", max: opts.Max - rawMax, segMax: max((opts.Max-rawMax)/8, 8<<10), log: log},
		open:   map[seriesKey]*bucket{},
		series: map[seriesKey]string{},
	}
	if err := s.raw.open(); err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	if err := s.min.open(); err != nil {
		s.raw.close()
		return nil, fmt.Errorf("history: %w", err)
	}
	// Learn the series.
	for _, r := range []*ring{s.min, s.raw} {
		err := r.scan(func(p []byte) bool {
			if rec, ok := decode(p); ok {
				s.series[seriesKey{rec.device, rec.field}] = rec.unit
			}
			return true
		})
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("history: %w", err)
		}
	}
	s.rawSeg = -1
	s.noteRawStart()
	return s, nil
}

// record is one decoded log record.
type record struct {
	bucket               bool
	t                    time.Time
	device, field, unit  string
	min, max, sum, value float64
	n                    int
}

const (
	kindRaw    = 1
	kindBucket = 2
)

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendFloat(b []byte, f float64) []byte {
	return binary.BigEndian.AppendUint64(b, math.Float64bits(f))
}

func (s *Store) encode(kind byte, t time.Time, k seriesKey, unit string, vals ...float64) []byte {
	b := append(s.buf[:0], kind)
	b = binary.AppendVarint(b, t.UnixMilli())
	b = appendString(b, k.device)
	b = appendString(b, k.field)
	b = appendString(b, unit)
	for _, v := range vals {
		b = appendFloat(b, v)
	}
	s.buf = b
	return b
}

// decode parses a record payload; ok is false for anything malformed
// (a record from a newer version, or damage the CRC did not catch).
func decode(p []byte) (r record, ok bool) {
	if len(p) < 1 {
		return r, false
	}
	kind := p[0]
	p = p[1:]
	ms, n := binary.Varint(p)
	if n <= 0 {
		return r, false
	}
	p = p[n:]
	r.t = time.UnixMilli(ms)
	str := func() (string, bool) {
		l, n := binary.Uvarint(p)
		if n <= 0 || l > uint64(len(p)-n) {
			return "", false
		}
		v := string(p[n : n+int(l)])
		p = p[n+int(l):]
		return v, true
	}
	var ok1, ok2, ok3 bool
	r.device, ok1 = str()
	r.field, ok2 = str()
	r.unit, ok3 = str()
	if !ok1 || !ok2 || !ok3 {
		return r, false
	}
	float := func() float64 {
		v := math.Float64frombits(binary.BigEndian.Uint64(p))
		p = p[8:]
		return v
	}
	switch kind {
	case kindRaw:
		if len(p) != 8 {
			return r, false
		}
		r.value = float()
		r.min, r.max, r.sum, r.n = r.value, r.value, r.value, 1
	case kindBucket:
		if len(p) < 24 {
			return r, false
		}
		r.bucket = true
		r.min, r.max, r.sum = float(), float(), float()
		c, n := binary.Uvarint(p)
		if n <= 0 || n != len(p) || c == 0 || c > math.MaxInt32 {
			return r, false
		}
		r.n = int(c)
	default:
		return r, false
	}
	return r, true
}

// Add records a reading's numeric and boolean fields (true is 1);
// text fields are not kept. A disk error is logged (once until writes
// work again) and returned; the reading is then not in the history.
func (s *Store) Add(rd devices.Reading) error {
	if rd.Err != nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, f := range rd.Fields {
		var v float64
		switch f.Kind {
		case devices.Numeric:
			v = f.Num
		case devices.Boolean:
			if f.Bool {
				v = 1
			}
		default:
			continue
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		k := seriesKey{rd.Device, f.Name}
		s.series[k] = f.Unit
		errs = append(errs, s.raw.append(s.encode(kindRaw, rd.Time, k, f.Unit, v)))
		b := s.open[k]
		start := rd.Time.Truncate(Bucket)
		if b != nil && !b.start.Equal(start) {
			errs = append(errs, s.writeBucket(k, b))
			b = nil
		}
		if b == nil {
			b = &bucket{start: start, min: v, max: v, unit: f.Unit}
			s.open[k] = b
		}
		b.min, b.max, b.sum, b.n = min(b.min, v), max(b.max, v), b.sum+v, b.n+1
	}
	s.noteRawStart()
	return s.noteErr(errors.Join(errs...))
}

// writeBucket appends a finished bucket to the bucket log. s.mu is held.
func (s *Store) writeBucket(k seriesKey, b *bucket) error {
	p := s.encode(kindBucket, b.start, k, b.unit, b.min, b.max, b.sum)
	p = binary.AppendUvarint(p, uint64(b.n))
	s.buf = p
	return s.min.append(p)
}

// Tick writes out the buffered records, and the buckets whose minute
// ended before now, so that a series that stops reporting still has its
// last minute in the bucket log. The owner calls it every second: what a
// crash takes from the history is at most that second.
func (s *Store) Tick(now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	errs := []error{s.raw.flush(), s.min.flush()}
	for k, b := range s.open {
		if !b.start.Add(Bucket).After(now) {
			errs = append(errs, s.writeBucket(k, b))
			delete(s.open, k)
		}
	}
	return s.noteErr(errors.Join(errs...))
}

// noteErr logs the first of a run of write errors, and when writes work
// again. s.mu is held.
func (s *Store) noteErr(err error) error {
	switch {
	case err != nil && !s.failed:
		s.failed = true
		s.log.Error("history: cannot write; readings are missing from the history until it works again", "err", err)
	case err == nil && s.failed:
		s.failed = false
		s.log.Info("history: writing again")
	}
	return err
}

// noteRawStart updates rawAt, the time of the first raw reading still on
// disk, when the raw log has dropped a segment. s.mu is held.
func (s *Store) noteRawStart() {
	if s.raw.segs[0].n == s.rawSeg && !s.rawAt.IsZero() {
		return
	}
	s.rawSeg = s.raw.segs[0].n
	s.rawAt = time.Time{}
	s.raw.scan(func(p []byte) bool {
		if rec, ok := decode(p); ok {
			s.rawAt = rec.t
			return false
		}
		return true
	})
}

// ErrUnknown is wrapped by Query errors for a device or field the
// history has never seen.
var ErrUnknown = errors.New("history: unknown")

// Query returns the points of device's field from from to to (from
// inclusive, to exclusive), oldest first: raw readings where the raw log
// still has them, one-minute buckets before that.
func (s *Store) Query(device, field string, from, to time.Time) ([]Point, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := seriesKey{device, field}
	if _, ok := s.series[k]; !ok {
		return nil, fmt.Errorf("%w series %s/%s", ErrUnknown, device, field)
	}
	var pts []Point
	in := func(t time.Time) bool { return !t.Before(from) && t.Before(to) }
	rawAt := s.rawAt
	collect := func(bucket bool) func(p []byte) bool {
		return func(p []byte) bool {
			rec, ok := decode(p)
			if !ok || rec.device != device || rec.field != field || !in(rec.t) {
				return true
			}
			if bucket && !rawAt.IsZero() && rec.t.Add(Bucket).After(rawAt) {
				return true // the raw log has this minute
			}
			pts = append(pts, Point{T: rec.t, Min: rec.min, Avg: rec.sum / float64(rec.n), Max: rec.max, N: rec.n})
			return true
		}
	}
	if err := s.min.scan(collect(true)); err != nil {
		return nil, err
	}
	if err := s.raw.scan(collect(false)); err != nil {
		return nil, err
	}
	// Buckets come before raw readings and each log is in time order,
	// unless a device's clock jumped back.
	if !sort.SliceIsSorted(pts, func(i, j int) bool { return pts[i].T.Before(pts[j].T) }) {
		sort.SliceStable(pts, func(i, j int) bool { return pts[i].T.Before(pts[j].T) })
	}
	return pts, nil
}

// Series returns every series the history holds, sorted.
func (s *Store) Series() []Series {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Series, 0, len(s.series))
	for k, unit := range s.series {
		out = append(out, Series{Device: k.device, Field: k.field, Unit: unit})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Device != out[j].Device {
			return out[i].Device < out[j].Device
		}
		return out[i].Field < out[j].Field
	})
	return out
}

// Oldest returns the time of the oldest point the history holds for
// any series (zero when it is empty).
func (s *Store) Oldest() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var at time.Time
	s.min.scan(func(p []byte) bool {
		if rec, ok := decode(p); ok {
			at = rec.t
			return false
		}
		return true
	})
	if at.IsZero() || (!s.rawAt.IsZero() && s.rawAt.Before(at)) {
		at = s.rawAt
	}
	return at
}

// Size is the bytes the history holds on disk.
func (s *Store) Size() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.raw.size() + s.min.size()
}

// Close writes the open buckets and closes the logs.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	if s.min.f != nil {
		for k, b := range s.open {
			errs = append(errs, s.writeBucket(k, b))
		}
	}
	clear(s.open)
	errs = append(errs, s.raw.close(), s.min.close())
	return errors.Join(errs...)
}

// Dir is where the agent keeps its history under state_dir.
func Dir(stateDir string) string { return filepath.Join(stateDir, "history") }
