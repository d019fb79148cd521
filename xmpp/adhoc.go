package xmpp

import (
	"context"
	"errors"
	"sync"
	"time"
)

// NSCommands is XEP-0050 Ad-Hoc Commands.
const NSCommands = "http://jabber.org/protocol/commands"

// Command is one XEP-0050 command.
type Command struct {
	Node, Name string
	// Allowed reports whether from may list and execute the command; nil
	// allows everyone the Mux lets through.
	Allowed func(from JID) bool
	// Run executes one stage of the command and returns what to show
	// next. An error answers the IQ with a stanza error; for errors of
	// type modify (a bad value) the session stays open so the requester
	// can correct the form and submit again, any other error ends it.
	Run func(ctx context.Context, req *CommandRequest) (*CommandResponse, error)
}

// CommandRequest is one stage of a command execution.
type CommandRequest struct {
	From JID
	// Stage is the index of the form the request is about, 0 for the
	// first. With Form == nil the request asks to show that stage's form
	// (the first execute, or "prev" back to it); with a Form, the form of
	// that stage was submitted.
	Stage int
	// Action is what the requester asked: "execute", "next" or "complete".
	Action string
	// Form is the submitted form, or nil. A requester may submit a form
	// with its very first execute when it already knows the fields
	// (stanzactl does): then Stage is 0 and Form is set.
	Form *Form
	// State is what the previous stage's response stored.
	State any
}

// CommandResponse is what a stage returns.
type CommandResponse struct {
	// Form is the form to fill in (while executing) or the result form.
	Form  *Form
	Notes []Note
	// Next says another form follows: status stays "executing".
	// Last marks the shown form as the final one: its submission
	// completes the command (execute='complete' instead of 'next').
	Next, Last bool
	// State is handed to the next stage's request.
	State any
}

// Note is a XEP-0050 <note/>: type info, warn or error.
type Note struct {
	Type, Text string
}

// Ad-hoc session limits.
const (
	// DefaultCommandTimeout is how long an unfinished multi-stage session
	// is kept between stages.
	DefaultCommandTimeout = 10 * time.Minute
	maxCommandSessions    = 64
	maxSessionsPerJID     = 8
)

// Commands is a XEP-0050 responder: it lists commands on the disco node
// http://jabber.org/protocol/commands, runs them stage by stage and keeps
// the sessions of multi-stage commands, bound to the requester's full JID,
// until they complete, are canceled or expire.
type Commands struct {
	// Timeout is how long a session may wait between stages; default
	// DefaultCommandTimeout.
	Timeout time.Duration
	// Principal, if set, names who stands behind a requester's JID when
	// that is more than the JID itself: the real JID of a room occupant
	// whose IQ the room relays. A session stays bound to the requester's
	// JID and to the principal it had when the session opened: a later
	// stage from the same JID with another principal (someone else took
	// the nick) is refused. The per-requester session limit counts by
	// principal.
	Principal func(from JID) string

	mu       sync.Mutex
	cmds     []*Command
	sessions map[string]*commandSession
	now      func() time.Time
}

type commandSession struct {
	cmd     *Command
	owner   JID
	who     string // the owner's principal when the session opened
	shown   int    // index of the form the requester has now
	state   any
	last    bool // the form shown is the final one
	expires time.Time
}

// Add registers cmd; commands are listed in the order added. Add every
// command before Register, which announces their disco nodes.
func (c *Commands) Add(cmd *Command) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cmds = append(c.cmds, cmd)
}

// Register installs the responder on m: the command IQ handler and the
// disco#info/#items answers for the commands node and each command node.
func (c *Commands) Register(m *Mux) {
	m.HandleIQ("set", NSCommands, "command", c.handle)
	m.AddFeature(NSData)
	m.HandleNode(NSCommands, DiscoNode{
		Info:  func(JID) *DiscoNodeInfo { return &DiscoNodeInfo{Features: []string{NSCommands}} },
		Items: c.items,
	})
	c.mu.Lock()
	cmds := c.cmds
	c.mu.Unlock()
	for _, cmd := range cmds {
		m.HandleNode(cmd.Node, DiscoNode{Info: func(from JID) *DiscoNodeInfo {
			if !cmd.allowed(from) {
				return nil
			}
			return &DiscoNodeInfo{
				Identities: []Identity{{Category: "automation", Type: "command-node", Name: cmd.Name}},
				Features:   []string{NSCommands, NSData},
			}
		}})
	}
}

