package chart

import (
	"math"
	"os"
	"testing"
	"time"

	"github.com/stanzad/stanzad/agent/history"
)

func TestSampleImage(t *testing.T) {
	out := os.Getenv("CHART_SAMPLE")
	if out == "" {
		t.Skip("CHART_SAMPLE not set")
	}
	var temp, hum []history.Point
	for m := 0; m < 24*60; m += 2 {
		if m > 600 && m < 700 {
			continue
		}
		v := 15 + 6*math.Sin(float64(m)/1440*2*math.Pi-1.8) + 0.4*math.Sin(float64(m)/17)
		temp = append(temp, history.Point{T: t0.Add(time.Duration(m) * time.Minute), Min: v - 0.3, Avg: v, Max: v + 0.3, N: 12})
		hum = append(hum, history.Point{T: t0.Add(time.Duration(m) * time.Minute), Min: 60 - v, Avg: 62 - v, Max: 64 - v, N: 12})
	}
	b, _, err := Render(Chart{Title: "greenhouse, last 24h", From: t0, To: t0.Add(24 * time.Hour), Panels: []Panel{
		{Name: "temperature", Unit: "°C", Points: temp}, {Name: "humidity", Unit: "%", Points: hum}}})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(out, b, 0o644)
}
