package telemetry

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/devices"
	"github.com/stanzad/stanzad/xmpp"
)

// An error message answering a reading message is matched to the sink
// and record it answers: counted, the record queued again, the sink
// held, status and presence saying so. Error messages that answer
// nothing of ours change nothing.
func TestHandleBounce(t *testing.T) {
	cfg := &config.Config{
		XMPP:  config.XMPP{JID: "device@iot.test/agent"},
		Agent: config.Agent{StateDir: t.TempDir()},
		ACL:   config.ACL{Operators: []string{"op@iot.test"}},
		Sinks: []config.Sink{
			{Kind: "chat", To: "op@iot.test", Devices: []string{"*"}},
			{Kind: "chat", To: "watcher@iot.test", Devices: []string{"*"}},
		},
	}
	changed := make(chan struct{}, 1)
	var sinks []*Sink
	p := New(slog.New(slog.DiscardHandler), Hooks{
		Sinks:       func() []*Sink { return sinks },
		Offline:     func(xmpp.JID) bool { return false },
		HoldChanged: func() { signal(changed) },
	})
	for i := range cfg.Sinks {
		s, err := p.NewSink(cfg, i, xmpp.MustParseJID(cfg.XMPP.JID), nil)
		if err != nil {
			t.Fatal(err)
		}
		sinks = append(sinks, s)
	}
	defer p.Close(sinks)
	sk := sinks[1]
	r := devices.Reading{Device: "t", Time: time.Now(), Fields: []devices.Field{devices.Number("v", 1, 0, "")}}
	for range 3 {
		sk.enqueue(nil, "", []devices.Reading{r}, p.log)
	}
	for id := uint64(1); id <= 3; id++ {
		sk.dl.claim(id)
	}
	p.OnAck([]uint64{sk.tag(3)})
	if st := sk.box.Stats(); st.Acked != 3 {
		t.Fatalf("server ack did not reach the outbox: %+v", st)
	}
	bounce := func(from, id, errXML string) bool {
		t.Helper()
		st, err := xmpp.ParseElement("<message xmlns='jabber:client' type='error' from='" + from + "' id='" + id + "'>" + errXML + "</message>")
		if err != nil {
			t.Fatal(err)
		}
		return p.handleBounce(context.Background(), nil, st, xmpp.MustParseJID(from))
	}
	const full = "<error type='wait'><resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>offline message queue is full</text></error>"
	// Not ours: another id scheme, another sender.
	if bounce("watcher@iot.test", "abc", full) || bounce("stranger@iot.test", "r-2", full) {
		t.Fatal("an error message that answers no reading was taken for a bounce")
	}
	if !bounce("watcher@iot.test/phone", "r-2", full) {
		t.Fatal("bounce of r-2 not handled")
	}
	if sk.bounced.Load() != 1 || sinks[0].bounced.Load() != 0 {
		t.Fatalf("bounces counted %d/%d, want on the watcher's sink only", sinks[0].bounced.Load(), sk.bounced.Load())
	}
	if st := sk.box.Stats(); st.Acked != 1 || st.Pending != 2 {
		t.Fatalf("after the bounce: %+v, want 2 and 3 pending again", st)
	}
	select {
	case <-changed:
	default:
		t.Error("a bounce hold did not signal a presence update")
	}
	if b := p.Bounced(time.Now()); !slices.Equal(b, []string{"watcher@iot.test"}) {
		t.Errorf("bounced sinks %q; presence would not say readings bounce to watcher@iot.test", b)
	}
	line := p.Statuses(nil, time.Now())[1].String()
	for _, want := range []string{"2 waiting", "1 bounced by the server", "held: the server bounced readings (wait/resource-constraint: offline message queue is full); sending again in 10s"} {
		if !strings.Contains(line, want) {
			t.Errorf("status line %q lacks %q", line, want)
		}
	}
	if n := p.HeldCount(); n != 1 {
		t.Errorf("%d sinks held, want 1 (the summary counts them)", n)
	}
	// A malformed bounce (no <error/>): the reading is kept, not dropped.
	sk.dl.claim(2)
	if !bounce("watcher@iot.test", "r-2", "<body>no error element</body>") || !isDue(sk.dl, 2) || sk.rejected.Load() != 0 {
		t.Fatalf("a bounce without <error/>: due %v, rejected %d; want it queued again", isDue(sk.dl, 2), sk.rejected.Load())
	}
	// Refused for good: counted as refused, not sent again.
	if !bounce("watcher@iot.test", "r-3", "<error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>") {
		t.Fatal("bounce of r-3 not handled")
	}
	if sk.rejected.Load() != 1 || isDue(sk.dl, 3) {
		t.Errorf("refused record: rejected %d, due %v; want 1, false", sk.rejected.Load(), isDue(sk.dl, 3))
	}
}

// A room's bounce comes from the room itself; an error message from an
// occupant (room/nick) with a reading's id is not taken for one.
func TestRoomBounceOnlyFromRoom(t *testing.T) {
	cfg := &config.Config{
		XMPP:  config.XMPP{JID: "device@iot.test/agent"},
		Agent: config.Agent{StateDir: t.TempDir()},
		Sinks: []config.Sink{{Kind: "muc", Room: "lab@conference.iot.test", Nick: "device", Devices: []string{"*"}, Batch: 1}},
	}
	var sinks []*Sink
	p := New(slog.New(slog.DiscardHandler), Hooks{
		Sinks:       func() []*Sink { return sinks },
		Offline:     func(xmpp.JID) bool { return false },
		HoldChanged: func() {},
	})
	s, err := p.NewSink(cfg, 0, xmpp.MustParseJID(cfg.XMPP.JID), nil)
	if err != nil {
		t.Fatal(err)
	}
	sinks = append(sinks, s)
	defer p.Close(sinks)
	for _, tt := range []struct {
		from string
		want *Sink
	}{
		{"lab@conference.iot.test", s},
		{"lab@conference.iot.test/mallory", nil},
		{"other@conference.iot.test", nil},
	} {
		if got := p.sinkFor(xmpp.MustParseJID(tt.from)); got != tt.want {
			t.Errorf("sinkFor(%s) = %v, want %v", tt.from, got, tt.want)
		}
	}
}
