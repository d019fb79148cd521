package telemetry

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stanzad/stanzad/xmpp"
)

// Room timing.
const (
	// selfPingEvery is how often the agent checks that it is still in the
	// room (XEP-0410): a MUC service restart or a lost s2s link removes an
	// occupant without telling it.
	selfPingEvery = 5 * time.Minute
	rejoinMin     = 2 * time.Second
	rejoinMax     = 5 * time.Minute
	maxNickTries  = 5
)

// room is the agent's membership of one MUC room (a muc sink): it joins
// on every new stream, rejoins after a kick or a lost membership with
// backoff, keeps the occupants' real JIDs for the ACL, and tells the
// room's sender when it may send.
type room struct {
	jid      xmpp.JID // bare
	nick0    string   // configured nickname
	password string
	log      *slog.Logger

	mu        sync.Mutex
	nick      string        // nickname asked for (nick0, or with a suffix after a conflict)
	on        *xmpp.Session // the stream the agent is in the room on; nil when out
	joining   bool
	gone      string            // why the agent will not rejoin by itself (banned)
	occupants map[string]string // nick → real JID; "" when the room hides it
	tries     int               // failed joins in a row
	changed   chan struct{}     // capacity 1: membership changed (to the sender)
	retry     chan time.Duration
}

func newRoom(jid xmpp.JID, nick, password string, log *slog.Logger) *room {
	return &room{
		jid: jid, nick0: nick, nick: nick, password: password,
		log:     log.With("room", jid.String()),
		changed: make(chan struct{}, 1),
		retry:   make(chan time.Duration, 1),
	}
}

// joinedOn reports whether the agent is in the room on sess.
func (r *room) joinedOn(sess *xmpp.Session) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.on != nil && r.on == sess
}

// occupant returns an occupant's real JID, if the room shows it, and
// whether the nick is in the room at all.
func (r *room) occupant(nick string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	j, ok := r.occupants[nick]
	return j, ok
}

// goneWhy says why the agent does not rejoin, or "".
func (r *room) goneWhy() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.gone
}

// currentNick is the nickname the agent uses in the room.
func (r *room) currentNick() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.nick
}

