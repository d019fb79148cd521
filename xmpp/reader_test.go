package xmpp

import (
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

const header = `<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='s1' from='iot.test' version='1.0'>`

func readAll(t *testing.T, in string, maxSize int64, maxDepth int) ([]*Element, error) {
	t.Helper()
	return readAllFrom(t, strings.NewReader(in), maxSize, maxDepth)
}

func readAllFrom(t *testing.T, src io.Reader, maxSize int64, maxDepth int) ([]*Element, error) {
	t.Helper()
	r := newReader(src, maxSize, maxDepth)
	if _, err := r.header(); err != nil {
		return nil, err
	}
	var out []*Element
	for {
		el, err := r.next()
		if err != nil {
			return out, err
		}
		out = append(out, el)
	}
}

func TestReaderStanzas(t *testing.T) {
	in := header + " \n<message from='a@b/c' type='chat' xml:lang='en'><body>hi &amp; &lt;you&gt;</body><x xmlns='urn:other'><y/></x></message>" +
		"\t<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq></stream:stream>"
	els, err := readAll(t, in, 0, 0)
	if !errors.Is(err, errStreamEnd) {
		t.Fatalf("end error = %v, want errStreamEnd", err)
	}
	if len(els) != 2 {
		t.Fatalf("got %d stanzas, want 2", len(els))
	}
	m := els[0]
	if m.Space != NSClient || m.Name != "message" || m.Attr("from") != "a@b/c" || m.Attr("xml:lang") != "en" {
		t.Errorf("message = %+v", m)
	}
	if got := m.ChildText(NSClient, "body"); got != "hi & <you>" {
		t.Errorf("body = %q", got)
	}
	if m.Child("urn:other", "x").Child("urn:other", "y") == nil {
		t.Errorf("namespaced child not resolved: %s", m)
	}
	if p := els[1].Child(NSPing, "ping"); p == nil {
		t.Errorf("iq payload = %s", els[1])
	}
}

// TestReaderMixedContent: each element gets its own text (the text of its
// children is theirs) and children; a stanza already returned is not
// changed by the next one, nor by one that fails half-read.
func TestReaderMixedContent(t *testing.T) {
	in := header + "<message>x<b>y<c/>z<c>q</c></b>w<d/>v</message>" +
		"<message><e>1</e><e>2</e><e>3</e><e>4</e><e>5</e></message>" +
		"<message><f>" + strings.Repeat("t", 9000) + "</f><g/><unclosed>oops</message>"
	r := newReader(strings.NewReader(in), 0, 0)
	if _, err := r.header(); err != nil {
		t.Fatal(err)
	}
	first, err := r.next()
	if err != nil {
		t.Fatal(err)
	}
	second, err := r.next()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.next(); err == nil {
		t.Fatal("mismatched end tag accepted")
	}
	const want1 = "<message>xwv<b>yz<c/><c>q</c></b><d/></message>"
	if got := first.String(); got != want1 {
		t.Errorf("first stanza = %s\nwant          %s", got, want1)
	}
	if len(first.Children) != 2 || len(first.Children[0].Children) != 2 || first.Text != "xwv" || first.Children[0].Text != "yz" {
		t.Errorf("first stanza's tree: %d children, text %q; b: %d children, text %q",
			len(first.Children), first.Text, len(first.Children[0].Children), first.Children[0].Text)
	}
	var texts []string
	for _, e := range second.Children {
		texts = append(texts, e.Text)
	}
	if got := strings.Join(texts, ","); got != "1,2,3,4,5" || second.Text != "" {
		t.Errorf("second stanza: children %q, text %q", got, second.Text)
	}
}

func TestReaderLimits(t *testing.T) {
	deep := header + strings.Repeat("<a>", 40) + strings.Repeat("</a>", 40)
	tests := []struct {
		name      string
		in        string
		max       int64
		depth     int
		condition string
	}{
		{"oversize text", header + "<message><body>" + strings.Repeat("x", 10000) + "</body></message>", 2048, 0, "policy-violation"},
		{"oversize attribute", header + "<message to='" + strings.Repeat("x", 1<<20) + "'/>", 4096, 0, "policy-violation"},
		{"oversize never-ending", header + "<message><body>" + strings.Repeat("x", 1<<20), 4096, 0, "policy-violation"},
		{"whitespace flood", header + strings.Repeat(" ", 1<<20), 4096, 0, "policy-violation"},
		{"many small children", header + "<message>" + strings.Repeat("<a/>", 2000) + "</message>", 4096, 0, "policy-violation"},
		{"deep", deep, 0, 32, "policy-violation"},
		{"comment", header + "<!-- hi --><message/>", 0, 0, "restricted-xml"},
		{"processing instruction", header + "<?foo bar?><message/>", 0, 0, "restricted-xml"},
		{"doctype", "<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]>" + header, 0, 0, "restricted-xml"},
		{"unknown entity", header + "<message><body>&lol;</body></message>", 0, 0, "not-well-formed"},
		{"mismatched tag", header + "<message></iq>", 0, 0, "not-well-formed"},
		{"text at stream level", header + "hello<message/>", 0, 0, "not-well-formed"},
		{"wrong root", "<foo xmlns='bar'>", 0, 0, "invalid-namespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readAll(t, tt.in, tt.max, tt.depth)
			var se *StreamError
			if !errors.As(err, &se) {
				t.Fatalf("error = %v, want StreamError %s", err, tt.condition)
			}
			if se.Condition != tt.condition || !se.Local {
				t.Errorf("error = %+v, want local %s", se, tt.condition)
			}
		})
	}
}

