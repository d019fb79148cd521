package agent

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ChatCommand is a parsed chat text command.
type ChatCommand struct {
	Verb string   // help, status, read, set, run
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
  read [device…]        current readings (all devices if none named)`
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