// run keeps the agent in the room until ctx is done.
func (r *room) run(ctx context.Context, p *Pipeline) {
	var last *xmpp.Session
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	ping := time.NewTicker(selfPingEvery)
	defer ping.Stop()
	for {
		sess, err := p.conn().WaitConnected(ctx)
		if err != nil {
			return
		}
		if sess != last {
			r.mu.Lock()
			// The same stream, not merely a resumed one: a session in
			// between may have started a stream without the room.
			stillIn := r.on != nil && r.on == last && sess.Stream() == r.on.Stream()
			if stillIn {
				r.on = sess // a resumed stream keeps its rooms
			} else {
				r.on, r.occupants, r.tries, r.nick = nil, nil, 0, r.nick0
			}
			r.mu.Unlock()
			signal(r.changed)
			last = sess
			if stillIn {
				r.selfPing(ctx, sess) // make sure: the server may have restarted the room
			} else {
				r.join(ctx, p, sess)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-sess.Done():
		case d := <-r.retry:
			timer.Reset(d)
		case <-timer.C:
			if !r.joinedOn(sess) {
				r.join(ctx, p, sess)
			}
		case <-ping.C:
			if r.joinedOn(sess) {
				r.selfPing(ctx, sess)
			}
		}
	}
}

// join sends the join presence, with the agent's health as its status.
func (r *room) join(ctx context.Context, p *Pipeline, sess *xmpp.Session) {
	r.mu.Lock()
	if r.gone != "" {
		r.mu.Unlock()
		return
	}
	r.joining = true
	occupant := r.jid
	occupant.Resource = r.nick
	r.mu.Unlock()
	status := p.h.Status()
	if err := sess.Send(ctx, xmpp.MUCJoin(occupant, r.password, status)); err != nil {
		r.log.Debug("join not sent", "err", err)
	}
}

// selfPing checks membership (XEP-0410) and rejoins if it is lost.
func (r *room) selfPing(ctx context.Context, sess *xmpp.Session) {
	occupant := r.jid
	occupant.Resource = r.currentNick()
	iq := xmpp.Stanza("iq", "get", occupant.String(), "").Add(xmpp.NewElement("urn:xmpp:ping", "ping"))
	_, err := sess.SendIQFunc(ctx, iq, func(_ *xmpp.Element, err error) {
		var se *xmpp.StanzaError
		if !errors.As(err, &se) {
			return // in the room, or the stream ended (the next one rejoins)
		}
		switch se.Condition {
		case "service-unavailable", "feature-not-implemented":
			return // the occupant answered: still in the room
		case "not-acceptable", "item-not-found", "not-allowed":
			r.log.Warn("no longer in the room; rejoining", "condition", se.Condition)
			r.left(sess)
			r.rejoinIn(0)
		}
	})
	if err != nil {
		r.log.Debug("self-ping not sent", "err", err)
	}
}

// left marks the agent out of the room if it was in on sess.
func (r *room) left(sess *xmpp.Session) {
	r.mu.Lock()
	was := r.on == sess && sess != nil
	if was {
		r.on = nil
		r.occupants = nil
	}
	r.mu.Unlock()
	if was {
		signal(r.changed)
	}
}

func (r *room) rejoinIn(d time.Duration) {
	select {
	case r.retry <- d:
	default:
		select { // replace a pending retry with the newer one
		case <-r.retry:
		default:
		}
		select {
		case r.retry <- d:
		default:
		}
	}
}

// backoff is the delay before the next join after n failed ones (or
// removals): rejoinMin after the first, doubling up to rejoinMax.
func backoff(n int) time.Duration {
	d := rejoinMin
	for range n - 1 {
		d *= 2
		if d >= rejoinMax {
			return rejoinMax
		}
	}
	return d
}

// handlePresence applies a presence from the room. It runs on the
// session's ordered stanza goroutine.
func (r *room) handlePresence(ctx context.Context, sess *xmpp.Session, p xmpp.MUCPresence) {
	r.mu.Lock()
	mine := p.Self || p.Nick == r.nick && (p.Err != nil || r.joining)
	r.mu.Unlock()
	switch {
	case p.Err != nil && mine:
		r.joinFailed(p.Err)
	case p.Err != nil:
	case mine && !p.Unavailable:
		r.entered(ctx, sess, p)
	case mine:
		r.removed(sess, p)
	default:
		r.mu.Lock()
		if p.Unavailable {
			delete(r.occupants, p.Nick)
		} else if len(r.occupants) < 10000 {
			if r.occupants == nil {
				r.occupants = make(map[string]string)
			}
			// Copies: a stanza's strings share its memory (xmpp's
			// reader), and the map outlives the presence.
			r.occupants[strings.Clone(p.Nick)] = strings.Clone(p.RealJID)
		}
		r.mu.Unlock()
	}
}

func (r *room) entered(ctx context.Context, sess *xmpp.Session, p xmpp.MUCPresence) {
	r.mu.Lock()
	was := r.on == sess
	r.on, r.joining, r.tries = sess, false, 0
	r.mu.Unlock()
	if was {
		return // a presence update (role, status) while in the room
	}
	signal(r.changed)
	r.log.Info("joined room", "nick", p.Nick, "role", p.Role, "affiliation", p.Affiliation,
		"sees_real_jids", p.Has(xmpp.MUCStatusNonAnonymous) || p.Role == "moderator")
	if p.Has(xmpp.MUCStatusCreated) {
		// The room did not exist: the server made it and holds it locked
		// until its owner (the agent) accepts a configuration.
		_, err := sess.SendIQFunc(ctx, xmpp.MUCInstantRoom(r.jid), func(_ *xmpp.Element, err error) {
			if err != nil && !errors.Is(err, xmpp.ErrClosed) {
				r.log.Warn("new room not unlocked", "err", err)
			}
		})
		if err != nil {
			r.log.Warn("new room not unlocked", "err", err)
		} else {
			r.log.Info("created the room with the server's default configuration")
		}
	}
}

func (r *room) removed(sess *xmpp.Session, p xmpp.MUCPresence) {
	r.mu.Lock()
	if p.Has(xmpp.MUCStatusNickChanged) && p.NewNick != "" {
		r.nick = p.NewNick // the service renamed us; the new presence follows
		r.mu.Unlock()
		return
	}
	r.joining = false
	r.mu.Unlock()
	r.left(sess)
	why := ""
	switch {
	case p.Has(xmpp.MUCStatusBanned):
		r.mu.Lock()
		r.gone = "banned from the room"
		r.mu.Unlock()
		r.log.Error("banned from the room; not rejoining (lift the ban and restart stanzad)", "reason", p.Reason)
		return
	case p.Destroyed:
		why = "room destroyed"
	case p.Has(xmpp.MUCStatusKicked):
		why = "kicked"
	case p.Has(xmpp.MUCStatusAffiliation), p.Has(xmpp.MUCStatusMembersOnly):
		why = "membership removed"
	case p.Has(xmpp.MUCStatusShutdown):
		why = "MUC service shutting down"
	}
	r.mu.Lock()
	r.tries++
	d := backoff(r.tries)
	r.mu.Unlock()
	if why == "" {
		// Our own leaving (the stream closing), or a removal the room did
		// not explain: if the stream goes on, join again.
		r.log.Debug("out of the room", "rejoin_in", d)
	} else {
		r.log.Warn("removed from the room; rejoining", "why", why, "reason", p.Reason, "in", d)
	}
	r.rejoinIn(d)
}

func (r *room) joinFailed(e *xmpp.StanzaError) {
	r.mu.Lock()
	r.joining = false
	r.tries++
	d := backoff(r.tries)
	msg := "cannot join the room"
	switch e.Condition {
	case "conflict":
		if r.tries < maxNickTries {
			r.nick = r.nick0 + "-" + strconv.Itoa(r.tries+1)
			d = 0
		}
		msg = "nickname taken in the room; trying " + r.nick
	case "not-authorized":
		msg = "cannot join the room: wrong or missing room password (password / password_file)"
		d = rejoinMax
	case "registration-required":
		msg = "cannot join the room: it is members-only; make the agent's JID a member"
		d = rejoinMax
	case "forbidden":
		msg = "cannot join the room: banned"
		d = rejoinMax
	case "service-unavailable":
		msg = "cannot join the room: it is full or the service refuses"
	case "item-not-found":
		msg = "cannot join the room: it does not exist and may not be created (or is locked)"
	}
	r.mu.Unlock()
	r.log.Warn(msg, "condition", e.Condition, "text", e.Text, "retry_in", d)
	r.rejoinIn(d)
}

// HandleRoomMessage handles a groupchat message from a room: a command
// addressed to the agent by nickname goes to Hooks.RoomCommand with the
// occupant's real JID, if the room shows it, and the reply goes to the
// room. It returns false when st is not from one of the agent's rooms.
func (p *Pipeline) HandleRoomMessage(ctx context.Context, s *xmpp.Session, st *xmpp.Element, from xmpp.JID) bool {
	r := p.roomFor(from)
	if r == nil {
		return false
	}
	nick := from.Resource
	if nick == "" || nick == r.currentNick() || st.Child("", "subject") != nil || st.Child("urn:xmpp:delay", "delay") != nil {
		return true // the room itself, our own echo, the subject, history
	}
	body := st.ChildText(xmpp.NSClient, "body")
	text, ok := xmpp.AddressedTo(body, r.currentNick())
	if !ok {
		return true
	}
	real, _ := r.occupant(nick)
	room := from.Bare().String()
	p.h.RoomCommand(ctx, from, real, text, func(ctx context.Context, link, reply string) {
		// A link is its own message, the body exactly the URL (clients
		// show it inline only then); the text is addressed to the nick.
		var ms []*xmpp.Element
		if link != "" {
			ms = append(ms, xmpp.LinkMessage("groupchat", room, link))
		}
		if reply != "" {
			m := xmpp.Stanza("message", "groupchat", room, "")
			ms = append(ms, m.Add(xmpp.NewElement(xmpp.NSClient, "body").SetText(nick+": "+reply)))
		}
		for _, m := range ms {
			if err := s.Send(ctx, m); err != nil {
				p.log.Warn("room reply not sent", "room", room, "err", err)
				return
			}
		}
	})
	return true
}

// HandleRoomPresence applies a presence from one of the agent's rooms.
// It returns false when from is not one of them.
func (p *Pipeline) HandleRoomPresence(ctx context.Context, s *xmpp.Session, st *xmpp.Element, from xmpp.JID) bool {
	r := p.roomFor(from)
	if r == nil {
		return false
	}
	if mp, ok := xmpp.ParseMUCPresence(st); ok {
		r.handlePresence(ctx, s, mp)
	}
	return true
}

// SendRoomPresence sends the agent's presence (show and status) to every
// room it is in on s.
func (p *Pipeline) SendRoomPresence(ctx context.Context, s *xmpp.Session, show, status string) {
	for _, sk := range p.sinks() {
		if r := sk.room; r != nil && r.joinedOn(s) {
			occupant := r.jid
			occupant.Resource = r.currentNick()
			pr := xmpp.Stanza("presence", "", occupant.String(), "")
			if show != "" {
				pr.Add(xmpp.NewElement(xmpp.NSClient, "show").SetText(show))
			}
			s.Send(ctx, pr.Add(xmpp.NewElement(xmpp.NSClient, "status").SetText(status)))
		}
	}
}

// Occupant looks up from as an occupant of a room (room@service/nick):
// inRoom reports whether the agent is in that room on the live session,
// present whether the nick is among its occupants, and real is the
// occupant's real JID when the room shows it. A room relays IQs from its
// occupants under such JIDs.
func (p *Pipeline) Occupant(from xmpp.JID) (real string, present, inRoom bool) {
	r := p.roomFor(from)
	if r == nil || from.Resource == "" {
		return "", false, false
	}
	sess := p.conn().Session()
	if sess == nil || !r.joinedOn(sess) {
		return "", false, false
	}
	real, present = r.occupant(from.Resource)
	return real, present, true
}

// roomFor returns the room a stanza from 'from' belongs to, or nil.
func (p *Pipeline) roomFor(from xmpp.JID) *room {
	for _, s := range p.sinks() {
		if s.room != nil && s.room.jid.BareKey() == from.BareKey() {
			return s.room
		}
	}
	return nil
}
