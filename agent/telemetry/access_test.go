package telemetry

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/xmpp"
)

// fakeService answers the publisher's owner requests from a script: each
// request is named (see name) and answered by the first matching entry.
type fakeService struct {
	t       *testing.T
	answers map[string]func(iq *xmpp.Element) (*xmpp.Element, error)
	sent    []string
}

// name is a short, comparable form of a request: "create whitelist",
// "configure-get", "info", "affiliations-get", "configure presence",
// "affiliations a@iot.test=member b@iot.test=none".
func (f *fakeService) name(iq *xmpp.Element) string {
	if ps := iq.Child(xmpp.NSPubSub, "pubsub"); ps != nil {
		if ps.Child(xmpp.NSPubSub, "create") != nil {
			form, _ := xmpp.ParseForm(ps.Child(xmpp.NSPubSub, "configure").Child(xmpp.NSData, "x"))
			return "create " + form.Value("pubsub#access_model")
		}
	}
	if ps := iq.Child(xmpp.NSPubSubOwner, "pubsub"); ps != nil {
		c := ps.FirstChild()
		switch {
		case c.Name == "configure" && iq.Attr("type") == "get":
			return "configure-get"
		case c.Name == "configure":
			form, _ := xmpp.ParseForm(c.Child(xmpp.NSData, "x"))
			return "configure " + form.Value("pubsub#access_model")
		case c.Name == "affiliations" && iq.Attr("type") == "get":
			return "affiliations-get"
		case c.Name == "affiliations":
			affs, _ := xmpp.ParseAffiliations(iq)
			var b strings.Builder
			b.WriteString("affiliations")
			for _, a := range affs {
				b.WriteString(" " + a.JID + "=" + a.Affiliation)
			}
			return b.String()
		}
	}
	if iq.Child(xmpp.NSDiscoInf, "query") != nil {
		return "info"
	}
	f.t.Fatalf("unexpected request %s", iq)
	return ""
}

func (f *fakeService) SendIQ(_ context.Context, iq *xmpp.Element) (*xmpp.Element, error) {
	n := f.name(iq)
	f.sent = append(f.sent, n)
	for prefix, answer := range f.answers {
		if strings.HasPrefix(n, prefix) {
			return answer(iq)
		}
	}
	return xmpp.Stanza("iq", "result", "", ""), nil
}

func refuse(cond string) func(*xmpp.Element) (*xmpp.Element, error) {
	return func(*xmpp.Element) (*xmpp.Element, error) {
		return nil, &xmpp.StanzaError{Type: xmpp.ErrorTypeCancel, Condition: cond}
	}
}

func answer(s string) func(*xmpp.Element) (*xmpp.Element, error) {
	return func(*xmpp.Element) (*xmpp.Element, error) { return xmpp.ParseElement(s) }
}

func configured(model string) func(*xmpp.Element) (*xmpp.Element, error) {
	return answer(`<iq type='result'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='n'>` +
		`<x xmlns='jabber:x:data' type='form'><field var='pubsub#access_model' type='list-single'><value>` + model + `</value></field></x></configure></pubsub></iq>`)
}

func affiliations(pairs ...string) func(*xmpp.Element) (*xmpp.Element, error) {
	s := `<iq type='result'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><affiliations node='n'>`
	for i := 0; i+1 < len(pairs); i += 2 {
		s += `<affiliation jid='` + pairs[i] + `' affiliation='` + pairs[i+1] + `'/>`
	}
	return answer(s + `</affiliations></pubsub></iq>`)
}

