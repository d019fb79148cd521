package agent

import (
	"testing"

	"github.com/stanzad/stanzad/xmpp"
)

func TestContactsOffline(t *testing.T) {
	var c contacts
	op, stranger := xmpp.MustParseJID("op@iot.test"), xmpp.MustParseJID("who@else.test")
	phone := xmpp.MustParseJID("op@iot.test/phone")
	// Nothing known before the roster: never "offline".
	if c.offline(op) {
		t.Fatal("offline before the roster is known")
	}
	c.roster([]xmpp.RosterItem{{JID: op, Subscription: "both"}, {JID: xmpp.MustParseJID("v@iot.test"), Subscription: "from"}}, true)
	if !c.offline(op) || !c.offline(phone) {
		t.Fatal("a seen contact without presence is not offline")
	}
	if c.offline(xmpp.MustParseJID("v@iot.test")) {
		t.Fatal("a contact whose presence the agent does not see counts as offline")
	}
	c.presence(phone, true)
	if c.offline(op) || c.offline(phone) {
		t.Fatal("available presence not followed")
	}
	if !c.offline(xmpp.MustParseJID("op@iot.test/laptop")) {
		t.Fatal("another resource of an online contact is not offline")
	}
	// Presence that came before the roster said "to": kept, and counts
	// once the subscription is known.
	c.presence(stranger, true)
	c.roster([]xmpp.RosterItem{{JID: stranger, Subscription: "to"}}, false)
	if c.offline(stranger) {
		t.Fatal("presence received before the roster push was lost")
	}
	c.presence(phone, false)
	if !c.offline(op) {
		t.Fatal("unavailable presence not followed")
	}
	c.presence(phone, true)
	c.newStream()
	if !c.offline(op) {
		t.Fatal("a new stream keeps old presence")
	}
	// A roster push that removes the subscription: nothing known again.
	c.roster([]xmpp.RosterItem{{JID: op, Subscription: "remove"}}, false)
	if c.offline(op) {
		t.Fatal("offline after the subscription was removed")
	}
	if !c.shouldAsk(op.BareKey()) || c.shouldAsk(op.BareKey()) {
		t.Fatal("shouldAsk not once per run")
	}
}
