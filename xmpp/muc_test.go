package xmpp

import (
	"slices"
	"strings"
	"testing"
)

func TestParseMUCPresence(t *testing.T) {
	tests := []struct {
		in   string
		ok   bool
		want MUCPresence
	}{
		{`<presence from='lab@conference.iot.test/stanzad'><x xmlns='http://jabber.org/protocol/muc#user'>` +
			`<item affiliation='owner' role='moderator' jid='device@iot.test/agent'/><status code='110'/><status code='201'/></x></presence>`,
			true, MUCPresence{Nick: "stanzad", Self: true, Codes: []int{110, 201}, RealJID: "device@iot.test/agent", Role: "moderator", Affiliation: "owner"}},
		{`<presence from='lab@conference.iot.test/anna' type='unavailable'><x xmlns='http://jabber.org/protocol/muc#user'>` +
			`<item affiliation='none' role='none'><reason>flood</reason></item><status code='307'/></x></presence>`,
			true, MUCPresence{Nick: "anna", Unavailable: true, Codes: []int{307}, Role: "none", Affiliation: "none", Reason: "flood"}},
		{`<presence from='lab@conference.iot.test/stanzad' type='error'><error type='auth'><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>`,
			true, MUCPresence{Nick: "stanzad", Err: &StanzaError{Type: "auth", Condition: "not-authorized"}}},
		{`<presence from='lab@conference.iot.test/x' type='unavailable'><x xmlns='http://jabber.org/protocol/muc#user'><destroy><reason>gone</reason></destroy></x></presence>`,
			true, MUCPresence{Nick: "x", Unavailable: true, Destroyed: true, Reason: "gone"}},
		{`<presence from='operator@iot.test/phone'/>`, false, MUCPresence{}},
		{`<presence from='lab@conference.iot.test/x'/>`, false, MUCPresence{}},                  // no muc#user
		{`<presence from='lab@conference.iot.test' type='unavailable'/>`, false, MUCPresence{}}, // no nick
		{`<presence from='lab@conference.iot.test/x' type='subscribe'><x xmlns='http://jabber.org/protocol/muc#user'/></presence>`, false, MUCPresence{}},
	}
	for _, tt := range tests {
		el, err := ParseElement(tt.in)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := ParseMUCPresence(el)
		if ok != tt.ok {
			t.Errorf("%s: ok = %v", tt.in, ok)
			continue
		}
		if !ok {
			continue
		}
		if got.Room.String() != "lab@conference.iot.test" || got.Nick != tt.want.Nick || got.Self != tt.want.Self ||
			got.Unavailable != tt.want.Unavailable || !slices.Equal(got.Codes, tt.want.Codes) || got.RealJID != tt.want.RealJID ||
			got.Role != tt.want.Role || got.Affiliation != tt.want.Affiliation || got.Reason != tt.want.Reason || got.Destroyed != tt.want.Destroyed {
			t.Errorf("%s:\n got %+v\nwant %+v", tt.in, got, tt.want)
		}
		if (got.Err == nil) != (tt.want.Err == nil) || got.Err != nil && got.Err.Condition != tt.want.Err.Condition {
			t.Errorf("%s: err %v, want %v", tt.in, got.Err, tt.want.Err)
		}
	}
}