// countingReader records how much the stream reader pulled from the network.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func TestReaderDoesNotBufferOversizeStanza(t *testing.T) {
	src := &countingReader{r: strings.NewReader(header + "<message><body>" + strings.Repeat("x", 8<<20) + "</body></message>")}
	r := newReader(src, 4096, 0)
	if _, err := r.header(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.next(); err == nil {
		t.Fatal("oversize stanza accepted")
	}
	if src.n > 4096+2*readAhead+len(header) {
		t.Errorf("reader pulled %d bytes for a 4096-byte limit", src.n)
	}
}

func TestReaderSizeLimitResetsPerStanza(t *testing.T) {
	one := "<message><body>" + strings.Repeat("x", 1500) + "</body></message>"
	els, err := readAll(t, header+strings.Repeat(one, 50)+"</stream:stream>", 2048, 0)
	if !errors.Is(err, errStreamEnd) || len(els) != 50 {
		t.Fatalf("got %d stanzas, err %v; want 50 under a per-stanza limit", len(els), err)
	}
}

func TestReaderTruncated(t *testing.T) {
	_, err := readAll(t, header+"<message><body>abc", 0, 0)
	if !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		t.Fatalf("error = %v, want unexpected EOF", err)
	}
}

// FuzzReader feeds arbitrary bytes after a valid header: the reader must
// never panic, must stop with an error, and every stanza it returns must
// re-encode to XML that parses back to the same stanza.
func FuzzReader(f *testing.F) {
	f.Add("<message from='a@b/c' type='chat'><body>hi</body></message>")
	f.Add("<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>")
	f.Add("<presence><status>&amp;&#x41;</status><c xmlns='http://jabber.org/protocol/caps' hash='sha-1'/></presence>")
	f.Add("<message><body>" + strings.Repeat("<a>", 40) + "</body></message>")
	f.Add("<!DOCTYPE x><message/>")
	f.Add("<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>")
	f.Add("<a xmlns:p='urn:p'><p:b p:c='d' xml:lang='de'/></a>")
	f.Fuzz(func(t *testing.T, in string) {
		r := newReader(strings.NewReader(header+in), 1024, 16)
		if _, err := r.header(); err != nil {
			t.Fatalf("header: %v", err)
		}
		for i := 0; ; i++ {
			el, err := r.next()
			if err != nil {
				return
			}
			if i > len(in) {
				t.Fatal("more stanzas than input bytes")
			}
			enc := el.String()
			rr := newReader(strings.NewReader(header+enc), 1<<20, 64)
			rr.header()
			back, err := rr.next()
			if err != nil {
				t.Fatalf("re-encoded %q does not parse: %v", enc, err)
			}
			if back.String() != enc {
				t.Fatalf("round trip changed stanza:\n%s\n%s", enc, back.String())
			}
		}
	})
}

