package control

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/stanzad/stanzad/xmpp"
)

// ChatCommand is a parsed chat text command.
type ChatCommand struct {
	Verb string   // help, status, read, history, plot, set, run
	Args []string // fields after the verb
}

// Chat command limits: a command is one short line.
const (
	maxChatCommand = 1024
	maxChatArgs    = 32
)

// ErrChatSyntax is wrapped by ParseChatCommand errors; the text says how to
// do it right.
var ErrChatSyntax = errors.New("bad command")

// chatUsage and chatUsageViewer are the help texts for operators and
// viewers, one command per line.
const (
	chatUsageViewer = `commands:
  help                  this text
  status                agent, session and device status
  read [device…]        current readings (all devices if none named)
  history <device> [field] [duration]
                        min/avg/max and a sparkline, e.g. "history greenhouse 12h"
  plot <device> [field] [duration]
                        the same as a chart (a PNG link), e.g. "plot greenhouse 24h"`
	chatUsage = chatUsageViewer + `
  set <device> <value>  switch or set a device, e.g. "set relay1 on"
  run <action>          run a configured action, e.g. "run restart-modem"`
)

// ParseChatCommand parses a chat message body. Verbs are case-insensitive;
// a leading '/' or '!' is accepted, as many clients users type in add one.
func ParseChatCommand(body string) (ChatCommand, error) {
	if len(body) > maxChatCommand {
		return ChatCommand{}, fmt.Errorf("%w: longer than %d bytes", ErrChatSyntax, maxChatCommand)
	}
	if !utf8.ValidString(body) {
		return ChatCommand{}, fmt.Errorf("%w: not UTF-8", ErrChatSyntax)
	}
	fields := strings.FieldsFunc(body, unicode.IsSpace)
	if len(fields) == 0 {
		return ChatCommand{}, fmt.Errorf("%w: empty; try \"help\"", ErrChatSyntax)
	}
	if len(fields) > maxChatArgs+1 {
		return ChatCommand{}, fmt.Errorf("%w: more than %d arguments", ErrChatSyntax, maxChatArgs)
	}
	verb := strings.ToLower(strings.TrimLeft(fields[0], "/!"))
	c := ChatCommand{Verb: verb, Args: fields[1:]}
	switch verb {
	case "help", "status":
		if len(c.Args) > 0 {
			return ChatCommand{}, fmt.Errorf("%w: %s takes no arguments", ErrChatSyntax, verb)
		}
	case "read":
	case "history", "plot":
		if _, err := ParseHistoryArgs(verb, c.Args); err != nil {
			return ChatCommand{}, err
		}
	case "set":
		if len(c.Args) != 2 {
			return ChatCommand{}, fmt.Errorf("%w: usage: set <device> <value>, e.g. \"set relay1 on\"", ErrChatSyntax)
		}
	case "run":
		if len(c.Args) != 1 {
			return ChatCommand{}, fmt.Errorf("%w: usage: run <action>, e.g. \"run restart-modem\"; \"status\" lists the actions", ErrChatSyntax)
		}
	default:
		return ChatCommand{}, fmt.Errorf("%w: unknown command %q; try \"help\"", ErrChatSyntax, fields[0])
	}
	return c, nil
}

// AllowIQ is the ACL for every IQ get/set: the agent's own server and
// account, operators and viewers pass; anyone else gets <forbidden/> and
// nothing else.
func (pl *Plane) AllowIQ(ctx context.Context, from xmpp.JID, iq *xmpp.Element) error {
	if pl.policy().acl.fromServer(from) {
		return nil
	}
	if _, _, inRoom := pl.host.Occupant(from); inRoom {
		// Who is behind a nick comes from the room's presence, which is
		// handled in order while IQs run at once: apply what arrived
		// before this IQ first, or a stranger who just took an
		// operator's nick would pass as the operator.
		if err := xmpp.WaitOrdered(ctx, relaySettle); err != nil {
			return &xmpp.StanzaError{Type: xmpp.ErrorTypeWait, Condition: "resource-constraint",
				Text: "busy with earlier room traffic; try again in a moment"}
		}
	}
	c, err := pl.iqCaller(from, "iq")
	if err != nil {
		pl.hidden.log(ctx, pl.log, from, "iq "+iq.FirstChild().Name+" relayed by the room")
		return err
	}
	if c.Role >= RoleViewer {
		return nil
	}
	pl.strangers.log(ctx, pl.log, c.JID, "iq "+iq.FirstChild().Name)
	return &xmpp.StanzaError{Type: xmpp.ErrorTypeAuth, Condition: "forbidden"}
}

// relaySettle bounds how long a relayed IQ waits for the room's presence
// that came before it.
const relaySettle = 2 * time.Second

// Stranger logs, once a minute per sender, a stanza ignored because
// its sender has no role; what says which.
func (pl *Plane) Stranger(ctx context.Context, from xmpp.JID, what string) {
	pl.strangers.log(ctx, pl.log, from, what)
}