func TestAddressedTo(t *testing.T) {
	tests := []struct {
		body, rest string
		ok         bool
	}{
		{"stanzad: status", "status", true},
		{"Stanzad, read greenhouse", "read greenhouse", true},
		{"@stanzad help", "help", true},
		{"  stanzad:set relay1 on", "set relay1 on", true},
		{"stanzad", "", true},
		{"stanzad2: status", "", false},
		{"hello stanzad: status", "", false},
		{"stan", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		rest, ok := AddressedTo(tt.body, "stanzad")
		if rest != tt.rest || ok != tt.ok {
			t.Errorf("AddressedTo(%q) = %q, %v; want %q, %v", tt.body, rest, ok, tt.rest, tt.ok)
		}
	}
}

func TestMUCJoin(t *testing.T) {
	got := MUCJoin(MustParseJID("lab@conference.iot.test/stanzad"), "s3cret", "ok").String()
	want := "<presence to='lab@conference.iot.test/stanzad'><status>ok</status><x xmlns='http://jabber.org/protocol/muc'>" +
		"<password>s3cret</password><history maxstanzas='0'/></x></presence>"
	if got != want {
		t.Errorf("join:\n got %s\nwant %s", got, want)
	}
}

func TestPubSubEncode(t *testing.T) {
	got := string(AppendPublish(nil, "pubsub.iot.test", "p-1", "urn:xmpp:iot:sensordata/greenhouse", "42", []byte("<x xmlns='urn:example'/>")))
	want := "<iq type='set' to='pubsub.iot.test' id='p-1'><pubsub xmlns='http://jabber.org/protocol/pubsub'>" +
		"<publish node='urn:xmpp:iot:sensordata/greenhouse'><item id='42'><x xmlns='urn:example'/></item></publish></pubsub></iq>"
	if got != want {
		t.Errorf("publish:\n got %s\nwant %s", got, want)
	}
	if pep := string(AppendPublish(nil, "", "p-2", "n", "1", nil)); pep[:len("<iq type='set' id=")] != "<iq type='set' id=" {
		t.Errorf("PEP publish has a 'to': %s", pep)
	}
	c := PubSubCreate("pubsub.iot.test", "n<1>", NodeConfig{PersistItems: true, MaxItems: 10}).String()
	for _, part := range []string{"<create node='n&lt;1&gt;'/>", "<value>http://jabber.org/protocol/pubsub#node_config</value>",
		"var='pubsub#persist_items'><value>true</value>", "var='pubsub#max_items'><value>10</value>"} {
		if !strings.Contains(c, part) {
			t.Errorf("create lacks %s: %s", part, c)
		}
	}
	ev, _ := ParseElement("<message from='pubsub.iot.test'><event xmlns='http://jabber.org/protocol/pubsub#event'>" +
		"<items node='n'><item id='7'><fields xmlns='urn:xmpp:iot:sensordata' seqnr='7'/></item><retract id='3'/></items></event></message>")
	node, items, ok := ParsePubSubEvent(ev)
	if !ok || node != "n" || len(items) != 1 || items[0].ID != "7" || items[0].Payload.Name != "fields" {
		t.Errorf("event: %q %+v %v", node, items, ok)
	}
	if _, _, ok := ParsePubSubEvent(Stanza("message", "chat", "", "")); ok {
		t.Error("plain message parsed as an event")
	}
}

// FuzzMUC: room presence and groupchat bodies come from any occupant.
func FuzzMUC(f *testing.F) {
	f.Add(`<presence from='lab@conference.iot.test/x' type='unavailable'><x xmlns='http://jabber.org/protocol/muc#user'><item jid='a@b/c' role='none'/><status code='307'/><status code='110'/></x></presence>`, "stanzad: status")
	f.Add(`<presence from='lab@c/x' type='error'><error type='cancel'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>`, "@stanzad")
	f.Add(`<message from='pubsub.iot.test'><event xmlns='http://jabber.org/protocol/pubsub#event'><items node='n'><item id='1'/></items></event></message>`, "STANZAD,x")
	f.Fuzz(func(t *testing.T, stanza, body string) {
		if el, err := ParseElement(stanza); err == nil {
			if p, ok := ParseMUCPresence(el); ok && (p.Nick == "" || len(p.Codes) > 16) {
				t.Fatalf("accepted %+v", p)
			}
			ParsePubSubEvent(el)
		}
		if rest, ok := AddressedTo(body, "stanzad"); ok && !strings.HasSuffix(strings.TrimSpace(body), rest) {
			t.Fatalf("AddressedTo(%q) = %q: not the rest of the body", body, rest)
		}
	})
}
