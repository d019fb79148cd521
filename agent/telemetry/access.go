package telemetry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/xmpp"
)

// Who may read a pubsub or PEP sink's nodes (issue 23): the sink's
// access_model, set when the agent creates a node, checked when the node
// already exists, and for whitelist nodes the agent owns, a member list
// that follows the ACL.

// accessOrder lists the XEP-0060 §4.5 access models from loosest to
// strictest, by who can read without the owner naming them: open lets in
// any entity; presence, anyone the owner shares presence with; roster,
// only some of those (the allowed roster groups); authorize, nobody until
// the owner approves a request — but anyone may ask, and the agent
// approves nothing; whitelist, only the entities the owner lists, with no
// way to ask. "Looser than configured" is a lower index.
var accessOrder = []string{xmpp.AccessOpen, xmpp.AccessPresence, xmpp.AccessRoster, xmpp.AccessAuthorize, xmpp.AccessWhitelist}

// accessRank is m's index in accessOrder, -1 for a model stanzad does not
// know (a server extension), which is never called looser.
func accessRank(m string) int { return slices.Index(accessOrder, m) }

// defaultAccess is the access model of a sink without access_model
// (config literals in tests; the config file sets the same defaults).
func defaultAccess(kind string) string {
	if kind == "pep" {
		return xmpp.AccessPresence
	}
	return xmpp.AccessWhitelist
}

// accessWords says in the log and in status who can read a node.
func accessWords(model string) string {
	switch model {
	case xmpp.AccessOpen:
		return "open to anyone on the server"
	case xmpp.AccessPresence:
		return "readable by anyone subscribed to the owner's presence"
	case xmpp.AccessRoster:
		return "readable by the owner's roster groups"
	case xmpp.AccessAuthorize:
		return "open to subscription requests"
	}
	return "access model " + model
}

// iqSender is the part of *xmpp.Session the access checks use.
type iqSender interface {
	SendIQ(ctx context.Context, iq *xmpp.Element) (*xmpp.Element, error)
}

// nodeAccess is what a publisher knows about one node's access control.
type nodeAccess struct {
	model string // in effect, as the service said; "" when it did not
	owned bool   // the agent may manage it: it created it or is its only owner
}

// accessControl is a publisher's access state. Everything but notes is
// used by the sender goroutine only.
type accessControl struct {
	service string // "" for PEP
	want    string // the sink's access_model
	self    string // the agent's bare JID, lower-cased

	acl      func() []string // the ACL's operators and viewers (Hooks.Members); nil in tests
	members  []string        // acl() without the agent, as last synced
	nodes    map[string]*nodeAccess
	fellBack string               // why whitelist became presence on this service; "" if it did not
	refused  map[string]time.Time // node → when a refused create was last logged

	mu    sync.Mutex
	notes map[string]string // node → what status shows
}

// newAccessControl is the access state of pubsub or pep sink sc of the
// agent self.
func newAccessControl(sc config.Sink, self xmpp.JID) *accessControl {
	return &accessControl{service: sc.Service, want: cmp.Or(sc.AccessModel, defaultAccess(sc.Kind)), self: self.BareKey()}
}

// model is the access model new nodes get.
func (ac *accessControl) model() string {
	if ac.fellBack != "" {
		return xmpp.AccessPresence
	}
	return ac.want
}

// refusesModel reports whether err is a service saying it cannot do a
// node configuration: XEP-0060 §8.1.3 says <not-acceptable/>, Prosody
// answers so for access models its component lacks; others use
// <feature-not-implemented/> with <unsupported feature='access-…'/>.
func refusesModel(err error) bool {
	var se *xmpp.StanzaError
	if !errors.As(err, &se) {
		return false
	}
	if se.App != nil && se.App.Name == "unsupported" && strings.HasPrefix(se.App.Attr("feature"), "access-") {
		return true
	}
	return se.Condition == "not-acceptable" || se.Condition == "feature-not-implemented"
}

// condition is err's stanza error condition, or err's text.
func condition(err error) string {
	var se *xmpp.StanzaError
	if errors.As(err, &se) {
		return se.Condition
	}
	return err.Error()
}

