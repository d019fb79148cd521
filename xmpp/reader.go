package xmpp

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Reader limits. DefaultMaxStanza matches Prosody's c2s_stanza_size_limit.
const (
	DefaultMaxStanza = 256 << 10
	DefaultMaxDepth  = 32
	// readAhead covers the xml.Decoder's internal bufio buffer, which may
	// hold bytes of the next stanza when one ends.
	readAhead = 4096
)

// errStreamEnd is returned by reader.next when the peer closes the stream
// with </stream:stream>.
var errStreamEnd = errors.New("xmpp: stream closed by peer")

// limitedConn counts bytes read from the network and refuses to read past
// limit, so a single oversized token (a megabyte attribute value, an
// endless run of whitespace) can never be buffered whole.
type limitedConn struct {
	r     io.Reader
	n     int64
	limit int64
	// last is the Unix nanosecond time of the last successful read, for
	// dead-peer detection.
	last atomic.Int64
}

func (c *limitedConn) Read(p []byte) (int, error) {
	room := c.limit - c.n
	if room <= 0 {
		return 0, errTooBig
	}
	if int64(len(p)) > room {
		p = p[:room]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if n > 0 {
		c.last.Store(time.Now().UnixNano())
	}
	return n, err
}

var errTooBig = errors.New("stanza too large")

// reader reads one XML stream: the header, then top-level elements.
type reader struct {
	conn     *limitedConn
	dec      *xml.Decoder
	maxSize  int64
	maxDepth int
	// elements counts the elements of the stanza being read, to
	// maxElements: past it the rest is skipped, not kept.
	elements, maxElements int
}

// elementBytes is the input per element a stanza may average, at least:
// an element kept costs ~25 times its bytes (<a/> is 4 bytes, ~100 as an
// Element), and a stanza of maxSize of empty elements would hold MBs.
// Real stanzas (forms, rosters, sensor data) average far more.
const elementBytes = 64

// droppedStanza is a stanza read whole but not kept: it has more than
// maxElements elements. The stream goes on.
type droppedStanza struct {
	start xml.StartElement // its top element's tag
	max   int
}

func (d *droppedStanza) attr(name string) string {
	for _, a := range d.start.Attr {
		if a.Name.Space == "" && a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

func (d *droppedStanza) Error() string {
	return "xmpp: <" + d.start.Name.Local + "/> from " + strconv.Quote(d.attr("from")) + " has more than " + strconv.Itoa(d.max) + " elements; dropped"
}

// errTooManyElements unwinds element's recursion once the count is past
// maxElements; every level skips the rest of its element.
var errTooManyElements = errors.New("too many elements")

func newReader(r io.Reader, maxSize int64, maxDepth int) *reader {
	if maxSize <= 0 {
		maxSize = DefaultMaxStanza
	}
	if maxDepth <= 0 {
		maxDepth = DefaultMaxDepth
	}
	c := &limitedConn{r: r}
	c.limit = maxSize + readAhead
	d := xml.NewDecoder(c)
	d.Strict = true
	return &reader{conn: c, dec: d, maxSize: maxSize, maxDepth: maxDepth, maxElements: int(max(maxSize/elementBytes, 256))}
}

// streamHeader is the peer's <stream:stream> start tag.
type streamHeader struct {
	ID, From, Version string
}

// header reads up to and including the <stream:stream> start tag.
func (r *reader) header() (streamHeader, error) {
	for {
		tok, err := r.token()
		if err != nil {
			return streamHeader{}, err
		}
		switch t := tok.(type) {
		case xml.ProcInst:
			if t.Target != "xml" {
				return streamHeader{}, restricted("processing instruction")
			}
		case xml.CharData:
			if strings.TrimSpace(string(t)) != "" {
				return streamHeader{}, &StreamError{Condition: "not-well-formed", Text: "text before stream header", Local: true}
			}
		case xml.StartElement:
			if t.Name.Space != NSStream || t.Name.Local != "stream" {
				return streamHeader{}, &StreamError{Condition: "invalid-namespace", Text: "expected stream:stream", Local: true}
			}
			var h streamHeader
			for _, a := range t.Attr {
				switch a.Name.Local {
				case "id":
					h.ID = a.Value
				case "from":
					h.From = a.Value
				case "version":
					h.Version = a.Value
				}
			}
			return h, nil
		default:
			return streamHeader{}, restricted(fmt.Sprintf("%T", tok))
		}
	}
}

// next returns the next top-level element of the stream, skipping
// whitespace keepalives. It returns errStreamEnd when the peer closes
// the stream and a *StreamError (Local) for limits and bad XML.
func (r *reader) next() (*Element, error) {
	for {
		start := r.dec.InputOffset()
		r.conn.limit = r.conn.n + r.maxSize + readAhead
		tok, err := r.token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.CharData:
			if len(bytes.TrimSpace(t)) != 0 {
				return nil, &StreamError{Condition: "not-well-formed", Text: "text at stream level", Local: true}
			}
		case xml.EndElement:
			return nil, errStreamEnd
		case xml.StartElement:
			r.elements = 0
			el, err := r.element(t, 1)
			if errors.Is(err, errTooManyElements) && r.dec.InputOffset()-start > r.maxSize {
				return nil, r.tooBig()
			}
			if errors.Is(err, errTooManyElements) {
				err = &droppedStanza{start: t, max: r.maxElements}
			}
			if err != nil {
				return nil, err
			}
			if r.dec.InputOffset()-start > r.maxSize {
				return nil, r.tooBig()
			}
			return el, nil
		default:
			return nil, restricted(fmt.Sprintf("%T", tok))
		}
	}
}

func (r *reader) element(start xml.StartElement, depth int) (*Element, error) {
	if depth > r.maxDepth {
		return nil, &StreamError{Condition: "policy-violation", Text: fmt.Sprintf("nesting deeper than %d", r.maxDepth), Local: true}
	}
	if !isNCName(start.Name.Local) {
		return nil, &StreamError{Condition: "not-well-formed", Text: fmt.Sprintf("invalid element name %q", start.Name.Local), Local: true}
	}
	if r.elements++; r.elements > r.maxElements {
		return nil, r.skipRest()
	}
	el := &Element{Space: start.Name.Space, Name: start.Name.Local}
	if len(start.Attr) > 0 {
		el.Attrs = make([]Attr, 0, len(start.Attr))
	}
	for _, a := range start.Attr {
		switch {
		case !isNCName(a.Name.Local):
			return nil, &StreamError{Condition: "not-well-formed", Text: fmt.Sprintf("invalid attribute name %q", a.Name.Local), Local: true}
		case a.Name.Space == "" && a.Name.Local == "xmlns", a.Name.Space == "xmlns":
			// Namespace declarations are resolved into Space already.
		case a.Name.Space == "":
			el.Attrs = append(el.Attrs, Attr{a.Name.Local, a.Value})
		case a.Name.Space == NSXML:
			el.Attrs = append(el.Attrs, Attr{"xml:" + a.Name.Local, a.Value})
		}
	}
	var text []byte
	for {
		tok, err := r.token()
		if err != nil {
			return nil, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			c, err := r.element(t, depth+1)
			if errors.Is(err, errTooManyElements) {
				return nil, r.skipRest()
			}
			if err != nil {
				return nil, err
			}
			el.Children = append(el.Children, c)
		case xml.CharData:
			text = append(text, t...)
		case xml.EndElement:
			el.Text = string(text)
			return el, nil
		default:
			return nil, restricted(fmt.Sprintf("%T", tok))
		}
	}
}

// skipRest skips the rest of the element whose start was read last
// (its tokens are read and let go) and returns errTooManyElements, or
// what went wrong reading them.
func (r *reader) skipRest() error {
	if err := r.dec.Skip(); err != nil {
		return r.readErr(err)
	}
	return errTooManyElements
}

// token reads one token and maps decoder and limit failures to stream
// errors. Comments, DTDs and processing instructions are restricted XML
// in XMPP (RFC 6120 §11.1).
func (r *reader) token() (xml.Token, error) {
	tok, err := r.dec.Token()
	if err != nil {
		return nil, r.readErr(err)
	}
	switch tok.(type) {
	case xml.Comment:
		return nil, restricted("comment")
	case xml.Directive:
		return nil, restricted("DTD or directive")
	}
	return tok, nil
}

// readErr maps a decoder or limit failure to a stream error.
func (r *reader) readErr(err error) error {
	if errors.Is(err, errTooBig) {
		return r.tooBig()
	}
	var se *xml.SyntaxError
	if errors.As(err, &se) {
		if strings.Contains(se.Msg, "unexpected EOF") {
			return io.ErrUnexpectedEOF
		}
		return &StreamError{Condition: "not-well-formed", Text: se.Msg, Local: true}
	}
	return err
}

func (r *reader) tooBig() error {
	return &StreamError{Condition: "policy-violation", Text: fmt.Sprintf("stanza larger than %d bytes", r.maxSize), Local: true}
}

func restricted(what string) error {
	return &StreamError{Condition: "restricted-xml", Text: what + " not allowed", Local: true}
}

// isNCName reports whether s can be a local name. encoding/xml accepts a
// name like "p:0" and splits it at the colon, leaving "0", which no
// conforming writer (ours included) can put back on the wire.
func isNCName(s string) bool {
	if s == "" {
		return false
	}
	c := s[0]
	if c >= '0' && c <= '9' || c == '-' || c == '.' {
		return false
	}
	return !strings.ContainsRune(s, ':')
}

// ParseElement parses one element as it would appear at the top level of
// a client stream (default namespace jabber:client), with the stream's
// size and depth limits. Tools and tests use it to build payloads from
// XML text.
func ParseElement(s string) (*Element, error) {
	const open = `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>`
	r := newReader(strings.NewReader(open+s), 0, 0)
	if _, err := r.header(); err != nil {
		return nil, err
	}
	return r.next()
}