// HandleChat answers a chat message from 'from' whose body is a text
// command, if the sender has a role; strangers are ignored (logged).
func (pl *Plane) HandleChat(ctx context.Context, s *xmpp.Session, st *xmpp.Element, from xmpp.JID) {
	body := st.ChildText(xmpp.NSClient, "body")
	if body == "" {
		return // chat states, receipts
	}
	c := pl.caller(from, "chat")
	if c.Role == RoleNone {
		pl.strangers.log(ctx, pl.log, from, "chat")
		return
	}
	thread := st.ChildText(xmpp.NSClient, "thread")
	pl.chat(ctx, c, body, func(ctx context.Context, r ChatReply) {
		var ms []*xmpp.Element
		if r.Link != "" {
			ms = append(ms, xmpp.LinkMessage("chat", from.String(), r.Link))
		}
		if r.Text != "" {
			m := xmpp.Stanza("message", "chat", from.String(), "")
			ms = append(ms, m.Add(xmpp.NewElement(xmpp.NSClient, "body").SetText(r.Text)))
		}
		for _, m := range ms {
			if thread != "" {
				m.Add(xmpp.NewElement(xmpp.NSClient, "thread").SetText(thread))
			}
			if err := s.Send(ctx, m); err != nil {
				pl.log.Warn("chat reply not sent", "to", from.String(), "err", err)
				return
			}
		}
	})
}

// ChatReply is an answer to a chat command: Text, and for plot a Link
// to send first, as its own message whose body is exactly the URL with
// a matching jabber:x:oob url (what clients show inline).
type ChatReply struct {
	Link, Text string
}

// ReplyFunc sends a reply to where a chat command came from. It may be
// called after the handler returned (plot), with a context of its own.
type ReplyFunc func(ctx context.Context, r ChatReply)

// RoomCommand runs a command addressed to the agent in a room, as the
// occupant's real JID — which the room must show the agent; from is the
// occupant (room@service/nick). It is telemetry.Hooks.RoomCommand.
func (pl *Plane) RoomCommand(ctx context.Context, from xmpp.JID, real, text string, reply func(ctx context.Context, link, text string)) bool {
	if real == "" {
		if !pl.hidden.First(from.String()) {
			return false
		}
		reply(ctx, "", "I can't see your real JID in this room, so I can't tell whether you may do that. "+
			"Send me the command in a private chat, or make the room non-anonymous.")
		return true
	}
	jid, err := xmpp.ParseJID(real)
	if err != nil {
		return false
	}
	c := pl.caller(jid, "muc")
	if c.Role == RoleNone {
		pl.strangers.log(ctx, pl.log, jid, "groupchat command in "+from.Bare().String())
		return false
	}
	pl.chat(ctx, c, text, func(ctx context.Context, r ChatReply) { reply(ctx, r.Link, r.Text) })
	return true
}

// chat runs one chat text command and sends its reply; plot sends it
// later, from a goroutine of its own.
func (pl *Plane) chat(ctx context.Context, c Caller, body string, send ReplyFunc) {
	if cmd, err := ParseChatCommand(body); err == nil && cmd.Verb == "plot" {
		pl.chatPlot(ctx, c, cmd, send)
		return
	}
	send(ctx, ChatReply{Text: pl.chatText(ctx, c, body)})
}

// chatText runs one chat text command and returns the reply text.
func (pl *Plane) chatText(ctx context.Context, c Caller, body string) string {
	cmd, err := ParseChatCommand(body)
	if err != nil {
		return err.Error()
	}
	if cmd.Verb == "help" {
		if c.Role < RoleOperator {
			return chatUsageViewer
		}
		return chatUsage
	}
	if err := pl.Admit(ctx, c); err != nil {
		return "slow down: " + err.Error()
	}
	switch cmd.Verb {
	case "status":
		rep, err := pl.Status(ctx, c)
		if err != nil {
			return chatError("status", err)
		}
		return rep.Text()
	case "read":
		rs, err := pl.Read(ctx, c, cmd.Args)
		if err != nil {
			return chatError("read", err)
		}
		if len(rs) == 0 {
			return "no devices"
		}
		lines := make([]string, len(rs))
		now := time.Now()
		for i, r := range rs {
			lines[i] = formatAged(r, now)
		}
		return strings.Join(lines, "\n")
	case "history":
		req, _ := ParseHistoryArgs(cmd.Verb, cmd.Args) // checked by ParseChatCommand
		ans, err := pl.History(ctx, c, req)
		if err != nil {
			return chatError("history", err)
		}
		return ans.Text()
	case "set":
		r, err := pl.Set(ctx, c, cmd.Args[0], cmd.Args[1])
		if err != nil {
			return chatError("set", err)
		}
		return "ok, " + formatReading(r)
	case "run":
		res, err := pl.RunAction(ctx, c, cmd.Args[0])
		if err != nil {
			return chatError("run "+cmd.Args[0], err)
		}
		return res.Text(cmd.Args[0])
	}
	return "unknown command; try \"help\""
}

// chatError words a command error for chat: what went wrong and, where
// the user can fix it, how.
func chatError(what string, err error) string {
	switch {
	case errors.Is(err, ErrForbidden):
		return what + ": not allowed: viewers can read and ask for status, not control"
	case errors.Is(err, ErrBusy):
		return what + ": " + err.Error() + "; try again when it has finished"
	}
	return what + ": " + err.Error()
}
