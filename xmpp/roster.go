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
	// Groups are the roster groups the contact is in.
	Groups []string
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

// maxRosterGroups bounds the groups kept per contact.
const maxRosterGroups = 32

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
		it := RosterItem{JID: j, Subscription: sub, Ask: c.Attr("ask")}
		for _, g := range c.Children {
			if g.Space == NSRoster && g.Name == "group" && g.Text != "" && len(it.Groups) < maxRosterGroups {
				it.Groups = append(it.Groups, g.Text)
			}
		}
		items = append(items, it)
	}
	return items
}
