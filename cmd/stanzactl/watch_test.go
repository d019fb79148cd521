package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stanzad/stanzad/xmpp"
)

// event is a pubsub notification of one stanzad item (id = seqnr) on
// the greenhouse node, with an XEP-0203 delay if delayed.
func event(t *testing.T, id string, delayed bool) *xmpp.Element {
	t.Helper()
	s := `<message from='pubsub.iot.test' to='operator@iot.test/ctl'><event xmlns='http://jabber.org/protocol/pubsub#event'>` +
		`<items node='urn:xmpp:iot:sensordata/greenhouse'><item id='` + id + `'>` +
		`<fields xmlns='urn:xmpp:iot:sensordata' seqnr='` + id + `' done='true'><node nodeId='greenhouse'>` +
		`<timestamp value='2026-11-25T10:00:0` + id + `Z'><numeric name='temperature' momentary='true' value='2` + id + `' unit='°C'/></timestamp>` +
		`</node></fields></item></items></event>`
	if delayed {
		s += `<delay xmlns='urn:xmpp:delay' from='pubsub.iot.test' stamp='2026-11-25T10:00:00Z'/>`
	}
	el, err := xmpp.ParseElement(s + `</message>`)
	if err != nil {
		t.Fatal(err)
	}
	return el
}

// A replayed item (the node's last item from before the watch, or one
// the service stamps with <delay/>) is shown once, marked, and not
// counted; a replay of an item already shown is not shown again.
func TestWatchReplays(t *testing.T) {
	const node = "urn:xmpp:iot:sensordata/greenhouse"
	steps := []struct {
		name    string
		id      string
		delayed bool
		want    string // the line printed, "" none
		counted int
	}{
		{"last item sent on subscribe (Prosody: no delay)", "4", false, "2026-11-25T10:00:04Z greenhouse: temperature=24 °C  # replayed", 0},
		{"the same again on presence", "4", false, "", 0},
		{"the same again, delayed", "4", true, "", 0},
		{"live", "5", false, "2026-11-25T10:00:05Z greenhouse: temperature=25 °C", 1},
		{"live again (republished after a reconnect)", "5", false, "", 0},
		{"an older item replayed with delay (ejabberd)", "3", true, "2026-11-25T10:00:03Z greenhouse: temperature=23 °C  # replayed", 0},
		{"that replay arriving twice", "3", true, "", 0},
		{"live after the replays", "6", false, "2026-11-25T10:00:06Z greenhouse: temperature=26 °C", 1},
	}
	var r replays
	r.existed(node, "4")
	for _, st := range steps {
		var out bytes.Buffer
		n := r.event(&out, event(t, st.id, st.delayed), []string{"greenhouse"})
		got := strings.TrimSuffix(out.String(), "\n")
		if got != st.want || n != st.counted {
			t.Errorf("%s: item %s printed %q, counted %d; want %q, %d", st.name, st.id, got, n, st.want, st.counted)
		}
	}
}

// The ids replays keeps per node are bounded; the newest are kept.
func TestWatchReplaysBounded(t *testing.T) {
	var r replays
	for i := range maxShown + 10 {
		r.check("n", string(rune('a'+i%26))+strings.Repeat("x", i/26), false)
	}
	if n := len(r.shown["n"]); n != maxShown {
		t.Fatalf("kept %d ids, want %d", n, maxShown)
	}
	if show, _ := r.check("n", "a", false); !show {
		t.Error("the oldest id is still remembered")
	}
	last := string(rune('a'+(maxShown+9)%26)) + strings.Repeat("x", (maxShown+9)/26)
	if show, _ := r.check("n", last, false); show {
		t.Error("the newest id was forgotten")
	}
}

// Other messages from the service, and items that are not readings, are
// not printed.
func TestWatchReplaysIgnores(t *testing.T) {
	var r replays
	var out bytes.Buffer
	for _, s := range []string{
		`<message from='pubsub.iot.test'><body>hi</body></message>`,
		`<message from='pubsub.iot.test'><event xmlns='http://jabber.org/protocol/pubsub#event'><items node='n'><item id='1'><entry xmlns='http://www.w3.org/2005/Atom'/></item><item id='2'/></items></event></message>`,
		`<message from='pubsub.iot.test'><event xmlns='http://jabber.org/protocol/pubsub#event'><items node='n'><retract id='1'/></items></event></message>`,
	} {
		el, err := xmpp.ParseElement(s)
		if err != nil {
			t.Fatal(err)
		}
		if n := r.event(&out, el, nil); n != 0 || out.Len() != 0 {
			t.Errorf("event(%s) = %d, printed %q", s, n, out.String())
		}
	}
}

func TestWatchFromService(t *testing.T) {
	tests := []struct {
		from, service string
		want          bool
	}{
		{"pubsub.iot.test", "pubsub.iot.test", true},
		{"PubSub.iot.test", "pubsub.iot.test", true},
		{"other.iot.test", "pubsub.iot.test", false},
		{"device@iot.test", "device@iot.test", true},
		{"pubsub.iot.test", "device@iot.test", true}, // ejabberd's PEP replay
		{"iot.test", "device@iot.test", true},
		{"pubsub.example.org", "device@iot.test", false},
		{"eviliot.test", "device@iot.test", false},
		{"mallory@iot.test", "device@iot.test", false},
		{"device@iot.test/agent", "device@iot.test", false},
	}
	for _, tt := range tests {
		from, err := xmpp.ParseJID(tt.from)
		if err != nil {
			t.Fatal(err)
		}
		if got := fromService(from, tt.service); got != tt.want {
			t.Errorf("fromService(%q, %q) = %v, want %v", tt.from, tt.service, got, tt.want)
		}
	}
}
