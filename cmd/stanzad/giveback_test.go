package main

import (
	"runtime"
	"slices"
	"testing"
	"time"
)

// The watch releases the heap once after each busy window that a quiet
// one follows, never at idle however long; collects after windows
// without a collection; and drops the image pages after a burst and
// every imageEvery quiet windows (here 1: the expectations are for it).
func TestBurstWatch(t *testing.T) {
	if imageEvery != 1 {
		t.Fatalf("the cases below are written for imageEvery 1, not %d", imageEvery)
	}
	quiet := func(n int) []uint64 { return make([]uint64, n) }
	ones := func(n int) []uint64 {
		s := make([]uint64, n)
		for i := range s {
			s[i] = 1
		}
		return s
	}
	for _, tt := range []struct {
		name                    string
		cycles                  []uint64 // collections in each window
		release, collect, image []int    // windows after which it does each
	}{
		{"idle, forced collections", ones(5), nil, nil, []int{0, 1, 2, 3, 4}},
		{"idle, none", quiet(4), nil, []int{0, 1, 2, 3}, []int{0, 1, 2, 3}},
		{"one burst", []uint64{1, 12, 30, 4, 1, 1}, []int{4}, nil, []int{0, 4, 5}},
		{"burst then slow", []uint64{5, 2, 1, 1}, []int{2}, nil, []int{2, 3}},
		{"two bursts", []uint64{9, 1, 1, 3, 1, 1}, []int{1, 4}, nil, []int{1, 2, 4, 5}},
		{"steady load", []uint64{5, 5, 5, 5, 5}, nil, nil, nil},
		{"moderate", []uint64{2, 2, 2, 2, 2, 2}, nil, nil, nil},
		{"burst, then idle", []uint64{4, 0, 0, 0}, []int{1}, []int{2, 3}, []int{1, 2, 3}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := burstWatch{last: 100}
			gc := uint64(100)
			var release, collect, image []int
			for i, c := range tt.cycles {
				gc += c
				do := w.step(gc)
				if do.release {
					release = append(release, i)
				}
				if do.collect {
					collect = append(collect, i)
				}
				if do.image {
					image = append(image, i)
				}
				if do.release || do.collect {
					gc++ // the daemon's own collection
					w.last++
				}
			}
			if !slices.Equal(release, tt.release) || !slices.Equal(collect, tt.collect) || !slices.Equal(image, tt.image) {
				t.Fatalf("release %v, collect %v, image %v; want %v, %v, %v", release, collect, image, tt.release, tt.collect, tt.image)
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
