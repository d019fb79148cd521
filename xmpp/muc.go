package xmpp

import (
	"strconv"
	"strings"
)

// XEP-0045 (Multi-User Chat) namespaces.
const (
	NSMUC      = "http://jabber.org/protocol/muc"
	NSMUCUser  = "http://jabber.org/protocol/muc#user"
	NSMUCOwner = "http://jabber.org/protocol/muc#owner"
)

// MUC status codes (XEP-0045 §15.6) the agent acts on.
const (
	MUCStatusNonAnonymous = 100 // any occupant may see real JIDs
	MUCStatusSelf         = 110 // the presence is about the receiver
	MUCStatusCreated      = 201 // a new room was created
	MUCStatusBanned       = 301
	MUCStatusNickChanged  = 303
	MUCStatusKicked       = 307
	MUCStatusAffiliation  = 321 // removed because of an affiliation change
	MUCStatusMembersOnly  = 322 // removed: the room became members-only
	MUCStatusShutdown     = 332 // removed: the MUC service is shutting down
)

// MUCJoin is the presence that joins room (room@service/nick): with the
// password if one is given and asking for no history, so that commands
// typed in the room before the agent joined are not replayed at it.
// status, if not empty, is the presence status text.
func MUCJoin(occupant JID, password, status string) *Element {
	x := NewElement(NSMUC, "x")
	if password != "" {
		x.Add(NewElement(NSMUC, "password").SetText(password))
	}
	x.Add(NewElement(NSMUC, "history", "maxstanzas", "0"))
	p := Stanza("presence", "", occupant.String(), "")
	if status != "" {
		p.Add(NewElement(NSClient, "status").SetText(status))
	}
	return p.Add(x)
}

// MUCInstantRoom is the owner's request that accepts the default
// configuration of a room the server has just created and holds locked
// (XEP-0045 §10.1.2).
func MUCInstantRoom(room JID) *Element {
	iq := Stanza("iq", "set", room.Bare().String(), "")
	q := NewElement(NSMUCOwner, "query").Add(NewElement(NSData, "x", "type", FormSubmit))
	return iq.Add(q)
}

// MUCPresence is what a presence from a room says about one occupant.
type MUCPresence struct {
	Room        JID    // bare room JID
	Nick        string // the occupant's nickname (resource of 'from')
	Unavailable bool   // the occupant left, was kicked, banned, ...
	Self        bool   // status 110: this is the receiver's own occupant
	Codes       []int
	// RealJID is the occupant's real full JID when the room shows it to
	// the receiver (non-anonymous rooms, or the receiver is a moderator).
	RealJID     string
	Role        string // moderator, participant, visitor, none
	Affiliation string // owner, admin, member, none, outcast
	NewNick     string // with status 303
	// Err is set for a presence of type error (a failed join).
	Err *StanzaError
	// Destroyed is set when the room was destroyed; Reason says why.
	Destroyed bool
	Reason    string
}

// Has reports whether the presence carries status code c.
func (p *MUCPresence) Has(c int) bool {
	for _, x := range p.Codes {
		if x == c {
			return true
		}
	}
	return false
}

// ParseMUCPresence reads a presence stanza from a room occupant. ok is
// false when the presence is not from a room occupant (no muc#user
// payload and not an error about a join).
func ParseMUCPresence(st *Element) (p MUCPresence, ok bool) {
	from, err := ParseJID(st.Attr("from"))
	if err != nil || from.Resource == "" || from.Local == "" {
		return p, false
	}
	p.Room, p.Nick = from.Bare(), from.Resource
	switch st.Attr("type") {
	case "error":
		p.Err = ParseStanzaError(st)
		// An error presence about a join comes from the occupant JID we
		// asked for; its payload (if echoed) is the muc <x/>.
		return p, true
	case "unavailable":
		p.Unavailable = true
	case "":
	default:
		return p, false
	}
	x := st.Child(NSMUCUser, "x")
	if x == nil {
		return p, false
	}
	for _, c := range x.Children {
		switch c.Name {
		case "status":
			if n, err := strconv.Atoi(c.Attr("code")); err == nil && len(p.Codes) < 16 {
				p.Codes = append(p.Codes, n)
			}
		case "item":
			p.RealJID = c.Attr("jid")
			p.Role = c.Attr("role")
			p.Affiliation = c.Attr("affiliation")
			p.NewNick = c.Attr("nick")
			if r := c.ChildText("", "reason"); r != "" {
				p.Reason = r
			}
		case "destroy":
			p.Destroyed = true
			if r := c.ChildText("", "reason"); r != "" {
				p.Reason = r
			}
		}
	}
	p.Self = p.Has(MUCStatusSelf)
	return p, true
}

// AddressedTo returns the rest of a groupchat body that starts with nick
// as an address — "nick: status", "nick, read", "@nick help" — and
// whether it did. Nicks compare without regard to case.
func AddressedTo(body, nick string) (string, bool) {
	b := strings.TrimLeft(body, " \t")
	b = strings.TrimPrefix(b, "@")
	if len(b) < len(nick) || !strings.EqualFold(b[:len(nick)], nick) {
		return "", false
	}
	rest := b[len(nick):]
	switch {
	case rest == "":
		return "", true
	case rest[0] == ':' || rest[0] == ',':
		return strings.TrimSpace(rest[1:]), true
	case rest[0] == ' ' || rest[0] == '\t':
		return strings.TrimSpace(rest), true
	}
	return "", false // "nickname2: ..." is someone else
}
