package telemetry

import (
	"errors"
	"sync"
	"testing"

	"github.com/stanzad/stanzad/devices"
)

func numbered(i int) devices.Reading {
	return devices.Reading{Device: "d", Fields: []devices.Field{devices.Number("n", float64(i), -1, "")}}
}

func number(r devices.Reading) int { return int(r.Fields[0].Num) }

// pushAll pushes readings 0 to n-1.
func pushAll(t *testing.T, b *Bus, n int) {
	t.Helper()
	for i := range n {
		if err := b.Push(numbered(i)); err != nil {
			t.Fatalf("push %d: %v", i, err)
		}
	}
}

// takeAll takes every waiting reading.
func takeAll(t *testing.T, b *Bus) []int {
	t.Helper()
	var out []int
	for {
		r, ok, _ := b.Take()
		if !ok {
			return out
		}
		out = append(out, number(r))
	}
}

func TestBusOrderAcrossGrowthAndWrap(t *testing.T) {
	b := NewBus(1024)
	if b.ring != nil {
		t.Fatalf("a new bus holds a ring of %d", len(b.ring))
	}
	next, want := 0, 0
	push := func(n int) {
		for range n {
			if err := b.Push(numbered(next)); err != nil {
				t.Fatal(err)
			}
			next++
		}
	}
	take := func(n int) {
		for range n {
			r, ok, closed := b.Take()
			if !ok || closed {
				t.Fatalf("take %d: ok=%v closed=%v", want, ok, closed)
			}
			if number(r) != want {
				t.Fatalf("took %d, want %d", number(r), want)
			}
			want++
		}
	}
	push(10)
	take(7)
	push(12) // wraps the 16-reading ring
	push(40) // grows while wrapped
	take(20)
	push(300)
	take(b.Len())
	if _, ok, closed := b.Take(); ok || closed {
		t.Fatalf("empty bus: ok=%v closed=%v", ok, closed)
	}
	if want != next {
		t.Fatalf("took %d of %d", want, next)
	}
}

func TestBusFullAndClosed(t *testing.T) {
	b := NewBus(4)
	pushAll(t, b, 4)
	if err := b.Push(numbered(4)); !errors.Is(err, ErrBusFull) {
		t.Fatalf("fifth push: %v, want ErrBusFull", err)
	}
	if _, ok, _ := b.Take(); !ok {
		t.Fatal("nothing to take")
	}
	if err := b.Push(numbered(5)); err != nil {
		t.Fatalf("push after a take: %v", err)
	}
	b.Close()
	if err := b.Push(numbered(6)); !errors.Is(err, ErrBusClosed) {
		t.Fatalf("push after close: %v, want ErrBusClosed", err)
	}
	// What was accepted before Close is still taken, then closed.
	if got := takeAll(t, b); len(got) != 4 || got[0] != 1 || got[3] != 5 {
		t.Fatalf("after close took %v, want [1 2 3 5]", got)
	}
	if _, ok, closed := b.Take(); ok || !closed {
		t.Fatalf("closed and empty: ok=%v closed=%v", ok, closed)
	}
}

// A burst's ring goes back once the bus idles; a busy bus keeps its own.
func TestBusRingShrinksAfterBurst(t *testing.T) {
	b := NewBus(1024)
	pushAll(t, b, 1024)
	if len(b.ring) != 1024 {
		t.Fatalf("ring %d after 1024 readings", len(b.ring))
	}
	// Drained after using all of it: kept for the next burst.
	takeAll(t, b)
	if len(b.ring) != 1024 {
		t.Fatalf("ring %d after a full drain, want 1024 kept", len(b.ring))
	}
	// Rounds of 600: still a busy bus.
	for range 3 {
		pushAll(t, b, 600)
		takeAll(t, b)
	}
	if len(b.ring) != 1024 {
		t.Fatalf("ring %d while 600 a round wait, want 1024", len(b.ring))
	}
	// Idle: four readings a round. The ring halves each round.
	sizes := []int{}
	for range 8 {
		pushAll(t, b, 4)
		if got := takeAll(t, b); len(got) != 4 {
			t.Fatalf("took %v", got)
		}
		sizes = append(sizes, len(b.ring))
	}
	want := []int{512, 256, 128, 64, 32, 16, 16, 16}
	for i := range want {
		if sizes[i] != want[i] {
			t.Fatalf("ring sizes over idle rounds %v, want %v", sizes, want)
		}
	}
}

func TestBusReady(t *testing.T) {
	b := NewBus(8)
	select {
	case <-b.Ready():
		t.Fatal("ready while empty")
	default:
	}
	pushAll(t, b, 2)
	<-b.Ready() // one token for both
	b.Take()
	b.Leave() // one still waits
	select {
	case <-b.Ready():
	default:
		t.Fatal("Leave with a reading waiting did not signal")
	}
	b.Take()
	b.Leave()
	select {
	case <-b.Ready():
		t.Fatal("Leave on an empty bus signalled")
	default:
	}
	b.Close()
	select {
	case <-b.Ready():
	default:
		t.Fatal("Close did not signal")
	}
}

// Producers never block and every reading is either taken, in each
// producer's order, or refused with ErrBusFull.
func TestBusConcurrentProducers(t *testing.T) {
	const producers, each = 4, 2000
	b := NewBus(64)
	var refused [producers]int
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range each {
				r := devices.Reading{Device: string(rune('a' + p)), Fields: []devices.Field{{Num: float64(i)}}}
				if err := b.Push(r); err != nil {
					if !errors.Is(err, ErrBusFull) {
						t.Error(err)
					}
					refused[p]++
				}
			}
		})
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		b.Close()
		close(done)
	}()
	last := map[string]int{}
	taken := map[string]int{}
	for closed := false; !closed; {
		<-b.Ready()
		for {
			r, ok, c := b.Take()
			if !ok {
				closed = c
				break
			}
			n := int(r.Fields[0].Num)
			if prev, seen := last[r.Device]; seen && n <= prev {
				t.Fatalf("producer %s: %d after %d", r.Device, n, prev)
			}
			last[r.Device] = n
			taken[r.Device]++
		}
	}
	<-done
	for p := range producers {
		name := string(rune('a' + p))
		if taken[name]+refused[p] != each {
			t.Errorf("producer %s: %d taken + %d refused != %d", name, taken[name], refused[p], each)
		}
	}
}
