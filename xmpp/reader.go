package xmpp

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// The stream reader is our own XML tokenizer for the restricted XML of
// RFC 6120 §11 (docs/decisions.md §1). It reads a stanza into scratch
// buffers that are reused — the decoded names, values and texts in one
// byte slice, the elements as a flat list — and then builds its tree
// in four allocations: one string for all its text, and one slice each
// of elements, child pointers and attributes. The elements of a stanza
// share that memory: a caller keeping a small part of a large stanza
// for long copies it (strings.Clone).
//
// What it enforces: well-formedness (names, quoting, tag nesting,
// unique attributes, references, UTF-8 of XML characters), namespace
// well-formedness (no unbound prefix), and the restrictions of RFC 6120
// §11.1 (no comments, processing instructions, DTDs or entities other
// than the five predefined ones and character references). Line ends
// are normalized (CR LF and CR to LF); attribute values are not
// otherwise normalized, as encoding/xml does.

// Reader limits. DefaultMaxStanza matches Prosody's c2s_stanza_size_limit.
const (
	DefaultMaxStanza = 256 << 10
	DefaultMaxDepth  = 32
	// readAhead is the reader's buffer, which may hold bytes of the next
	// stanza when one ends.
	readAhead = 4096
	// keepScratch is the scratch a reader keeps between stanzas; a
	// larger stanza's is let go after it.
	keepScratch = 8 << 10
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

// ref is a string the reader has read: data[off:end] of the stanza being
// read or, when off is negative, fixed[-off-1] (the namespaces declared
// on the stream header, and the xml prefix's).
type ref struct{ off, end int32 }

// qname is a name as written: prefix:local, or local (colon < 0). colon
// is the colon's offset in data.
type qname struct {
	raw   ref
	colon int32
}

type rawAttr struct {
	name  qname
	value ref
}

// nsDecl binds a prefix (empty: the default namespace) to a namespace.
type nsDecl struct{ prefix, uri ref }

// node is an element of the stanza being read; the tree is built from
// the list when the stanza is complete.
type node struct {
	space, name, text ref
	parent            int32
	attrs, nattrs     int32 // its attributes in kept
	kids              int32 // its children, then (build) the first one's slot
	filled            int32 // children put in their slots (build)
	pieces            int32 // index in pieces of its first text piece; -1 while its text is one run
}

// open is an element whose end tag is still to come.
type open struct {
	name  ref   // as written, to match the end tag
	scope int32 // len(scope) before its declarations
	node  int32 // its node; -1 when not kept
}

type keptAttr struct{ name, value ref }

// piece is a run of an element's text that is not next to the rest of it
// in data (mixed content: text, a child, more text).
type piece struct {
	node int32
	text ref
}

// reader reads one XML stream: the header, then top-level elements.
type reader struct {
	conn     *limitedConn
	buf      []byte
	pos, end int
	base     int64 // input offset of buf[0]
	err      error // why the input ended, once buf is drained

	maxSize     int64
	maxDepth    int
	maxElements int

	stream      string   // the stream header's name as written, for its end tag
	fixed       []string // strings of negative refs
	streamScope int      // the stream header's declarations, at the bottom of scope
	ended       bool     // the stream header was an empty-element tag

	// Scratch of the stanza being read.
	data   []byte
	nodes  []node
	kept   []keptAttr
	attrs  []rawAttr // the start tag being read
	scope  []nsDecl
	stack  []open
	pieces []piece
	names  map[string]struct{} // attribute names of a start tag of many
	skip   bool                // past maxElements: the rest is read, not kept
}

// elementBytes is the input per element a stanza may average, at least:
// an element kept costs ~25 times its bytes (<a/> is 4 bytes, ~100 as an
// Element), and a stanza of maxSize of empty elements would hold MBs.
// Real stanzas (forms, rosters, sensor data) average far more.
const elementBytes = 64

// droppedStanza is a stanza read whole but not kept: it has more than
// maxElements elements. The stream goes on.
type droppedStanza struct {
	space, name string // its top element's
	attrs       []Attr // and that element's attributes
	max         int
}

func (d *droppedStanza) attr(name string) string {
	for _, a := range d.attrs {
		if a.Name == name {
			return a.Value
		}
	}
	return ""
}

func (d *droppedStanza) Error() string {
	return "xmpp: <" + d.name + "/> from " + strconv.Quote(d.attr("from")) + " has more than " + strconv.Itoa(d.max) + " elements; dropped"
}

func newReader(r io.Reader, maxSize int64, maxDepth int) *reader {
	if maxSize <= 0 {
		maxSize = DefaultMaxStanza
	}
	// A stanza's data (at most twice its size) is indexed with int32.
	maxSize = min(maxSize, 64<<20)
	if maxDepth <= 0 {
		maxDepth = DefaultMaxDepth
	}
	c := &limitedConn{r: r}
	c.limit = maxSize + readAhead
	return &reader{conn: c, buf: make([]byte, readAhead), maxSize: maxSize, maxDepth: maxDepth,
		maxElements: int(max(maxSize/elementBytes, 256)), fixed: []string{NSXML}}
}

// streamHeader is the peer's <stream:stream> start tag.
type streamHeader struct {
	ID, From, Version string
}

// header reads up to and including the <stream:stream> start tag: an XML
// declaration may come first, and white space.
func (r *reader) header() (streamHeader, error) {
	r.data, r.scope = r.data[:0], r.scope[:0]
	declared := false
	for {
		c, err := r.peek()
		if err != nil {
			if err == io.EOF {
				return streamHeader{}, io.EOF
			}
			return streamHeader{}, r.inputErr(err)
		}
		if isSpace(c) {
			r.pos++
			continue
		}
		if c != '<' {
			return streamHeader{}, r.wellFormed("text before stream header")
		}
		r.pos++
		if c, err = r.peek(); err != nil {
			return streamHeader{}, r.inputErr(err)
		}
		switch c {
		case '?':
			r.pos++
			if declared {
				return streamHeader{}, restricted("processing instruction")
			}
			if err := r.declaration(); err != nil {
				return streamHeader{}, err
			}
			declared = true
			continue
		case '!':
			return streamHeader{}, r.bang()
		}
		q, err := r.name()
		if err != nil {
			return streamHeader{}, err
		}
		empty, err := r.attributes(false)
		if err != nil {
			return streamHeader{}, err
		}
		if err := r.declare(); err != nil {
			return streamHeader{}, err
		}
		space, ok := r.lookup(q)
		if !ok || !r.is(space, NSStream) || !r.is(r.local(q), "stream") {
			return streamHeader{}, &StreamError{Condition: "invalid-namespace", Text: "expected stream:stream", Local: true}
		}
		var h streamHeader
		for _, a := range r.attrs {
			switch {
			case r.is(a.name.raw, "id"):
				h.ID = r.string(a.value)
			case r.is(a.name.raw, "from"):
				h.From = r.string(a.value)
			case r.is(a.name.raw, "version"):
				h.Version = r.string(a.value)
			}
		}
		// The stream's declarations hold for every stanza.
		r.stream = string(r.bytes(q.raw))
		r.fixed = r.fixed[:1]
		for i, d := range r.scope {
			r.fixed = append(r.fixed, string(r.bytes(d.prefix)), string(r.bytes(d.uri)))
			n := int32(len(r.fixed))
			r.scope[i] = nsDecl{prefix: ref{-n + 1, 0}, uri: ref{-n, 0}}
		}
		r.streamScope = len(r.scope)
		r.ended = empty
		return h, nil
	}
}

// declaration reads an XML declaration after its "<?", which reads like
// a start tag ending "?>": version 1.0 and, if it names one, the UTF-8
// encoding. Any other processing instruction is restricted XML.
func (r *reader) declaration() error {
	q, err := r.name()
	if err != nil || !r.is(q.raw, "xml") {
		return restricted("processing instruction")
	}
	if _, err := r.attributes(true); err != nil {
		return err
	}
	for _, a := range r.attrs {
		switch {
		case r.is(a.name.raw, "version") && !r.is(a.value, "1.0"):
			return r.badName("unsupported XML version", a.value)
		case r.is(a.name.raw, "encoding") && !r.is(a.value, "UTF-8") && !r.is(a.value, "utf-8"):
			return &StreamError{Condition: "unsupported-encoding", Text: "encoding " + r.string(a.value), Local: true}
		}
	}
	return nil
}

// next returns the next top-level element of the stream, skipping
// whitespace keepalives. It returns errStreamEnd when the peer closes
// the stream and a *StreamError (Local) for limits and bad XML.
func (r *reader) next() (*Element, error) {
	if r.ended {
		return nil, errStreamEnd
	}
	r.conn.limit = r.conn.n + r.maxSize + readAhead
	start := r.offset()
	for {
		if r.pos == r.end {
			if err := r.more(); err != nil {
				return nil, r.inputErr(err)
			}
		}
		for r.pos < r.end && isSpace(r.buf[r.pos]) {
			r.pos++
		}
		if r.offset()-start > r.maxSize {
			return nil, r.tooBig()
		}
		if r.pos < r.end {
			break
		}
	}
	if r.buf[r.pos] != '<' {
		return nil, r.wellFormed("text at stream level")
	}
	r.pos++
	c, err := r.peek()
	if err != nil {
		return nil, r.inputErr(err)
	}
	switch c {
	case '/':
		r.pos++
		r.data = r.data[:0]
		q, err := r.endTagName()
		if err != nil {
			return nil, err
		}
		if string(r.bytes(q.raw)) != r.stream {
			return nil, r.closedBy(r.stream, q.raw)
		}
		r.ended = true
		return nil, errStreamEnd
	case '!':
		return nil, r.bang()
	case '?':
		return nil, restricted("processing instruction")
	}
	return r.stanza(start)
}

// stanza reads a top-level element whose "<" was read and builds it.
func (r *reader) stanza(start int64) (*Element, error) {
	r.data, r.nodes, r.kept, r.pieces, r.stack = r.data[:0], r.nodes[:0], r.kept[:0], r.pieces[:0], r.stack[:0]
	r.scope = r.scope[:r.streamScope]
	r.skip = false
	elements := 0
	for {
		// A start tag: the stanza's, or a child's.
		if len(r.stack) >= r.maxDepth {
			return nil, r.tooDeep()
		}
		if elements++; elements > r.maxElements {
			r.skip = true
		}
		if err := r.element(); err != nil {
			return nil, err
		}
		for len(r.stack) > 0 {
			// Content: text up to the next markup.
			from := len(r.data)
			if err := r.chars(0); err != nil {
				return nil, err
			}
			r.addText(from)
			r.pos++ // '<'
			c, err := r.peek()
			if err != nil {
				return nil, r.inputErr(err)
			}
			if c == '/' {
				r.pos++
				if err := r.endTag(); err != nil {
					return nil, err
				}
				continue
			}
			if c == '!' {
				from := len(r.data)
				if err := r.bang(); err != nil {
					return nil, err
				}
				r.addText(from) // a CDATA section
				continue
			}
			if c == '?' {
				return nil, restricted("processing instruction")
			}
			break // a child
		}
		if len(r.stack) == 0 {
			break
		}
	}
	if r.offset()-start > r.maxSize {
		return nil, r.tooBig()
	}
	var el *Element
	var err error
	if r.skip {
		err = r.dropped()
	} else {
		el = r.build()
	}
	r.release()
	return el, err
}

// dropped is the error for a stanza of too many elements: its top
// element, for the log.
//
//go:noinline
func (r *reader) dropped() error {
	d := &droppedStanza{space: r.string(r.nodes[0].space), name: r.string(r.nodes[0].name), max: r.maxElements}
	for _, a := range r.kept[:r.nodes[0].nattrs] {
		d.attrs = append(d.attrs, Attr{r.string(a.name), r.string(a.value)})
	}
	return d
}

// element reads a start tag whose "<" was read, declares its namespaces
// and, unless skipping, adds its node. An empty-element tag is closed at
// once; any other is pushed.
func (r *reader) element() error {
	q, err := r.name()
	if err != nil {
		return err
	}
	empty, err := r.attributes(false)
	if err != nil {
		return err
	}
	scope := int32(len(r.scope))
	if err := r.declare(); err != nil {
		return err
	}
	space, ok := r.lookup(q)
	if !ok {
		return r.unbound(q)
	}
	idx := int32(-1)
	if !r.skip {
		idx = int32(len(r.nodes))
		n := node{space: space, name: r.local(q), parent: -1, attrs: int32(len(r.kept)), pieces: -1}
		if len(r.stack) > 0 {
			n.parent = r.stack[len(r.stack)-1].node
			r.nodes[n.parent].kids++
		}
		r.nodes = append(r.nodes, n)
	}
	for _, a := range r.attrs {
		switch {
		case a.name.colon < 0:
			if r.is(a.name.raw, "xmlns") {
				continue
			}
		case r.is(r.prefix(a.name), "xml"):
			// xml:lang and the like are kept by their written name.
		case r.is(r.prefix(a.name), "xmlns"):
			continue
		default:
			// Other namespaced attributes are no part of XMPP's
			// stanzas; their prefix must still be bound.
			if _, ok := r.lookup(a.name); !ok {
				return r.unbound(a.name)
			}
			continue
		}
		if !r.skip {
			r.kept = append(r.kept, keptAttr{a.name.raw, a.value})
			r.nodes[idx].nattrs++
		}
	}
	if empty {
		r.scope = r.scope[:scope]
		return nil
	}
	r.stack = append(r.stack, open{name: q.raw, scope: scope, node: idx})
	return nil
}

// endTag reads an end tag after its "</" and closes the open element.
func (r *reader) endTag() error {
	q, err := r.endTagName()
	if err != nil {
		return err
	}
	o := r.stack[len(r.stack)-1]
	if string(r.bytes(q.raw)) != string(r.bytes(o.name)) {
		return r.closedBy(string(r.bytes(o.name)), q.raw)
	}
	r.data = r.data[:q.raw.off] // the end tag's name is not kept
	r.stack = r.stack[:len(r.stack)-1]
	r.scope = r.scope[:o.scope]
	if o.node >= 0 && r.nodes[o.node].pieces >= 0 {
		// Mixed content: its runs of text, in order, as one.
		n := &r.nodes[o.node]
		from := len(r.data)
		for _, p := range r.pieces[n.pieces:] {
			if p.node == o.node {
				r.data = append(r.data, r.data[p.text.off:p.text.end]...)
			}
		}
		r.pieces = r.pieces[:n.pieces]
		n.text, n.pieces = ref{int32(from), int32(len(r.data))}, -1
	}
	return nil
}

// endTagName reads the name of an end tag after its "</", and the tag's
// end.
func (r *reader) endTagName() (qname, error) {
	q, err := r.name()
	if err != nil {
		return q, err
	}
	if err := r.space(); err != nil {
		return q, err
	}
	c, err := r.peek()
	if err != nil {
		return q, r.inputErr(err)
	}
	if c != '>' {
		return q, r.badName("invalid characters after end tag", q.raw)
	}
	r.pos++
	return q, nil
}

// addText makes data[from:] (text just read) part of the open element's
// text.
func (r *reader) addText(from int) {
	to := int32(len(r.data))
	if int(to) == from || len(r.stack) == 0 {
		return
	}
	idx := r.stack[len(r.stack)-1].node
	if idx < 0 {
		r.data = r.data[:from]
		return
	}
	n := &r.nodes[idx]
	switch {
	case n.text.end == n.text.off:
		n.text = ref{int32(from), to}
	case n.pieces < 0 && n.text.end == int32(from):
		n.text.end = to
	default:
		if n.pieces < 0 {
			n.pieces = int32(len(r.pieces))
			r.pieces = append(r.pieces, piece{idx, n.text})
		}
		r.pieces = append(r.pieces, piece{idx, ref{int32(from), to}})
	}
}

// build makes the stanza's tree.
func (r *reader) build() *Element {
	s := string(r.data)
	els := make([]Element, len(r.nodes))
	var kids []*Element
	if len(r.nodes) > 1 {
		kids = make([]*Element, len(r.nodes)-1)
	}
	var attrs []Attr
	if len(r.kept) > 0 {
		attrs = make([]Attr, len(r.kept))
		for i, a := range r.kept {
			attrs[i] = Attr{r.sub(s, a.name), r.sub(s, a.value)}
		}
	}
	slot := int32(0)
	for i := range r.nodes {
		n := &r.nodes[i]
		e := &els[i]
		e.Space, e.Name, e.Text = r.sub(s, n.space), r.sub(s, n.name), r.sub(s, n.text)
		if n.nattrs > 0 {
			e.Attrs = attrs[n.attrs : n.attrs+n.nattrs : n.attrs+n.nattrs]
		}
		if n.kids > 0 {
			e.Children = kids[slot : slot+n.kids : slot+n.kids]
			n.kids, slot = slot, slot+n.kids
		}
		if n.parent >= 0 {
			p := &r.nodes[n.parent]
			kids[p.kids+p.filled] = e
			p.filled++
		}
	}
	return &els[0]
}

// release lets go of scratch a large stanza grew.
func (r *reader) release() {
	if cap(r.data) > keepScratch {
		r.data = nil
	}
	if cap(r.nodes) > keepScratch/64 {
		r.nodes = nil
	}
	if cap(r.kept) > keepScratch/32 {
		r.kept = nil
	}
	if cap(r.attrs) > keepScratch/64 {
		r.attrs = nil
	}
	if cap(r.pieces) > keepScratch/64 {
		r.pieces = nil
	}
	if cap(r.scope) > keepScratch/64 {
		r.scope = append([]nsDecl(nil), r.scope[:r.streamScope]...)
	}
	r.names = nil
}

// attributes reads a start tag's attributes (after its name) and its
// end: ">" or "/>" (empty), or "?>" for an XML declaration (decl). They
// are left in r.attrs.
func (r *reader) attributes(decl bool) (empty bool, err error) {
	r.attrs = r.attrs[:0]
	for {
		c, err := r.peek()
		if err != nil {
			return false, r.inputErr(err)
		}
		spaced := isSpace(c)
		if err := r.space(); err != nil {
			return false, err
		}
		if c, err = r.getc(); err != nil {
			return false, err
		}
		end := byte(0)
		switch {
		case c == '>' && !decl:
			return false, nil
		case c == '/' && !decl, c == '?' && decl:
			if end, err = r.getc(); err != nil {
				return false, err
			}
			if end != '>' {
				return false, r.wellFormed("expected /> or ?>")
			}
			return true, nil
		case !spaced:
			return false, r.wellFormed("expected white space before attribute")
		}
		r.pos--
		a, err := r.name()
		if err != nil {
			return false, err
		}
		if err := r.space(); err != nil {
			return false, err
		}
		if c, err = r.getc(); err != nil {
			return false, err
		}
		if c != '=' {
			return false, r.badName("no value for attribute", a.raw)
		}
		if err := r.space(); err != nil {
			return false, err
		}
		if c, err = r.getc(); err != nil {
			return false, err
		}
		if c != '\'' && c != '"' {
			return false, r.badName("unquoted value of attribute", a.raw)
		}
		from := len(r.data)
		if err := r.chars(c); err != nil {
			return false, err
		}
		if r.seen(a.raw) {
			return false, r.badName("duplicate attribute", a.raw)
		}
		r.attrs = append(r.attrs, rawAttr{a, ref{int32(from), int32(len(r.data))}})
	}
}

// seen reports whether the start tag being read has an attribute of the
// name already. Past a few attributes it keeps a set, so that a tag of
// thousands (a stanza of 256 KB holds 50,000) costs no more than its
// length.
func (r *reader) seen(name ref) bool {
	const few = 16
	if len(r.attrs) < few {
		for _, b := range r.attrs {
			if string(r.bytes(b.name.raw)) == string(r.bytes(name)) {
				return true
			}
		}
		return false
	}
	if len(r.attrs) == few {
		r.names = make(map[string]struct{}, 2*few)
		for _, b := range r.attrs {
			r.names[string(r.bytes(b.name.raw))] = struct{}{}
		}
	}
	if _, ok := r.names[string(r.bytes(name))]; ok {
		return true
	}
	r.names[string(r.bytes(name))] = struct{}{}
	return false
}

// declare puts the namespace declarations of the start tag just read in
// scope.
func (r *reader) declare() error {
	for _, a := range r.attrs {
		var d nsDecl
		switch {
		case a.name.colon < 0 && r.is(a.name.raw, "xmlns"):
			d = nsDecl{uri: a.value}
		case a.name.colon >= 0 && r.is(r.prefix(a.name), "xmlns"):
			d = nsDecl{prefix: r.local(a.name), uri: a.value}
			if d.uri.end == d.uri.off {
				return r.badName("empty namespace for prefix", d.prefix)
			}
			if r.is(d.prefix, "xmlns") || r.is(d.prefix, "xml") != r.is(d.uri, NSXML) {
				return r.badName("reserved prefix or namespace bound:", a.name.raw)
			}
		default:
			continue
		}
		r.scope = append(r.scope, d)
	}
	return nil
}

// lookup resolves a name's prefix (none: the default namespace) to its
// namespace. Without a declaration, the default namespace is empty and a
// prefix is unbound (false).
func (r *reader) lookup(q qname) (ref, bool) {
	var prefix []byte
	if q.colon >= 0 {
		prefix = r.bytes(r.prefix(q))
		if string(prefix) == "xml" {
			return ref{-1, 0}, true
		}
	}
	for i := len(r.scope) - 1; i >= 0; i-- {
		if r.isBytes(r.scope[i].prefix, prefix) {
			return r.scope[i].uri, true
		}
	}
	return ref{}, q.colon < 0
}

func (r *reader) unbound(q qname) error {
	return r.badName("unbound namespace prefix", r.prefix(q))
}

func (r *reader) prefix(q qname) ref { return ref{q.raw.off, q.colon} }

func (r *reader) local(q qname) ref {
	if q.colon < 0 {
		return q.raw
	}
	return ref{q.colon + 1, q.raw.end}
}

// bytes returns the bytes of a ref into data.
func (r *reader) bytes(x ref) []byte { return r.data[x.off:x.end] }

// is reports whether a ref is s.
//
// The reader's helpers that are not on the per-byte path are not
// inlined: the armv7 binary's 8 MiB budget (docs/decisions.md §7).
//
//go:noinline
func (r *reader) is(x ref, s string) bool {
	if x.off < 0 {
		return r.fixed[-x.off-1] == s
	}
	return string(r.data[x.off:x.end]) == s
}

// isBytes reports whether a ref is b.
//
//go:noinline
func (r *reader) isBytes(x ref, b []byte) bool {
	if x.off < 0 {
		return r.fixed[-x.off-1] == string(b)
	}
	return string(r.data[x.off:x.end]) == string(b)
}

// string copies a ref's string.
//
//go:noinline
func (r *reader) string(x ref) string {
	if x.off < 0 {
		return r.fixed[-x.off-1]
	}
	return string(r.data[x.off:x.end])
}

// sub is a ref's string in s, the stanza's data as a string.
func (r *reader) sub(s string, x ref) string {
	if x.off < 0 {
		return r.fixed[-x.off-1]
	}
	return s[x.off:x.end]
}

// name reads a name (NCName, or NCName:NCName) into data.
func (r *reader) name() (qname, error) {
	q := qname{colon: -1}
	from := int32(len(r.data))
	first := true // at the start of an NCName
	for {
		if r.pos == r.end {
			if err := r.more(); err != nil {
				return q, r.inputErr(err)
			}
		}
		c := r.buf[r.pos]
		if c < utf8.RuneSelf {
			switch {
			case c == ':' && !first && q.colon < 0:
				q.colon = int32(len(r.data))
				first = true
			case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' ||
				!first && ('0' <= c && c <= '9' || c == '-' || c == '.'):
				first = false
			case first:
				return q, r.badChar(rune(c))
			default:
				q.raw = ref{from, int32(len(r.data))}
				return q, nil
			}
			r.data = append(r.data, c)
			r.pos++
			continue
		}
		c32, n, err := r.decodeRune()
		if err != nil {
			return q, err
		}
		if !isNameRune(c32, first) {
			if first {
				return q, r.badChar(c32)
			}
			q.raw = ref{from, int32(len(r.data))}
			return q, nil
		}
		r.data = append(r.data, r.buf[r.pos:r.pos+n]...)
		r.pos += n
		first = false
	}
}

// isNameRune reports whether a non-ASCII rune may start (first) or
// continue a name (XML 1.0, fifth edition).
func isNameRune(c rune, first bool) bool {
	switch {
	case c >= 0xC0 && c <= 0xD6, c >= 0xD8 && c <= 0xF6, c >= 0xF8 && c <= 0x2FF,
		c >= 0x370 && c <= 0x37D, c >= 0x37F && c <= 0x1FFF, c == 0x200C, c == 0x200D,
		c >= 0x2070 && c <= 0x218F, c >= 0x2C00 && c <= 0x2FEF, c >= 0x3001 && c <= 0xD7FF,
		c >= 0xF900 && c <= 0xFDCF, c >= 0xFDF0 && c <= 0xFFFD, c >= 0x10000 && c <= 0xEFFFF:
		return true
	}
	return !first && (c == 0xB7 || c >= 0x300 && c <= 0x36F || c == 0x203F || c == 0x2040)
}

// isChar reports whether c is an XML character.
func isChar(c rune) bool {
	return c == '\t' || c == '\n' || c == '\r' || c >= 0x20 && c <= 0xD7FF ||
		c >= 0xE000 && c <= 0xFFFD || c >= 0x10000 && c <= 0x10FFFF
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// space skips white space.
func (r *reader) space() error {
	for {
		for r.pos < r.end && isSpace(r.buf[r.pos]) {
			r.pos++
		}
		if r.pos < r.end {
			return nil
		}
		if err := r.more(); err != nil {
			return r.inputErr(err)
		}
	}
}

// chars reads characters into data (not text when skipping) up to
// quote or, for text (quote 0), up to "<" (not read), decoding references
// and normalizing line ends. Text must not have "]]>" (XML's CharData);
// an attribute value may.
func (r *reader) chars(quote byte) error {
	keep := quote != 0 || !r.skip
	brackets := 0 // text only: how many ']' came just before
	for {
		if r.pos == r.end {
			if err := r.more(); err != nil {
				return r.inputErr(err)
			}
		}
		b := r.buf[r.pos:r.end]
		i := 0
		for i < len(b) {
			c := b[i]
			if c >= 0x20 && c < utf8.RuneSelf && c != '<' && c != '&' && c != quote && (c != '>' || quote != 0) || c == '\n' || c == '\t' {
				i++
				continue
			}
			break
		}
		if keep {
			r.data = append(r.data, b[:i]...)
		}
		r.pos += i
		if quote == 0 {
			j := i
			for j > 0 && b[j-1] == ']' {
				j--
			}
			if j > 0 {
				brackets = 0
			}
			brackets += i - j
		}
		if i == len(b) {
			continue
		}
		switch c := b[i]; {
		case c == '>': // text only
			if brackets >= 2 {
				return r.wellFormed("unescaped ]]> not in a CDATA section")
			}
			r.pos++
			if keep {
				r.data = append(r.data, c)
			}
			brackets = 0
		case c == '<':
			if quote != 0 {
				return r.wellFormed("unescaped < in attribute value")
			}
			return nil
		case c == quote && quote != 0:
			r.pos++
			return nil
		case c == '&':
			r.pos++
			brackets = 0
			if err := r.reference(keep); err != nil {
				return err
			}
		default:
			brackets = 0
			if err := r.special(keep); err != nil {
				return err
			}
		}
	}
}

// special reads the character at pos that is neither printable ASCII
// nor a tab or a line feed: a carriage return (read as a line feed, with
// the one that may follow), an XML character beyond ASCII, or else an
// error. It appends what it read when keep.
func (r *reader) special(keep bool) error {
	c := r.buf[r.pos]
	if c == '\r' {
		r.pos++
		if r.ahead("\n") {
			r.pos++
		}
		if keep {
			r.data = append(r.data, '\n')
		}
		return nil
	}
	if c < utf8.RuneSelf {
		return r.badChar(rune(c))
	}
	c32, n, err := r.decodeRune()
	if err != nil {
		return err
	}
	if !isChar(c32) {
		return r.badChar(c32)
	}
	if keep {
		r.data = append(r.data, r.buf[r.pos:r.pos+n]...)
	}
	r.pos += n
	return nil
}

// reference reads a character or entity reference after its "&" and
// appends what it stands for. Only the five predefined entities exist
// in XMPP (RFC 6120 §11.1).
func (r *reader) reference(keep bool) error {
	c, err := r.getc()
	if err != nil {
		return err
	}
	if c == '#' {
		base := int32(10)
		if c, err = r.getc(); err != nil {
			return err
		}
		if c == 'x' {
			base = 16
			if c, err = r.getc(); err != nil {
				return err
			}
		}
		v, digits := int32(0), 0
		for ; c != ';'; digits++ {
			d := int32(-1)
			switch {
			case '0' <= c && c <= '9':
				d = int32(c - '0')
			case base == 16 && 'a' <= c && c <= 'f':
				d = int32(c-'a') + 10
			case base == 16 && 'A' <= c && c <= 'F':
				d = int32(c-'A') + 10
			}
			if d < 0 {
				return r.wellFormed("invalid character reference")
			}
			v = min(v*base+d, utf8.MaxRune+1)
			if c, err = r.getc(); err != nil {
				return err
			}
		}
		if digits == 0 || !isChar(v) {
			return r.wellFormed("invalid character reference")
		}
		if keep {
			r.data = utf8.AppendRune(r.data, v)
		}
		return nil
	}
	var name [8]byte
	n := 0
	for ; c != ';'; n++ {
		if n == len(name) || !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return r.wellFormed("invalid character entity")
		}
		name[n] = c
		if c, err = r.getc(); err != nil {
			return err
		}
	}
	var e byte
	switch string(name[:n]) {
	case "amp":
		e = '&'
	case "lt":
		e = '<'
	case "gt":
		e = '>'
	case "apos":
		e = '\''
	case "quot":
		e = '"'
	default:
		return r.wellFormed("invalid character entity &" + string(name[:n]) + ";")
	}
	if keep {
		r.data = append(r.data, e)
	}
	return nil
}

// bang reads markup that starts "<!" (after the "<"): a CDATA section's
// text goes into data, as text; a comment or a DTD is restricted XML.
func (r *reader) bang() error {
	r.pos++ // '!'
	const cdata = "[CDATA["
	for i := 0; i < len(cdata); i++ {
		c, err := r.getc()
		if err != nil {
			return err
		}
		if c != cdata[i] {
			if i == 0 && c == '-' {
				return restricted("comment")
			}
			return restricted("DTD or directive")
		}
	}
	if len(r.stack) == 0 {
		return r.wellFormed("text at stream level")
	}
	// The section runs to "]]>"; line ends are normalized, characters
	// checked.
	keep := !r.skip
	for {
		c, err := r.peek()
		if err != nil {
			return r.inputErr(err)
		}
		switch {
		case c == ']' && r.ahead("]]>"):
			r.pos += 3
			return nil
		case c >= 0x20 && c < utf8.RuneSelf || c == '\n' || c == '\t':
			r.pos++
			if keep {
				r.data = append(r.data, c)
			}
		default:
			if err := r.special(keep); err != nil {
				return err
			}
		}
	}
}

// ahead reports whether the input goes on with s (not read).
func (r *reader) ahead(s string) bool {
	for r.end-r.pos < len(s) {
		if r.more() != nil {
			return false
		}
	}
	return string(r.buf[r.pos:r.pos+len(s)]) == s
}

// peek returns the next byte without reading it.
func (r *reader) peek() (byte, error) {
	if r.pos == r.end {
		if err := r.more(); err != nil {
			return 0, err
		}
	}
	return r.buf[r.pos], nil
}

// getc reads a byte; the end of input is an error.
func (r *reader) getc() (byte, error) {
	c, err := r.peek()
	if err != nil {
		return 0, r.inputErr(err)
	}
	r.pos++
	return c, nil
}

// decodeRune decodes the (non-ASCII) UTF-8 sequence at pos, not read.
func (r *reader) decodeRune() (rune, int, error) {
	for !utf8.FullRune(r.buf[r.pos:r.end]) {
		if err := r.more(); err != nil {
			return 0, 0, r.inputErr(err)
		}
	}
	c, n := utf8.DecodeRune(r.buf[r.pos:r.end])
	if c == utf8.RuneError && n == 1 {
		return 0, 0, r.wellFormed("invalid UTF-8")
	}
	return c, n, nil
}

// more reads more input into buf, keeping what is not yet read.
func (r *reader) more() error {
	if r.err != nil {
		return r.err
	}
	if r.pos == r.end {
		r.base += int64(r.pos)
		r.pos, r.end = 0, 0
	} else if r.end == len(r.buf) {
		r.base += int64(r.pos)
		r.end = copy(r.buf, r.buf[r.pos:r.end])
		r.pos = 0
	}
	for range 100 {
		n, err := r.conn.Read(r.buf[r.end:])
		r.end += n
		if err != nil {
			r.err = err
		}
		if n > 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
	r.err = io.ErrNoProgress
	return r.err
}

// offset is the input offset of the next byte to read.
func (r *reader) offset() int64 { return r.base + int64(r.pos) }

// inputErr maps the end of input or a limit to what the reader returns:
// the stream was open, so its end is unexpected.
//
//go:noinline
func (r *reader) inputErr(err error) error {
	switch {
	case errors.Is(err, errTooBig):
		return r.tooBig()
	case err == io.EOF:
		return io.ErrUnexpectedEOF
	}
	return err
}

//go:noinline
func (r *reader) wellFormed(text string) error {
	return &StreamError{Condition: "not-well-formed", Text: text, Local: true}
}

//go:noinline
func (r *reader) badName(what string, x ref) error {
	return r.wellFormed(what + " " + string(r.bytes(x)))
}

//go:noinline
func (r *reader) badChar(c rune) error {
	return r.wellFormed(fmt.Sprintf("illegal character %U", c))
}

//go:noinline
func (r *reader) closedBy(open string, end ref) error {
	return r.wellFormed("element <" + open + "> closed by </" + string(r.bytes(end)) + ">")
}

//go:noinline
func (r *reader) tooDeep() error {
	return &StreamError{Condition: "policy-violation", Text: fmt.Sprintf("nesting deeper than %d", r.maxDepth), Local: true}
}

//go:noinline
func (r *reader) tooBig() error {
	return &StreamError{Condition: "policy-violation", Text: fmt.Sprintf("stanza larger than %d bytes", r.maxSize), Local: true}
}

//go:noinline
func restricted(what string) error {
	return &StreamError{Condition: "restricted-xml", Text: what + " not allowed", Local: true}
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