// isStanzaError reports whether err is the service's answer (as opposed
// to a failed stream or an expired context).
func isStanzaError(err error) bool {
	var se *xmpp.StanzaError
	return errors.As(err, &se)
}

// ensure creates node with cfg and the sink's access model, or, when the
// node exists, reads its access model and warns if it is looser than
// configured. Nodes the agent owns are tightened and their whitelist kept
// to the ACL. It returns only errors of the stream (or ctx): what the
// service refuses is logged and shown in status.
func (ac *accessControl) ensure(ctx context.Context, iq iqSender, node string, cfg xmpp.NodeConfig, log *slog.Logger) error {
	if ac.nodes == nil {
		ac.nodes = make(map[string]*nodeAccess)
	}
	cfg.AccessModel = ac.model()
	_, err := iq.SendIQ(ctx, xmpp.PubSubCreate(ac.service, node, cfg))
	if refusesModel(err) && cfg.AccessModel == xmpp.AccessWhitelist {
		first := err
		cfg.AccessModel = xmpp.AccessPresence
		_, err = iq.SendIQ(ctx, xmpp.PubSubCreate(ac.service, node, cfg))
		if err == nil {
			ac.fallBack(first, log)
		} else if refusesModel(err) {
			// Refused for another reason (max_items?): say what whitelist got.
			err, cfg.AccessModel = first, xmpp.AccessWhitelist
		}
	}
	switch {
	case err == nil:
		log.Info("pubsub node created", "node", node, "max_items", cfg.MaxItems, "access_model", cfg.AccessModel)
		na := &nodeAccess{model: cfg.AccessModel, owned: true}
		ac.nodes[node] = na
		ac.note(node, "")
		if na.model == xmpp.AccessWhitelist {
			return ac.syncMembers(ctx, iq, node, nil, log)
		}
		return nil
	case !isStanzaError(err):
		return err
	case refusesModel(err):
		// The node may exist all the same; what it allows is checked below.
		// Each refused publish asks again: say it once in ten minutes.
		if t, ok := ac.refused[node]; !ok || time.Since(t) > 10*time.Minute {
			if ac.refused == nil {
				ac.refused = make(map[string]time.Time)
			}
			ac.refused[node] = time.Now()
			log.Error("pubsub: the service refuses to create the node with this configuration", "node", node,
				"access_model", cfg.AccessModel, "max_items", cfg.MaxItems, "err", err)
		}
		if ierr := ac.inspect(ctx, iq, node, log); ierr != nil {
			return ierr
		}
		if ac.nodes[node].model == "" {
			// Most likely it does not exist: status says why.
			ac.note(node, fmt.Sprintf("node %s: the service refuses access_model %s, max_items %d (%s)",
				node, cfg.AccessModel, cfg.MaxItems, condition(err)))
		}
		return nil
	default:
		// conflict: it exists. Anything else: not allowed to create (on
		// Prosody's pubsub component only admins may), yet the node may
		// exist and accept our items; the publish will tell. Either way,
		// what it allows is checked below.
		if se := (*xmpp.StanzaError)(nil); errors.As(err, &se) && se.Condition != "conflict" {
			log.Debug("pubsub node not created", "node", node, "err", err)
		}
	}
	return ac.inspect(ctx, iq, node, log)
}

// fallBack records, and logs once, that the service cannot do whitelist
// nodes, so they are made with presence instead.
func (ac *accessControl) fallBack(why error, log *slog.Logger) {
	if ac.fellBack != "" {
		return
	}
	var se *xmpp.StanzaError
	errors.As(why, &se)
	ac.fellBack = se.Condition
	log.Warn("pubsub: the service cannot do whitelist nodes; creating them with access model presence (readable by the agent's presence subscribers, which follow the ACL)",
		"service", ac.where(), "condition", se.Condition, "text", se.Text)
	ac.note("", "whitelist not supported by the service; nodes use presence")
}

func (ac *accessControl) where() string {
	if ac.service == "" {
		return "the account's PEP service"
	}
	return ac.service
}

