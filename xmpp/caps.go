package xmpp

import (
	"crypto/sha1"
	"encoding/base64"
	"slices"
	"strings"
)

// NSCaps is XEP-0115 Entity Capabilities.
const NSCaps = "http://jabber.org/protocol/caps"

// DefaultCapsNode identifies the software in XEP-0115 <c node=.../>.
const DefaultCapsNode = "https://github.com/stanzad/stanzad"

func (m *Mux) capsNode() string {
	if m.CapsNode != "" {
		return m.CapsNode
	}
	return DefaultCapsNode
}

// CapsVer returns the XEP-0115 §5.1 verification string of the Mux's
// identity and features: clients cache disco#info by it, so they ask once
// per software version instead of once per presence.
func (m *Mux) CapsVer() string {
	return capsVer([]Identity{m.Identity}, m.Features())
}

func capsVer(ids []Identity, features []string) string {
	ids = slices.Clone(ids)
	slices.SortFunc(ids, func(a, b Identity) int {
		if c := strings.Compare(a.Category, b.Category); c != 0 {
			return c
		}
		return strings.Compare(a.Type, b.Type)
	})
	features = slices.Clone(features)
	slices.Sort(features)
	var b strings.Builder
	for _, id := range ids {
		b.WriteString(id.Category + "/" + id.Type + "//" + id.Name + "<") // no xml:lang
	}
	for _, f := range slices.Compact(features) {
		b.WriteString(f + "<")
	}
	sum := sha1.Sum([]byte(b.String()))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// Caps returns the <c/> element to put in presence.
func (m *Mux) Caps() *Element {
	return NewElement(NSCaps, "c", "hash", "sha-1", "node", m.capsNode(), "ver", m.CapsVer())
}
