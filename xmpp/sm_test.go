package xmpp

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestSMWindow drives the window with random sends and acks against a
// list of copies: what a resumed stream would send again, the tags acked
// and the count pending always match, through compaction and reuse.
func TestSMWindow(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	m := &smState{}
	var model [][]byte
	var tags []uint64
	next := uint64(1)
	for step := range 20000 {
		if rng.IntN(3) > 0 || len(model) == 0 {
			b := make([]byte, 1+rng.IntN(300))
			for i := range b {
				b[i] = byte('a' + rng.IntN(26))
			}
			tag := uint64(0)
			if rng.IntN(2) == 0 {
				tag, next = next, next+1
			}
			if err := m.sent(b, tag, false); err != nil {
				t.Fatal(err)
			}
			model = append(model, b)
			tags = append(tags, tag)
		} else {
			n := 1 + rng.IntN(len(model))
			got, err := m.ack(m.acked + uint32(n))
			if err != nil {
				t.Fatal(err)
			}
			var want []uint64
			for _, tag := range tags[:n] {
				if tag != 0 {
					want = append(want, tag)
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("step %d: ack %d = tags %v, want %v", step, n, got, want)
			}
			model, tags = model[n:], tags[n:]
		}
		if c := cap(m.buf); c&(c-1) != 0 || c > 0 && c < 2<<10 {
			t.Fatalf("step %d: window capacity %d, want a power of two from 2 KiB", step, c)
		}
		if m.pending() != len(model) || !bytes.Equal(m.unacked(), bytes.Join(model, nil)) {
			t.Fatalf("step %d: window holds %d stanzas %.40q…, want %d", step, m.pending(), m.unacked(), len(model))
		}
	}
}

// TestSMWindowReuse: a stanza sent and acked costs no allocation once the
// window has grown, and what a burst grew is let go once it is acked.
func TestSMWindowReuse(t *testing.T) {
	m := &smState{}
	b := bytes.Repeat([]byte("x"), 500)
	cycle := func() {
		for i := range 4 {
			m.sent(b, uint64(i+1), false)
		}
		m.ack(m.acked + 2)
		m.ack(m.acked + 2)
	}
	cycle()
	if n := testing.AllocsPerRun(100, cycle); n != 0 {
		t.Errorf("send and ack allocate %v times per 4 stanzas, want 0", n)
	}
	for i := range 1000 {
		m.sent(b, uint64(i+1), false)
	}
	if cap(m.buf) <= smKeep {
		t.Fatalf("burst window %d bytes, expected more than %d", cap(m.buf), smKeep)
	}
	m.ack(m.acked + 1000)
	if m.pending() != 0 || cap(m.buf) > smKeep || cap(m.q) > smKeep/64 {
		t.Errorf("after the burst: %d pending, window kept %d bytes and %d entries", m.pending(), cap(m.buf), cap(m.q))
	}
}
