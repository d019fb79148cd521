package xmpp

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sync"
	"time"
)

// IQHandler answers an IQ get or set. It returns the payload of the result
// (nil for an empty result) or an error: a *StanzaError is sent as is, any
// other error as internal-server-error without its text, so internal
// details never leak to the requester.
type IQHandler func(ctx context.Context, s *Session, iq *Element) (*Element, error)

// Identity is a XEP-0030 identity.
type Identity struct {
	Category, Type, Name string
}

// Mux routes inbound stanzas: IQ get/set by the namespace and name of
// their payload, messages and presence to one function each. It answers
// XEP-0199 ping, XEP-0030 disco#info, XEP-0092 version and XEP-0202 time
// itself, and service-unavailable to IQs nobody handles (RFC 6120 §8.4).
type Mux struct {
	// Identity is announced in disco#info; default client/bot.
	Identity Identity
	// Software is announced by XEP-0092 (Name, Version); OS defaults to
	// GOOS/GOARCH.
	Software Software
	// Message and Presence receive those stanzas; nil drops them.
	Message  func(ctx context.Context, s *Session, st *Element)
	Presence func(ctx context.Context, s *Session, st *Element)
	// Allow, if set, is consulted before every IQ get/set handler,
	// including the built-ins; returning a *StanzaError answers with it.
	Allow func(from JID, iq *Element) error

	mu       sync.RWMutex
	iq       map[iqKey]IQHandler
	features []string
}

// Software is the XEP-0092 software version.
type Software struct {
	Name, Version, OS string
}

type iqKey struct {
	typ, space, name string
}

// NewMux returns a Mux with the built-in handlers registered.
func NewMux(id Identity, sw Software) *Mux {
	m := &Mux{Identity: id, Software: sw, iq: make(map[iqKey]IQHandler)}
	if m.Identity.Category == "" {
		m.Identity = Identity{Category: "client", Type: "bot", Name: id.Name}
	}
	m.HandleIQ("get", NSPing, "ping", func(context.Context, *Session, *Element) (*Element, error) { return nil, nil })
	m.HandleIQ("get", NSDiscoInf, "query", m.discoInfo)
	m.HandleIQ("get", NSVersion, "query", m.version)
	m.HandleIQ("get", NSTime, "time", handleTime)
	return m
}

// NSTime is XEP-0202 entity time.
const NSTime = "urn:xmpp:time"

// HandleIQ registers h for IQs of type typ ("get" or "set") whose payload
// is <name xmlns=space>. The namespace is announced in disco#info.
func (m *Mux) HandleIQ(typ, space, name string, h IQHandler) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.iq[iqKey{typ, space, name}] = h
	m.addFeatureLocked(space)
}

// AddFeature announces a disco#info feature without a handler (for
// example a message payload namespace).
func (m *Mux) AddFeature(f string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.addFeatureLocked(f)
}

func (m *Mux) addFeatureLocked(f string) {
	if !slices.Contains(m.features, f) {
		m.features = append(m.features, f)
		slices.Sort(m.features)
	}
}

// Features returns the announced features, sorted.
func (m *Mux) Features() []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return slices.Clone(m.features)
}

// HandleStanza implements Handler.
func (m *Mux) HandleStanza(ctx context.Context, s *Session, st *Element) {
	switch st.Name {
	case "iq":
		m.handleIQ(ctx, s, st)
	case "message":
		if m.Message != nil {
			m.Message(ctx, s, st)
		}
	case "presence":
		if m.Presence != nil {
			m.Presence(ctx, s, st)
		}
	}
}

func (m *Mux) handleIQ(ctx context.Context, s *Session, iq *Element) {
	typ := iq.Attr("type")
	payload := iq.FirstChild()
	if (typ != "get" && typ != "set") || payload == nil || len(iq.Children) != 1 {
		// RFC 6120 §8.2.3: get/set IQs carry exactly one payload.
		s.ReplyError(ctx, iq, &StanzaError{Type: ErrorTypeModify, Condition: "bad-request"})
		return
	}
	if m.Allow != nil {
		from, _ := ParseJID(iq.Attr("from"))
		if err := m.Allow(from, iq); err != nil {
			s.ReplyError(ctx, iq, asStanzaError(err))
			return
		}
	}
	m.mu.RLock()
	h := m.iq[iqKey{typ, payload.Space, payload.Name}]
	m.mu.RUnlock()
	if h == nil {
		s.ReplyError(ctx, iq, &StanzaError{Type: ErrorTypeCancel, Condition: "service-unavailable"})
		return
	}
	res, err := h(ctx, s, iq)
	if err != nil {
		s.ReplyError(ctx, iq, asStanzaError(err))
		return
	}
	s.Reply(ctx, iq, res)
}

func asStanzaError(err error) *StanzaError {
	var se *StanzaError
	if errors.As(err, &se) {
		return se
	}
	return &StanzaError{Type: ErrorTypeCancel, Condition: "internal-server-error"}
}

func (m *Mux) discoInfo(_ context.Context, _ *Session, iq *Element) (*Element, error) {
	q := iq.FirstChild()
	if q.Attr("node") != "" {
		return nil, &StanzaError{Type: ErrorTypeCancel, Condition: "item-not-found"}
	}
	return m.DiscoInfo(), nil
}

// DiscoInfo returns the disco#info query result: identity and features.
func (m *Mux) DiscoInfo() *Element {
	res := NewElement(NSDiscoInf, "query")
	id := NewElement(NSDiscoInf, "identity", "category", m.Identity.Category, "type", m.Identity.Type)
	id.SetAttr("name", m.Identity.Name)
	res.Add(id)
	for _, f := range append([]string{NSDiscoInf}, m.Features()...) {
		res.Add(NewElement(NSDiscoInf, "feature", "var", f))
	}
	return res
}

func (m *Mux) version(context.Context, *Session, *Element) (*Element, error) {
	osName := m.Software.OS
	if osName == "" {
		osName = runtime.GOOS + "/" + runtime.GOARCH
	}
	return NewElement(NSVersion, "query").Add(
		NewElement(NSVersion, "name").SetText(m.Software.Name),
		NewElement(NSVersion, "version").SetText(m.Software.Version),
		NewElement(NSVersion, "os").SetText(osName),
	), nil
}

func handleTime(context.Context, *Session, *Element) (*Element, error) {
	now := time.Now()
	_, off := now.Zone()
	tzo := time.Unix(0, 0).In(time.FixedZone("", off)).Format("-07:00")
	return NewElement(NSTime, "time").Add(
		NewElement(NSTime, "tzo").SetText(tzo),
		NewElement(NSTime, "utc").SetText(string(AppendTime(nil, now))),
	), nil
}
