package xmpp

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stanzad/stanzad/xmpp/sasl"
)

// Config configures a session. JID and Password (or a client certificate
// in TLS) are required; the zero value of everything else is a sensible
// default.
type Config struct {
	// JID is the account; its resource, if any, is requested at bind time.
	JID      JID
	Password string
	// Servers are the host:port endpoints to try, in order: the first
	// that connects and negotiates wins. Empty means DNS SRV
	// (_xmpps-client._tcp for DirectTLS, _xmpp-client._tcp otherwise),
	// ordered by priority and, within one priority, at random by weight
	// (RFC 2782), then the domain on 5223 (DirectTLS) or 5222.
	Servers []string
	// DirectTLS starts TLS on connect (XEP-0368) instead of STARTTLS.
	DirectTLS bool
	// TLS verifies the server; nil means system roots. ServerName defaults
	// to the JID's domain. InsecureSkipVerify is refused unless
	// VerifyConnection verifies instead (as TLSConfig's does with a CA
	// file).
	TLS *tls.Config
	// MaxStanza and MaxDepth bound inbound stanzas (defaults 256 KiB, 32).
	MaxStanza int64
	MaxDepth  int
	// Timeout bounds connecting and stream negotiation (default 20s) and
	// each write (default 10s).
	Timeout time.Duration
	// ConnectTimeout bounds, when there are several endpoints, the time
	// from the TCP connect until the server's first stream header (or,
	// with DirectTLS, the end of the TLS handshake): an endpoint that
	// drops packets or accepts and stays silent delays failover by at
	// most this much (default 5s). A single endpoint has all of Timeout,
	// for links slow enough to need it.
	ConnectTimeout time.Duration
	// Handler receives inbound stanzas. Nil answers IQs with
	// service-unavailable and drops the rest.
	Handler Handler
	// Logger receives debug traffic and warnings; nil discards.
	Logger *slog.Logger
	// Resolver looks up SRV records; nil uses net.DefaultResolver.
	Resolver *net.Resolver
	// MaxHandlers bounds concurrently running handlers (default 32).
	// When all are busy the reader waits, pushing back on the server.
	MaxHandlers int

	// sm, set by Client, enables XEP-0198 stream management with
	// resumption across the sessions a Client dials.
	sm *smState
	// scram, set by Client, keeps the salted password across its logins.
	scram *sasl.SaltCache
	// prefer, set by Client, is the endpoint that worked last: it is
	// tried first while it is among the endpoints, so a board stays on
	// the cluster node it is on and a dead endpoint early in the list
	// costs nothing while the others work.
	prefer string
}

// Handler handles inbound stanzas other than IQ results. Calls may run
// concurrently. For IQs of type get or set, HandleStanza is not called:
// see IQHandler and Mux.
type Handler interface {
	HandleStanza(ctx context.Context, s *Session, st *Element)
}

// Session is one negotiated XMPP client stream. Create it with Dial, run
// Serve to process inbound stanzas; Send and SendIQ may be called from any
// goroutine.
type Session struct {
	// Messages and presence received and handled so far, on the ordered
	// goroutine: an IQ may wait for what arrived before it (WaitOrdered).
	orderedIn, orderedDone atomic.Uint64

	cfg      Config
	log      *slog.Logger
	endpoint string // the host:port this session connected to
	conn     net.Conn
	tls      *tls.Conn
	r        *reader
	jid      JID
	features *Element
	streamID string
	mech     string
	sm       *smState // nil unless stream management is enabled on this stream
	resumed  bool
	stream   uint64 // see Stream

	negotiateBy time.Time // deadline of the whole negotiation
	answered    bool      // the server has sent a stream header or finished a TLS handshake

	wmu      sync.Mutex
	wbuf     []byte
	closed   bool
	rPending bool // an ack request is scheduled or outstanding

	pmu     sync.Mutex
	pending map[string]pendingIQ // by id; nil once Serve has returned

	idPrefix string
	idSeq    atomic.Uint64

	served  chan struct{} // closed when Serve returns
	serving atomic.Bool
	closing atomic.Bool
	sent    atomic.Uint64
	recv    atomic.Uint64
}

