package xmpp

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// JID is an XMPP address, local@domain/resource (RFC 7622).
//
// Parsing validates structure and length, not the full PRECIS profiles:
// the server stamps and enforces canonical forms, and the agent compares
// JIDs after lower-casing the local part and domain.
type JID struct {
	Local, Domain, Resource string
}

// ErrBadJID is wrapped by ParseJID errors.
var ErrBadJID = errors.New("invalid JID")

// ParseJID parses s as a JID.
func ParseJID(s string) (JID, error) {
	var j JID
	rest := s
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		j.Resource = rest[i+1:]
		rest = rest[:i]
		if j.Resource == "" {
			return JID{}, fmt.Errorf("%w %q: empty resource", ErrBadJID, s)
		}
	}
	if i := strings.IndexByte(rest, '@'); i >= 0 {
		j.Local = rest[:i]
		rest = rest[i+1:]
		if j.Local == "" {
			return JID{}, fmt.Errorf("%w %q: empty local part", ErrBadJID, s)
		}
	}
	j.Domain = strings.TrimSuffix(rest, ".")
	switch {
	case j.Domain == "":
		return JID{}, fmt.Errorf("%w %q: empty domain", ErrBadJID, s)
	case len(j.Local) > 1023 || len(j.Domain) > 1023 || len(j.Resource) > 1023:
		return JID{}, fmt.Errorf("%w %q: part longer than 1023 bytes", ErrBadJID, s)
	case !utf8.ValidString(s):
		return JID{}, fmt.Errorf("%w %q: not UTF-8", ErrBadJID, s)
	case strings.ContainsAny(j.Local, "\"&'/:<>@ \t\r\n"):
		return JID{}, fmt.Errorf("%w %q: forbidden character in local part", ErrBadJID, s)
	case strings.ContainsAny(j.Domain, "@/ \t\r\n<>&'\""):
		return JID{}, fmt.Errorf("%w %q: forbidden character in domain", ErrBadJID, s)
	case strings.HasPrefix(j.Domain, ".") || strings.HasSuffix(j.Domain, ".") || strings.Contains(j.Domain, ".."):
		return JID{}, fmt.Errorf("%w %q: empty label in domain", ErrBadJID, s)
	case strings.ContainsAny(j.Resource, "\t\r\n<>&"):
		return JID{}, fmt.Errorf("%w %q: forbidden character in resource", ErrBadJID, s)
	}
	j.Domain = strings.ToLower(j.Domain)
	return j, nil
}

// MustParseJID is ParseJID for constants in tests and examples; it panics
// on error.
func MustParseJID(s string) JID {
	j, err := ParseJID(s)
	if err != nil {
		panic(err)
	}
	return j
}

// Bare returns the JID without resource.
func (j JID) Bare() JID { return JID{Local: j.Local, Domain: j.Domain} }

// IsZero reports whether j is the zero JID.
func (j JID) IsZero() bool { return j.Domain == "" }

// String formats the JID.
func (j JID) String() string {
	n := len(j.Domain)
	if j.Local != "" {
		n += len(j.Local) + 1
	}
	if j.Resource != "" {
		n += len(j.Resource) + 1
	}
	var b strings.Builder
	b.Grow(n)
	if j.Local != "" {
		b.WriteString(j.Local)
		b.WriteByte('@')
	}
	b.WriteString(j.Domain)
	if j.Resource != "" {
		b.WriteByte('/')
		b.WriteString(j.Resource)
	}
	return b.String()
}

// BareKey returns the bare JID in the form used for ACL comparisons:
// local part and domain lower-cased.
func (j JID) BareKey() string {
	return strings.ToLower(j.Bare().String())
}
