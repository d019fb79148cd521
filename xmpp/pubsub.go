package xmpp

import (
	"errors"
	"fmt"
	"strconv"
)

// XEP-0060 (Publish-Subscribe) namespaces.
const (
	NSPubSub       = "http://jabber.org/protocol/pubsub"
	NSPubSubOwner  = "http://jabber.org/protocol/pubsub#owner"
	NSPubSubEvent  = "http://jabber.org/protocol/pubsub#event"
	NSPubSubErrors = "http://jabber.org/protocol/pubsub#errors"
	// NSPubSubNodeConfig is the FORM_TYPE of node configuration forms.
	NSPubSubNodeConfig = "http://jabber.org/protocol/pubsub#node_config"
)

// AppendPublish appends an IQ set that publishes payload (one encoded
// element) as item itemID on node of service. An empty service publishes
// to the account's own PEP service (XEP-0163).
func AppendPublish(dst []byte, service, id, node, itemID string, payload []byte) []byte {
	dst = append(dst, "<iq type='set'"...)
	if service != "" {
		dst = appendAttr(dst, "to", service)
	}
	dst = appendAttr(dst, "id", id)
	dst = append(dst, "><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish"...)
	dst = appendAttr(dst, "node", node)
	dst = append(dst, "><item"...)
	dst = appendAttr(dst, "id", itemID)
	dst = append(dst, '>')
	dst = append(dst, payload...)
	return append(dst, "</item></publish></pubsub></iq>"...)
}

// NodeConfig is the part of a node's configuration stanzad sets when it
// creates a node.
type NodeConfig struct {
	PersistItems bool
	MaxItems     int // 0 leaves the service's default
	// AccessModel, if set: open, presence, roster, authorize, whitelist.
	AccessModel string
}

// PubSubCreate is the request that creates node on service (empty: the
// account's PEP service) with the given configuration (XEP-0060 §8.1.3).
func PubSubCreate(service, node string, c NodeConfig) *Element {
	f := Form{Type: FormSubmit, Fields: []FormField{
		{Var: "FORM_TYPE", Type: FieldHidden, Values: []string{NSPubSubNodeConfig}},
		{Var: "pubsub#persist_items", Values: []string{strconv.FormatBool(c.PersistItems)}},
	}}
	if c.MaxItems > 0 {
		f.Fields = append(f.Fields, FormField{Var: "pubsub#max_items", Values: []string{strconv.Itoa(c.MaxItems)}})
	}
	if c.AccessModel != "" {
		f.Fields = append(f.Fields, FormField{Var: "pubsub#access_model", Values: []string{c.AccessModel}})
	}
	ps := NewElement(NSPubSub, "pubsub").Add(
		NewElement(NSPubSub, "create", "node", node),
		NewElement(NSPubSub, "configure").Add(f.Element()),
	)
	return Stanza("iq", "set", service, "").Add(ps)
}

// PubSubSubscribe is the request that subscribes jid to node on service.
func PubSubSubscribe(service, node, jid string) *Element {
	ps := NewElement(NSPubSub, "pubsub").Add(NewElement(NSPubSub, "subscribe", "node", node, "jid", jid))
	return Stanza("iq", "set", service, "").Add(ps)
}

// PubSubItem is one item of a pubsub event notification.
type PubSubItem struct {
	ID      string
	Payload *Element // nil for notifications without payload
}

// ParsePubSubEvent reads a pubsub event notification (a message with
// <event xmlns='http://jabber.org/protocol/pubsub#event'><items/>). ok is
// false for any other message.
func ParsePubSubEvent(msg *Element) (node string, items []PubSubItem, ok bool) {
	ev := msg.Child(NSPubSubEvent, "event")
	its := ev.Child(NSPubSubEvent, "items")
	if its == nil {
		return "", nil, false
	}
	for _, c := range its.Children {
		if c.Name != "item" {
			continue
		}
		items = append(items, PubSubItem{ID: c.Attr("id"), Payload: c.FirstChild()})
	}
	return its.Attr("node"), items, true
}

// Access models of a node (XEP-0060 §4.5): who may subscribe to it and
// retrieve its items.
const (
	AccessOpen      = "open"      // any entity
	AccessPresence  = "presence"  // entities subscribed to the owner's presence
	AccessRoster    = "roster"    // contacts in the owner's allowed roster groups
	AccessAuthorize = "authorize" // entities the owner approves one by one
	AccessWhitelist = "whitelist" // entities the owner lists (affiliation member or above)
)

// NSPubSubMetaData is the FORM_TYPE of the node meta-data a service gives
// in disco#info for a node (XEP-0060 §5.4).
const NSPubSubMetaData = "http://jabber.org/protocol/pubsub#meta-data"

// PubSubConfigureGet is the owner's request for node's configuration form
// (XEP-0060 §8.2.1).
func PubSubConfigureGet(service, node string) *Element {
	ps := NewElement(NSPubSubOwner, "pubsub").Add(NewElement(NSPubSubOwner, "configure", "node", node))
	return Stanza("iq", "get", service, "").Add(ps)
}

