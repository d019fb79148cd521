package control

import (
	"context"
	"log/slog"

	"github.com/stanzad/stanzad/agent/throttle"
	"github.com/stanzad/stanzad/xmpp"
)

// Role is what a sender may do.
type Role uint8

// Roles, from least to most trusted.
const (
	RoleNone     Role = iota // strangers: IQ forbidden, chat ignored
	RoleViewer               // read and status
	RoleOperator             // read, status, control and actions
)

func (r Role) String() string {
	switch r {
	case RoleOperator:
		return "operator"
	case RoleViewer:
		return "viewer"
	}
	return "none"
}

// acl maps bare JIDs to roles. It is replaced whole on reload.
type acl struct {
	roles map[string]Role
	self  xmpp.JID // the agent's own account: the server speaks for it
}

func newACL(self xmpp.JID, operators, viewers []string) acl {
	a := acl{roles: make(map[string]Role, len(operators)+len(viewers)), self: self}
	for _, v := range viewers {
		if j, err := xmpp.ParseJID(v); err == nil {
			a.roles[j.BareKey()] = RoleViewer
		}
	}
	for _, o := range operators {
		if j, err := xmpp.ParseJID(o); err == nil {
			a.roles[j.BareKey()] = RoleOperator
		}
	}
	return a
}

// role returns the sender's role. The check is on the bare JID the server
// stamped in 'from' (RFC 6120 §8.1.2.1), so a client cannot claim another
// account.
func (a acl) role(from xmpp.JID) Role {
	if from.Local == "" {
		return RoleNone
	}
	return a.roles[from.BareKey()]
}

// fromServer reports whether a stanza comes from the agent's own server or
// account (roster pushes, server pings and disco probes), which must be
// answered whatever the ACL says.
func (a acl) fromServer(from xmpp.JID) bool {
	if from.IsZero() {
		return true
	}
	if from.Local == "" && from.Resource == "" && from.Domain == a.self.Domain {
		return true
	}
	return from.BareKey() == a.self.BareKey()
}

// strangerLog logs ignored senders at most once per sender per minute, so
// a spammer cannot flood the log.
type strangerLog struct{ throttle.Keys }

func (s *strangerLog) log(ctx context.Context, log *slog.Logger, from xmpp.JID, what string) {
	if !s.First(from.BareKey()) {
		return
	}
	log.LogAttrs(ctx, slog.LevelWarn, "ignored stanza from unauthorized sender",
		slog.String("from", from.String()), slog.String("what", what))
}
