package xmpp

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// The stream reader before it had its own tokenizer (docs/decisions.md
// §1): encoding/xml's, in strict mode. The tests keep it as the oracle
// the reader is compared with (FuzzReaderOracle).

// reader reads one XML stream: the header, then top-level elements.
type oracleReader struct {
	conn     *limitedConn
	dec      *xml.Decoder
	maxSize  int64
	maxDepth int
	// elements counts the elements of the stanza being read, to
	// maxElements: past it the rest is skipped, not kept.
	elements, maxElements int
}

// oracleDropped is a stanza read whole but not kept: it has more than
// maxElements elements. The stream goes on.
type oracleDropped struct {
	start xml.StartElement // its top element's tag
	max   int
}

func (d *oracleDropped) attr(name string) string {
	for _, a := range d.start.Attr {
		if a.Name.Space == "" && a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

func (d *oracleDropped) Error() string {
	return "xmpp: <" + d.start.Name.Local + "/> from " + strconv.Quote(d.attr("from")) + " has more than " + strconv.Itoa(d.max) + " elements; dropped"
}

// errOracleTooMany unwinds element's recursion once the count is past
// maxElements; every level skips the rest of its element.
var errOracleTooMany = errors.New("too many elements")

func newOracleReader(r io.Reader, maxSize int64, maxDepth int) *oracleReader {
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
	return &oracleReader{conn: c, dec: d, maxSize: maxSize, maxDepth: maxDepth, maxElements: int(max(maxSize/elementBytes, 256))}
}

// header reads up to and including the <stream:stream> start tag.
func (r *oracleReader) header() (streamHeader, error) {
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
func (r *oracleReader) next() (*Element, error) {
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
			if errors.Is(err, errOracleTooMany) && r.dec.InputOffset()-start > r.maxSize {
				return nil, r.tooBig()
			}
			if errors.Is(err, errOracleTooMany) {
				err = &oracleDropped{start: t, max: r.maxElements}
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

func (r *oracleReader) element(start xml.StartElement, depth int) (*Element, error) {
	if depth > r.maxDepth {
		return nil, &StreamError{Condition: "policy-violation", Text: fmt.Sprintf("nesting deeper than %d", r.maxDepth), Local: true}
	}
	if !oracleNCName(start.Name.Local) {
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
		case !oracleNCName(a.Name.Local):
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
			if errors.Is(err, errOracleTooMany) {
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
// (its tokens are read and let go) and returns errOracleTooMany, or
// what went wrong reading them.
func (r *oracleReader) skipRest() error {
	if err := r.dec.Skip(); err != nil {
		return r.readErr(err)
	}
	return errOracleTooMany
}

// token reads one token and maps decoder and limit failures to stream
// errors. Comments, DTDs and processing instructions are restricted XML
// in XMPP (RFC 6120 §11.1).
func (r *oracleReader) token() (xml.Token, error) {
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
func (r *oracleReader) readErr(err error) error {
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

func (r *oracleReader) tooBig() error {
	return &StreamError{Condition: "policy-violation", Text: fmt.Sprintf("stanza larger than %d bytes", r.maxSize), Local: true}
}

// isNCName reports whether s can be a local name. encoding/xml accepts a
// name like "p:0" and splits it at the colon, leaving "0", which no
// conforming writer (ours included) can put back on the wire.
func oracleNCName(s string) bool {
	if s == "" {
		return false
	}
	c := s[0]
	if c >= '0' && c <= '9' || c == '-' || c == '.' {
		return false
	}
	return !strings.ContainsRune(s, ':')
}

// readAllWith reads stanzas until the first error.
func readAllWith(next func() (*Element, error)) ([]*Element, error) {
	var out []*Element
	for {
		el, err := next()
		if err != nil {
			return out, err
		}
		out = append(out, el)
	}
}

// stricter are the reader's errors where it refuses what encoding/xml
// let through, by design: XML's well-formedness and namespace
// constraints that encoding/xml does not check.
var stricter = []string{
	"unbound namespace prefix",
	"duplicate attribute",
	"expected white space before attribute",
	"empty namespace for prefix",
	"reserved prefix",
}

// FuzzReaderOracle reads arbitrary input after a valid header with the
// reader and with the oracle (encoding/xml): every stanza both return
// must be the same tree, and where one stops the other must stop too —
// unless the reader stopped on one of the stricter checks, or the input
// has bytes past ASCII (names: the reader takes XML's fifth edition,
// encoding/xml the older tables).
func FuzzReaderOracle(f *testing.F) {
	for _, s := range []string{
		"<message from='a@b/c' type='chat'><body>hi</body></message>",
		"<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>",
		"<presence><status>&amp;&#x41;&#66;&lt;&gt;&quot;&apos;</status><c xmlns='http://jabber.org/protocol/caps' hash='sha-1'/></presence>",
		"<message>x<b>y<c/>z<c>q</c></b>w<d/>v</message>",
		"<message><body><![CDATA[a<b>&c]]]]>x</body></message>",
		"<a xmlns:p='urn:p'><p:b p:c='d' xml:lang='de'/></a>",
		"<a xmlns='urn:a'><b xmlns=''/><c/></a></stream:stream>",
		"<message>\r\n\r<body a='1\r\n2'>x\ry</body></message>",
		"<a b='1' b='2'/>",
		"<a b='1'c='2'/>",
		"<p:a/>",
		"<a><!-- c --></a>",
		"<a><?pi?></a>",
		"<a>&#0;</a>",
		"<a>\x01</a>",
		"<a>\x00</a><b c='\x00'/>",
		"<a>\xff</a>",
		"<a>é</a><é/>",
		"   <a/>\n\t<b/>  </stream:stream>",
		"<a></b>",
		"<a xmlns:p=''/>",
	} {
		f.Add(s)
	}
	if files, err := filepath.Glob("testdata/*.xml"); err == nil {
		for _, name := range files {
			if b, err := os.ReadFile(name); err == nil {
				f.Add(string(b))
			}
		}
	}
	f.Fuzz(func(t *testing.T, in string) {
		const maxSize, maxDepth = 1 << 20, 16
		r := newReader(strings.NewReader(header+in), maxSize, maxDepth)
		if _, err := r.header(); err != nil {
			t.Fatalf("header: %v", err)
		}
		o := newOracleReader(strings.NewReader(header+in), maxSize, maxDepth)
		if _, err := o.header(); err != nil {
			t.Fatalf("oracle header: %v", err)
		}
		got, gotErr := readAllWith(r.next)
		want, wantErr := readAllWith(o.next)
		for i := range min(len(got), len(want)) {
			if g, w := got[i].String(), want[i].String(); g != w || got[i].Space != want[i].Space {
				t.Fatalf("stanza %d:\nreader %s (%s)\noracle %s (%s)", i, g, got[i].Space, w, want[i].Space)
			}
		}
		if len(got) == len(want) && errors.Is(gotErr, errStreamEnd) == errors.Is(wantErr, errStreamEnd) {
			return
		}
		for i := 0; i < len(in); i++ {
			if in[i] >= utf8.RuneSelf {
				return
			}
		}
		var se *StreamError
		if len(got) <= len(want) && errors.As(gotErr, &se) {
			for _, s := range stricter {
				if strings.HasPrefix(se.Text, s) {
					return
				}
			}
		}
		t.Fatalf("reader: %d stanzas, then %v\noracle: %d stanzas, then %v", len(got), gotErr, len(want), wantErr)
	})
}
