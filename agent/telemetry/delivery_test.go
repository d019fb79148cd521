package telemetry

import (
	"fmt"
	"testing"
	"time"

	"github.com/stanzad/stanzad/agent/outbox"
	"github.com/stanzad/stanzad/xmpp"
)

func newTestDeliveries(t *testing.T, n int) (*deliveries, *outbox.Outbox) {
	t.Helper()
	box, err := outbox.Open(t.TempDir(), outbox.Options{Retain: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { box.Close() })
	for i := 1; i <= n; i++ {
		if _, err := box.Append(fmt.Appendf(nil, "r%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	return newDeliveries(box), box
}

// isDue reports, without claiming it, whether id would be sent.
func isDue(d *deliveries, id uint64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.due(id)
}

// sendAll plays the sender: every due record after the cursor is sent.
func sendAll(d *deliveries, box *outbox.Outbox) []uint64 {
	var sent []uint64
	for _, r := range box.Pending(box.Stats().Acked, 1<<20) {
		if d.claim(r.ID) {
			sent = append(sent, r.ID)
		}
	}
	return sent
}

// wantStats checks the outbox's acknowledged id and, unless pending < 0,
// how many records are pending.
func wantStats(t *testing.T, box *outbox.Outbox, acked uint64, pending int, when string) {
	t.Helper()
	if st := box.Stats(); st.Acked != acked || pending >= 0 && st.Pending != pending {
		t.Fatalf("%s: %+v, want acked %d and %d pending (-1: any)", when, st, acked, pending)
	}
}

// sentAgain checks that bounces moved records back (reported once) and
// that the sender's next pass sends exactly want.
func sentAgain(t *testing.T, d *deliveries, box *outbox.Outbox, want string) {
	t.Helper()
	if !d.takeMoved() || d.takeMoved() {
		t.Fatal("records moved back: takeMoved not reported exactly once")
	}
	if got := fmt.Sprint(sendAll(d, box)); got != want {
		t.Fatalf("after the bounces the sender sent %s, want %s", got, want)
	}
}

func TestDeliveriesBounceAfterAck(t *testing.T) {
	d, box := newTestDeliveries(t, 6)
	now := time.Now()
	if got := fmt.Sprint(sendAll(d, box)); got != "[1 2 3 4 5 6]" {
		t.Fatalf("first pass sent %s", got)
	}
	d.acked(6, now)
	wantStats(t, box, 6, 0, "after the server's ack")
	// The server bounces 3 and 5 (offline queue full), 4 and 6 were stored.
	if r := d.bounced(3, true, now); r != bounceRequeued {
		t.Fatalf("bounced(3) = %v, want requeued", r)
	}
	if r := d.bounced(5, true, now); r != bounceRequeued {
		t.Fatalf("bounced(5) = %v, want requeued", r)
	}
	wantStats(t, box, 2, 4, "after the bounces")
	sentAgain(t, d, box, "[3 5]") // only what bounced: 4 and 6 were delivered
	d.acked(3, now)
	wantStats(t, box, 4, -1, "after 3 is acknowledged again (4 was delivered)")
	d.acked(5, now)
	wantStats(t, box, 6, 0, "after 5 is acknowledged again")
}

// A bounce can overtake the acknowledgement: the later ack must not let
// the bounced record go.
func TestDeliveriesBounceBeforeAck(t *testing.T) {
	d, box := newTestDeliveries(t, 4)
	now := time.Now()
	sendAll(d, box)
	d.bounced(2, true, now)
	d.acked(4, now)
	wantStats(t, box, 1, 3, "after bounce then ack")
	if got := fmt.Sprint(sendAll(d, box)); got != "[2]" {
		t.Fatalf("resend = %s, want [2]", got)
	}
	d.acked(2, now)
	if st := box.Stats(); st.Acked != 4 {
		t.Fatalf("acked %d, want 4", st.Acked)
	}
}

func TestDeliveriesRefusedAndUnknown(t *testing.T) {
	d, box := newTestDeliveries(t, 3)
	now := time.Now()
	sendAll(d, box)
	// Refused for good (no such user): done, never sent again.
	if r := d.bounced(1, false, now); r != bounceRefused {
		t.Fatalf("bounced(1, no retry) = %v, want refused", r)
	}
	wantStats(t, box, 1, -1, "a refused record keeps the outbox")
	if r := d.bounced(99, true, now); r != bounceUnknown {
		t.Fatalf("bounce for an id never sent = %v, want unknown", r)
	}
	// A stream that ends unresumed: what was in flight goes out again.
	d.newStream()
	if got := fmt.Sprint(sendAll(d, box)); got != "[2 3]" {
		t.Fatalf("after a new stream sent %s, want [2 3]", got)
	}
	// A bounce for the old stream's stanza after the new stream began is
	// not mistaken for one of the new stream: 2 is in flight again.
	d.acked(3, now)
	if r := d.bounced(1, true, now); r != bounceUnknown || box.Stats().Pending != 0 {
		t.Fatalf("a second bounce of a refused record = %v, %+v; want it ignored", r, box.Stats())
	}
}

// A bounce later than the outbox keeps records is a loss: reported, and
// the record is not waited for.
func TestDeliveriesLost(t *testing.T) {
	box, err := outbox.Open(t.TempDir(), outbox.Options{}) // retains nothing
	if err != nil {
		t.Fatal(err)
	}
	defer box.Close()
	for range 2 {
		box.Append([]byte("r"))
	}
	d := newDeliveries(box)
	now := time.Now()
	sendAll(d, box)
	d.acked(2, now)
	if r := d.bounced(1, true, now); r != bounceLost {
		t.Fatalf("bounce of a record the outbox let go = %v, want lost", r)
	}
	if got := sendAll(d, box); len(got) != 0 {
		t.Fatalf("sent %v after a lost bounce", got)
	}
}

func TestBounceID(t *testing.T) {
	for _, tt := range []struct {
		id   string
		want uint64
		ok   bool
	}{
		{"r-42", 42, true}, {"r-1", 1, true},
		{"r-0", 0, false}, {"r-", 0, false}, {"r-x", 0, false}, {"42", 0, false}, {"p0-42", 0, false},
		{"r-18446744073709551616", 0, false},
	} {
		if got, ok := bounceID(tt.id); got != tt.want || ok != tt.ok {
			t.Errorf("bounceID(%q) = %d, %v; want %d, %v", tt.id, got, ok, tt.want, tt.ok)
		}
	}
}

func TestRetryable(t *testing.T) {
	chat, room := &Sink{kind: "chat"}, &Sink{kind: "muc", room: &room{}}
	for _, tt := range []struct {
		s    *Sink
		typ  string
		cond string
		want bool
	}{
		{chat, "wait", "resource-constraint", true},
		{chat, "cancel", "service-unavailable", true},
		{chat, "wait", "recipient-unavailable", true},
		{chat, "cancel", "item-not-found", false},
		{chat, "auth", "forbidden", false},
		{chat, "modify", "policy-violation", false},
		{room, "modify", "not-acceptable", true},
		{room, "cancel", "service-unavailable", false},
		{room, "wait", "resource-constraint", true},
		{chat, "cancel", "undefined-condition", true}, // a bounce without <error/>
		{chat, "bogus", "undefined-condition", true},
	} {
		e := &xmpp.StanzaError{Type: tt.typ, Condition: tt.cond}
		if got := retryable(tt.s, e); got != tt.want {
			t.Errorf("retryable(%s, %s/%s) = %v, want %v", tt.s.kind, tt.typ, tt.cond, got, tt.want)
		}
	}
}

func TestSinkHoldBackoff(t *testing.T) {
	var h sinkHold
	t0 := time.Unix(1000, 0)
	if d := h.set(t0, "a"); d != holdFirst {
		t.Fatalf("first hold %v, want %v", d, holdFirst)
	}
	if d := h.set(t0.Add(time.Second), "b"); d != holdFirst-time.Second {
		t.Fatalf("a bounce during the hold extends nothing: %v", d)
	}
	if d := h.set(t0.Add(holdFirst), "c"); d != 2*holdFirst {
		t.Fatalf("second hold %v, want %v", d, 2*holdFirst)
	}
	h.lift(t0.Add(holdFirst + time.Second))
	if d, _ := h.left(t0.Add(holdFirst + time.Second)); d != 0 {
		t.Fatalf("hold left after lift: %v", d)
	}
	for range 10 {
		h.set(t0.Add(time.Hour), "d")
		h.lift(t0.Add(time.Hour))
	}
	if d := h.set(t0.Add(time.Hour), "e"); d > holdMax {
		t.Fatalf("hold %v beyond %v", d, holdMax)
	}
	if d := h.set(t0.Add(3*time.Hour), "f"); d != holdFirst {
		t.Fatalf("hold after a long quiet %v, want %v afresh", d, holdFirst)
	}
}

// A write that failed before the stream had the stanza leaves the
// record due: a resumed stream must not take it for in flight.
func TestDeliveriesUnsent(t *testing.T) {
	d, box := newTestDeliveries(t, 2)
	if !d.claim(1) || !d.claim(2) || d.claim(1) {
		t.Fatal("claim: a new record not claimed, or one in flight claimed twice")
	}
	d.unsent(2)
	if !isDue(d, 2) || isDue(d, 1) {
		t.Fatalf("due(1)=%v due(2)=%v after unsent(2); want false, true", isDue(d, 1), isDue(d, 2))
	}
	d.acked(1, time.Now())
	if got := fmt.Sprint(sendAll(d, box)); got != "[2]" {
		t.Fatalf("sent %s, want [2]", got)
	}
}

// Records the outbox dropped while it was full (a long hold) are not
// followed: the window starts at the outbox's cursor, not at the first
// record the sink ever saw.
func TestDeliveriesAfterDrops(t *testing.T) {
	box, err := outbox.Open(t.TempDir(), outbox.Options{Retain: time.Minute, Max: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer box.Close()
	d := newDeliveries(box)
	box.Append([]byte("r1"))
	d.claim(1)
	for range 5000 {
		box.Append([]byte("0123456789")) // ten bytes: ten fit, the rest push the oldest out
	}
	first := box.Pending(box.Stats().Acked, 1)[0].ID
	d.claim(first)
	if n := len(d.state); n > 2 {
		t.Fatalf("following %d records after the outbox dropped all but ten; want the window at its cursor", n)
	}
	d.acked(first, time.Now())
	if st := box.Stats(); st.Acked != first {
		t.Fatalf("acked %d, want %d", st.Acked, first)
	}
}

// A bounce for a record this sink no longer follows (acknowledged more
// than deliveryRetain ago, or sent by the sink this one replaced) that
// the outbox still retains: sent again, and nothing acknowledged past it
// until it is delivered; a refusal for good counts as refused.
func TestDeliveriesLateBounce(t *testing.T) {
	d, box := newTestDeliveries(t, 4)
	now := time.Now()
	sendAll(d, box)
	d.acked(4, now)
	later := now.Add(deliveryRetain + time.Second)
	settle := func() {
		d.mu.Lock()
		d.settle(later)
		d.mu.Unlock()
	}
	settle() // the window lets 1..4 go
	if d.lookup(1) != nil {
		t.Fatal("the window still follows 2; the test needs it let go")
	}
	if r := d.bounced(1, false, later); r != bounceRefused {
		t.Fatalf("late refusal = %v, want refused", r)
	}
	if r := d.bounced(3, true, later); r != bounceRequeued {
		t.Fatalf("late bounce = %v, want requeued", r)
	}
	sentAgain(t, d, box, "[3]")
	settle() // as any other ack would: 3 is not delivered yet
	wantStats(t, box, 2, -1, "before 3 is delivered again")
	d.acked(3, later)
	wantStats(t, box, 4, 0, "after 3 is delivered again")
}

// A bounce for a record older than what the outbox still retains: Rewind
// restores only the newest acknowledged records, so the bounced one is
// lost, and the ones it restored are acknowledged again at once.
func TestDeliveriesBouncePartlyRetained(t *testing.T) {
	box, err := outbox.Open(t.TempDir(), outbox.Options{Retain: time.Minute, RetainBytes: 300})
	if err != nil {
		t.Fatal(err)
	}
	defer box.Close()
	for i := 1; i <= 10; i++ {
		box.Append(fmt.Appendf(nil, "%0100d", i)) // 100 bytes each: 3 fit in RetainBytes
	}
	d := newDeliveries(box)
	now := time.Now()
	sendAll(d, box)
	d.acked(10, now)
	if r := d.bounced(2, true, now); r != bounceLost {
		t.Fatalf("bounce of a record the outbox no longer retains = %v, want lost", r)
	}
	wantStats(t, box, 10, 0, "after a lost bounce")
	if got := sendAll(d, box); len(got) != 0 {
		t.Fatalf("sent %v after a lost bounce", got)
	}
}
