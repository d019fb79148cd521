package agent

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/stanzad/stanzad/xmpp"
)

// contacts is what the agent knows of its contacts' presence: whom it
// sees (roster subscription "to" or "both") and which of their resources
// are online. A chat sink to a person the agent sees holds its readings
// while that person is offline, instead of filling the server's offline
// storage, which is small (ejabberd keeps 100 messages and bounces the
// rest).
type contacts struct {
	mu     sync.Mutex
	sees   map[string]bool            // bare JID → presence is received
	asked  map[string]bool            // bare JID → subscription requested this run
	online map[string]map[string]bool // bare JID → available resources
}

// offline reports whether to (a bare or full JID) is known to be offline:
// the agent sees its presence and no matching resource is available.
// Without a subscription nothing is known and it reports false.
func (c *contacts) offline(to xmpp.JID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := to.BareKey()
	if !c.sees[key] {
		return false
	}
	res := c.online[key]
	if to.Resource != "" {
		return !res[to.Resource]
	}
	return len(res) == 0
}

// presence records an available or unavailable presence from a contact.
// The caller passes only people it follows (its ACL, its sinks'
// recipients), so strangers cannot grow the map. Presence is kept even
// before the roster says the agent sees it: a roster push and the
// presence after an approved subscription are handled concurrently, in
// either order.
func (c *contacts) presence(from xmpp.JID, available bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := from.BareKey()
	if available {
		if c.online == nil {
			c.online = make(map[string]map[string]bool)
		}
		if c.online[key] == nil {
			c.online[key] = make(map[string]bool)
		}
		// A copy: a stanza's strings share its memory (xmpp's reader).
		c.online[key][strings.Clone(from.Resource)] = true
	} else if from.Resource == "" {
		delete(c.online, key)
	} else {
		delete(c.online[key], from.Resource)
		if len(c.online[key]) == 0 {
			delete(c.online, key)
		}
	}
}

// roster applies roster items (the whole roster, or a push).
func (c *contacts) roster(items []xmpp.RosterItem, whole bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if whole || c.sees == nil {
		c.sees = make(map[string]bool)
	}
	for _, it := range items {
		key := it.JID.BareKey()
		if it.SeesPresence() {
			c.sees[key] = true
		} else {
			delete(c.sees, key)
		}
		if it.Ask == "subscribe" {
			if c.asked == nil {
				c.asked = make(map[string]bool)
			}
			c.asked[key] = true
		}
	}
}

// newStream forgets who is online: after initial presence the server
// sends the presence of every contact that is.
func (c *contacts) newStream() {
	c.mu.Lock()
	c.online = nil
	c.mu.Unlock()
}

// shouldAsk reports, once per run, whether to ask key for a presence
// subscription: the agent does not see it yet and has not asked.
func (c *contacts) shouldAsk(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sees[key] || c.asked[key] {
		return false
	}
	if c.asked == nil {
		c.asked = make(map[string]bool)
	}
	c.asked[key] = true
	return true
}

// loadRoster asks for the roster on a new stream, before initial
// presence (RFC 6121 §2.2): the answer tells whose absence means
// "offline". Chat sink recipients in the ACL whose presence the agent
// does not see are asked for a subscription (they are operators or
// viewers; their clients approve or refuse it like any contact
// request). It runs in OnConnect, not on the session's reader, so it may
// wait and write; a server that does not answer within rosterWait only
// leaves presence unknown (the sinks send as before).
func (a *Agent) loadRoster(ctx context.Context, s *xmpp.Session) {
	ctx, cancel := context.WithTimeout(ctx, rosterWait)
	defer cancel()
	res, err := s.SendIQ(ctx, xmpp.RosterGet())
	if err != nil {
		a.log.Warn("roster not loaded; chat sinks cannot tell when their person is offline", "err", err)
		return
	}
	a.contacts.roster(xmpp.ParseRoster(res), true)
	for _, to := range a.tel.ChatRecipients() {
		if a.ctl.Role(to) == RoleNone || !a.contacts.shouldAsk(to.BareKey()) {
			continue
		}
		a.log.Info("asking a chat sink's recipient for presence, to hold readings while they are offline", "to", to.Bare().String())
		if err := s.Send(ctx, xmpp.Stanza("presence", "subscribe", to.Bare().String(), "")); err != nil {
			a.log.Debug("presence subscription not asked", "to", to.Bare().String(), "err", err)
		}
	}
	a.tel.WakeChatSinks("")
}

// rosterWait bounds the wait for the roster at connect.
const rosterWait = 10 * time.Second

// follows reports whether the agent keeps track of from's presence: an
// operator or viewer, or a chat sink's recipient.
func (a *Agent) follows(from xmpp.JID) bool {
	if a.ctl.Role(from) != RoleNone {
		return true
	}
	for _, to := range a.tel.ChatRecipients() {
		if to.BareKey() == from.BareKey() {
			return true
		}
	}
	return false
}

// rosterPush applies a roster push from the server (RFC 6121 §2.1.6).
func (a *Agent) rosterPush(_ context.Context, _ *xmpp.Session, iq *xmpp.Element) (*xmpp.Element, error) {
	from := iq.Attr("from")
	if from != "" && from != a.me().Bare().String() {
		return nil, &xmpp.StanzaError{Type: xmpp.ErrorTypeCancel, Condition: "service-unavailable"}
	}
	a.contacts.roster(xmpp.ParseRoster(iq), false)
	a.tel.WakeChatSinks("")
	return nil, nil
}
