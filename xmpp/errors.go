package xmpp

import (
	"errors"
	"fmt"
)

// StreamError is a stream-level error (RFC 6120 §4.9). Received errors
// come from the server's <stream:error/>; Local errors were detected by
// this side (oversized stanza, malformed XML) and sent to the server
// before the stream was closed.
type StreamError struct {
	Condition string // e.g. "policy-violation", "not-well-formed", "conflict"
	Text      string
	Local     bool
}

func (e *StreamError) Error() string {
	who := "server"
	if e.Local {
		who = "local"
	}
	if e.Text != "" {
		return fmt.Sprintf("xmpp: %s stream error %s: %s", who, e.Condition, e.Text)
	}
	return fmt.Sprintf("xmpp: %s stream error %s", who, e.Condition)
}

// Element encodes the error as a <stream:error/> element.
func (e *StreamError) Element() []byte {
	b := []byte("<stream:error><")
	b = append(b, e.Condition...)
	b = append(b, " xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"...)
	if e.Text != "" {
		b = append(b, "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>"...)
		b = AppendEscaped(b, e.Text)
		b = append(b, "</text>"...)
	}
	return append(b, "</stream:error>"...)
}

// SASLError is an authentication failure (RFC 6120 §6.5).
type SASLError struct {
	Condition string // e.g. "not-authorized", "account-disabled"
	Text      string
}

func (e *SASLError) Error() string {
	if e.Text != "" {
		return fmt.Sprintf("xmpp: authentication failed: %s: %s", e.Condition, e.Text)
	}
	return "xmpp: authentication failed: " + e.Condition
}

// Stanza error types (RFC 6120 §8.3.2).
const (
	ErrorTypeAuth     = "auth"
	ErrorTypeCancel   = "cancel"
	ErrorTypeContinue = "continue"
	ErrorTypeModify   = "modify"
	ErrorTypeWait     = "wait"
)

// StanzaError is an error carried in an iq, message or presence of type
// "error" (RFC 6120 §8.3). Handlers return it to answer with a specific
// condition; an IQ result of type error is returned as one.
type StanzaError struct {
	Type      string // auth, cancel, continue, modify, wait
	Condition string // e.g. "item-not-found", "bad-request"
	Text      string
	By        string
	// App is an optional application-specific condition element.
	App *Element
}

func (e *StanzaError) Error() string {
	if e.Text != "" {
		return fmt.Sprintf("xmpp: %s (%s): %s", e.Condition, e.Type, e.Text)
	}
	return fmt.Sprintf("xmpp: %s (%s)", e.Condition, e.Type)
}

// Element returns the <error/> child element.
func (e *StanzaError) Element() *Element {
	typ := e.Type
	if typ == "" {
		typ = ErrorTypeCancel
	}
	el := NewElement(NSClient, "error", "type", typ)
	el.SetAttr("by", e.By)
	el.Add(NewElement(NSStanzas, e.Condition))
	if e.Text != "" {
		el.Add(NewElement(NSStanzas, "text", "xml:lang", "en").SetText(e.Text))
	}
	if e.App != nil {
		el.Add(e.App)
	}
	return el
}

// ParseStanzaError extracts the error from a stanza of type "error"; it
// returns a generic undefined-condition error when the child is missing.
func ParseStanzaError(st *Element) *StanzaError {
	e := &StanzaError{Type: ErrorTypeCancel, Condition: "undefined-condition"}
	el := st.Child("", "error")
	if el == nil {
		return e
	}
	if t := el.Attr("type"); t != "" {
		e.Type = t
	}
	e.By = el.Attr("by")
	for _, c := range el.Children {
		switch {
		case c.Space == NSStanzas && c.Name == "text":
			e.Text = c.Text
		case c.Space == NSStanzas:
			e.Condition = c.Name
		default:
			e.App = c
		}
	}
	return e
}

// Common errors.
// ErrQueuedForResume is returned by SendTracked (and SendRaw) when the
// connection failed under the write but the stanza is kept by stream
// management: it is resent if the stream is resumed. The caller must not
// send it again on a resumed stream.
var ErrQueuedForResume = errors.New("xmpp: connection lost; stanza kept for stream resumption")

var (
	// ErrNotConnected is returned by Client sends while no session is up.
	ErrNotConnected = errors.New("xmpp: not connected")
	// ErrClosed is returned by a Session after Close or a stream failure.
	ErrClosed = errors.New("xmpp: session closed")
	// ErrNoTLS is returned when the server does not offer STARTTLS; stanzad
	// never speaks XMPP in plaintext.
	ErrNoTLS = errors.New("xmpp: server does not offer STARTTLS; refusing plaintext")
	// ErrNoMechanism is returned when no offered SASL mechanism is acceptable.
	ErrNoMechanism = errors.New("xmpp: no acceptable SASL mechanism offered")
)

// IsAuthError reports whether err is a SASL authentication failure that a
// retry with the same credentials will not fix.
func IsAuthError(err error) bool {
	var se *SASLError
	if errors.As(err, &se) {
		switch se.Condition {
		case "temporary-auth-failure", "aborted":
			return false
		}
		return true
	}
	return errors.Is(err, ErrNoMechanism)
}