func (cmd *Command) allowed(from JID) bool {
	return cmd.Allowed == nil || cmd.Allowed(from)
}

func (c *Commands) items(s *Session, from JID) []DiscoItem {
	c.mu.Lock()
	defer c.mu.Unlock()
	var items []DiscoItem
	for _, cmd := range c.cmds {
		if cmd.allowed(from) {
			items = append(items, DiscoItem{JID: s.JID().String(), Node: cmd.Node, Name: cmd.Name})
		}
	}
	return items
}

// commandError returns a stanza error with a XEP-0050 §4.6 specific
// condition.
func commandError(typ, cond, specific string) *StanzaError {
	return &StanzaError{Type: typ, Condition: cond, App: NewElement(NSCommands, specific)}
}

func (c *Commands) handle(ctx context.Context, s *Session, iq *Element) (*Element, error) {
	req := iq.FirstChild()
	from, _ := ParseJID(iq.Attr("from"))
	node, sid, action := req.Attr("node"), req.Attr("sessionid"), req.Attr("action")
	switch action {
	case "", "execute", "next", "prev", "complete", "cancel":
	default:
		return nil, commandError(ErrorTypeModify, "bad-request", "malformed-action")
	}

	c.mu.Lock()
	now := c.clock()
	c.expireLocked(now)
	var cmd *Command
	for _, x := range c.cmds {
		if x.Node == node {
			cmd = x
		}
	}
	var sess *commandSession
	var snap commandSession // sess as it was, read under the lock
	if sid != "" {
		if sess = c.sessions[sid]; sess != nil {
			snap = *sess
		}
	}
	c.mu.Unlock()

	if cmd == nil {
		return nil, &StanzaError{Type: ErrorTypeCancel, Condition: "item-not-found", Text: "no command " + node}
	}
	if !cmd.allowed(from) {
		return nil, &StanzaError{Type: ErrorTypeAuth, Condition: "forbidden"}
	}
	if sid != "" && (sess == nil || snap.cmd != cmd || snap.owner != from) {
		// An unknown, expired or someone else's session: the same answer,
		// so a session id reveals nothing about other requesters.
		return nil, commandError(ErrorTypeModify, "bad-request", "bad-sessionid")
	}
	if sess != nil && c.principal(from) != snap.who {
		// The JID is the same, the person behind it is not (a room nick
		// taken over): the session is not theirs.
		c.drop(sid)
		return nil, &StanzaError{Type: ErrorTypeAuth, Condition: "forbidden",
			Text: "this session was started by someone else behind " + from.String()}
	}
	if action == "cancel" {
		if sess == nil {
			return nil, commandError(ErrorTypeModify, "bad-request", "bad-sessionid")
		}
		c.drop(sid)
		return NewElement(NSCommands, "command", "node", node, "sessionid", sid, "status", "canceled"), nil
	}

	r := &CommandRequest{From: from, Action: action}
	if x := req.Child(NSData, "x"); x != nil {
		f, err := ParseForm(x)
		if err != nil {
			return nil, &StanzaError{Type: ErrorTypeModify, Condition: "bad-request", Text: err.Error()}
		}
		if f.Type == FormCancel {
			if sess != nil {
				c.drop(sid)
			}
			return NewElement(NSCommands, "command", "node", node, "sessionid", sid, "status", "canceled"), nil
		}
		r.Form = f
	}
	if sess == nil {
		if action != "" && action != "execute" {
			return nil, commandError(ErrorTypeModify, "bad-request", "bad-action")
		}
		r.Action = "execute"
	} else {
		r.State = snap.state
		switch action {
		case "", "execute":
			if snap.last {
				r.Action = "complete"
			} else {
				r.Action = "next"
			}
		case "next":
			if snap.last {
				return nil, commandError(ErrorTypeModify, "bad-request", "bad-action")
			}
		case "prev":
			if snap.shown == 0 {
				return nil, commandError(ErrorTypeModify, "bad-request", "bad-action")
			}
			r.Form = nil
		}
		if action == "prev" {
			r.Stage = snap.shown - 1
		} else {
			r.Stage = snap.shown
			if r.Form == nil {
				return nil, commandError(ErrorTypeModify, "bad-request", "bad-payload")
			}
		}
	}

	resp, err := cmd.Run(ctx, r)
	if err != nil {
		var se *StanzaError
		if sess != nil && !(errors.As(err, &se) && se.Type == ErrorTypeModify) {
			c.drop(sid)
		}
		return nil, err
	}

	status, shown := "completed", 0
	if resp.Next {
		status = "executing"
		if sess == nil {
			sess = &commandSession{cmd: cmd, owner: from, who: c.principal(from)}
			var err error
			if sid, err = c.open(sess, now); err != nil {
				return nil, err
			}
		}
		c.mu.Lock()
		sess.shown = r.Stage
		if r.Form != nil {
			sess.shown++ // the submitted stage led to the next form
		}
		shown = sess.shown
		sess.state, sess.last = resp.State, resp.Last
		sess.expires = now.Add(c.timeout())
		c.mu.Unlock()
	} else {
		if sess != nil {
			c.drop(sid)
		} else {
			sid = randomID(8)
		}
	}

	out := NewElement(NSCommands, "command", "node", node, "sessionid", sid, "status", status)
	if resp.Next {
		acts := NewElement(NSCommands, "actions")
		if resp.Last {
			acts.SetAttr("execute", "complete")
		} else {
			acts.SetAttr("execute", "next")
		}
		if shown > 0 {
			acts.Add(NewElement(NSCommands, "prev"))
		}
		if resp.Last {
			acts.Add(NewElement(NSCommands, "complete"))
		} else {
			acts.Add(NewElement(NSCommands, "next"))
		}
		out.Add(acts)
	}
	for _, n := range resp.Notes {
		typ := n.Type
		if typ == "" {
			typ = "info"
		}
		out.Add(NewElement(NSCommands, "note", "type", typ).SetText(n.Text))
	}
	if resp.Form != nil {
		out.Add(resp.Form.Element())
	}
	return out, nil
}

