package chart

import (
	"bytes"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stanzad/stanzad/agent/history"
)

var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

// ramp is 0→100 over an hour at one point a minute, with no readings
// from minute 20 to minute 40.
func ramp() []history.Point {
	var pts []history.Point
	for m := range 60 {
		if m >= 20 && m < 40 {
			continue
		}
		v := float64(m) * 100 / 60
		pts = append(pts, history.Point{T: t0.Add(time.Duration(m) * time.Minute), Min: v, Avg: v, Max: v, N: 1})
	}
	return pts
}

func decode(t *testing.T, b []byte) image.Image {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not a PNG Go can read: %v", err)
	}
	return img
}

func is(img image.Image, x, y int, idx uint8) bool {
	r, g, b, _ := img.At(x, y).RGBA()
	p := palette[idx]
	return uint8(r>>8) == p[0] && uint8(g>>8) == p[1] && uint8(b>>8) == p[2]
}

// The renderer on fixed data: pixels where the data says, none in the
// gap, the extremes marked, the size as stated.
func TestRender(t *testing.T) {
	b, h, err := Render(Chart{Title: "greenhouse, last hour", From: t0, To: t0.Add(time.Hour), Loc: time.UTC,
		Panels: []Panel{{Name: "temperature", Unit: "°C", Points: ramp()}}})
	if err != nil {
		t.Fatal(err)
	}
	img := decode(t, b)
	if img.Bounds() != image.Rect(0, 0, Width, titleHeight+PanelHeight) || h != img.Bounds().Dy() {
		t.Fatalf("image is %v (height %d), want %dx%d", img.Bounds(), h, Width, titleHeight+PanelHeight)
	}
	// Plot area: x from 84 over 620 columns; values 0..100 (ticks every
	// 20) from y 262 (0) up to y 66 (100).
	px := func(m float64) int { return left + int(m/60*620) }
	py := func(v float64) int { return 262 - int(math.Round(v/100*196)) }
	for _, m := range []float64{5, 10, 15, 45, 50} {
		x, y := px(m), py(m*100/60)
		if !is(img, x, y, line) && !is(img, x, y+1, line) && !is(img, x+1, y, line) {
			t.Errorf("minute %v: no line at (%d, %d)", m, x, y)
		}
	}
	for x := px(22); x <= px(38); x++ {
		for y := 66; y < 262; y++ {
			if is(img, x, y, line) || is(img, x, y, band) {
				t.Fatalf("data drawn in the gap at (%d, %d)", x, y)
			}
		}
	}
	count := func(idx uint8, x0, y0, x1, y1 int) int {
		n := 0
		for y := y0; y <= y1; y++ {
			for x := x0; x <= x1; x++ {
				if is(img, x, y, idx) {
					n++
				}
			}
		}
		return n
	}
	if n := count(maxMark, px(59)-4, py(98.3)-4, px(59)+4, py(98.3)+4); n < 20 {
		t.Errorf("no max marker at the last point (%d pixels)", n)
	}
	if n := count(minMark, px(0)-4, py(0)-4, px(0)+4, py(0)+4); n < 20 {
		t.Errorf("no min marker at the first point (%d pixels)", n)
	}
	if n := count(black, 0, 0, Width-1, titleHeight-1); n < 100 {
		t.Errorf("no title (%d black pixels)", n)
	}
	if n := count(black, 0, 262+4, Width-1, titleHeight+PanelHeight-1); n < 100 {
		t.Errorf("no time labels (%d black pixels)", n)
	}
}

// The font draws the glyph's bits at the scale.
func TestText(t *testing.T) {
	c := &canvas{w: 40, h: 20, pix: make([]uint8, 800)}
	if w := c.text(2, 2, "1°", black); w != 2*charW {
		t.Fatalf("width %d", w)
	}
	g := glyph('1')
	for col := range 5 {
		for row := range 7 {
			want := g[col]&(1<<row) != 0
			if got := c.pix[(2+row*scale)*40+2+col*scale] == black; got != want {
				t.Fatalf("'1' column %d row %d: %v, want %v", col, row, got, want)
			}
		}
	}
	if glyph('é') != glyph('?') || glyph('°') != degree {
		t.Error("glyph fallbacks")
	}
}

// Several fields are panels of one image; a field without readings in
// range says so instead of failing; a year of points renders in the
// same bounded buffer.
func TestRenderPanels(t *testing.T) {
	var year []history.Point
	for m := 0; m < 365*24*60; m += 7 {
		v := math.Sin(float64(m) / 1000)
		year = append(year, history.Point{T: t0.Add(time.Duration(m) * time.Minute), Min: v - 0.1, Avg: v, Max: v + 0.1, N: 7})
	}
	b, h, err := Render(Chart{Title: "x", From: t0, To: t0.Add(365 * 24 * time.Hour), Panels: []Panel{
		{Name: "a", Points: year}, {Name: "b"}, {Name: "c", Unit: "%", Points: year[:10]},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if img := decode(t, b); img.Bounds().Dy() != titleHeight+3*PanelHeight || h != img.Bounds().Dy() {
		t.Fatalf("three panels: %v", img.Bounds())
	}
	if _, _, err := Render(Chart{From: t0, To: t0}); err != ErrEmpty {
		t.Errorf("empty chart: %v", err)
	}
	_ = color.White
}

func TestNiceTicks(t *testing.T) {
	for _, tt := range []struct {
		lo, hi     float64
		first, end float64
		step       float64
	}{
		{0, 100, 0, 100, 20},
		{12.3, 21.7, 12, 22, 2},
		{-3.2, 0.4, -4, 1, 1},
		{5, 5, 4, 6, 0.5},
	} {
		ticks, step := niceTicks(tt.lo, tt.hi, 5)
		if step != tt.step || ticks[0] != tt.first || math.Abs(ticks[len(ticks)-1]-tt.end) > 1e-9 {
			t.Errorf("niceTicks(%v, %v) = %v step %v", tt.lo, tt.hi, ticks, step)
		}
	}
}

// The chunks' CRC, computed without hash/crc32's table, is CRC-32 IEEE,
// also when updated in parts.
func TestCRCIEEE(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	for n := range 300 {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(rnd.Uint32())
		}
		cut := n / 3
		if got, want := crcIEEE(crcIEEE(0, p[:cut]), p[cut:]), crc32.ChecksumIEEE(p); got != want {
			t.Fatalf("%d bytes: %#x, want %#x", n, got, want)
		}
	}
}