// endless repeats a stream header once, then stanzas for ever.
type endless struct {
	head, body string
	off        int
}

func (e *endless) Read(p []byte) (int, error) {
	n := 0
	if e.head != "" {
		n = copy(p, e.head)
		e.head = e.head[n:]
	}
	for n < len(p) {
		k := copy(p[n:], e.body[e.off:])
		n += k
		e.off = (e.off + k) % len(e.body)
	}
	return n, nil
}

// BenchmarkReaderStanzas reads what an agent with room and pubsub sinks
// receives for each reading: the room's echo of its message (a reading
// with its XEP-0323 fields), the result of a publish, and an ack. Its
// allocations are most of what an idle agent allocates.
func BenchmarkReaderStanzas(b *testing.B) {
	b.ReportAllocs()
	m := SensorMessage{To: "lab@conference.iot.test", ID: "r-42", SeqNr: 42, Nodes: []SensorNode{{ID: "greenhouse", Time: ts, Fields: climate()}}}
	echo := strings.Replace(string(AppendSensorMessage(nil, &m)), "type='chat'", "from='lab@conference.iot.test/device' type='groupchat'", 1)
	if !strings.Contains(echo, "groupchat") {
		b.Fatalf("no room echo: %s", echo)
	}
	body := echo +
		"<iq type='result' id='p-7' from='pubsub.iot.test' to='device@iot.test/agent'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='sensors/greenhouse'><item id='r-42'/></publish></pubsub></iq>" +
		"<a xmlns='urn:xmpp:sm:3' h='1234'/>"
	r := newReader(&endless{head: header, body: body}, 0, 0)
	if _, err := r.header(); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		for range 3 {
			if _, err := r.next(); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// A stanza of more elements than the reader keeps (an element bomb: 240 KB
// of <a/> would hold MBs as Elements) is read whole and dropped, with its
// top element for the log; the stream goes on. One at the limit is kept.
func TestReaderElementLimit(t *testing.T) {
	r := newReader(strings.NewReader(""), 0, 0)
	limit := r.maxElements
	if limit != DefaultMaxStanza/elementBytes {
		t.Fatalf("limit %d elements, want %d", limit, DefaultMaxStanza/elementBytes)
	}
	kept := "<message id='k'>" + strings.Repeat("<a/>", limit-1) + "</message>"
	bomb := "<message from='x@evil.test/r' id='b'><body>" + strings.Repeat("<a><b/></a>", limit) + "</body></message>"
	in := header + kept + bomb + "<iq type='get' id='after'><ping xmlns='urn:xmpp:ping'/></iq></stream:stream>"
	r = newReader(strings.NewReader(in), 0, 0)
	if _, err := r.header(); err != nil {
		t.Fatal(err)
	}
	el, err := r.next()
	if err != nil || len(el.Children) != limit-1 {
		t.Fatalf("stanza at the limit: %v", err)
	}
	_, err = r.next()
	var d *droppedStanza
	if !errors.As(err, &d) || d.name != "message" || d.attr("from") != "x@evil.test/r" || d.attr("id") != "b" {
		t.Fatalf("bomb: %v (%+v)", err, d)
	}
	if el, err := r.next(); err != nil || el.Attr("id") != "after" {
		t.Fatalf("the stanza after the bomb: %v, %v", el, err)
	}
}

// TestReaderWellFormed: what the reader accepts (and how it reads it) and
// what it refuses, with the stream error each refusal gets.
func TestReaderWellFormed(t *testing.T) {
	const nwf, restrictedXML = "not-well-formed", "restricted-xml"
	tests := []struct {
		in, want string // want: the stanzas re-encoded, or the error's condition
	}{
		// Accepted.
		{"<a b='1' c=\"2\" d = '3'/>", "<a b='1' c='2' d='3'/>"},
		{"<a\n\tb='x'\n/>", "<a b='x'/>"},
		{"<a>x</a >", "<a>x</a>"},
		{"<a>&amp;&lt;&gt;&apos;&quot;&#65;&#x42;&#x00043;&#x1F600;</a>", "<a>&amp;&lt;&gt;&apos;&quot;ABC\U0001F600</a>"},
		{"<a b='&#xD;&#10;'>&#xD;</a>", "<a b='&#xD;\n'>&#xD;</a>"},
		{"<a b='1\r\n2\r3'>x\r\ny\rz</a>", "<a b='1\n2\n3'>x\ny\nz</a>"},
		{"<a><![CDATA[<b>&amp;]]]]><![CDATA[>]]></a>", "<a>&lt;b&gt;&amp;amp;]]&gt;</a>"},
		{"<a>x<b>y</b>z<![CDATA[w]]>v</a>", "<a>xzwv<b>y</b></a>"},
		{"<a xmlns='urn:a'><b xmlns=''/><c/></a>", "<a xmlns='urn:a'><b/><c/></a>"}, // b in no namespace: Space ""
		{"<p:a xmlns:p='urn:p' p:x='dropped' xml:lang='de' y='kept'/>", "<a xmlns='urn:p' xml:lang='de' y='kept'/>"},
		{"<a xmlns:p='urn:p'><p:b><p:c/></p:b></a>", "<a><b xmlns='urn:p'><c/></b></a>"},
		{"<é.1-_·/>", "<é.1-_·/>"},
		{" \t\r\n<a/> \n<b/></stream:stream>", "<a/><b/>"},
		{"<a>]]&gt;]] >]&#93;>]]]</a>", "<a>]]&gt;]] &gt;]]&gt;]]]</a>"},
		{"<a b=']]>'/>", "<a b=']]&gt;'/>"},
		// Refused.
		{"<a>]]></a>", nwf},
		{"<a>x]]]>y</a>", nwf},
		{"<a>\x00</a>", nwf},
		{"<a>x\x01</a>", nwf},
		{"<a b='\x00'/>", nwf},
		{"<a>\xff</a>", nwf},
		{"<a b='\xc3'/>", nwf},
		{"<a\xff/>", nwf},
		{"<a>\uFFFE</a>", nwf},
		{"<a>&#0;</a>", nwf},
		{"<a>&#xD800;</a>", nwf},
		{"<a>&#x110000;</a>", nwf},
		{"<a>&#99999999999999999999;</a>", nwf},
		{"<a>&#;</a>", nwf},
		{"<a>&#x;</a>", nwf},
		{"<a>&#X41;</a>", nwf},
		{"<a>&#12a;</a>", nwf},
		{"<a>&nbsp;</a>", nwf},
		{"<a>&amp</a>", nwf},
		{"<a>& </a>", nwf},
		{"<a b='<'/>", nwf},
		{"<a b=1/>", nwf},
		{"<a b/>", nwf},
		{"<a b='1'c='2'/>", nwf},
		{"<a b='1' b='2'/>", nwf},
		{"<a " + strings.Repeat("x", 0) + manyAttrs(40) + " a0='dup'/>", nwf},
		{"<p:a/>", nwf},
		{"<a p:b='1'/>", nwf},
		{"<a xmlns:p=''/>", nwf},
		{"<a xmlns:xml='urn:x'/>", nwf},
		{"<a xmlns:xmlns='urn:x'/>", nwf},
		{"<a xmlns:p='urn:p'/><p:b/>", nwf}, // a declaration ends with its element
		{"<a></b>", nwf},
		{"<a></a b>", nwf},
		{"<1a/>", nwf},
		{"<-a/>", nwf},
		{"<a:b:c xmlns:a='urn:a'/>", nwf},
		{"<:a/>", nwf},
		{"<a:/>", nwf},
		{"<a/ >", nwf},
		{"text<a/>", nwf},
		{"<![CDATA[x]]>", nwf},
		{"<a><![CDATA[x]]</a>", "unexpected EOF"},
		{"<a><!-- c --></a>", restrictedXML},
		{"<!-- c -->", restrictedXML},
		{"<a><?pi x?></a>", restrictedXML},
		{"<?xml version='1.0'?><a/>", restrictedXML},
		{"<a><!DOCTYPE a></a>", restrictedXML},
		{"<a><!ENTITY a 'b'></a>", restrictedXML},
		{"</stream:streams>", nwf},
		{"<a>", "unexpected EOF"},
		{"<a b='1", "unexpected EOF"},
		{"<a>&#x4", "unexpected EOF"},
		{"<a>\xc3", "unexpected EOF"},
	}
	// Each input whole, and a byte per read: every token split across
	// reads.
	for _, tt := range tests {
		t.Run(tt.in[:min(len(tt.in), 40)], func(t *testing.T) {
			els, err := readAll(t, header+tt.in, 0, 0)
			checkRead(t, tt.in, tt.want, els, err)
			els, err = readAllFrom(t, iotest.OneByteReader(strings.NewReader(header+tt.in)), 0, 0)
			checkRead(t, tt.in+" (a byte per read)", tt.want, els, err)
		})
	}
}

// checkRead compares what a reader returned for in with want: the
// stanzas re-encoded, or the condition of the error ("unexpected EOF"
// for io.ErrUnexpectedEOF).
func checkRead(t *testing.T, in, want string, els []*Element, err error) {
	t.Helper()
	var got strings.Builder
	for _, el := range els {
		got.WriteString(el.String())
	}
	var se *StreamError
	switch want {
	case "not-well-formed", "restricted-xml":
		if !errors.As(err, &se) || !se.Local || se.Condition != want {
			t.Errorf("%q: %v (after %q); want %s", in, err, got.String(), want)
		}
	case "unexpected EOF":
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%q: %v (after %q); want %s", in, err, got.String(), want)
		}
	default:
		if got.String() != want || !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, errStreamEnd) {
			t.Errorf("%q read as %q (then %v); want %s", in, got.String(), err, want)
		}
	}
}

