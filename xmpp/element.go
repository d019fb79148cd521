package xmpp

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// Namespaces used across the package.
const (
	NSClient   = "jabber:client"
	NSStream   = "http://etherx.jabber.org/streams"
	NSTLS      = "urn:ietf:params:xml:ns:xmpp-tls"
	NSSASL     = "urn:ietf:params:xml:ns:xmpp-sasl"
	NSBind     = "urn:ietf:params:xml:ns:xmpp-bind"
	NSSession  = "urn:ietf:params:xml:ns:xmpp-session"
	NSStanzas  = "urn:ietf:params:xml:ns:xmpp-stanzas"
	NSStreams  = "urn:ietf:params:xml:ns:xmpp-streams"
	NSXML      = "http://www.w3.org/XML/1998/namespace"
	NSPing     = "urn:xmpp:ping"
	NSDiscoInf = "http://jabber.org/protocol/disco#info"
	NSDiscoIt  = "http://jabber.org/protocol/disco#items"
	NSVersion  = "jabber:iq:version"
	NSDelay    = "urn:xmpp:delay"
	NSSASLCB   = "urn:xmpp:sasl-cb:0"
)

// Attr is an attribute. Name is the local name; the only prefixed
// attribute XMPP uses on stanzas, xml:lang, is stored as "xml:lang".
type Attr struct {
	Name, Value string
}

// Element is a parsed or constructed XML element: a stanza or one of its
// payloads. Space is the namespace URI. Text holds the character data
// directly inside the element (mixed content is concatenated), which is
// all XMPP payloads need.
type Element struct {
	Space    string
	Name     string
	Attrs    []Attr
	Children []*Element
	Text     string
}

// NewElement returns an element with the given namespace, name and
// attribute name/value pairs.
//
// Building elements is for the control plane and set-up, not per
// reading (readings are appended as bytes): NewElement, SetAttr, Add,
// SetText and Stanza are not inlined, which keeps their many callers
// small (the armv7 binary's 8 MiB budget; docs/decisions.md §7).
//
//go:noinline
func NewElement(space, name string, attrs ...string) *Element {
	e := &Element{Space: space, Name: name}
	for i := 0; i+1 < len(attrs); i += 2 {
		e.Attrs = append(e.Attrs, Attr{attrs[i], attrs[i+1]})
	}
	return e
}

// Attr returns the value of the named attribute, or "".
//
//go:noinline
func (e *Element) Attr(name string) string {
	if e == nil {
		return ""
	}
	for _, a := range e.Attrs {
		if a.Name == name {
			return a.Value
		}
	}
	return ""
}

// SetAttr sets or replaces an attribute. An empty value removes it.
//
//go:noinline
func (e *Element) SetAttr(name, value string) *Element {
	for i, a := range e.Attrs {
		if a.Name == name {
			if value == "" {
				e.Attrs = append(e.Attrs[:i], e.Attrs[i+1:]...)
			} else {
				e.Attrs[i].Value = value
			}
			return e
		}
	}
	if value != "" {
		e.Attrs = append(e.Attrs, Attr{name, value})
	}
	return e
}

// Child returns the first child with the namespace and name; an empty
// space matches any namespace.
//
//go:noinline
func (e *Element) Child(space, name string) *Element {
	if e == nil {
		return nil
	}
	for _, c := range e.Children {
		if c.Name == name && (space == "" || c.Space == space) {
			return c
		}
	}
	return nil
}

// ChildText returns the text of the first matching child, or "".
//
//go:noinline
func (e *Element) ChildText(space, name string) string {
	if c := e.Child(space, name); c != nil {
		return c.Text
	}
	return ""
}

// FirstChild returns the first child element, or nil.
//
//go:noinline
func (e *Element) FirstChild() *Element {
	if e == nil || len(e.Children) == 0 {
		return nil
	}
	return e.Children[0]
}

// Add appends children and returns e.
//
//go:noinline
func (e *Element) Add(children ...*Element) *Element {
	e.Children = append(e.Children, children...)
	return e
}

// SetText sets the text and returns e.
//
//go:noinline
func (e *Element) SetText(s string) *Element {
	e.Text = s
	return e
}

// String encodes the element as a top-level stanza.
func (e *Element) String() string { return string(e.Append(nil)) }

// Append encodes the element as it appears at the top level of a client
// stream (jabber:client is the default namespace there).
func (e *Element) Append(dst []byte) []byte { return e.appendNS(dst, NSClient) }

func (e *Element) appendNS(dst []byte, parentNS string) []byte {
	dst = append(dst, '<')
	dst = append(dst, e.Name...)
	if e.Space != parentNS && e.Space != "" {
		dst = appendAttr(dst, "xmlns", e.Space)
	}
	for _, a := range e.Attrs {
		dst = appendAttr(dst, a.Name, a.Value)
	}
	if len(e.Children) == 0 && e.Text == "" {
		return append(dst, "/>"...)
	}
	dst = append(dst, '>')
	dst = AppendEscaped(dst, e.Text)
	ns := e.Space
	if ns == "" {
		ns = parentNS
	}
	for _, c := range e.Children {
		dst = c.appendNS(dst, ns)
	}
	dst = append(dst, "</"...)
	dst = append(dst, e.Name...)
	return append(dst, '>')
}

func appendAttr(dst []byte, name, value string) []byte {
	dst = append(dst, ' ')
	dst = append(dst, name...)
	dst = append(dst, "='"...)
	dst = AppendEscaped(dst, value)
	return append(dst, '\'')
}

// AppendEscaped appends s escaped for use in XML character data and in
// single- or double-quoted attribute values. Characters not allowed in XML
// 1.0 and invalid UTF-8 are replaced with U+FFFD, so any Go string
// produces well-formed output.
func AppendEscaped(dst []byte, s string) []byte {
	last := 0
	for i := 0; i < len(s); {
		c := s[i]
		var esc string
		width := 1
		switch {
		case c == '<':
			esc = "&lt;"
		case c == '>':
			esc = "&gt;"
		case c == '&':
			esc = "&amp;"
		case c == '\'':
			esc = "&apos;"
		case c == '"':
			esc = "&quot;"
		case c == '\r':
			esc = "&#xD;"
		case c == '\n' || c == '\t':
		case c < 0x20:
			esc = "\uFFFD"
		case c >= utf8.RuneSelf:
			r, w := utf8.DecodeRuneInString(s[i:])
			width = w
			if (r == utf8.RuneError && w == 1) || r == 0xFFFE || r == 0xFFFF {
				esc = "\uFFFD"
			}
		}
		if esc != "" {
			dst = append(dst, s[last:i]...)
			dst = append(dst, esc...)
			last = i + width
		}
		i += width
	}
	return append(dst, s[last:]...)
}

// Stanza returns a message, presence or iq element with the common
// attributes set (empty values are left out).
//
//go:noinline
func Stanza(name, typ, to, id string) *Element {
	e := &Element{Space: NSClient, Name: name}
	e.SetAttr("type", typ)
	e.SetAttr("to", to)
	e.SetAttr("id", id)
	return e
}

// AppendTime appends t in XEP-0082 DateTime profile (UTC, with
// milliseconds when non-zero).
func AppendTime(dst []byte, t time.Time) []byte {
	t = t.UTC()
	if t.Nanosecond()/1e6 != 0 {
		return t.AppendFormat(dst, "2006-01-02T15:04:05.000Z")
	}
	return t.AppendFormat(dst, "2006-01-02T15:04:05Z")
}

func itoa(v uint64) string { return strconv.FormatUint(v, 10) }