func TestAccessEnsure(t *testing.T) {
	const conflict = "conflict"
	tests := []struct {
		name    string
		kind    string // pubsub (default) or pep
		model   string // access_model; "" the default
		answers map[string]func(*xmpp.Element) (*xmpp.Element, error)
		sent    []string
		note    string // status, "" none
		log     string // a line the log must hold
	}{
		{
			name: "created whitelist with the ACL as members",
			sent: []string{"create whitelist", "affiliations alice@iot.test=member bob@iot.test=member"},
			log:  "access_model=whitelist",
		},
		{
			name: "pep presence: no members to set",
			kind: "pep",
			sent: []string{"create presence"},
		},
		{
			name:    "whitelist refused: presence, said once",
			answers: map[string]func(*xmpp.Element) (*xmpp.Element, error){"create whitelist": refuse("not-acceptable")},
			sent:    []string{"create whitelist", "create presence"},
			note:    "whitelist not supported by the service; nodes use presence",
			log:     "cannot do whitelist nodes",
		},
		{
			name: "whitelist and presence refused: not the model, no fallback",
			answers: map[string]func(*xmpp.Element) (*xmpp.Element, error){
				"create": refuse("not-acceptable"), "configure-get": refuse("item-not-found"), "info": refuse("item-not-found"),
				"affiliations-get": refuse("item-not-found"),
			},
			sent: []string{"create whitelist", "create presence", "configure-get", "info"},
			note: "node n: the service refuses access_model whitelist, max_items 10 (not-acceptable)",
			log:  "refuses to create the node",
		},
		{
			name: "someone else's open node: warned, left alone",
			answers: map[string]func(*xmpp.Element) (*xmpp.Element, error){
				"create": refuse(conflict), "configure-get": configured("open"),
				"affiliations-get": affiliations("owner@iot.test", "owner", "device@iot.test", "publisher"),
			},
			sent: []string{"create whitelist", "configure-get", "affiliations-get"},
			note: "node n is open to anyone on the server; configured whitelist",
			log:  "does not own it",
		},
		{
			name: "co-owned open node: warned, left alone",
			answers: map[string]func(*xmpp.Element) (*xmpp.Element, error){
				"create": refuse(conflict), "configure-get": configured("open"),
				"affiliations-get": affiliations("Device@iot.test", "owner", "owner@iot.test", "owner"),
			},
			sent: []string{"create whitelist", "configure-get", "affiliations-get"},
			note: "node n is open to anyone on the server; configured whitelist",
		},
		{
			name: "not allowed to read the configuration: meta-data tells",
			answers: map[string]func(*xmpp.Element) (*xmpp.Element, error){
				"create": refuse("forbidden"), "configure-get": refuse("forbidden"), "affiliations-get": refuse("forbidden"),
				"info": answer(`<iq type='result'><query xmlns='http://jabber.org/protocol/disco#info' node='n'><x xmlns='jabber:x:data' type='result'>` +
					`<field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#meta-data</value></field>` +
					`<field var='pubsub#access_model'><value>presence</value></field></x></query></iq>`),
			},
			sent: []string{"create whitelist", "configure-get", "info", "affiliations-get"},
			note: "node n is readable by anyone subscribed to the owner's presence; configured whitelist",
		},
		{
			name: "our own open node: tightened, members synced",
			answers: map[string]func(*xmpp.Element) (*xmpp.Element, error){
				"create": refuse(conflict), "configure-get": configured("open"),
				"affiliations-get": affiliations("device@iot.test", "owner", "alice@iot.test", "member", "mallory@iot.test", "member", "pub@iot.test", "publisher"),
			},
			sent: []string{"create whitelist", "configure-get", "affiliations-get", "configure whitelist", "affiliations bob@iot.test=member mallory@iot.test=none"},
			log:  "node access tightened",
		},
		{
			name:  "stricter node than configured: left alone",
			model: "presence",
			answers: map[string]func(*xmpp.Element) (*xmpp.Element, error){
				"create": refuse(conflict), "configure-get": configured("whitelist"),
				"affiliations-get": affiliations("device@iot.test", "owner", "alice@iot.test", "member", "bob@iot.test", "member"),
			},
			sent: []string{"create presence", "configure-get", "affiliations-get"},
		},
		{
			name: "our whitelist node: members already right",
			answers: map[string]func(*xmpp.Element) (*xmpp.Element, error){
				"create": refuse(conflict), "configure-get": configured("whitelist"),
				"affiliations-get": affiliations("device@iot.test", "owner", "alice@iot.test", "member", "bob@iot.test", "publisher"),
			},
			sent: []string{"create whitelist", "configure-get", "affiliations-get"},
		},
		{
			name:  "pep node open: ours by definition, tightened",
			kind:  "pep",
			model: "whitelist",
			answers: map[string]func(*xmpp.Element) (*xmpp.Element, error){
				"create": refuse(conflict), "configure-get": configured("open"), "affiliations-get": refuse("feature-not-implemented"),
			},
			sent: []string{"create whitelist", "configure-get", "affiliations-get", "configure whitelist", "affiliations alice@iot.test=member bob@iot.test=member"},
		},
		{
			name: "tightening refused",
			answers: map[string]func(*xmpp.Element) (*xmpp.Element, error){
				"create": refuse(conflict), "configure-get": configured("open"), "configure whitelist": refuse("forbidden"),
				"affiliations-get": affiliations("device@iot.test", "owner"),
			},
			sent: []string{"create whitelist", "configure-get", "affiliations-get", "configure whitelist"},
			note: "node n is open to anyone on the server; configured whitelist",
			log:  "refused to change it",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kind := cmpOr(tt.kind, "pubsub")
			svc := &fakeService{t: t, answers: tt.answers}
			ac := newAccessControl(config.Sink{Kind: kind, Service: map[string]string{"pubsub": "pubsub.iot.test"}[kind], AccessModel: tt.model},
				xmpp.MustParseJID("device@iot.test/agent"))
			ac.members = []string{"alice@iot.test", "bob@iot.test"}
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			if err := ac.ensure(t.Context(), svc, "n", xmpp.NodeConfig{PersistItems: true, MaxItems: 10}, log); err != nil {
				t.Fatalf("ensure: %v", err)
			}
			if !slices.Equal(svc.sent, tt.sent) {
				t.Errorf("requests:\n got %q\nwant %q", svc.sent, tt.sent)
			}
			if got := ac.status(); got != tt.note {
				t.Errorf("status = %q, want %q", got, tt.note)
			}
			if !strings.Contains(logs.String(), tt.log) {
				t.Errorf("log lacks %q:\n%s", tt.log, logs.String())
			}
		})
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// The fallback is remembered: the next node is created with presence at
// once, and the log says so once.
func TestAccessFallbackOnce(t *testing.T) {
	svc := &fakeService{t: t, answers: map[string]func(*xmpp.Element) (*xmpp.Element, error){"create whitelist": refuse("feature-not-implemented")}}
	ac := newAccessControl(config.Sink{Kind: "pubsub", Service: "pubsub.iot.test"}, xmpp.MustParseJID("device@iot.test"))
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	for _, node := range []string{"a", "b"} {
		if err := ac.ensure(t.Context(), svc, node, xmpp.NodeConfig{}, log); err != nil {
			t.Fatal(err)
		}
	}
	if want := []string{"create whitelist", "create presence", "create presence"}; !slices.Equal(svc.sent, want) {
		t.Errorf("requests %q, want %q", svc.sent, want)
	}
	if n := strings.Count(logs.String(), "cannot do whitelist"); n != 1 {
		t.Errorf("fallback logged %d times, want once:\n%s", n, logs.String())
	}
}

// A reload that changes the ACL brings the members of the whitelist nodes
// the agent owns along: new ones added, old ones removed; nodes it does
// not own, or that are not whitelists, untouched.
func TestAccessResync(t *testing.T) {
	self := xmpp.MustParseJID("device@iot.test")
	members := []string{"alice@iot.test", "bob@iot.test"} // operator alice, viewer bob
	svc := &fakeService{t: t, answers: map[string]func(*xmpp.Element) (*xmpp.Element, error){
		"affiliations-get": affiliations("device@iot.test", "owner", "alice@iot.test", "member", "bob@iot.test", "member"),
	}}
	ac := newAccessControl(config.Sink{Kind: "pubsub", Service: "pubsub.iot.test"}, self)
	ac.acl = func() []string { return members }
	log := slog.New(slog.DiscardHandler)
	if err := ac.resync(t.Context(), svc, log); err != nil {
		t.Fatal(err)
	}
	if want := []string{"alice@iot.test", "bob@iot.test"}; !slices.Equal(ac.members, want) {
		t.Fatalf("members %q, want %q", ac.members, want)
	}
	ac.nodes = map[string]*nodeAccess{
		"mine":   {model: "whitelist", owned: true},
		"theirs": {model: "whitelist"},
		"open":   {model: "presence", owned: true},
	}
	// Same ACL: nothing sent.
	if err := ac.resync(t.Context(), svc, log); err != nil || len(svc.sent) != 0 {
		t.Fatalf("resync without a reload sent %q, %v", svc.sent, err)
	}
	members = []string{"alice@iot.test", "carol@iot.test"} // operators alice, Carol@IoT.test
	if err := ac.resync(t.Context(), svc, log); err != nil {
		t.Fatal(err)
	}
	want := []string{"affiliations-get", "affiliations carol@iot.test=member bob@iot.test=none"}
	if !slices.Equal(svc.sent, want) {
		t.Errorf("requests after the reload %q, want %q", svc.sent, want)
	}
	// A reload that leaves the members as they were sends nothing.
	svc.sent = nil
	members = []string{"alice@iot.test", "carol@iot.test"} // operators carol, alice; another command_rate
	if err := ac.resync(t.Context(), svc, log); err != nil || len(svc.sent) != 0 {
		t.Errorf("resync after a reload that kept the members sent %q, %v", svc.sent, err)
	}
}

// A stream that fails under ensure is returned, so the publisher starts
// over on the next stream; refusals are not.
func TestAccessStreamError(t *testing.T) {
	svc := &fakeService{t: t, answers: map[string]func(*xmpp.Element) (*xmpp.Element, error){
		"create": refuse("conflict"),
		"configure-get": func(*xmpp.Element) (*xmpp.Element, error) {
			return nil, xmpp.ErrClosed
		},
	}}
	ac := newAccessControl(config.Sink{Kind: "pubsub", Service: "pubsub.iot.test"}, xmpp.MustParseJID("device@iot.test"))
	if err := ac.ensure(t.Context(), svc, "n", xmpp.NodeConfig{}, slog.New(slog.DiscardHandler)); err != xmpp.ErrClosed {
		t.Errorf("ensure = %v, want ErrClosed", err)
	}
}

func TestAccessRank(t *testing.T) {
	for i, m := range []string{"open", "presence", "roster", "authorize", "whitelist"} {
		if accessRank(m) != i {
			t.Errorf("accessRank(%q) = %d, want %d", m, accessRank(m), i)
		}
	}
	if accessRank("x-custom") != -1 {
		t.Error("unknown model ranked")
	}
}

// A node the service will not create is asked for again at each refused
// publish; the error is logged once, the status note stays.
func TestAccessRefusedOnce(t *testing.T) {
	svc := &fakeService{t: t, answers: map[string]func(*xmpp.Element) (*xmpp.Element, error){
		"create": refuse("not-acceptable"), "configure-get": refuse("item-not-found"), "info": refuse("item-not-found"),
	}}
	ac := newAccessControl(config.Sink{Kind: "pubsub", Service: "pubsub.iot.test", AccessModel: "presence"}, xmpp.MustParseJID("device@iot.test"))
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	for range 3 {
		if err := ac.ensure(t.Context(), svc, "n", xmpp.NodeConfig{MaxItems: 10}, log); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(logs.String(), "refuses to create"); n != 1 {
		t.Errorf("refusal logged %d times, want once:\n%s", n, logs.String())
	}
	if got, want := ac.status(), "node n: the service refuses access_model presence, max_items 10 (not-acceptable)"; got != want {
		t.Errorf("status = %q, want %q", got, want)
	}
}
