package xmpp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestPacerWindow(t *testing.T) {
	var p pacer
	ctx := context.Background()
	t0 := time.Unix(1000, 0)
	// Nothing in flight: one stanza always goes, however large.
	if err := p.wait(ctx, 64<<10, nil); err != nil {
		t.Fatalf("wait with nothing in flight = %v", err)
	}
	p.add(1500, t0)
	if err := p.wait(ctx, 500, nil); err != nil {
		t.Fatalf("wait within the window = %v", err)
	}
	p.add(500, t0)
	// 2000 of the 2048-byte minimum window in flight: 100 more must wait
	// until the server acknowledges.
	waited := make(chan error, 1)
	go func() { waited <- p.wait(ctx, 100, nil) }()
	select {
	case err := <-waited:
		t.Fatalf("wait past the window returned %v before any ack", err)
	case <-time.After(slowWait + 50*time.Millisecond):
	}
	// The server acknowledges the first 1500 bytes after a second, while
	// a sender waited: 1500 B/s over a 1 s round trip, a window of
	// bdpFactor times that product.
	p.release(1500, t0.Add(time.Second))
	if err := <-waited; err != nil {
		t.Fatalf("wait after the ack = %v", err)
	}
	st := p.stats(time.Now())
	if st.Rate != 1500 || st.RTT != time.Second || st.Window != bdpFactor*1500 || st.InFlight != 500 || !st.Limited {
		t.Errorf("after a slow ack: %+v, want rate 1500, RTT 1s, window %d, 500 in flight, limited", st, bdpFactor*1500)
	}
	// A fast server: 400 kB acknowledged 250 ms after they were sent,
	// while senders wait: the rate follows, the round trip is shorter.
	p.release(500, t0.Add(time.Second))
	p.add(400_000, t0.Add(2*time.Second))
	go p.wait(ctx, 1, nil) // marks the sample as window-bound
	time.Sleep(20 * time.Millisecond)
	p.release(400_000, t0.Add(2*time.Second+250*time.Millisecond))
	st = p.stats(time.Now())
	if want := (1500 + 1_600_000) / 2; st.Rate != float64(want) || st.RTT != 250*time.Millisecond || st.Window != bdpFactor*want/4 {
		t.Errorf("after a fast ack: %+v, want rate %d, RTT 250ms, window %d", st, want, bdpFactor*want/4)
	}
	if st := p.stats(time.Now().Add(limitedRecent)); st.Limited {
		t.Errorf("Limited a minute after the last slow wait: %+v", st)
	}
}

// A shaper's burst: the server takes 100 kB/s with a 20 ms round trip,
// then 3000 B/s. The window during the burst is a few kB, not a second
// of the burst's rate, and it shrinks to the minimum once the slow rate
// is measured: what queues in front of a command stays small.
func TestPacerAfterBurst(t *testing.T) {
	var p pacer
	now := time.Unix(2000, 0)
	p.add(2000, now)
	p.limited = true
	now = now.Add(20 * time.Millisecond)
	p.release(2000, now) // RTT 20 ms
	for range 13 {       // 260 ms at 100 kB/s, window-bound
		p.add(2000, now)
		p.limited = true
		now = now.Add(20 * time.Millisecond)
		p.release(2000, now)
	}
	burst := p.stats(now)
	if burst.RTT != 20*time.Millisecond || burst.Window > bdpFactor*2000+500 {
		t.Fatalf("during the burst: %+v, want RTT 20ms and a window of a few kB", burst)
	}
	for range 8 { // the shaper: 3000 B/s
		p.add(750, now)
		p.limited = true
		now = now.Add(250 * time.Millisecond)
		p.release(750, now)
	}
	if st := p.stats(now); st.Window != minWindow || st.Rate > 4000 {
		t.Errorf("after the burst: %+v, want the minimum window and ~3000 B/s", st)
	}
	// Queueing makes later round trips long; the minimum stays, so the
	// window does not grow with the queue. A new stream measures afresh.
	p.add(750, now)
	now = now.Add(10 * time.Second)
	p.release(750, now)
	if st := p.stats(now); st.RTT != 20*time.Millisecond || st.Window != minWindow {
		t.Errorf("after a queued round trip: %+v, want RTT 20ms, minimum window", st)
	}
	p.reset()
	if st := p.stats(now); st.RTT != 0 {
		t.Errorf("after reset: RTT %v, want unmeasured", st.RTT)
	}
}

func TestPacerWaitEnds(t *testing.T) {
	var p pacer
	p.add(minWindow, time.Now())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.wait(ctx, 1, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("wait with a cancelled ctx = %v", err)
	}
	closed := make(chan struct{})
	close(closed)
	if err := p.wait(context.Background(), 1, closed); !errors.Is(err, ErrClosed) {
		t.Errorf("wait on a closed session = %v, want ErrClosed", err)
	}
	// A new stream forgets what was in flight: waiters go on.
	waited := make(chan error, 1)
	go func() { waited <- p.wait(context.Background(), 1, nil) }()
	time.Sleep(20 * time.Millisecond)
	p.reset()
	if err := <-waited; err != nil {
		t.Errorf("wait across a reset = %v", err)
	}
}

// Telemetry that the server has not acknowledged holds back further
// telemetry, never an answer: the peer sees the untracked stanza before
// the tracked one that waited for the window.
func TestSessionPacesTelemetry(t *testing.T) {
	reading := []byte("<message to='b@iot.test'><body>" + strings.Repeat("x", 900) + "</body></message>")
	order := make(chan string, 16)
	release := make(chan struct{})
	cfg, done := scriptedPeer(t, &peer{sm: true}, "secret", func(p *peer) error {
		n := 0
		for {
			el, _, err := p.element()
			if err != nil {
				return err
			}
			switch el.Name {
			case "r":
				continue
			case "message":
				n++
				order <- fmt.Sprintf("reading %d", n)
			case "iq":
				order <- "answer"
				<-release
				p.send("<a xmlns='urn:xmpp:sm:3' h='3'/>") // two readings and the answer
			}
			if n == 3 {
				return nil
			}
		}
	})
	cfg.sm = &smState{}
	s, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(context.Background())
	defer s.Close(context.Background())
	for i := uint64(1); i <= 2; i++ {
		if err := s.SendTracked(context.Background(), reading, i); err != nil {
			t.Fatal(err)
		}
	}
	third := make(chan error, 1)
	go func() { third <- s.SendTracked(context.Background(), reading, 3) }()
	time.Sleep(50 * time.Millisecond)
	if err := s.SendRaw(context.Background(), []byte("<iq type='result' id='x'/>")); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := <-third; err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("peer: %v", err)
	}
	close(order)
	var got []string
	for o := range order {
		got = append(got, o)
	}
	if want := "reading 1, reading 2, answer, reading 3"; strings.Join(got, ", ") != want {
		t.Errorf("peer saw %s, want %s", strings.Join(got, ", "), want)
	}
}
