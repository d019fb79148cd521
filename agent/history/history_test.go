package history

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stanzad/stanzad/devices"
)

var t0 = time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)

func open(t *testing.T, dir string, opts Options) *Store {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// feed adds one reading of greenhouse every step from start, n times:
// temperature i%60 (a sawtooth per hour at one a minute), the relay
// flipping, and a text field that is not kept.
func feed(t *testing.T, s *Store, start time.Time, step time.Duration, n int) {
	t.Helper()
	for i := range n {
		err := s.Add(devices.Reading{Device: "greenhouse", Time: start.Add(time.Duration(i) * step), Fields: []devices.Field{
			devices.Number("temperature", float64(i%60), 1, "°C"),
			devices.Bool("fan", i%2 == 0),
			devices.Text("note", "x"),
		}})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestRawQuery(t *testing.T) {
	s := open(t, t.TempDir(), Options{})
	defer s.Close()
	feed(t, s, t0, time.Second, 600)
	pts, err := s.Query("greenhouse", "temperature", t0.Add(100*time.Second), t0.Add(110*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(pts) != 10 {
		t.Fatalf("%d points for 10 s of readings at 1/s", len(pts))
	}
	for i, p := range pts {
		want := float64((100 + i) % 60)
		if !p.T.Equal(t0.Add(time.Duration(100+i)*time.Second)) || p.Avg != want || p.Min != want || p.Max != want || p.N != 1 {
			t.Fatalf("point %d = %+v, want %v at %v", i, p, want, 100+i)
		}
	}
	fan, _ := s.Query("greenhouse", "fan", t0, t0.Add(2*time.Second))
	if len(fan) != 2 || fan[0].Avg != 1 || fan[1].Avg != 0 {
		t.Errorf("fan = %+v, want 1 then 0", fan)
	}
	if _, err := s.Query("greenhouse", "note", t0, t0.Add(time.Hour)); !errors.Is(err, ErrUnknown) {
		t.Errorf("a text field was kept: %v", err)
	}
	if _, err := s.Query("shed", "temperature", t0, t0.Add(time.Hour)); !errors.Is(err, ErrUnknown) {
		t.Errorf("Query of an unknown device = %v", err)
	}
	want := []Series{{"greenhouse", "fan", ""}, {"greenhouse", "temperature", "°C"}}
	if got := s.Series(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Series() = %v, want %v", got, want)
	}
}

// Beyond the raw window, minutes come back as min/avg/max buckets; the
// disk stays within Max, the oldest going first; a restart keeps it all.
func TestDownsampleAndBound(t *testing.T) {
	dir := t.TempDir()
	const bound = 256 << 10
	s := open(t, dir, Options{Max: bound})
	// Three days at one reading every 10 s: far more raw readings than a
	// quarter of 256 KiB holds.
	const n = 3 * 24 * 360
	feed(t, s, t0, 10*time.Second, n)
	end := t0.Add(n * 10 * time.Second)
	if err := s.Tick(end.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if size := s.Size(); size > bound+bound/8 {
		t.Errorf("history is %d bytes on disk, bound %d", size, bound)
	}
	check := func(s *Store) {
		t.Helper()
		oldest := s.Oldest()
		if !oldest.After(t0) || !oldest.Before(end.Add(-24*time.Hour)) {
			t.Errorf("oldest point %v; want the first day partly dropped and more than a day kept", oldest)
		}
		pts, err := s.Query("greenhouse", "temperature", t0, end)
		if err != nil {
			t.Fatal(err)
		}
		buckets, raw := 0, 0
		for i, p := range pts {
			if i > 0 && p.T.Before(pts[i-1].T) {
				t.Fatalf("points out of order at %d", i)
			}
			if p.N == 1 {
				raw++
				continue
			}
			buckets++
			// A minute holds six readings, i = m*6 .. m*6+5 from t0.
			m := int(p.T.Sub(t0) / time.Minute)
			var lo, hi, sum float64 = 1e9, -1, 0
			for j := m * 6; j < m*6+6; j++ {
				v := float64(j % 60)
				lo, hi, sum = min(lo, v), max(hi, v), sum+v
			}
			if p.N != 6 || p.Min != lo || p.Max != hi || p.Avg != sum/6 || !p.T.Equal(t0.Add(time.Duration(m)*time.Minute)) {
				t.Fatalf("bucket %v = %+v; want 6 readings, min %v, avg %v, max %v", p.T, p, lo, sum/6, hi)
			}
		}
		if buckets == 0 || raw == 0 {
			t.Fatalf("%d buckets and %d raw points; want both", buckets, raw)
		}
		if last := pts[len(pts)-1]; last.N != 1 || !last.T.Equal(end.Add(-10*time.Second)) {
			t.Errorf("the newest point is %+v, want the last raw reading", last)
		}
	}
	check(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, Options{Max: bound})
	defer s.Close()
	check(s)
}

// A crash mid-write leaves a torn record at the end of the newest
// segment: Open cuts it with a log line and the rest is kept; a
// damaged record in an older segment ends that segment's reading.
func TestTornTail(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	feed(t, s, t0, time.Second, 100)
	if err := s.Tick(t0); err != nil { // the daemon's tick, every second
		t.Fatal(err)
	}
	path := s.raw.path(s.raw.segs[len(s.raw.segs)-1].n)
	fi, _ := os.Stat(path)
	s.raw.f.Close() // a crash: no Close, buckets of the last minute unwritten
	if err := os.Truncate(path, fi.Size()-5); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	s = open(t, dir, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	defer s.Close()
	if !strings.Contains(logs.String(), "damaged record") {
		t.Errorf("no log line about the torn record: %s", logs.String())
	}
	pts, err := s.Query("greenhouse", "temperature", t0, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// The last reading wrote temperature then fan: the fan record is torn.
	if len(pts) != 100 {
		t.Fatalf("%d temperature points after the cut, want 100", len(pts))
	}
	fan, _ := s.Query("greenhouse", "fan", t0, t0.Add(time.Hour))
	if len(fan) != 99 {
		t.Fatalf("%d fan points after the cut, want 99", len(fan))
	}
	feed(t, s, t0.Add(100*time.Second), time.Second, 1) // appends go on
	if pts, _ := s.Query("greenhouse", "temperature", t0, t0.Add(time.Hour)); len(pts) != 101 {
		t.Fatalf("%d points after an append, want 101", len(pts))
	}
}

func TestDamagedOldSegment(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{Max: 64 << 10})
	feed(t, s, t0, time.Second, 2000)
	if len(s.raw.segs) < 3 {
		t.Fatalf("%d raw segments; want several", len(s.raw.segs))
	}
	path := s.raw.path(s.raw.segs[1].n)
	b, _ := os.ReadFile(path)
	b[len(b)/2] ^= 0xff
	os.WriteFile(path, b, 0o640)
	pts, err := s.Query("greenhouse", "temperature", t0, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(pts); i++ {
		if !pts[i].T.After(pts[i-1].T) {
			t.Fatalf("points out of order at %d", i)
		}
	}
	if !pts[len(pts)-1].T.Equal(t0.Add(1999 * time.Second)) {
		t.Errorf("the newest reading is missing after damage in an older segment")
	}
	s.Close()
}

func TestSummaryAndSparkline(t *testing.T) {
	pts := []Point{
		{T: t0, Min: 10, Avg: 10, Max: 10, N: 1},
		{T: t0.Add(time.Minute), Min: 8, Avg: 12, Max: 20, N: 3},
		// 2 minutes without data
		{T: t0.Add(4 * time.Minute), Min: 30, Avg: 30, Max: 30, N: 1},
	}
	s, ok := Summarize(pts)
	if !ok || s.Min != 8 || !s.MinAt.Equal(t0.Add(time.Minute)) || s.Max != 30 || !s.MaxAt.Equal(t0.Add(4*time.Minute)) || s.N != 5 || s.Avg != (10+36+30)/5.0 {
		t.Fatalf("Summarize = %+v", s)
	}
	if got := Sparkline(pts, t0, t0.Add(5*time.Minute), 5); got != "▁▂  █" {
		t.Errorf("Sparkline = %q, want %q (a gap stays a gap)", got, "▁▂  █")
	}
	if got := Sparkline(pts[:1], t0, t0.Add(time.Minute), 3); got != "▅  " {
		t.Errorf("Sparkline of one point = %q", got)
	}
	if _, ok := Summarize(nil); ok {
		t.Error("Summarize(nil) ok")
	}
}

// FuzzOpen opens arbitrary segment files: never an error or a panic
// for bad data, and the history takes readings afterwards.
func FuzzOpen(f *testing.F) {
	dir := f.TempDir()
	s, _ := Open(dir, Options{})
	s.Add(devices.Reading{Device: "d", Time: t0, Fields: []devices.Field{devices.Number("v", 1, 0, "")}})
	s.Close()
	seed, _ := os.ReadFile(filepath.Join(dir, "raw-000001.log"))
	min, _ := os.ReadFile(filepath.Join(dir, "min-000001.log"))
	f.Add(seed, min)
	f.Add(seed[:len(seed)-3], []byte{0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, raw, buckets []byte) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "raw-000001.log"), raw, 0o640)
		os.WriteFile(filepath.Join(dir, "min-000003.log"), buckets, 0o640)
		s, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		for _, se := range s.Series() {
			if _, err := s.Query(se.Device, se.Field, time.Time{}, time.Now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Add(devices.Reading{Device: "d", Time: t0, Fields: []devices.Field{devices.Number("v", 2, 0, "")}}); err != nil {
			t.Fatal(err)
		}
		pts, err := s.Query("d", "v", t0, t0.Add(time.Second))
		if err != nil || len(pts) == 0 || pts[len(pts)-1].Avg != 2 {
			t.Fatalf("after Add: %v, %v", pts, err)
		}
	})
}

func TestDownsample(t *testing.T) {
	var pts []Point
	for i := range 100 {
		v := float64(i)
		pts = append(pts, Point{T: t0.Add(time.Duration(i) * time.Second), Min: v, Avg: v, Max: v, N: 1})
	}
	got := Downsample(pts, t0, t0.Add(100*time.Second), 10)
	if len(got) != 10 {
		t.Fatalf("%d points, want 10", len(got))
	}
	for i, p := range got {
		lo := float64(i * 10)
		if p.N != 10 || p.Min != lo || p.Max != lo+9 || p.Avg != lo+4.5 || !p.T.Equal(t0.Add(time.Duration(i*10)*time.Second)) {
			t.Fatalf("slice %d = %+v", i, p)
		}
	}
	if got := Downsample(pts, t0.Add(95*time.Second), t0.Add(time.Hour), 10); len(got) != 5 {
		t.Errorf("%d points in range, want the 5 as they are", len(got))
	}
}
