package history

import (
	"math"
	"strings"
	"time"
)

// Summary is what a text answer says about a run of points.
type Summary struct {
	Min, Avg, Max float64
	MinAt, MaxAt  time.Time
	N             int // readings summarized
	First, Last   time.Time
}

// Summarize returns the minimum and maximum (with when they were seen)
// and the mean of pts, each bucket weighted by its readings. ok is false
// for no points.
func Summarize(pts []Point) (s Summary, ok bool) {
	if len(pts) == 0 {
		return s, false
	}
	s.Min, s.Max = math.Inf(1), math.Inf(-1)
	var sum float64
	for _, p := range pts {
		if p.Min < s.Min {
			s.Min, s.MinAt = p.Min, p.T
		}
		if p.Max > s.Max {
			s.Max, s.MaxAt = p.Max, p.T
		}
		sum += p.Avg * float64(p.N)
		s.N += p.N
	}
	s.Avg = sum / float64(s.N)
	s.First, s.Last = pts[0].T, pts[len(pts)-1].T
	return s, true
}

// sparks are the eight levels of a sparkline.
var sparks = []rune("▁▂▃▄▅▆▇█")

// Sparkline draws pts from from to to in width characters, one per
// equal slice of time: the level of the slice's mean between the
// overall minimum and maximum, a space where a slice has no point (a
// gap in the data stays a gap).
func Sparkline(pts []Point, from, to time.Time, width int) string {
	if width <= 0 || !to.After(from) || len(pts) == 0 {
		return ""
	}
	sum := make([]float64, width)
	n := make([]int, width)
	span := to.Sub(from)
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, p := range pts {
		if p.T.Before(from) || !p.T.Before(to) {
			continue
		}
		i := int(int64(p.T.Sub(from)) * int64(width) / int64(span))
		sum[i] += p.Avg * float64(p.N)
		n[i] += p.N
	}
	for i := range sum {
		if n[i] > 0 {
			sum[i] /= float64(n[i])
			lo, hi = min(lo, sum[i]), max(hi, sum[i])
		}
	}
	var b strings.Builder
	for i := range sum {
		switch {
		case n[i] == 0:
			b.WriteByte(' ')
		case hi == lo:
			b.WriteRune(sparks[len(sparks)/2])
		default:
			level := int((sum[i]-lo)/(hi-lo)*float64(len(sparks)-1) + 0.5)
			b.WriteRune(sparks[level])
		}
	}
	return b.String()
}

// Downsample merges pts into at most n points, one per equal slice of
// from..to that has any: the slice's minimum and maximum, its mean
// weighted by readings, at the time of its first point. Points outside
// from..to are left out. With n ≤ 0 or no more than n points in range,
// the points in range come back as they are.
func Downsample(pts []Point, from, to time.Time, n int) []Point {
	var in []Point
	for _, p := range pts {
		if !p.T.Before(from) && p.T.Before(to) {
			in = append(in, p)
		}
	}
	if n <= 0 || len(in) <= n || !to.After(from) {
		return in
	}
	span := int64(to.Sub(from))
	out := make([]Point, 0, n)
	slice := -1
	for _, p := range in {
		i := int(int64(p.T.Sub(from)) * int64(n) / span)
		if i != slice {
			out = append(out, Point{T: p.T, Min: p.Min, Max: p.Max})
			slice = i
		}
		o := &out[len(out)-1]
		o.Min, o.Max = min(o.Min, p.Min), max(o.Max, p.Max)
		o.Avg = (o.Avg*float64(o.N) + p.Avg*float64(p.N)) / float64(o.N+p.N)
		o.N += p.N
	}
	return out
}