// inspect reads an existing node's access model (its configuration, which
// owners may read; else its disco#info meta-data, which anyone may) and
// who owns it. A looser model than configured is tightened on a node the
// agent alone owns, and reported on any other: a node someone else owns
// is theirs to configure.
func (ac *accessControl) inspect(ctx context.Context, iq iqSender, node string, log *slog.Logger) error {
	var conf xmpp.NodeConfig
	res, err := iq.SendIQ(ctx, xmpp.PubSubConfigureGet(ac.service, node))
	if err == nil {
		conf, _ = xmpp.ParseNodeConfig(res)
	} else if !isStanzaError(err) {
		return err
	}
	if conf.AccessModel == "" {
		res, err = iq.SendIQ(ctx, xmpp.PubSubNodeInfo(ac.service, node))
		if err == nil {
			conf, _ = xmpp.ParseNodeConfig(res)
		} else if !isStanzaError(err) {
			return err
		} else if condition(err) == "item-not-found" {
			ac.nodes[node] = &nodeAccess{} // not there (yet): the publish will tell
			ac.note(node, "")
			return nil
		}
	}
	na := &nodeAccess{model: conf.AccessModel, owned: ac.service == ""} // a PEP node is the account's own
	var affs []xmpp.Affiliation
	res, err = iq.SendIQ(ctx, xmpp.PubSubAffiliationsGet(ac.service, node))
	if err == nil {
		affs, _ = xmpp.ParseAffiliations(res)
		na.owned = na.owned || ac.soleOwner(affs)
	} else if !isStanzaError(err) {
		return err
	}
	ac.nodes[node] = na
	want := ac.model()
	switch {
	case na.model == "":
		log.Info("pubsub: the service does not say who may read the node", "node", node, "access_model", want)
		ac.note(node, "")
	case accessRank(na.model) >= 0 && accessRank(na.model) < accessRank(want) && na.owned:
		if err := ac.tighten(ctx, iq, node, na, log); err != nil {
			return err
		}
	case accessRank(na.model) >= 0 && accessRank(na.model) < accessRank(want):
		msg := fmt.Sprintf("node %s is %s; configured %s", node, accessWords(na.model), want)
		log.Warn("pubsub: "+msg+"; the agent does not own it and leaves it as it is", "service", ac.where(),
			"node", node, "access_model", na.model, "configured", want)
		ac.note(node, msg)
	default:
		ac.note(node, "")
	}
	if na.owned && na.model == xmpp.AccessWhitelist {
		return ac.syncMembers(ctx, iq, node, affs, log)
	}
	return nil
}

// soleOwner reports whether the agent is an owner of the node and nobody
// else is.
func (ac *accessControl) soleOwner(affs []xmpp.Affiliation) bool {
	self := false
	for _, a := range affs {
		if a.Affiliation != "owner" {
			continue
		}
		if bareKey(a.JID) != ac.self {
			return false
		}
		self = true
	}
	return self
}

// tighten sets the configured access model on a node the agent owns that
// has a looser one (made by an older stanzad, which set none, or by a
// server whose default is open). It is logged, never silent.
func (ac *accessControl) tighten(ctx context.Context, iq iqSender, node string, na *nodeAccess, log *slog.Logger) error {
	want := ac.model()
	_, err := iq.SendIQ(ctx, xmpp.PubSubConfigureAccess(ac.service, node, want))
	if refusesModel(err) && want == xmpp.AccessWhitelist && accessRank(na.model) < accessRank(xmpp.AccessPresence) {
		first := err
		want = xmpp.AccessPresence
		if _, err = iq.SendIQ(ctx, xmpp.PubSubConfigureAccess(ac.service, node, want)); err == nil {
			ac.fallBack(first, log)
		}
	}
	if err != nil {
		if !isStanzaError(err) {
			return err
		}
		msg := fmt.Sprintf("node %s is %s; configured %s", node, accessWords(na.model), ac.want)
		log.Warn("pubsub: "+msg+"; the service refused to change it", "service", ac.where(), "node", node, "err", err)
		ac.note(node, msg)
		return nil
	}
	log.Warn("pubsub: node access tightened", "service", ac.where(), "node", node, "from", na.model, "to", want)
	na.model = want
	ac.note(node, "")
	return nil
}