// PubSubConfigureAccess is the owner's request that sets node's access
// model and leaves the rest of its configuration as it is (XEP-0060
// §8.2.4: a submitted form may hold only the fields it changes).
func PubSubConfigureAccess(service, node, model string) *Element {
	f := Form{Type: FormSubmit, Fields: []FormField{
		{Var: "FORM_TYPE", Type: FieldHidden, Values: []string{NSPubSubNodeConfig}},
		{Var: "pubsub#access_model", Values: []string{model}},
	}}
	ps := NewElement(NSPubSubOwner, "pubsub").Add(
		NewElement(NSPubSubOwner, "configure", "node", node).Add(f.Element()))
	return Stanza("iq", "set", service, "").Add(ps)
}

// PubSubNodeInfo is the disco#info request for node, whose answer carries
// the node's meta-data (XEP-0060 §5.4), access model included. Any entity
// may ask, where the configuration is for owners only.
func PubSubNodeInfo(service, node string) *Element {
	return Stanza("iq", "get", service, "").Add(NewElement(NSDiscoInf, "query", "node", node))
}

// ErrNoNodeConfig is returned by ParseNodeConfig for an answer without a
// node configuration or meta-data form.
var ErrNoNodeConfig = errors.New("xmpp: no pubsub node configuration in the answer")

// ParseNodeConfig reads a node's configuration from the answer to
// PubSubConfigureGet (the form in <configure/>) or to PubSubNodeInfo (the
// pubsub#meta-data form in <query/>). Fields the service leaves out stay
// zero: AccessModel "" means the service did not say.
func ParseNodeConfig(iq *Element) (NodeConfig, error) {
	var x *Element
	if c := iq.Child(NSPubSubOwner, "pubsub").Child(NSPubSubOwner, "configure"); c != nil {
		x = c.Child(NSData, "x")
	} else if q := iq.Child(NSDiscoInf, "query"); q != nil {
		for _, c := range q.Children {
			if c.Space != NSData || c.Name != "x" {
				continue
			}
			if f, err := ParseForm(c); err == nil && f.Value("FORM_TYPE") == NSPubSubMetaData {
				x = c
				break
			}
		}
	}
	if x == nil {
		return NodeConfig{}, ErrNoNodeConfig
	}
	f, err := ParseForm(x)
	if err != nil {
		return NodeConfig{}, err
	}
	var c NodeConfig
	c.AccessModel = f.Value("pubsub#access_model")
	if v := f.Value("pubsub#persist_items"); v != "" {
		c.PersistItems, _ = ParseFormBool(v)
	}
	if n, err := strconv.Atoi(f.Value("pubsub#max_items")); err == nil && n > 0 {
		c.MaxItems = n
	}
	return c, nil
}

// Affiliation is one entity's affiliation with a node (XEP-0060 §4.1):
// owner, publisher, publish-only, member, none or outcast.
type Affiliation struct {
	JID         string
	Affiliation string
}

// PubSubAffiliationsGet is the owner's request for node's affiliations
// (XEP-0060 §8.9.1).
func PubSubAffiliationsGet(service, node string) *Element {
	ps := NewElement(NSPubSubOwner, "pubsub").Add(NewElement(NSPubSubOwner, "affiliations", "node", node))
	return Stanza("iq", "get", service, "").Add(ps)
}

// PubSubSetAffiliations is the owner's request that changes the
// affiliations listed and no others (XEP-0060 §8.9.2); affiliation "none"
// removes an entity.
func PubSubSetAffiliations(service, node string, affs []Affiliation) *Element {
	el := NewElement(NSPubSubOwner, "affiliations", "node", node)
	for _, a := range affs {
		el.Add(NewElement(NSPubSubOwner, "affiliation", "jid", a.JID, "affiliation", a.Affiliation))
	}
	return Stanza("iq", "set", service, "").Add(NewElement(NSPubSubOwner, "pubsub").Add(el))
}

// maxAffiliations bounds what ParseAffiliations returns from one answer.
const maxAffiliations = 4096

// ParseAffiliations reads the answer to PubSubAffiliationsGet. Entries
// without a JID or affiliation are skipped.
func ParseAffiliations(iq *Element) ([]Affiliation, error) {
	el := iq.Child(NSPubSubOwner, "pubsub").Child(NSPubSubOwner, "affiliations")
	if el == nil {
		return nil, errors.New("xmpp: no pubsub affiliations in the answer")
	}
	var affs []Affiliation
	for _, c := range el.Children {
		if c.Space != NSPubSubOwner || c.Name != "affiliation" {
			continue
		}
		a := Affiliation{JID: c.Attr("jid"), Affiliation: c.Attr("affiliation")}
		if a.JID == "" || a.Affiliation == "" {
			continue
		}
		if len(affs) == maxAffiliations {
			return affs, fmt.Errorf("xmpp: more than %d pubsub affiliations", maxAffiliations)
		}
		affs = append(affs, a)
	}
	return affs, nil
}
