package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stanzad/stanzad/xmpp"
)

// watch prints the readings the agent sends, as they come: chat messages
// to this account (a chat sink), or with pubsub set, the items of the
// devices' nodes on that service (subscribed for the watch, unsubscribed
// after). A gap in the agent's seqnr is reported. It returns after count
// readings (0: until ctx ends).
func (c *ctl) watch(ctx context.Context, w io.Writer, devices []string, pubsub string, count int) error {
	if pubsub != "" {
		if len(devices) == 0 {
			return fmt.Errorf("watch -pubsub needs the devices to watch")
		}
		for _, d := range devices {
			node := xmpp.NSSensorData + "/" + d
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
		case pubsub != "" && from.String() == pubsub:
			if _, items, ok := xmpp.ParsePubSubEvent(st); ok {
				for _, it := range items {
					if it.Payload != nil && it.Payload.Space == xmpp.NSSensorData {
						seen += printFields(w, it.Payload, devices, "")
					}
				}
			}
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

// fleet lists the agents this account knows: every contact online with
// stanzad's caps node (the agents an operator is subscribed to), plus the
// JIDs given. For each: its presence (health), ping round trip, version
// and uptime from its status command.
func (c *ctl) fleet(ctx context.Context, w io.Writer, jids []string, wait time.Duration) error {
	found := map[string]string{} // full JID → presence status
	for _, j := range jids {
		if jid, err := xmpp.ParseJID(j); err != nil {
			return fmt.Errorf("%q: %v", j, err)
		} else if jid.Resource != "" {
			found[jid.String()] = ""
		}
	}
	// Our initial presence makes the server send the contacts' presence;
	// a negative priority keeps chat to the bare JID away from here.
	p := xmpp.Stanza("presence", "", "", "").Add(xmpp.NewElement(xmpp.NSClient, "priority").SetText("-1"))
	if err := c.sess.Send(ctx, p); err != nil {
		return err
	}
	deadline := time.After(wait)
collect:
	for {
		select {
		case <-ctx.Done():
			break collect
		case <-deadline:
			break collect
		case p := <-c.presences:
			from, err := xmpp.ParseJID(p.Attr("from"))
			if err != nil || from.Resource == "" || p.Attr("type") != "" {
				continue
			}
			asked := slices.ContainsFunc(jids, func(j string) bool { return strings.EqualFold(j, from.Bare().String()) })
			caps := p.Child(xmpp.NSCaps, "c")
			if asked || caps != nil && caps.Attr("node") == xmpp.DefaultCapsNode {
				found[from.String()] = p.ChildText(xmpp.NSClient, "status")
			}
		}
	}
	if len(found) == 0 {
		return fmt.Errorf("no agent online: none of your contacts runs stanzad (subscribe to an agent, or name its full JID)")
	}
	infos := make([]agentInfo, 0, len(found))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for j, status := range found {
		wg.Add(1)
		go func() {
			defer wg.Done()
			info := c.probe(ctx, j)
			if status != "" {
				info.presence = status // the agent's own health line
			}
			mu.Lock()
			infos = append(infos, info)
			mu.Unlock()
		}()
	}
	wg.Wait()
	sort.Slice(infos, func(i, k int) bool { return infos[i].jid < infos[k].jid })
	fmt.Fprintf(w, "%-36s %-9s %-10s %-10s %s\n", "AGENT", "PING", "VERSION", "UP", "STATUS")
	for _, in := range infos {
		if in.err != nil {
			fmt.Fprintf(w, "%-36s %-9s %-10s %-10s %s\n", in.jid, "-", "-", "-", "unreachable: "+in.err.Error())
			continue
		}
		fmt.Fprintf(w, "%-36s %-9s %-10s %-10s %s\n", in.jid, fmt.Sprintf("%.1fms", float64(in.rtt.Microseconds())/1000),
			in.version, in.up, in.presence)
	}
	return nil
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