// follow takes the ACL's members from the ACL in effect and reports
// whether they changed since last time.
func (ac *accessControl) follow() bool {
	if ac.acl == nil {
		return false
	}
	all := ac.acl()
	n, same := 0, true
	for _, jid := range all {
		if jid == ac.self {
			continue
		}
		if n >= len(ac.members) || ac.members[n] != jid {
			same = false
			break
		}
		n++
	}
	if same && n == len(ac.members) {
		return false
	}
	var m []string
	for _, jid := range all {
		if jid != ac.self {
			m = append(m, jid)
		}
	}
	ac.members = m
	return true
}

// resync brings the member lists of the whitelist nodes the agent owns
// to the ACL, if the ACL changed (a reload).
func (ac *accessControl) resync(ctx context.Context, iq iqSender, log *slog.Logger) error {
	if !ac.follow() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return ac.syncAll(ctx, iq, log)
}

func (ac *accessControl) syncAll(ctx context.Context, iq iqSender, log *slog.Logger) error {
	for _, node := range slices.Sorted(maps.Keys(ac.nodes)) {
		na := ac.nodes[node]
		if !na.owned || na.model != xmpp.AccessWhitelist {
			continue
		}
		res, err := iq.SendIQ(ctx, xmpp.PubSubAffiliationsGet(ac.service, node))
		if err != nil {
			if !isStanzaError(err) {
				return err
			}
			log.Warn("pubsub: node members not read; not synced with the ACL", "node", node, "err", err)
			continue
		}
		affs, _ := xmpp.ParseAffiliations(res)
		if err := ac.syncMembers(ctx, iq, node, affs, log); err != nil {
			return err
		}
	}
	return nil
}

// syncMembers makes the ACL's operators and viewers members of node and
// removes (affiliation none) the members no longer in it. Owners,
// publishers and the like are left alone: only members are the ACL's.
func (ac *accessControl) syncMembers(ctx context.Context, iq iqSender, node string, affs []xmpp.Affiliation, log *slog.Logger) error {
	have := make(map[string]string, len(affs))
	for _, a := range affs {
		have[bareKey(a.JID)] = a.Affiliation
	}
	var change []xmpp.Affiliation
	added, removed := 0, 0
	for _, m := range ac.members {
		switch have[m] {
		case "member", "publisher", "owner", "publish-only":
		default:
			change = append(change, xmpp.Affiliation{JID: m, Affiliation: "member"})
			added++
		}
	}
	for _, a := range affs {
		if a.Affiliation == "member" && !slices.Contains(ac.members, bareKey(a.JID)) {
			change = append(change, xmpp.Affiliation{JID: a.JID, Affiliation: "none"})
			removed++
		}
	}
	if len(change) == 0 {
		return nil
	}
	if _, err := iq.SendIQ(ctx, xmpp.PubSubSetAffiliations(ac.service, node, change)); err != nil {
		if !isStanzaError(err) {
			return err
		}
		log.Warn("pubsub: the service refused the node's member list; the ACL's operators and viewers may not read it",
			"service", ac.where(), "node", node, "err", err)
		ac.note(node, "node "+node+": members not set ("+err.Error()+")")
		return nil
	}
	log.Info("pubsub node members follow the ACL", "node", node, "added", added, "removed", removed)
	return nil
}

// bareKey is the lower-cased bare form of a JID as a service lists it.
func bareKey(s string) string {
	if j, err := xmpp.ParseJID(s); err == nil {
		return j.BareKey()
	}
	return strings.ToLower(s)
}

// note sets what status shows for node ("" for the service as a whole);
// empty clears it.
func (ac *accessControl) note(node, text string) {
	ac.mu.Lock()
	defer ac.mu.Unlock()
	if text == "" {
		delete(ac.notes, node)
		return
	}
	if ac.notes == nil {
		ac.notes = make(map[string]string)
	}
	ac.notes[node] = strings.Clone(text) // it may be a server's text, sharing its stanza's memory
}

// status is the sink's access line for status: every node that is
// looser than configured or could not be set up, "" when all is well.
func (ac *accessControl) status() string {
	ac.mu.Lock()
	defer ac.mu.Unlock()
	var out []string
	for _, k := range slices.Sorted(maps.Keys(ac.notes)) {
		out = append(out, ac.notes[k])
	}
	return strings.Join(out, "; ")
}

// appendNote adds more to a status note.
func appendNote(note, more string) string {
	switch {
	case more == "":
		return note
	case note == "":
		return more
	}
	return note + "; " + more
}
