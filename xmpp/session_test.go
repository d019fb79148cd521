package xmpp

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// testPKI is a throwaway CA and a server certificate for "iot.test".
type testPKI struct {
	server tls.Certificate
	roots  *x509.CertPool
	caPEM  []byte
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "iot.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"iot.test"}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	return testPKI{server: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, roots: roots, caPEM: caPEM}
}

// peer is the server side of a scripted XMPP stream.
type peer struct {
	sm      bool // offer and enable XEP-0198
	refused bool // login turned the password down
	t       *testing.T
	conn    net.Conn
	dec     *xml.Decoder
	w       *bufio.Writer
}

func (p *peer) reset(c net.Conn) {
	p.conn = c
	p.dec = xml.NewDecoder(c)
	p.w = bufio.NewWriter(c)
}

func (p *peer) send(s string) error {
	p.w.WriteString(s)
	return p.w.Flush()
}

// header reads the client's stream header and answers with ours and the
// given features.
func (p *peer) header(features string) error {
	for {
		tok, err := p.dec.Token()
		if err != nil {
			return err
		}
		if se, ok := tok.(xml.StartElement); ok {
			if se.Name.Local != "stream" {
				return fmt.Errorf("want stream header, got <%s>", se.Name.Local)
			}
			break
		}
	}
	return p.send("<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' " +
		"id='s1' from='iot.test' version='1.0'><stream:features>" + features + "</stream:features>")
}

// element reads the next top-level element the client sends.
func (p *peer) element() (*Element, string, error) {
	for {
		tok, err := p.dec.Token()
		if err != nil {
			return nil, "", err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			var raw struct {
				XMLName xml.Name
				Attrs   []xml.Attr `xml:",any,attr"`
				Inner   string     `xml:",innerxml"`
			}
			if err := p.dec.DecodeElement(&raw, &t); err != nil {
				return nil, "", err
			}
			el := &Element{Space: t.Name.Space, Name: t.Name.Local}
			for _, a := range raw.Attrs {
				el.SetAttr(a.Name.Local, a.Value)
			}
			return el, raw.Inner, nil
		case xml.EndElement:
			return nil, "", io.EOF
		}
	}
}

// handshake runs STARTTLS, SASL PLAIN and bind as a server would.
func (p *peer) handshake(pki testPKI, wantPassword string) error {
	if err := p.login(pki, wantPassword); err != nil || p.refused {
		return err
	}
	el, _, err := p.element()
	if err != nil {
		return err
	}
	return p.bindAndEnable(el, "sm-1")
}