func manyAttrs(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString(" a" + strconv.Itoa(i) + "='v'")
	}
	return b.String()
}

// A start tag of many attributes (a stanza of 256 KB holds 50,000) is
// checked for duplicates in time linear in its length, and refused.
func TestReaderManyAttributes(t *testing.T) {
	in := header + "<message" + manyAttrs(20000) + " a19999='dup'/>"
	_, err := readAll(t, in, 1<<20, 0)
	var se *StreamError
	if !errors.As(err, &se) || !strings.HasPrefix(se.Text, "duplicate attribute a19999") {
		t.Fatalf("error = %v; want a duplicate attribute", err)
	}
}

// The tree of a stanza shares its memory (reader.build), so appending to
// one element's children or attributes must not touch its siblings'.
func TestReaderElementsAreIndependent(t *testing.T) {
	els, err := readAll(t, header+"<a x='1' y='2'><b p='1'><c/></b><d q='1'/><e/></a>", 0, 0)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) || len(els) != 1 {
		t.Fatalf("%v, %v", els, err)
	}
	a := els[0]
	b, d := a.Children[0], a.Children[1]
	b.Add(NewElement("", "new"))
	b.SetAttr("extra", "v")
	a.SetAttr("z", "3")
	if got := a.String(); got != "<a x='1' y='2' z='3'><b p='1' extra='v'><c/><new/></b><d q='1'/><e/></a>" {
		t.Errorf("after appends: %s", got)
	}
	if d.Attr("q") != "1" || len(d.Attrs) != 1 || d.Attrs[0].Name != "q" {
		t.Errorf("a sibling changed: %+v", d)
	}
}