// open stores a new session, refusing when the requester or everyone
// together hold too many.
func (c *Commands) open(sess *commandSession, now time.Time) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sessions == nil {
		c.sessions = make(map[string]*commandSession)
	}
	mine := 0
	for _, x := range c.sessions {
		if x.who == sess.who {
			mine++
		}
	}
	if mine >= maxSessionsPerJID || len(c.sessions) >= maxCommandSessions {
		return "", &StanzaError{Type: ErrorTypeWait, Condition: "resource-constraint",
			Text: "too many unfinished command sessions; complete or cancel one"}
	}
	sid := randomID(8)
	sess.expires = now.Add(c.timeout())
	c.sessions[sid] = sess
	return sid, nil
}

func (c *Commands) drop(sid string) {
	c.mu.Lock()
	delete(c.sessions, sid)
	c.mu.Unlock()
}

func (c *Commands) expireLocked(now time.Time) {
	for id, s := range c.sessions {
		if now.After(s.expires) {
			delete(c.sessions, id)
		}
	}
}

// principal is from's principal: Principal(from), or from's bare JID.
func (c *Commands) principal(from JID) string {
	if c.Principal != nil {
		return c.Principal(from)
	}
	return from.BareKey()
}

// Sessions returns how many multi-stage sessions are open.
func (c *Commands) Sessions() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expireLocked(c.clock())
	return len(c.sessions)
}

func (c *Commands) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultCommandTimeout
}

func (c *Commands) clock() time.Time {
	if c.now != nil {
		return c.now()
	}
	return time.Now()
}