// login runs STARTTLS and SASL PLAIN up to the features after
// authentication (bind, and sm when p.sm). A wrong password is answered
// with a failure and sets p.refused.
func (p *peer) login(pki testPKI, wantPassword string) error {
	if err := p.header("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"); err != nil {
		return err
	}
	if el, _, err := p.element(); err != nil || el.Name != "starttls" {
		return fmt.Errorf("want <starttls/>: %v %v", el, err)
	}
	p.send("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
	tc := tls.Server(p.conn, &tls.Config{Certificates: []tls.Certificate{pki.server}})
	if err := tc.Handshake(); err != nil {
		return err
	}
	p.reset(tc)
	if err := p.header("<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms>"); err != nil {
		return err
	}
	el, inner, err := p.element()
	if err != nil || el.Name != "auth" || el.Attr("mechanism") != "PLAIN" {
		return fmt.Errorf("want <auth mechanism=PLAIN>: %v %v", el, err)
	}
	cred, _ := base64.StdEncoding.DecodeString(inner)
	if string(cred) != "\x00device\x00"+wantPassword {
		p.refused = true
		p.send("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/><text>bad password</text></failure></stream:stream>")
		return nil
	}
	p.send("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
	p.reset(tc)
	features := "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
	if p.sm {
		features += "<sm xmlns='urn:xmpp:sm:3'/>"
	}
	return p.header(features)
}

// bindAndEnable answers el, the client's bind request, and with p.sm its
// <enable/> (resumable stream smID).
func (p *peer) bindAndEnable(el *Element, smID string) error {
	if el.Name != "iq" {
		return fmt.Errorf("want bind iq: %v", el)
	}
	if err := p.send("<iq type='result' id='" + el.Attr("id") + "'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>device@iot.test/agent</jid></bind></iq>"); err != nil {
		return err
	}
	if !p.sm {
		return nil
	}
	el, _, err := p.element()
	if err != nil || el.Name != "enable" || el.Attr("resume") != "true" {
		return fmt.Errorf("want <enable resume='true'/>: %v %v", el, err)
	}
	return p.send("<enabled xmlns='urn:xmpp:sm:3' id='" + smID + "' resume='true'/>")
}

// scripted starts a listener whose single connection runs handshake and
// then script. It returns a Config pointing at it.
func scripted(t *testing.T, password string, script func(p *peer) error) (Config, <-chan error) {
	return scriptedPeer(t, &peer{}, password, script)
}

func scriptedPeer(t *testing.T, p *peer, password string, script func(p *peer) error) (Config, <-chan error) {
	t.Helper()
	return scriptedPKI(t, p, newTestPKI(t), password, script)
}

func scriptedPKI(t *testing.T, p *peer, pki testPKI, password string, script func(p *peer) error) (Config, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		p.t = t
		p.reset(c)
		if err := p.handshake(pki, "secret"); err != nil {
			done <- fmt.Errorf("handshake: %w", err)
			return
		}
		done <- script(p)
	}()
	return Config{
		JID:      MustParseJID("device@iot.test/agent"),
		Password: password,
		Servers:  []string{ln.Addr().String()},
		TLS:      &tls.Config{RootCAs: pki.roots},
		Timeout:  5 * time.Second,
	}, done
}

func TestSessionHandshake(t *testing.T) {
	cfg, done := scripted(t, "secret", func(p *peer) error {
		el, _, err := p.element()
		if err != nil {
			return err
		}
		if el.Name != "presence" {
			return fmt.Errorf("got <%s/>, want presence", el.Name)
		}
		return p.send("</stream:stream>")
	})
	s, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.JID().String(); got != "device@iot.test/agent" {
		t.Errorf("JID() = %q", got)
	}
	if err := s.SendRaw(context.Background(), []byte("<presence/>")); err != nil {
		t.Fatal(err)
	}
	var se *StreamError
	if err := s.Serve(context.Background()); !errors.As(err, &se) || se.Condition != "connection-closed" {
		t.Errorf("Serve() = %v, want connection-closed", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestSessionWrongPassword(t *testing.T) {
	cfg, done := scripted(t, "wrong", func(p *peer) error { return nil })
	_, err := Dial(context.Background(), cfg)
	var sasl *SASLError
	if !errors.As(err, &sasl) || sasl.Condition != "not-authorized" || !IsAuthError(err) {
		t.Fatalf("Dial() = %v, want SASLError not-authorized", err)
	}
	if !strings.Contains(err.Error(), "bad password") {
		t.Errorf("error %q lacks the server's text", err)
	}
	<-done
}

func TestSessionUntrustedCertificate(t *testing.T) {
	cfg, _ := scripted(t, "secret", func(p *peer) error { return nil })
	cfg.TLS = &tls.Config{RootCAs: x509.NewCertPool()}
	_, err := Dial(context.Background(), cfg)
	var uerr x509.UnknownAuthorityError
	if !errors.As(err, &uerr) {
		t.Fatalf("Dial() with untrusted CA = %v, want x509.UnknownAuthorityError", err)
	}
	cfg.TLS = &tls.Config{InsecureSkipVerify: true}
	if _, err := Dial(context.Background(), cfg); err == nil {
		t.Fatal("Dial() with InsecureSkipVerify succeeded")
	}
}

// The limits apply to a live session: an oversize or too-deep stanza ends
// the stream with a policy-violation the server sees, and Serve reports it.
func TestSessionLimitsCloseStream(t *testing.T) {
	for _, tt := range []struct {
		name, stanza string
	}{
		{"oversize", "<message><body>" + strings.Repeat("x", 8192) + "</body></message>"},
		{"deep", "<message>" + strings.Repeat("<a>", 40) + strings.Repeat("</a>", 40) + "</message>"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := make(chan string, 1)
			cfg, done := scripted(t, "secret", func(p *peer) error {
				p.send(tt.stanza)
				el, inner, err := p.element()
				if err != nil {
					return err
				}
				got <- el.Name + ":" + inner
				return nil
			})
			cfg.MaxStanza = 4096
			s, err := Dial(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			var se *StreamError
			if err := s.Serve(context.Background()); !errors.As(err, &se) || se.Condition != "policy-violation" {
				t.Fatalf("Serve() = %v, want policy-violation", err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if g := <-got; !strings.HasPrefix(g, "error:") || !strings.Contains(g, "policy-violation") {
				t.Fatalf("server received %q, want a policy-violation stream error", g)
			}
		})
	}
}

// A stream error from the server surfaces as a typed error with its
// condition and text.
func TestSessionServerStreamError(t *testing.T) {
	cfg, _ := scripted(t, "secret", func(p *peer) error {
		return p.send("<stream:error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" +
			"<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>replaced</text></stream:error></stream:stream>")
	})
	s, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var se *StreamError
	if err := s.Serve(context.Background()); !errors.As(err, &se) || se.Condition != "conflict" || se.Text != "replaced" {
		t.Fatalf("Serve() = %#v, want conflict/replaced", err)
	}
}

// IQs go to the mux: ping is answered, an unhandled namespace gets
// service-unavailable, and a handler reply keeps the request's id.
func TestSessionMux(t *testing.T) {
	type exchange struct{ send, wantType, wantIn string }
	steps := []exchange{
		{"<iq type='get' id='p1' from='iot.test'><ping xmlns='urn:xmpp:ping'/></iq>", "result", ""},
		{"<iq type='get' id='u1' from='op@iot.test/x'><query xmlns='urn:example:nothing'/></iq>", "error", "service-unavailable"},
		{"<iq type='get' id='v1' from='op@iot.test/x'><query xmlns='jabber:iq:version'/></iq>", "result", "<name>stanzad</name>"},
		{"<iq type='get' id='d1' from='op@iot.test/x'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>", "result", "urn:xmpp:ping"},
	}
	cfg, done := scripted(t, "secret", func(p *peer) error {
		for _, st := range steps {
			p.send(st.send)
			el, inner, err := p.element()
			if err != nil {
				return err
			}
			id := st.send[strings.Index(st.send, "id='")+4:]
			id = id[:strings.IndexByte(id, '\'')]
			if el.Attr("type") != st.wantType || el.Attr("id") != id || !strings.Contains(inner, st.wantIn) {
				return fmt.Errorf("answer to %s: type=%q id=%q %q; want type %q containing %q",
					id, el.Attr("type"), el.Attr("id"), inner, st.wantType, st.wantIn)
			}
		}
		return p.send("</stream:stream>")
	})
	cfg.Handler = NewMux(Identity{Category: "client", Type: "bot", Name: "stanzad"}, Software{Name: "stanzad", Version: "test"})
	s, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.Serve(context.Background())
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// With stream management, the client answers the server's <r/> with the
// count of stanzas it received, reports acknowledged tags in order, and
// treats an ack for more than it sent as a protocol error.
func TestSessionStreamManagement(t *testing.T) {
	acked := make(chan []uint64, 10)
	answered := make(chan struct{})
	cfg, done := scriptedPeer(t, &peer{sm: true}, "secret", func(p *peer) error {
		p.send("<message from='a@iot.test/x'><body>1</body></message><presence from='a@iot.test/x'/>" +
			"<iq type='result' id='zz'/><r xmlns='urn:xmpp:sm:3'/>")
		el, _, err := p.element()
		if err != nil || el.Name != "a" || el.Attr("h") != "3" {
			return fmt.Errorf("answer to <r/>: %v %v, want <a h='3'/>", el, err)
		}
		close(answered)
		// The client sends three stanzas and asks for an ack by itself.
		msgs, rs := 0, 0
		for msgs < 3 || rs == 0 {
			el, _, err := p.element()
			switch {
			case err != nil:
				return err
			case el.Name == "message":
				msgs++
			case el.Name == "r":
				rs++
			default:
				return fmt.Errorf("unexpected <%s/>", el.Name)
			}
		}
		p.send("<a xmlns='urn:xmpp:sm:3' h='2'/>")
		time.Sleep(100 * time.Millisecond)
		p.send("<a xmlns='urn:xmpp:sm:3' h='9'/>") // more than was sent
		el, inner, err := p.element()
		for err == nil && el.Name == "r" { // the client asks about the third stanza
			el, inner, err = p.element()
		}
		if err != nil || el.Name != "error" || !strings.Contains(inner, "undefined-condition") {
			return fmt.Errorf("want a stream error for h=9: %v %q %v", el, inner, err)
		}
		return nil
	})
	cfg.sm = &smState{onAck: func(tags []uint64) { acked <- slices.Clone(tags) }}
	s, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !s.StreamManagement() || s.Resumed() {
		t.Fatalf("StreamManagement() = %v, Resumed() = %v", s.StreamManagement(), s.Resumed())
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- s.Serve(context.Background()) }()
	select {
	case <-answered:
	case err := <-done:
		t.Fatalf("peer: %v", err)
	}
	for i := 1; i <= 3; i++ {
		tag := uint64(i * 10)
		if i == 2 {
			tag = 0 // untracked stanzas count but are not reported
		}
		if err := s.SendTracked(context.Background(), []byte("<message to='b@iot.test'/>"), tag); err != nil {
			t.Fatal(err)
		}
	}
	if got := <-acked; fmt.Sprint(got) != "[10]" {
		t.Errorf("acked %v, want [10]", got)
	}
	var se *StreamError
	if err := <-serveErr; !errors.As(err, &se) || se.Condition != "undefined-condition" {
		t.Errorf("Serve() = %v, want undefined-condition", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestSMStateAck(t *testing.T) {
	m := &smState{acked: ^uint32(0) - 1} // about to wrap
	for i := uint64(1); i <= 4; i++ {
		m.sent([]byte("x"), i, false)
	}
	tags, err := m.ack(0) // 2^32-2 + 2 wraps to 0
	if err != nil || fmt.Sprint(tags) != "[1 2]" || m.pending() != 2 {
		t.Fatalf("ack across wrap = %v, %v, %d left", tags, err, m.pending())
	}
	if tags, err := m.ack(0); err != nil || tags != nil {
		t.Fatalf("repeated ack = %v, %v", tags, err)
	}
	if _, err := m.ack(5); err == nil {
		t.Fatal("ack beyond what was sent accepted")
	}
}

func TestParseH(t *testing.T) {
	for _, tt := range []struct {
		h    string
		want uint32
		ok   bool
	}{
		{"0", 0, true}, {"4294967295", 1<<32 - 1, true},
		{"", 0, false}, {"-1", 0, false}, {"4294967296", 0, false}, {"1e3", 0, false}, {" 5", 0, false},
	} {
		got, err := parseH((&Element{Space: NSSM, Name: "a"}).SetAttr("h", tt.h))
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseH(h=%q) = %d, %v; want %d ok=%v", tt.h, got, err, tt.want, tt.ok)
		}
	}
}

// The unavailable presence sent by Close is a stanza the server counts:
// its final ack must not look like an over-acknowledgement.
// A stanza with more elements than the reader keeps is dropped without
// ending the stream, and counted for stream management: the server's
// next <r/> is answered with it included.
func TestSessionDropsElementBomb(t *testing.T) {
	answered := make(chan struct{})
	cfg, done := scriptedPeer(t, &peer{sm: true}, "secret", func(p *peer) error {
		p.send("<message from='x@evil.test/r' type='chat'>" + strings.Repeat("<a/>", DefaultMaxStanza/elementBytes+1) + "</message>" +
			"<message from='a@iot.test/x'><body>1</body></message><r xmlns='urn:xmpp:sm:3'/>")
		el, _, err := p.element()
		if err != nil || el.Name != "a" || el.Attr("h") != "2" {
			return fmt.Errorf("answer to <r/>: %v %v, want <a h='2'/> (the dropped message and the next)", el, err)
		}
		close(answered)
		return nil
	})
	s, serveErr := dialServing(t, cfg)
	defer s.Close(context.Background())
	select {
	case <-answered:
	case err := <-done:
		t.Fatalf("peer: %v", err)
	case err := <-serveErr:
		t.Fatalf("Serve after the bomb: %v", err)
	}
}

// dialServing dials cfg with stream management and runs Serve; Serve's
// error comes on the channel.
func dialServing(t *testing.T, cfg Config) (*Session, <-chan error) {
	t.Helper()
	cfg.sm = &smState{}
	s, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- s.Serve(context.Background()) }()
	return s, serveErr
}

func TestSessionCloseCountsPresence(t *testing.T) {
	cfg, done := scriptedPeer(t, &peer{sm: true}, "secret", func(p *peer) error {
		for {
			el, _, err := p.element()
			if err != nil {
				return err
			}
			if el.Name == "presence" {
				if el.Attr("type") != "unavailable" {
					return fmt.Errorf("presence %v, want unavailable", el)
				}
				break
			}
		}
		p.send("<a xmlns='urn:xmpp:sm:3' h='2'/></stream:stream>")
		if el, inner, err := p.element(); err == nil && el.Name == "error" {
			return fmt.Errorf("client answered the final ack with a stream error: %s", inner)
		}
		return nil
	})
	s, serveErr := dialServing(t, cfg)
	if err := s.SendTracked(context.Background(), []byte("<message to='b@iot.test'/>"), 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	var se *StreamError
	err := <-serveErr
	t.Logf("Serve: %v", err)
	if errors.As(err, &se) {
		t.Errorf("Serve() = %v after a clean close", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// An IQ answer is accepted only from the entity the request went to; a
// forged answer with the right id from anyone else is dropped. Requests
// still waiting when the stream ends get ErrClosed.
func TestSessionIQAnswerFrom(t *testing.T) {
	cfg, done := scripted(t, "secret", func(p *peer) error {
		el, _, err := p.element()
		if err != nil || el.Name != "iq" {
			return fmt.Errorf("want iq: %v %v", el, err)
		}
		id := el.Attr("id")
		// Forged: same id, wrong sender; then the real answer.
		p.send("<iq type='result' id='" + id + "' from='mallory@iot.test/x'><forged xmlns='urn:example'/></iq>")
		p.send("<iq type='error' id='" + id + "' from='pubsub.iot.test'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>")
		if el, _, err = p.element(); err != nil || el.Name != "iq" {
			return fmt.Errorf("want second iq: %v %v", el, err)
		}
		return p.send("</stream:stream>") // the second is never answered
	})
	s, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = s.SendIQ(ctx, Stanza("iq", "get", "pubsub.iot.test", "").Add(NewElement("urn:example", "q")))
	var se *StanzaError
	if !errors.As(err, &se) || se.Condition != "item-not-found" {
		t.Fatalf("SendIQ = %v, want the real item-not-found, not the forged result", err)
	}
	got := make(chan error, 1)
	if _, err := s.SendIQFunc(ctx, Stanza("iq", "get", "pubsub.iot.test", "").Add(NewElement("urn:example", "q")),
		func(_ *Element, err error) { got <- err }); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("unanswered request at stream end: %v, want ErrClosed", err)
		}
	case <-ctx.Done():
		t.Fatal("unanswered request never completed")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := s.SendIQFunc(ctx, Stanza("iq", "get", "pubsub.iot.test", ""), func(*Element, error) {}); err == nil {
		t.Error("SendIQFunc after the stream ended succeeded")
	}
}
