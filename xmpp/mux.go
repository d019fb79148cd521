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
	Allow func(ctx context.Context, from JID, iq *Element) error

	// CapsNode is the XEP-0115 node announced in presence; default
	// "https://github.com/stanzad/stanzad".
	CapsNode string

	mu       sync.RWMutex
	iq       map[iqKey]IQHandler
	nodes    map[string]DiscoNode
	features []string
}

// DiscoNode answers XEP-0030 queries about one node.
type DiscoNode struct {
	// Info returns the node's identities and features for from, or nil
	// when from may not see the node (item-not-found).
	Info func(from JID) *DiscoNodeInfo
	// Items lists the node's items for from.
	Items func(s *Session, from JID) []DiscoItem
}

// DiscoNodeInfo is the disco#info answer for a node.
type DiscoNodeInfo struct {
	Identities []Identity
	Features   []string
}

// DiscoItem is a XEP-0030 item.
type DiscoItem struct {
	JID, Node, Name string
}

// ErrHandled is returned by an IQHandler that has sent the answer itself,
// for protocols where more stanzas must follow the IQ result (XEP-0323
// readout messages after <accepted/>).
var ErrHandled = errors.New("xmpp: IQ answered by the handler")

// Software is the XEP-0092 software version.
type Software struct {
	Name, Version, OS string
}

type iqKey struct {
	typ, space, name string
}

// NewMux returns a Mux with the built-in handlers registered.
func NewMux(id Identity, sw Software) *Mux {
	m := &Mux{Identity: id, Software: sw, iq: make(map[iqKey]IQHandler), nodes: make(map[string]DiscoNode)}
	if m.Identity.Category == "" {
		m.Identity = Identity{Category: "client", Type: "bot", Name: id.Name}
	}
	m.HandleIQ("get", NSPing, "ping", func(context.Context, *Session, *Element) (*Element, error) { return nil, nil })
	m.HandleIQ("get", NSDiscoInf, "query", m.discoInfo)
	m.HandleIQ("get", NSDiscoIt, "query", m.discoItems)
	m.HandleIQ("get", NSVersion, "query", m.version)
	m.HandleIQ("get", NSTime, "time", handleTime)
	m.AddFeature(NSCaps)
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

// HandleNode registers the disco#info and disco#items answers for node.
func (m *Mux) HandleNode(node string, n DiscoNode) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nodes[node] = n
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
		if err := m.Allow(ctx, from, iq); err != nil {
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
	if errors.Is(err, ErrHandled) {
		return
	}
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

var errNoNode = &StanzaError{Type: ErrorTypeCancel, Condition: "item-not-found"}

func (m *Mux) discoInfo(_ context.Context, _ *Session, iq *Element) (*Element, error) {
	node := iq.FirstChild().Attr("node")
	if node == "" {
		return m.DiscoInfo(), nil
	}
	if node == m.capsNode()+"#"+m.CapsVer() {
		// XEP-0115 §6.2: the caps node#ver answers as the entity itself.
		return m.DiscoInfo().SetAttr("node", node), nil
	}
	m.mu.RLock()
	n, ok := m.nodes[node]
	m.mu.RUnlock()
	if !ok || n.Info == nil {
		return nil, errNoNode
	}
	from, _ := ParseJID(iq.Attr("from"))
	info := n.Info(from)
	if info == nil {
		return nil, errNoNode
	}
	res := NewElement(NSDiscoInf, "query", "node", node)
	for _, id := range info.Identities {
		res.Add(identityElement(id))
	}
	for _, f := range info.Features {
		res.Add(NewElement(NSDiscoInf, "feature", "var", f))
	}
	return res, nil
}

func (m *Mux) discoItems(_ context.Context, s *Session, iq *Element) (*Element, error) {
	node := iq.FirstChild().Attr("node")
	m.mu.RLock()
	n, ok := m.nodes[node]
	m.mu.RUnlock()
	res := NewElement(NSDiscoIt, "query")
	res.SetAttr("node", node)
	if !ok || n.Items == nil {
		if node == "" {
			return res, nil // no items at the root
		}
		return nil, errNoNode
	}
	from, _ := ParseJID(iq.Attr("from"))
	for _, it := range n.Items(s, from) {
		e := NewElement(NSDiscoIt, "item", "jid", it.JID)
		e.SetAttr("node", it.Node)
		e.SetAttr("name", it.Name)
		res.Add(e)
	}
	return res, nil
}

func identityElement(id Identity) *Element {
	e := NewElement(NSDiscoInf, "identity", "category", id.Category, "type", id.Type)
	return e.SetAttr("name", id.Name)
}

// DiscoInfo returns the disco#info query result: identity and features.
func (m *Mux) DiscoInfo() *Element {
	res := NewElement(NSDiscoInf, "query")
	res.Add(identityElement(m.Identity))
	for _, f := range m.Features() {
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
