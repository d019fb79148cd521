package xmpp

import (
	"errors"
	"reflect"
	"testing"
)

// The owner requests, byte for byte as XEP-0060 §8.2 and §8.9 show them.
func TestPubSubOwnerEncode(t *testing.T) {
	const form = "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field>"
	tests := []struct {
		name string
		el   *Element
		want string
	}{
		{"configure get", PubSubConfigureGet("pubsub.iot.test", "n<1>"),
			"<iq type='get' to='pubsub.iot.test'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='n&lt;1&gt;'/></pubsub></iq>"},
		{"configure access", PubSubConfigureAccess("pubsub.iot.test", "n", AccessWhitelist),
			"<iq type='set' to='pubsub.iot.test'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='n'>" + form +
				"<field var='pubsub#access_model'><value>whitelist</value></field></x></configure></pubsub></iq>"},
		{"node info", PubSubNodeInfo("pubsub.iot.test", "n"),
			"<iq type='get' to='pubsub.iot.test'><query xmlns='http://jabber.org/protocol/disco#info' node='n'/></iq>"},
		{"affiliations get on PEP", PubSubAffiliationsGet("", "n"),
			"<iq type='get'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><affiliations node='n'/></pubsub></iq>"},
		{"affiliations set", PubSubSetAffiliations("pubsub.iot.test", "n", []Affiliation{{"a@iot.test", "member"}, {"b@iot.test", "none"}}),
			"<iq type='set' to='pubsub.iot.test'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><affiliations node='n'>" +
				"<affiliation jid='a@iot.test' affiliation='member'/><affiliation jid='b@iot.test' affiliation='none'/></affiliations></pubsub></iq>"},
		{"create with access model", PubSubCreate("pubsub.iot.test", "n", NodeConfig{PersistItems: true, MaxItems: 10, AccessModel: AccessPresence}),
			"<iq type='set' to='pubsub.iot.test'><pubsub xmlns='http://jabber.org/protocol/pubsub'><create node='n'/><configure>" +
				"<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field>" +
				"<field var='pubsub#persist_items'><value>true</value></field><field var='pubsub#max_items'><value>10</value></field>" +
				"<field var='pubsub#access_model'><value>presence</value></field></x></configure></pubsub></iq>"},
		{"create without access model", PubSubCreate("", "n", NodeConfig{}),
			"<iq type='set'><pubsub xmlns='http://jabber.org/protocol/pubsub'><create node='n'/><configure>" +
				"<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field>" +
				"<field var='pubsub#persist_items'><value>false</value></field></x></configure></pubsub></iq>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.el.String(); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

// Answers as Prosody 0.12 and ejabberd 23.01 send them (trimmed to the
// fields that matter, whitespace as on the wire).
const (
	prosodyConfigure = `<iq type='result' id='c1' from='pubsub.iot.test'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='n'>` +
		`<x xmlns='jabber:x:data' type='form'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field>` +
		`<field var='pubsub#title' type='text-single' label='Title'/>` +
		`<field var='pubsub#max_items' type='text-single' label='Max # of items to persist'><value>5</value></field>` +
		`<field var='pubsub#persist_items' type='boolean' label='Persist items to storage'><value>1</value></field>` +
		`<field var='pubsub#access_model' type='list-single' label='Specify the subscriber model'>` +
		`<option><value>authorize</value></option><option><value>open</value></option><option><value>whitelist</value></option>` +
		`<value>open</value></field></x></configure></pubsub></iq>`
	ejabberdMetaData = `<iq type='result' id='d1' from='pubsub.iot.test'><query xmlns='http://jabber.org/protocol/disco#info' node='n'>` +
		`<identity category='pubsub' type='leaf'/><feature var='http://jabber.org/protocol/pubsub'/>` +
		`<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'><value>urn:example:other</value></field>` +
		`<field var='pubsub#access_model'><value>whitelist</value></field></x>` +
		`<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#meta-data</value></field>` +
		`<field var='pubsub#owner' type='jid-multi'><value>owner@iot.test</value></field>` +
		`<field var='pubsub#access_model' type='list-single'><value>open</value></field></x></query></iq>`
)

func TestParseNodeConfig(t *testing.T) {
	tests := []struct {
		name    string
		iq      string
		want    NodeConfig
		wantErr bool
	}{
		{"prosody configure", prosodyConfigure, NodeConfig{PersistItems: true, MaxItems: 5, AccessModel: AccessOpen}, false},
		// The meta-data form is told from another form by FORM_TYPE,
		// whichever comes first.
		{"ejabberd meta-data", ejabberdMetaData, NodeConfig{AccessModel: AccessOpen}, false},
		{"no access model", `<iq type='result'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='n'><x xmlns='jabber:x:data' type='form'/></configure></pubsub></iq>`,
			NodeConfig{}, false},
		{"disco#info without meta-data", `<iq type='result'><query xmlns='http://jabber.org/protocol/disco#info' node='n'><identity category='pubsub' type='leaf'/></query></iq>`,
			NodeConfig{}, true},
		{"empty result", `<iq type='result'/>`, NodeConfig{}, true},
		{"configure in the wrong namespace", `<iq type='result'><pubsub xmlns='http://jabber.org/protocol/pubsub'><configure node='n'><x xmlns='jabber:x:data' type='form'><field var='pubsub#access_model'><value>open</value></field></x></configure></pubsub></iq>`,
			NodeConfig{}, true},
		{"broken form", `<iq type='result'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='n'><x xmlns='jabber:x:data' type='bogus'/></configure></pubsub></iq>`,
			NodeConfig{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			iq, err := ParseElement(tt.iq)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParseNodeConfig(iq)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("ParseNodeConfig(%s) = %+v, %v; want %+v, error %v", tt.iq, got, err, tt.want, tt.wantErr)
			}
		})
	}
	if _, err := ParseNodeConfig(mustParse(t, `<iq type='result'/>`)); !errors.Is(err, ErrNoNodeConfig) {
		t.Errorf("ParseNodeConfig(empty) error %v, want ErrNoNodeConfig", err)
	}
}

func TestParseAffiliations(t *testing.T) {
	iq := mustParse(t, `<iq type='result' from='pubsub.iot.test'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><affiliations node='n'>`+
		`<affiliation jid='device@iot.test' affiliation='owner'/><affiliation jid='alice@iot.test' affiliation='member'/>`+
		`<affiliation affiliation='member'/><affiliation jid='x@iot.test'/><other jid='y@iot.test' affiliation='member'/>`+
		`</affiliations></pubsub></iq>`)
	got, err := ParseAffiliations(iq)
	want := []Affiliation{{"device@iot.test", "owner"}, {"alice@iot.test", "member"}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("ParseAffiliations = %+v, %v; want %+v", got, err, want)
	}
	if got, err := ParseAffiliations(mustParse(t, `<iq type='result'/>`)); err == nil {
		t.Errorf("ParseAffiliations(empty) = %+v, nil; want an error", got)
	}
	// What the set request carries reads back the same.
	affs := []Affiliation{{"a@iot.test", "member"}, {"b@iot.test", "none"}}
	if got, err := ParseAffiliations(PubSubSetAffiliations("s", "n", affs)); err != nil || !reflect.DeepEqual(got, affs) {
		t.Errorf("round trip: %+v, %v; want %+v", got, err, affs)
	}
}

func mustParse(t *testing.T, s string) *Element {
	t.Helper()
	el, err := ParseElement(s)
	if err != nil {
		t.Fatal(err)
	}
	return el
}

// FuzzPubSubOwner: node configuration, meta-data and affiliation answers
// come from the pubsub service, which may be anyone's.
func FuzzPubSubOwner(f *testing.F) {
	f.Add(prosodyConfigure)
	f.Add(ejabberdMetaData)
	f.Add(PubSubSetAffiliations("s", "n", []Affiliation{{"a@b", "member"}}).String())
	f.Add(`<iq><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure><x xmlns='jabber:x:data' type='form'><field var='pubsub#max_items'><value>-1</value></field></x></configure></pubsub></iq>`)
	f.Fuzz(func(t *testing.T, s string) {
		el, err := ParseElement(s)
		if err != nil {
			return
		}
		if c, err := ParseNodeConfig(el); err != nil && c != (NodeConfig{}) {
			t.Fatalf("ParseNodeConfig error %v with %+v", err, c)
		} else if c.MaxItems < 0 {
			t.Fatalf("MaxItems %d", c.MaxItems)
		}
		affs, err := ParseAffiliations(el)
		if err == nil {
			// Round trip: what was read encodes and reads back the same.
			again, err := ParseAffiliations(PubSubSetAffiliations("s", "n", affs))
			if err != nil || !reflect.DeepEqual(again, affs) && len(affs) > 0 {
				t.Fatalf("round trip of %+v: %+v, %v", affs, again, err)
			}
		}
		for _, a := range affs {
			if a.JID == "" || a.Affiliation == "" {
				t.Fatalf("empty affiliation entry %+v", a)
			}
		}
	})
}