// Dial connects, negotiates TLS, authenticates and binds a resource. The
// returned session is ready for Send; call Serve to read.
//
// Dial tries the endpoints (Config.Servers, or DNS SRV) in turn, moving on
// when one cannot be reached, does not answer within ConnectTimeout, or
// fails during negotiation for any reason but the account's: a refused
// login or an unusable account is the same on every node of a cluster, so
// it is returned at once. The error of a Dial that tried several
// endpoints joins each one's.
func Dial(ctx context.Context, cfg Config) (*Session, error) {
	if cfg.JID.Domain == "" {
		return nil, errors.New("xmpp: config has no JID")
	}
	if cfg.TLS != nil && cfg.TLS.InsecureSkipVerify && cfg.TLS.VerifyConnection == nil {
		return nil, errors.New("xmpp: TLS verification cannot be disabled")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 20 * time.Second
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	if cfg.MaxHandlers <= 0 {
		cfg.MaxHandlers = 32
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	addrs, err := endpoints(ctx, cfg)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, addr := range addrs {
		s, err := dialEndpoint(ctx, cfg, log, addr, len(addrs) == 1)
		if err == nil {
			return s, nil
		}
		if len(addrs) == 1 || IsAuthError(err) { // the account's, on every node
			return nil, err
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
		log.Warn("endpoint failed; trying the next", "endpoint", addr, "err", err)
	}
	return nil, fmt.Errorf("xmpp: no endpoint of %d worked: %w", len(addrs), errors.Join(errs...))
}

// dialEndpoint connects to one endpoint and negotiates the stream. Unless
// it is the only one, the connect phase (TCP, and the server's first
// stream header or direct TLS handshake) has ConnectTimeout.
func dialEndpoint(ctx context.Context, cfg Config, log *slog.Logger, addr string, only bool) (*Session, error) {
	deadline, _ := ctx.Deadline()
	connectBy := deadline
	if !only {
		connectBy = time.Now().Add(cfg.ConnectTimeout)
		if connectBy.After(deadline) {
			connectBy = deadline
		}
	}
	cctx, ccancel := context.WithDeadline(ctx, connectBy)
	var d net.Dialer // TCP keepalive on, at Go's default period
	conn, err := d.DialContext(cctx, "tcp", addr)
	ccancel()
	if err != nil {
		return nil, fmt.Errorf("xmpp: connect %s: %w", addr, err)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		// Stanzas are small and latency matters more than packet count.
		tc.SetNoDelay(true)
	}
	s := &Session{
		cfg:      cfg,
		log:      log,
		endpoint: addr,
		conn:     conn,
		pending:  make(map[string]pendingIQ),
		served:   make(chan struct{}),
		idPrefix: randomID(4),
	}
	// Negotiation is sequential: a deadline on the connection bounds it,
	// and cancelling ctx unblocks it. The connect deadline holds until the
	// server has shown it is there (openStream, startTLS extend it).
	s.negotiateBy = deadline
	conn.SetDeadline(connectBy)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	err = s.negotiate(ctx)
	stop()
	if err != nil {
		conn.Close()
		if !only && time.Now().After(connectBy) && !s.answered && !isTyped(err) {
			return nil, fmt.Errorf("xmpp: %s did not answer within %v: %w", addr, cfg.ConnectTimeout, err)
		}
		if ctx.Err() != nil && !isTyped(err) {
			return nil, fmt.Errorf("xmpp: negotiate with %s: %w (%w)", addr, ctx.Err(), err)
		}
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return s, nil
}

// answeredNow records that the server has answered: the rest of the
// negotiation has what is left of Timeout.
func (s *Session) answeredNow() {
	if !s.answered {
		s.answered = true
		s.conn.SetDeadline(s.negotiateBy)
	}
}

func isTyped(err error) bool {
	var se *StreamError
	var ae *SASLError
	var ce *tls.CertificateVerificationError
	return errors.As(err, &se) || errors.As(err, &ae) || errors.As(err, &ce) ||
		errors.Is(err, ErrNoTLS) || errors.Is(err, ErrNoMechanism) || errors.Is(err, ErrPinMismatch)
}

// endpoints returns the addresses to try, in order (RFC 6120 §3.2), the
// preferred one first.
func endpoints(ctx context.Context, cfg Config) ([]string, error) {
	addrs, err := resolve(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if i := slices.Index(addrs, cfg.prefer); i > 0 {
		addrs = slices.Concat(addrs[i:i+1], addrs[:i], addrs[i+1:])
	}
	return addrs, nil
}

// resolve returns the configured or published addresses, in order.
func resolve(ctx context.Context, cfg Config) ([]string, error) {
	if len(cfg.Servers) > 0 {
		return cfg.Servers, nil
	}
	service, port := "xmpp-client", "5222"
	if cfg.DirectTLS {
		service, port = "xmpps-client", "5223"
	}
	r := cfg.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	// LookupSRV sorts by priority and shuffles by weight within one
	// priority, as RFC 2782 asks: a fleet spreads over equal servers.
	// A record with an invalid target is left out with an error beside
	// the valid ones: those are still the server's published endpoints.
	_, srvs, _ := r.LookupSRV(ctx, service, "tcp", cfg.JID.Domain)
	if len(srvs) > 0 {
		if len(srvs) == 1 && srvs[0].Target == "." {
			return nil, fmt.Errorf("xmpp: %s publishes no %s service", cfg.JID.Domain, service)
		}
		addrs := make([]string, 0, len(srvs))
		for _, s := range srvs {
			addrs = append(addrs, net.JoinHostPort(trimDot(s.Target), strconv.Itoa(int(s.Port))))
		}
		return addrs, nil
	}
	return []string{net.JoinHostPort(cfg.JID.Domain, port)}, nil
}

func trimDot(s string) string {
	if len(s) > 0 && s[len(s)-1] == '.' {
		return s[:len(s)-1]
	}
	return s
}

func (s *Session) tlsConfig() *tls.Config {
	var c *tls.Config
	if s.cfg.TLS != nil {
		c = s.cfg.TLS.Clone()
	} else {
		c = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if c.ServerName == "" {
		c.ServerName = s.cfg.JID.Domain
	}
	if c.InsecureSkipVerify && c.VerifyConnection != nil {
		// The verifier checks the name we expect, which is ServerName, not
		// the SNI the state carries (empty for an IP address).
		verify, name := c.VerifyConnection, c.ServerName
		c.VerifyConnection = func(cs tls.ConnectionState) error {
			cs.ServerName = name
			return verify(cs)
		}
	}
	return c
}

func (s *Session) startTLS(ctx context.Context) error {
	cfg := s.tlsConfig()
	if s.cfg.DirectTLS {
		cfg.NextProtos = []string{"xmpp-client"} // XEP-0368 ALPN
	}
	tc := tls.Client(s.conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("xmpp: TLS handshake with %s: %w", s.conn.RemoteAddr(), err)
	}
	s.conn = tc
	s.tls = tc
	s.answeredNow()
	return nil
}

// negotiate runs RFC 6120 stream negotiation: [TLS], SASL, bind.
func (s *Session) negotiate(ctx context.Context) error {
	if s.cfg.DirectTLS {
		if err := s.startTLS(ctx); err != nil {
			return err
		}
	}
	authenticated := false
	for {
		if err := s.openStream(); err != nil {
			return err
		}
		f := s.features
		switch {
		case s.tls == nil:
			if f.Child(NSTLS, "starttls") == nil {
				return ErrNoTLS
			}
			if err := s.writeRaw([]byte("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")); err != nil {
				return err
			}
			el, err := s.r.next()
			if err != nil {
				return err
			}
			if el.Space != NSTLS || el.Name != "proceed" {
				return fmt.Errorf("xmpp: STARTTLS refused by server (<%s/>)", el.Name)
			}
			if err := s.startTLS(ctx); err != nil {
				return err
			}
		case !authenticated:
			if err := s.authenticate(); err != nil {
				return err
			}
			authenticated = true
		default:
			return s.establish()
		}
	}
}

func (s *Session) openStream() error {
	var b []byte
	b = append(b, "<?xml version='1.0'?><stream:stream to='"...)
	b = AppendEscaped(b, s.cfg.JID.Domain)
	b = append(b, '\'')
	if s.tls != nil {
		b = append(b, " from='"...)
		b = AppendEscaped(b, s.cfg.JID.Bare().String())
		b = append(b, '\'')
	}
	b = append(b, " version='1.0' xml:lang='en' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"...)
	// A new reader per stream: RFC 6120 §4.3.3 restarts discard parser state.
	s.r = newReader(s.conn, s.cfg.MaxStanza, s.cfg.MaxDepth)
	if err := s.writeRaw(b); err != nil {
		return err
	}
	h, err := s.r.header()
	if err != nil {
		return s.negotiationError(err)
	}
	s.answeredNow()
	if h.Version == "" || h.Version[0] < '1' {
		return fmt.Errorf("xmpp: server speaks stream version %q, want 1.0", h.Version)
	}
	s.streamID = h.ID
	el, err := s.r.next()
	if err != nil {
		return s.negotiationError(err)
	}
	if el.Space == NSStream && el.Name == "error" {
		return parseStreamError(el)
	}
	if el.Space != NSStream || el.Name != "features" {
		return fmt.Errorf("xmpp: expected stream features, got <%s xmlns='%s'>", el.Name, el.Space)
	}
	s.features = el
	return nil
}

// negotiationError sends local stream errors to the server before failing.
func (s *Session) negotiationError(err error) error {
	var se *StreamError
	if errors.As(err, &se) && se.Local {
		s.writeRaw(append(se.Element(), "</stream:stream>"...))
	}
	return err
}

func parseStreamError(el *Element) *StreamError {
	e := &StreamError{Condition: "undefined-condition"}
	for _, c := range el.Children {
		if c.Space != NSStreams {
			continue
		}
		if c.Name == "text" {
			e.Text = c.Text
		} else {
			e.Condition = c.Name
		}
	}
	return e
}

func (s *Session) authenticate() error {
	mechs := s.features.Child(NSSASL, "mechanisms")
	if mechs == nil {
		return fmt.Errorf("%w (server offered no SASL)", ErrNoMechanism)
	}
	var offered []string
	for _, m := range mechs.Children {
		if m.Name == "mechanism" {
			offered = append(offered, m.Text)
		}
	}
	cb := s.channelBinding()
	have := sasl.Capabilities{
		TLS:            s.tls != nil,
		ChannelBinding: cb != nil,
		ClientCert:     s.tls != nil && s.cfg.TLS != nil && len(s.cfg.TLS.Certificates) > 0,
	}
	order := sasl.Preferred(offered, have)
	if len(order) == 0 {
		return fmt.Errorf("%w: server offers %v", ErrNoMechanism, offered)
	}
	name := order[0]
	var mech sasl.Mechanism
	switch {
	case name == "PLAIN":
		mech = sasl.Plain(s.cfg.JID.Local, s.cfg.Password)
	case name == "EXTERNAL":
		mech = sasl.External("")
	default:
		plusOffered := false
		for _, o := range offered {
			if len(o) > 5 && o[len(o)-5:] == "-PLUS" {
				plusOffered = true
			}
		}
		opts := sasl.SCRAMOptions{
			// "y" tells the server we could bind but it offered no -PLUS, so
			// a stripped -PLUS offer (downgrade) is detected (RFC 5802 §6).
			ClientSupportsCB: cb != nil && !plusOffered,
			Cache:            s.cfg.scram,
		}
		if len(name) > 5 && name[len(name)-5:] == "-PLUS" {
			opts.CB = cb
		}
		m, err := sasl.SCRAMWithOptions(name, s.cfg.JID.Local, s.cfg.Password, opts)
		if err != nil {
			return err
		}
		mech = m
	}
	s.mech = name
	s.log.Debug("authenticating", "mechanism", name)
	initial, err := mech.Start()
	if err != nil {
		return err
	}
	b := []byte("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='")
	b = AppendEscaped(b, name)
	b = append(b, "'>"...)
	b = appendB64(b, initial)
	b = append(b, "</auth>"...)
	if err := s.writeRaw(b); err != nil {
		return err
	}
	for {
		el, err := s.r.next()
		if err != nil {
			return s.negotiationError(err)
		}
		if el.Space != NSSASL {
			if el.Space == NSStream && el.Name == "error" {
				return parseStreamError(el)
			}
			return fmt.Errorf("xmpp: unexpected <%s/> during SASL", el.Name)
		}
		data, derr := base64.StdEncoding.DecodeString(el.Text)
		if derr != nil && el.Name != "failure" {
			return fmt.Errorf("xmpp: SASL %s: bad base64: %w", el.Name, derr)
		}
		switch el.Name {
		case "challenge":
			resp, err := mech.Next(data)
			if err != nil {
				s.writeRaw([]byte("<abort xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"))
				return fmt.Errorf("xmpp: SASL %s: %w", name, err)
			}
			// Only the initial response uses "=" for empty (RFC 6120
			// §6.4.2); an empty <response/> is simply empty.
			b = append(b[:0], "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"...)
			b = base64.StdEncoding.AppendEncode(b, resp)
			b = append(b, "</response>"...)
			if err := s.writeRaw(b); err != nil {
				return err
			}
		case "success":
			if err := mech.Finish(data); err != nil {
				return fmt.Errorf("xmpp: SASL %s: %w", name, err)
			}
			return nil
		case "failure":
			f := &SASLError{Condition: "not-authorized"}
			for _, c := range el.Children {
				if c.Name == "text" {
					f.Text = c.Text
				} else {
					f.Condition = c.Name
				}
			}
			return f
		default:
			return fmt.Errorf("xmpp: unexpected SASL <%s/>", el.Name)
		}
	}
}

// channelBinding returns the binding for -PLUS mechanisms, or nil when
// none can be had: tls-unique exists only for TLS 1.2 (RFC 5929); for TLS
// 1.3 tls-exporter (RFC 9266) is used only if the server advertises it
// (XEP-0440), since a server that supports neither would fail the exchange.
func (s *Session) channelBinding() *sasl.ChannelBinding {
	if s.tls == nil {
		return nil
	}
	cs := s.tls.ConnectionState()
	if cs.Version == tls.VersionTLS12 && len(cs.TLSUnique) > 0 {
		return &sasl.ChannelBinding{Type: "tls-unique", Data: cs.TLSUnique}
	}
	if cs.Version >= tls.VersionTLS13 {
		if cbs := s.features.Child(NSSASLCB, "sasl-channel-binding"); cbs != nil {
			for _, c := range cbs.Children {
				if c.Attr("type") == "tls-exporter" {
					data, err := cs.ExportKeyingMaterial("EXPORTER-Channel-Binding", nil, 32)
					if err == nil {
						return &sasl.ChannelBinding{Type: "tls-exporter", Data: data}
					}
				}
			}
		}
	}
	return nil
}

func appendB64(dst, src []byte) []byte {
	if len(src) == 0 {
		return append(dst, '=') // RFC 6120 §6.4.2: empty response
	}
	return base64.StdEncoding.AppendEncode(dst, src)
}

func (s *Session) bind() error {
	if s.features.Child(NSBind, "bind") == nil {
		return errors.New("xmpp: server offers no resource binding")
	}
	iq := Stanza("iq", "set", "", s.NewID())
	bind := NewElement(NSBind, "bind")
	if s.cfg.JID.Resource != "" {
		bind.Add(NewElement(NSBind, "resource").SetText(s.cfg.JID.Resource))
	}
	iq.Add(bind)
	res, err := s.syncIQ(iq)
	if err != nil {
		return fmt.Errorf("xmpp: bind: %w", err)
	}
	// A copy: the session keeps it, and a stanza's strings share the
	// stanza's memory (reader.go).
	j, err := ParseJID(strings.Clone(res.Child(NSBind, "bind").ChildText(NSBind, "jid")))
	if err != nil {
		return fmt.Errorf("xmpp: bind: server returned %w", err)
	}
	s.jid = j
	// RFC 3921 session establishment, only where a server still requires it.
	if sess := s.features.Child(NSSession, "session"); sess != nil && sess.Child("", "optional") == nil {
		iq := Stanza("iq", "set", "", s.NewID()).Add(NewElement(NSSession, "session"))
		if _, err := s.syncIQ(iq); err != nil {
			return fmt.Errorf("xmpp: session: %w", err)
		}
	}
	return nil
}

// syncIQ sends an IQ during negotiation, before Serve runs, and reads
// until its answer.
func (s *Session) syncIQ(iq *Element) (*Element, error) {
	if err := s.writeRaw(iq.Append(nil)); err != nil {
		return nil, err
	}
	id := iq.Attr("id")
	for {
		el, err := s.r.next()
		if err != nil {
			return nil, s.negotiationError(err)
		}
		if el.Space == NSStream && el.Name == "error" {
			return nil, parseStreamError(el)
		}
		if el.Name != "iq" || el.Attr("id") != id {
			continue
		}
		if el.Attr("type") == "error" {
			return nil, ParseStanzaError(el)
		}
		return el, nil
	}
}

// Mechanism returns the SASL mechanism the session authenticated with.
func (s *Session) Mechanism() string { return s.mech }

// JID returns the full JID the server bound.
func (s *Session) JID() JID { return s.jid }

// Endpoint returns the host:port this session is connected to.
func (s *Session) Endpoint() string { return s.endpoint }

// Features returns the stream features of the final stream.
func (s *Session) Features() *Element { return s.features }

// TLSState returns the TLS connection state.
func (s *Session) TLSState() tls.ConnectionState { return s.tls.ConnectionState() }

// LastRead returns when bytes last arrived from the server.
func (s *Session) LastRead() time.Time { return time.Unix(0, s.r.conn.last.Load()) }

// NewID returns a stanza id unique within this process.
func (s *Session) NewID() string {
	return s.idPrefix + strconv.FormatUint(s.idSeq.Add(1), 36)
}

func randomID(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *Session) writeRaw(b []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.writeLocked(b)
}

func (s *Session) writeLocked(b []byte) error {
	if s.closed {
		return ErrClosed
	}
	wt := s.cfg.Timeout / 2
	if wt <= 0 {
		wt = 10 * time.Second
	}
	s.conn.SetWriteDeadline(time.Now().Add(wt))
	_, err := s.conn.Write(b)
	if err != nil {
		// A failed or partial write leaves the stream unusable.
		s.closed = true
		s.conn.Close()
		return fmt.Errorf("xmpp: write: %w", err)
	}
	return nil
}

// Send encodes and writes one stanza.
func (s *Session) Send(ctx context.Context, st *Element) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.wbuf = st.Append(s.wbuf[:0])
	return s.sendLocked(s.wbuf, 0, false)
}

// SendRaw writes one pre-encoded stanza. b must be exactly one complete,
// well-formed stanza element in the jabber:client namespace.
func (s *Session) SendRaw(ctx context.Context, b []byte) error {
	return s.SendTracked(ctx, b, 0)
}

// SendTracked writes one pre-encoded stanza like SendRaw and, if tag is
// not 0, reports tag to the Client's OnAck once the server has
// acknowledged the stanza (XEP-0198). Without stream management on the
// stream, a complete write counts as the acknowledgement.
//
// With stream management, a stanza whose write fails is still kept for
// resending when the stream is resumed; if resumption fails, it is
// dropped and the owner must send it again on the new stream.
//
// A tracked stanza is telemetry: it is paced (see pacer), waiting until
// the server has acknowledged enough of what was sent before it, so
// that untracked stanzas — answers, presence — never queue behind much
// of it.
func (s *Session) SendTracked(ctx context.Context, b []byte, tag uint64) error {
	return s.send(ctx, b, tag, tag != 0)
}

// send writes one pre-encoded stanza, after waiting for the pacing
// window if paced.
func (s *Session) send(ctx context.Context, b []byte, tag uint64, paced bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if paced && s.sm != nil {
		if err := s.sm.pace.wait(ctx, len(b), s.served); err != nil {
			return err
		}
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.sendLocked(b, tag, paced && s.sm != nil)
}

// Link returns how telemetry is paced on this stream: the delivery rate
// the server allows and the window in flight. Without stream management
// nothing is paced and the zero LinkStats is returned.
func (s *Session) Link() LinkStats {
	if s.sm == nil {
		return LinkStats{}
	}
	return s.sm.pace.stats(time.Now())
}

// ackEvery is how many untracked stanzas (IQ answers, presence) may wait
// for an ack before one is requested. Tracked stanzas (readings) ask at
// once: their owners wait for the ack. Answers to commands do not, and
// an <r/> after each would double the server's work per command.
const ackEvery = 16

func (s *Session) sendLocked(b []byte, tag uint64, paced bool) error {
	queued, pending := false, 0
	if s.sm != nil && !s.closed {
		s.sm.mu.Lock()
		err := s.sm.sent(b, tag, paced)
		pending = s.sm.pending()
		if err != nil {
			s.sm.id = "" // what was not queued cannot be resumed: start afresh
		}
		s.sm.mu.Unlock()
		if err != nil {
			s.closed = true
			s.conn.Close()
			return err
		}
		queued = true
	}
	err := s.writeLocked(b)
	if err != nil {
		if queued {
			return fmt.Errorf("%w (%w)", ErrQueuedForResume, err)
		}
		return err
	}
	s.sent.Add(1)
	switch {
	case s.sm != nil && (tag != 0 || paced || pending >= ackEvery):
		s.requestAckLocked()
	case tag != 0 && s.cfg.sm != nil && s.cfg.sm.onAck != nil:
		s.cfg.sm.onAck([]uint64{tag})
	}
	return nil
}

// SendIQ sends an IQ get or set and waits for its result. An IQ error
// response is returned as a *StanzaError. Serve must be running.
func (s *Session) SendIQ(ctx context.Context, iq *Element) (*Element, error) {
	type answer struct {
		res *Element
		err error
	}
	ch := make(chan answer, 1)
	id, err := s.SendIQFunc(ctx, iq, func(res *Element, err error) { ch <- answer{res, err} })
	if err != nil {
		return nil, err
	}
	select {
	case a := <-ch:
		return a.res, a.err
	case <-ctx.Done():
		s.forget(id)
		return nil, ctx.Err()
	}
}

// pendingIQ is an IQ request waiting for its answer.
type pendingIQ struct {
	to   string // the request's 'to'; the answer must come from there
	done func(res *Element, err error)
}

// SendIQFunc sends an IQ get or set and returns without waiting. done is
// called exactly once, unless SendIQFunc returns an error: with the result,
// with the error response and its *StanzaError, or with ErrClosed when the
// stream ends first. It is called on the session's reading goroutine, so it
// must not block. The returned id is the request's.
//
// Only an answer from the JID the request was sent to is accepted (RFC
// 6120 §8.1.2.1): another entity cannot forge it by guessing the id.
func (s *Session) SendIQFunc(ctx context.Context, iq *Element, done func(res *Element, err error)) (string, error) {
	id := iq.Attr("id")
	if id == "" {
		id = s.NewID()
		iq.SetAttr("id", id)
	}
	if err := s.expect(id, iq.Attr("to"), done); err != nil {
		return "", err
	}
	if err := s.Send(ctx, iq); err != nil {
		s.forget(id)
		return "", err
	}
	return id, nil
}

// SendRawIQ is SendIQFunc for a pre-encoded IQ get or set: b is the whole
// <iq/>, with id and to (empty for the account itself) as given.
func (s *Session) SendRawIQ(ctx context.Context, b []byte, id, to string, done func(res *Element, err error)) error {
	return s.sendRawIQ(ctx, b, id, to, false, done)
}

// SendTelemetryIQ is SendRawIQ for telemetry (a pubsub publish): paced
// like SendTracked, so that commands and their answers pass it.
func (s *Session) SendTelemetryIQ(ctx context.Context, b []byte, id, to string, done func(res *Element, err error)) error {
	return s.sendRawIQ(ctx, b, id, to, true, done)
}

func (s *Session) sendRawIQ(ctx context.Context, b []byte, id, to string, paced bool, done func(res *Element, err error)) error {
	if err := s.expect(id, to, done); err != nil {
		return err
	}
	if err := s.send(ctx, b, 0, paced); err != nil {
		s.forget(id)
		return err
	}
	return nil
}

func (s *Session) expect(id, to string, done func(*Element, error)) error {
	s.pmu.Lock()
	defer s.pmu.Unlock()
	if s.pending == nil {
		return ErrClosed
	}
	s.pending[id] = pendingIQ{to: to, done: done}
	return nil
}

func (s *Session) forget(id string) {
	s.pmu.Lock()
	delete(s.pending, id)
	s.pmu.Unlock()
}

// failPending answers every request still waiting with ErrClosed.
func (s *Session) failPending() {
	s.pmu.Lock()
	p := s.pending
	s.pending = nil
	s.pmu.Unlock()
	for _, q := range p {
		q.done(nil, ErrClosed)
	}
}

// Serve reads and dispatches stanzas until the stream ends. Cancelling ctx
// closes the session gracefully (see Close). It returns nil after a clean
// close, a *StreamError for stream errors, or the read error.
func (s *Session) Serve(ctx context.Context) error {
	if !s.serving.CompareAndSwap(false, true) {
		return errors.New("xmpp: Serve called twice")
	}
	defer s.failPending()
	defer close(s.served)
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	stop := context.AfterFunc(ctx, func() {
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
		defer ccancel()
		s.Close(cctx)
	})
	defer stop()

	slots := make(chan struct{}, s.cfg.MaxHandlers)
	var ordered chan *Element
	defer func() {
		if ordered != nil {
			close(ordered)
		}
	}()
	var droppedLogged time.Time
	for {
		el, err := s.r.next()
		var dropped *droppedStanza
		if errors.As(err, &dropped) {
			// Read whole, not kept (reader.maxElements). Counted for the
			// server's acks; no answer, not even to an IQ request: the
			// ACL that decides who gets one runs on the stanza.
			s.recv.Add(1)
			if dropped.space != NSSM {
				s.countInbound()
			}
			if time.Since(droppedLogged) > time.Minute {
				droppedLogged = time.Now()
				s.log.Warn("dropping a stanza", "err", dropped)
			}
			continue
		}
		if err != nil {
			return s.readFailed(err)
		}
		s.recv.Add(1)
		if el.Space == NSStream && el.Name == "error" {
			se := parseStreamError(el)
			s.shutdown()
			return se
		}
		if el.Space == NSSM {
			if err := s.handleSM(el); err != nil {
				return s.readFailed(err)
			}
			continue
		}
		s.countInbound()
		if el.Name == "iq" && el.Space == NSClient {
			if t := el.Attr("type"); t == "result" || t == "error" {
				s.deliverResult(el)
				continue
			}
		}
		if el.Name != "iq" {
			// Messages and presence are handled one at a time, in the
			// order they arrived: chat commands and telemetry keep their
			// sequence. A full queue stops the reader (back-pressure).
			if ordered == nil {
				ordered = make(chan *Element, 64)
				wg.Add(1)
				go func() {
					defer wg.Done()
					for el := range ordered {
						s.dispatch(hctx, el)
						s.orderedDone.Add(1)
					}
				}()
			}
			s.orderedIn.Add(1)
			ordered <- el
			continue
		}
		// IQ requests run concurrently, bounded: one slow command does not
		// hold up pings or other requests.
		slots <- struct{}{}
		wg.Add(1)
		ictx := context.WithValue(hctx, orderedMarkKey{}, orderedMark{s, s.orderedIn.Load()})
		go func() {
			defer func() {
				<-slots
				wg.Done()
			}()
			s.dispatch(ictx, el)
		}()
	}
}

func (s *Session) readFailed(err error) error {
	defer s.shutdown()
	if errors.Is(err, errStreamEnd) {
		if s.closing.Load() {
			return nil
		}
		return &StreamError{Condition: "connection-closed", Text: "server closed the stream"}
	}
	var se *StreamError
	if errors.As(err, &se) && se.Local {
		s.log.Warn("closing stream", "condition", se.Condition, "reason", se.Text)
		s.wmu.Lock()
		if !s.closed {
			s.writeLocked(append(se.Element(), "</stream:stream>"...))
		}
		s.wmu.Unlock()
		return se
	}
	if s.closing.Load() && (errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF)) {
		return nil
	}
	return fmt.Errorf("xmpp: read: %w", err)
}

func (s *Session) shutdown() {
	s.wmu.Lock()
	s.closed = true
	s.wmu.Unlock()
	s.conn.Close()
}

func (s *Session) deliverResult(el *Element) {
	id := el.Attr("id")
	s.pmu.Lock()
	q, ok := s.pending[id]
	if ok && s.answersFrom(q.to, el.Attr("from")) {
		delete(s.pending, id)
	} else {
		ok = false
	}
	s.pmu.Unlock()
	if !ok {
		s.log.Debug("dropping unsolicited IQ result", "iq_id", id, "from", el.Attr("from"))
		return
	}
	if el.Attr("type") == "error" {
		q.done(el, ParseStanzaError(el))
		return
	}
	q.done(el, nil)
}

// answersFrom reports whether an IQ answer from 'from' may answer a request
// sent to 'to'. A request without 'to' (or to the account itself) is
// answered by the server on the account's behalf: no 'from', the bare JID,
// the full JID or the domain.
func (s *Session) answersFrom(to, from string) bool {
	if strings.EqualFold(from, to) {
		return true
	}
	own := s.jid.Bare().String()
	if to != "" && to != own {
		return false
	}
	return from == "" || from == own || from == s.jid.String() || from == s.jid.Domain
}

func (s *Session) dispatch(ctx context.Context, el *Element) {
	if s.cfg.Handler != nil {
		s.cfg.Handler.HandleStanza(ctx, s, el)
		return
	}
	if el.Name == "iq" {
		s.ReplyError(ctx, el, &StanzaError{Type: ErrorTypeCancel, Condition: "service-unavailable"})
	}
}

// Reply sends an IQ result for req with an optional payload.
func (s *Session) Reply(ctx context.Context, req *Element, payload *Element) error {
	res := Stanza("iq", "result", req.Attr("from"), req.Attr("id"))
	if payload != nil {
		res.Add(payload)
	}
	return s.Send(ctx, res)
}

// ReplyError answers req (an iq, message or presence) with a stanza error.
// It never answers an error with an error (RFC 6120 §8.3.1).
func (s *Session) ReplyError(ctx context.Context, req *Element, e *StanzaError) error {
	if req.Attr("type") == "error" {
		return nil
	}
	res := Stanza(req.Name, "error", req.Attr("from"), req.Attr("id"))
	// Include the request payload, as RFC 6120 §8.3.1 allows, only for IQs
	// where it helps the requester match the failure; bodies are not echoed.
	if req.Name == "iq" {
		if c := req.FirstChild(); c != nil && len(c.Children) == 0 {
			res.Add(c)
		}
	}
	res.Add(e.Element())
	return s.Send(ctx, res)
}

// Close ends the session: unavailable presence, </stream:stream>, a short
// wait for the server's closing tag, then the TCP close. Safe to call more
// than once and concurrently with Serve.
func (s *Session) Close(ctx context.Context) error {
	if !s.closing.CompareAndSwap(false, true) {
		return nil
	}
	s.wmu.Lock()
	var err error
	if !s.closed {
		// The presence is a stanza the server counts in its final ack
		// (XEP-0198 §4): it must be counted here too.
		if err = s.sendLocked([]byte("<presence type='unavailable'/>"), 0, false); err == nil {
			err = s.writeLocked([]byte("</stream:stream>"))
		}
	}
	s.wmu.Unlock()
	if s.serving.Load() && err == nil {
		select {
		case <-s.served:
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
	s.shutdown()
	return err
}

// Done is closed when Serve has returned.
func (s *Session) Done() <-chan struct{} { return s.served }

type orderedMarkKey struct{}

// orderedMark is, for an IQ handler, its session and how many messages
// and presences had arrived before the IQ.
type orderedMark struct {
	s    *Session
	seen uint64
}

// WaitOrdered waits, in an IQ handler, until every message and presence
// that arrived before the IQ has been handled, or until timeout or ctx
// ends (an error then). IQs run concurrently with the ordered stream of
// messages and presence; a handler whose answer depends on state that
// presence changes (who is in a room under which nick) waits for it
// here. Outside an IQ handler it returns at once.
func WaitOrdered(ctx context.Context, timeout time.Duration) error {
	m, ok := ctx.Value(orderedMarkKey{}).(orderedMark)
	if !ok {
		return nil
	}
	deadline := time.Now().Add(timeout)
	for m.s.orderedDone.Load() < m.seen {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return context.DeadlineExceeded
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}
