// Package chart draws a device's history as a PNG line chart readable
// on a phone: one panel per field, each with its value axis and unit, a
// time axis in local time, the min–max band and the mean, gaps in the
// data left as gaps, and the minimum and maximum marked. It renders into
// a paletted pixel buffer with a bundled 5×7 font and its own small PNG
// encoder, and imports only the standard library and agent/history.
package chart

import (
	"errors"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/stanzad/stanzad/agent/history"
)

// Palette indexes.
const (
	white = iota
	black
	grid
	line
	band
	maxMark
	minMark
	dim
)

var palette = [][3]uint8{
	white:   {255, 255, 255},
	black:   {0, 0, 0},
	grid:    {225, 225, 225},
	line:    {31, 90, 180},
	band:    {190, 210, 240},
	maxMark: {200, 40, 40},
	minMark: {30, 140, 60},
	dim:     {110, 110, 110},
}

// Chart is what to draw.
type Chart struct {
	Title    string
	From, To time.Time
	Panels   []Panel
	Loc      *time.Location // for the time labels; nil is time.Local
}

// Panel is one field.
type Panel struct {
	Name, Unit string
	Points     []history.Point
}

// Size of the image: Width pixels wide, PanelHeight per panel plus the
// title.
const (
	Width       = 720
	PanelHeight = 260
	titleHeight = 36
	scale       = 2 // font pixels
	charW       = 6 * scale
	charH       = 7 * scale
	left        = 84 // value labels
	right       = 16
	top         = 30 // panel title
	bottom      = 34 // time labels
	maxPanels   = 8
)

// ErrEmpty is returned for a chart without panels or a time range.
var ErrEmpty = errors.New("chart: nothing to draw")

// Render draws c and returns the PNG and its height. Drawing is bounded:
// each panel's points are first merged into at most one per pixel
// column, so a year of data costs what an hour does.
func Render(c Chart) ([]byte, int, error) {
	if len(c.Panels) == 0 || !c.To.After(c.From) {
		return nil, 0, ErrEmpty
	}
	panels := c.Panels[:min(len(c.Panels), maxPanels)]
	loc := c.Loc
	if loc == nil {
		loc = time.Local
	}
	h := titleHeight + len(panels)*PanelHeight
	img := &canvas{w: Width, h: h, pix: make([]uint8, Width*h)}
	img.text(8, 10, c.Title, black)
	for i, p := range panels {
		img.panel(p, c.From, c.To, titleHeight+i*PanelHeight, loc)
	}
	return encodePNG(img.pix, img.w, img.h, palette), h, nil
}

type canvas struct {
	w, h int
	pix  []uint8
}

func (c *canvas) set(x, y int, col uint8) {
	if x >= 0 && x < c.w && y >= 0 && y < c.h {
		c.pix[y*c.w+x] = col
	}
}

func (c *canvas) rect(x0, y0, x1, y1 int, col uint8) {
	for y := max(y0, 0); y <= min(y1, c.h-1); y++ {
		for x := max(x0, 0); x <= min(x1, c.w-1); x++ {
			c.pix[y*c.w+x] = col
		}
	}
}

// text draws s with its top-left corner at x, y and returns its width.
func (c *canvas) text(x, y int, s string, col uint8) int {
	x0 := x
	for _, r := range s {
		g := glyph(r)
		for cx, bits := range g {
			for cy := range 7 {
				if bits&(1<<cy) != 0 {
					c.rect(x+cx*scale, y+cy*scale, x+cx*scale+scale-1, y+cy*scale+scale-1, col)
				}
			}
		}
		x += charW
	}
	return x - x0
}

func textWidth(s string) int { return len([]rune(s)) * charW }

