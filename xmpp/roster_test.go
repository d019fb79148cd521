package xmpp

import (
	"fmt"
	"testing"
)

func TestParseRoster(t *testing.T) {
	iq, err := ParseElement(`<iq type='result' id='r1'><query xmlns='jabber:iq:roster' ver='3'>
		<item jid='op@iot.test' subscription='both' name='Op'><group>ops</group></item>
		<item jid='viewer@iot.test' subscription='from' ask='subscribe'/>
		<item jid='new@iot.test'/>
		<item jid='@bad'/>
		<item xmlns='urn:other' jid='x@iot.test' subscription='both'/>
		<other jid='y@iot.test' subscription='both'/>
	</query></iq>`)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(ParseRoster(iq))
	want := "[{op@iot.test both  [ops]} {viewer@iot.test from subscribe []} {new@iot.test none  []}]"
	if got != want {
		t.Errorf("ParseRoster = %s\nwant %s", got, want)
	}
	sees := map[string]bool{"none": false, "from": false, "to": true, "both": true, "remove": false}
	for sub, want := range sees {
		if got := (RosterItem{Subscription: sub}).SeesPresence(); got != want {
			t.Errorf("SeesPresence(%s) = %v", sub, got)
		}
	}
	if items := ParseRoster(Stanza("iq", "result", "", "x")); items != nil {
		t.Errorf("roster of an empty result = %v", items)
	}
	if b := string(RosterGet().Append(nil)); b != `<iq type='get'><query xmlns='jabber:iq:roster'/></iq>` {
		t.Errorf("RosterGet = %s", b)
	}
}

// FuzzParseRoster: roster pushes come from the server, but their items
// name anyone.
func FuzzParseRoster(f *testing.F) {
	f.Add(`<iq type='set'><query xmlns='jabber:iq:roster'><item jid='a@b' subscription='remove'/></query></iq>`)
	f.Add(`<iq><query xmlns='jabber:iq:roster'><item jid='a@b/c' subscription='to' ask='subscribe'/><item/></query></iq>`)
	f.Fuzz(func(t *testing.T, s string) {
		el, err := ParseElement(s)
		if err != nil {
			return
		}
		for _, it := range ParseRoster(el) {
			if it.JID.Domain == "" || it.Subscription == "" {
				t.Fatalf("accepted %+v", it)
			}
		}
	})
}
