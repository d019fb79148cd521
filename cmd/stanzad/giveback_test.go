package main

import (
	"runtime"
	"slices"
	"testing"
	"time"
)

// The watch gives the heap back once after each busy window that a
// quiet one follows, never at idle however long, and drops the image
// pages after a burst and every imageEvery quiet windows.
func TestBurstWatch(t *testing.T) {
	quiet := func(n int) []uint64 { return make([]uint64, n) }
	for _, tt := range []struct {
		name      string
		cycles    []uint64 // collections in each window
		heap, img []int    // windows after which it gives back
	}{
		{"idle", []uint64{0, 1, 0, 0, 1, 0, 1, 1, 0}, nil, nil},
		{"idle long", quiet(25), nil, []int{9, 19}},
		{"one burst", []uint64{0, 12, 30, 4, 0, 0, 1, 0}, []int{4}, []int{4}},
		{"burst then slow", []uint64{5, 2, 1, 0}, []int{2}, []int{2}},
		{"two bursts", []uint64{9, 0, 0, 3, 1, 0}, []int{1, 4}, []int{1, 4}},
		{"steady load", []uint64{5, 5, 5, 5, 5}, nil, nil},
		{"moderate", []uint64{2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2}, nil, nil},
		{"burst, then idle", append([]uint64{4, 0}, quiet(12)...), []int{1}, []int{1, 11}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := burstWatch{last: 100}
			gc := uint64(100)
			var heap, img []int
			for i, c := range tt.cycles {
				gc += c
				h, im := w.step(gc)
				if h {
					heap = append(heap, i)
					gc++ // FreeOSMemory collects once
					w.last = gc
				}
				if im {
					img = append(img, i)
				}
			}
			if !slices.Equal(heap, tt.heap) || !slices.Equal(img, tt.img) {
				t.Fatalf("heap given back after windows %v, image dropped after %v; want %v, %v", heap, img, tt.heap, tt.img)
			}
		})
	}
}

// The sentinel counts collections: each runtime.GC is seen.
func TestCountGCs(t *testing.T) {
	countGCs()
	for i := range 3 {
		before := gcCycles()
		runtime.GC()
		for deadline := time.Now().Add(10 * time.Second); gcCycles() == before; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("collection %d not counted (count %d)", i+1, before)
			}
		}
	}
}
