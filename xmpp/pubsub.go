package xmpp

import "strconv"

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