// lineTo draws a line two pixels thick from (x0, y0) to (x1, y1).
func (c *canvas) lineTo(x0, y0, x1, y1 int, col uint8) {
	steps := max(abs(x1-x0), abs(y1-y0), 1)
	for i := 0; i <= steps; i++ {
		x := x0 + (x1-x0)*i/steps
		y := y0 + (y1-y0)*i/steps
		c.rect(x, y, x+1, y+1, col)
	}
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// column is one pixel column's merged points.
type column struct {
	min, max, sum float64
	n             int
	t             time.Time // the first point's time
}

func (c *canvas) panel(p Panel, from, to time.Time, y0 int, loc *time.Location) {
	x0, x1 := left, c.w-right-1
	py0, py1 := y0+top, y0+PanelHeight-bottom
	title := p.Name
	if p.Unit != "" {
		title += " (" + p.Unit + ")"
	}
	c.text(x0, y0+8, title, black)
	cols := make([]column, x1-x0+1)
	span := float64(to.Sub(from))
	lo, hi := math.Inf(1), math.Inf(-1)
	var minAt, maxAt int
	var times []time.Time
	for _, pt := range p.Points {
		if pt.T.Before(from) || !pt.T.Before(to) {
			continue
		}
		i := int(float64(pt.T.Sub(from)) / span * float64(len(cols)))
		col := &cols[i]
		if col.n == 0 {
			col.min, col.max, col.t = pt.Min, pt.Max, pt.T
			times = append(times, pt.T)
		}
		col.min, col.max = min(col.min, pt.Min), max(col.max, pt.Max)
		col.sum += pt.Avg * float64(pt.N)
		col.n += pt.N
		if pt.Min < lo {
			lo, minAt = pt.Min, x0+i
		}
		if pt.Max > hi {
			hi, maxAt = pt.Max, x0+i
		}
	}
	if len(times) == 0 {
		c.text(x0+8, (py0+py1)/2, "no readings", dim)
		return
	}
	ticks, step := niceTicks(lo, hi, 5)
	vlo, vhi := ticks[0], ticks[len(ticks)-1]
	yOf := func(v float64) int {
		return py1 - int(math.Round((v-vlo)/(vhi-vlo)*float64(py1-py0)))
	}
	// Grid and value labels.
	for _, v := range ticks {
		y := yOf(v)
		for x := x0; x <= x1; x++ {
			c.set(x, y, grid)
		}
		s := formatTick(v, step)
		c.text(x0-8-textWidth(s), y-charH/2, s, black)
	}
	// Time grid and labels.
	tstep, tfmt := timeStep(to.Sub(from))
	for t := firstTick(from, tstep, loc); t.Before(to); t = t.Add(tstep) {
		x := x0 + int(float64(t.Sub(from))/span*float64(len(cols)))
		for y := py0; y <= py1; y++ {
			c.set(x, y, grid)
		}
		s := t.In(loc).Format(tfmt)
		if lx := x - textWidth(s)/2; lx >= 0 && lx+textWidth(s) <= c.w {
			c.text(lx, py1+8, s, black)
		}
	}
	// Axes.
	for y := py0; y <= py1; y++ {
		c.set(x0, y, black)
	}
	for x := x0; x <= x1; x++ {
		c.set(x, py1, black)
	}
	// Two points are joined unless the time between them is well over
	// the usual interval between readings: a gap stays a gap.
	joinWithin := 3 * medianGap(times)
	// The min–max band, then the mean.
	for i, col := range cols {
		if col.n > 0 {
			for y := yOf(col.max); y <= yOf(col.min); y++ {
				c.set(x0+i, y, band)
			}
		}
	}
	prev := -1
	for i, col := range cols {
		if col.n == 0 {
			continue
		}
		y := yOf(col.sum / float64(col.n))
		if prev >= 0 && col.t.Sub(cols[prev].t) <= joinWithin {
			c.lineTo(x0+prev, yOf(cols[prev].sum/float64(cols[prev].n)), x0+i, y, line)
		} else {
			c.rect(x0+i-1, y-1, x0+i+1, y+1, line)
		}
		prev = i
	}
	// Minimum and maximum marked.
	c.marker(maxAt, yOf(hi), "max "+formatTick(hi, step/10), maxMark, x0, x1, true)
	c.marker(minAt, yOf(lo), "min "+formatTick(lo, step/10), minMark, x0, x1, false)
}

// marker draws a small square at x, y and its label above (or below).
func (c *canvas) marker(x, y int, label string, col uint8, x0, x1 int, above bool) {
	c.rect(x-3, y-3, x+3, y+3, col)
	lx := min(max(x-textWidth(label)/2, x0+2), x1-textWidth(label))
	ly := y - 8 - charH
	if !above {
		ly = y + 8
	}
	c.text(lx, ly, label, col)
}

// medianGap is the median time between successive points (a minute
// when there are too few to tell).
func medianGap(ts []time.Time) time.Duration {
	if len(ts) < 3 {
		return time.Minute
	}
	gaps := make([]time.Duration, 0, len(ts)-1)
	for i := 1; i < len(ts); i++ {
		gaps = append(gaps, ts[i].Sub(ts[i-1]))
	}
	slices.Sort(gaps)
	return max(gaps[len(gaps)/2], time.Second)
}

// niceTicks returns about n round values (1, 2 or 5 × 10^k apart) that
// cover lo..hi, and their step.
func niceTicks(lo, hi float64, n int) ([]float64, float64) {
	if hi-lo < 1e-9 {
		pad := math.Max(math.Abs(lo)*0.1, 1)
		lo, hi = lo-pad, hi+pad
	}
	raw := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var ticks []float64
	for v := math.Floor(lo/step) * step; v <= hi+step*1e-9 || len(ticks) < 2; v += step {
		ticks = append(ticks, v)
	}
	if ticks[len(ticks)-1] < hi {
		ticks = append(ticks, ticks[len(ticks)-1]+step)
	}
	return ticks, step
}

// formatTick prints v with as many decimals as step needs.
func formatTick(v, step float64) string {
	dec := 0
	if step > 0 && step < 1 {
		dec = int(math.Ceil(-math.Log10(step) - 1e-9))
	}
	if math.Abs(v) < step*1e-6 {
		v = 0
	}
	return strconv.FormatFloat(v, 'f', min(dec, 6), 64)
}

// timeSteps are the time axis' tick spacings, with their label format.
var timeSteps = []struct {
	d   time.Duration
	fmt string
}{
	{time.Minute, "15:04"}, {5 * time.Minute, "15:04"}, {10 * time.Minute, "15:04"}, {15 * time.Minute, "15:04"},
	{30 * time.Minute, "15:04"}, {time.Hour, "15:04"}, {2 * time.Hour, "15:04"}, {3 * time.Hour, "15:04"},
	{6 * time.Hour, "15:04"}, {12 * time.Hour, "Jan 2 15h"}, {24 * time.Hour, "Jan 2"}, {48 * time.Hour, "Jan 2"},
	{7 * 24 * time.Hour, "Jan 2"}, {14 * 24 * time.Hour, "Jan 2"}, {28 * 24 * time.Hour, "Jan 2"},
}

// timeStep picks the spacing that puts at most seven labels on span.
func timeStep(span time.Duration) (time.Duration, string) {
	for _, s := range timeSteps {
		if span/s.d <= 7 {
			return s.d, s.fmt
		}
	}
	last := timeSteps[len(timeSteps)-1]
	return span / 6, last.fmt
}

// firstTick is the first multiple of step at or after from, in loc
// (midnight-aligned for steps of a day or more).
func firstTick(from time.Time, step time.Duration, loc *time.Location) time.Time {
	l := from.In(loc)
	if step >= 24*time.Hour {
		d := time.Date(l.Year(), l.Month(), l.Day(), 0, 0, 0, 0, loc)
		for d.Before(from) {
			d = d.AddDate(0, 0, 1)
		}
		return d
	}
	_, off := l.Zone()
	shift := time.Duration(off) * time.Second
	t := from.Add(shift).Truncate(step).Add(-shift)
	if t.Before(from) {
		t = t.Add(step)
	}
	return t
}
