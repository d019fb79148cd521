package xmpp

// NSRoster is the RFC 6121 roster namespace.
const NSRoster = "jabber:iq:roster"

// RosterItem is one contact in the account's roster (RFC 6121 §2.1.2).
type RosterItem struct {
	JID JID
	// Subscription is none, to, from, both or remove. With "to" or
	// "both" the account receives the contact's presence.
	Subscription string
	// Ask is "subscribe" while a subscription request is pending.
	Ask string
}

// SeesPresence reports whether the account receives the contact's
// presence: its absence then means the contact is offline.
func (it RosterItem) SeesPresence() bool {
	return it.Subscription == "to" || it.Subscription == "both"
}

// RosterGet is the request for the whole roster.
func RosterGet() *Element {
	return Stanza("iq", "get", "", "").Add(NewElement(NSRoster, "query"))
}

// ParseRoster returns the items of a roster result or roster push (an
// <iq/> whose payload is <query xmlns='jabber:iq:roster'/>). Items with
// a JID that does not parse are skipped.
func ParseRoster(iq *Element) []RosterItem {
	q := iq.Child(NSRoster, "query")
	if q == nil {
		return nil
	}
	var items []RosterItem
	for _, c := range q.Children {
		if c.Space != NSRoster || c.Name != "item" {
			continue
		}
		j, err := ParseJID(c.Attr("jid"))
		if err != nil {
			continue
		}
		sub := c.Attr("subscription")
		if sub == "" {
			sub = "none"
		}
		items = append(items, RosterItem{JID: j, Subscription: sub, Ask: c.Attr("ask")})
	}
	return items
}
