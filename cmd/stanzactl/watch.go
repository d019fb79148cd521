package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stanzad/stanzad/xmpp"
)

// watch prints the readings the agent sends, as they come: chat messages
// to this account (a chat sink), or with pubsub set, the items of the
// devices' nodes on that service (subscribed for the watch, unsubscribed
// after). A gap in the agent's seqnr is reported. It returns after count
// readings (0: until ctx ends).
func (c *ctl) watch(ctx context.Context, w io.Writer, devices []string, pubsub string, count int) error {
	var items replays
	if pubsub != "" {
		if len(devices) == 0 {
			return fmt.Errorf("watch -pubsub needs the devices to watch")
		}
		for _, d := range devices {
			node := xmpp.NSSensorData + "/" + d
			c.lastItems(ctx, &items, pubsub, node)
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := c.sess.SendIQ(sctx, xmpp.PubSubSubscribe(pubsub, node, c.sess.JID().String()))
			cancel()
			if err != nil {
				return fmt.Errorf("subscribe to %s on %s: %w", node, pubsub, err)
			}
			defer c.unsubscribe(pubsub, node)
		}
	}
	// Available presence, so the server routes the agent's messages to the
	// bare JID here too.
	if err := c.sess.Send(ctx, xmpp.Stanza("presence", "", "", "")); err != nil {
		return err
	}
	var last uint64
	seen := 0
	for count == 0 || seen < count {
		var st *xmpp.Element
		select {
		case <-ctx.Done():
			return nil
		case err := <-c.served:
			c.served <- err
			return fmt.Errorf("session ended: %v", err)
		case st = <-c.replies:
		}
		from, _ := xmpp.ParseJID(st.Attr("from"))
		var fields *xmpp.Element
		switch {
		case pubsub != "" && fromService(from, pubsub):
			seen += items.event(w, st, devices)
			continue
		case from.BareKey() != c.target.BareKey():
			continue
		case c.fromServerStore(st):
			continue // stored while this account was offline: a watch shows what comes now
		default:
			fields = st.Child(xmpp.NSSensorData, "fields")
		}
		if fields == nil {
			continue
		}
		seq, _ := strconv.ParseUint(fields.Attr("seqnr"), 10, 64)
		if last != 0 && seq > last+1 {
			fmt.Fprintf(w, "# gap: seqnr %d after %d (%d stanzas missing)\n", seq, last, seq-last-1)
		}
		if seq > last {
			last = seq
		}
		note := ""
		if body := st.ChildText(xmpp.NSClient, "body"); strings.HasPrefix(body, "ALERT") || strings.HasPrefix(body, "CLEARED") {
			note = "  # " + body
		}
		if st.Child(xmpp.NSDelay, "delay") != nil {
			note += "  # delayed"
		}
		seen += printFields(w, fields, devices, note)
	}
	return nil
}

// fromServerStore reports whether st is a message the server kept while
// the account was offline (XEP-0203 delay stamped by the server).
func (c *ctl) fromServerStore(st *xmpp.Element) bool {
	d := st.Child(xmpp.NSDelay, "delay")
	return d != nil && strings.EqualFold(d.Attr("from"), c.sess.JID().Domain)
}

// fromService reports whether from sends the watched nodes' events: the
// service itself, or for PEP (an account's bare JID) a host of the
// account's server — ejabberd 23.01 sends the last item of a PEP node on
// subscribe from its pubsub host. Only the server can send from those.
func fromService(from xmpp.JID, service string) bool {
	if strings.EqualFold(from.String(), service) {
		return true
	}
	svc, err := xmpp.ParseJID(service)
	if err != nil || svc.Local == "" || from.Local != "" || from.Resource != "" {
		return false
	}
	d, sd := strings.ToLower(from.Domain), strings.ToLower(svc.Domain)
	return d == sd || strings.HasSuffix(d, "."+sd)
}

// replays tells the items a pubsub service sends again from new ones.
// A service replays the last item of a node when one subscribes (XEP-0060
// §6.1.7, send_last_published_item) and, for PEP, on presence with
// +notify (XEP-0163 §4.3.2) — ejabberd's pubsub service stamps such a
// replay with an XEP-0203 <delay/>, its PEP and Prosody do not. So an
// item is a replay if it is delayed or was the node's last item before
// the watch began (asked for before subscribing); an item already shown
// is never shown again. A replay is shown once, marked, and not counted
// as a reading of the watch.
type replays struct {
	before map[string]bool     // node + "\x00" + id: last items when the watch began
	shown  map[string][]string // node → ids shown, oldest first, at most maxShown
}

// maxShown is how many item ids per node replays remembers: a service
// replays only the last item (or the last few, pubsub#max_items).
const maxShown = 256

// existed notes id as node's item from before the watch.
func (r *replays) existed(node, id string) {
	if r.before == nil {
		r.before = make(map[string]bool)
	}
	r.before[node+"\x00"+id] = true
}

// check reports whether item id of node is to be shown, and if so
// whether as a replay.
func (r *replays) check(node, id string, delayed bool) (show, replayed bool) {
	if slices.Contains(r.shown[node], id) {
		return false, false
	}
	if r.shown == nil {
		r.shown = make(map[string][]string)
	}
	ids := append(r.shown[node], id)
	if len(ids) > maxShown {
		ids = slices.Delete(ids, 0, len(ids)-maxShown)
	}
	r.shown[node] = ids
	return true, delayed || r.before[node+"\x00"+id]
}

// event prints the readings of a pubsub event message and returns how
// many new ones it printed (replays are printed, not counted).
func (r *replays) event(w io.Writer, st *xmpp.Element, devices []string) int {
	node, items, ok := xmpp.ParsePubSubEvent(st)
	if !ok {
		return 0
	}
	delayed := st.Child(xmpp.NSDelay, "delay") != nil
	n := 0
	for _, it := range items {
		if it.Payload == nil || it.Payload.Space != xmpp.NSSensorData || it.Payload.Name != "fields" {
			continue
		}
		show, replayed := r.check(node, it.ID, delayed)
		switch {
		case !show:
		case replayed:
			printFields(w, it.Payload, devices, "  # replayed")
		default:
			n += printFields(w, it.Payload, devices, "")
		}
	}
	return n
}

// lastItems asks service for node's last item and notes it in r, so the
// copy the service sends on subscribe is known as a replay. A refusal
// leaves r as it is: the subscribe will say what is wrong.
func (c *ctl) lastItems(ctx context.Context, r *replays, service, node string) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ps := xmpp.NewElement(xmpp.NSPubSub, "pubsub").Add(xmpp.NewElement(xmpp.NSPubSub, "items", "node", node, "max_items", "1"))
	res, err := c.sess.SendIQ(ctx, xmpp.Stanza("iq", "get", service, "").Add(ps))
	if err != nil {
		return
	}
	for _, it := range res.Child(xmpp.NSPubSub, "pubsub").Child(xmpp.NSPubSub, "items").Children {
		if it.Name == "item" && it.Attr("id") != "" {
			r.existed(node, it.Attr("id"))
		}
	}
}

func (c *ctl) unsubscribe(service, node string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ps := xmpp.NewElement(xmpp.NSPubSub, "pubsub").Add(
		xmpp.NewElement(xmpp.NSPubSub, "unsubscribe", "node", node, "jid", c.sess.JID().String()))
	c.sess.SendIQ(ctx, xmpp.Stanza("iq", "set", service, "").Add(ps))
}

// printFields prints one line per node of a XEP-0323 <fields/> (of the
// devices asked for, or all) and returns how many it printed:
// "2026-11-25T10:00:00Z greenhouse: temperature=21.5 °C humidity=40.2 %".
func printFields(w io.Writer, fields *xmpp.Element, devices []string, note string) int {
	n := 0
	for _, node := range fields.Children {
		id := node.Attr("nodeId")
		if node.Name != "node" || len(devices) > 0 && !slices.Contains(devices, id) {
			continue
		}
		for _, ts := range node.Children {
			var b strings.Builder
			fmt.Fprintf(&b, "%s %s:", ts.Attr("value"), id)
			for _, f := range ts.Children {
				b.WriteString(" " + f.Attr("name") + "=" + f.Attr("value"))
				if u := f.Attr("unit"); u != "" {
					b.WriteString(" " + u)
				}
			}
			fmt.Fprintln(w, b.String()+note)
			n++
		}
	}
	return n
}

// agentInfo is one line of fleet.
type agentInfo struct {
	jid, presence string
	rtt           time.Duration
	version, up   string
	err           error
}

// probe pings one agent and runs its status command.
func (c *ctl) probe(ctx context.Context, jid string) agentInfo {
	info := agentInfo{jid: jid}
	start := time.Now()
	if _, err := c.sess.SendIQ(ctx, xmpp.Stanza("iq", "get", jid, "").Add(xmpp.NewElement(xmpp.NSPing, "ping"))); err != nil {
		info.err = err
		return info
	}
	info.rtt = time.Since(start)
	cmd := xmpp.NewElement(xmpp.NSCommands, "command", "node", "status", "action", "execute")
	res, err := c.sess.SendIQ(ctx, xmpp.Stanza("iq", "set", jid, "").Add(cmd))
	if err != nil {
		info.err = err
		return info
	}
	if f, err := xmpp.ParseForm(res.FirstChild().Child(xmpp.NSData, "x")); err == nil {
		info.version = strings.TrimPrefix(f.Value("version"), "stanzad ")
		info.up = f.Value("uptime")
		var failing []string
		for _, d := range f.Values("devices") {
			if name, _, bad := strings.Cut(d, " — failing since"); bad {
				failing = append(failing, name)
			}
		}
		info.presence = "ok"
		if len(failing) > 0 {
			info.presence = fmt.Sprintf("%d devices failing: %s", len(failing), strings.Join(failing, ", "))
		}
	}
	return info
}
