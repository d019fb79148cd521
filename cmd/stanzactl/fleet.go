package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stanzad/stanzad/xmpp"
)

// fleetUsage is the help of `stanzactl fleet`.
const fleetUsage = `usage: stanzactl [-config op.toml] fleet [flags] [jid…] [command]

commands (default status):
  status                   ping, version, uptime, health
  read [device…]           readings (ad-hoc "read")
  set DEVICE VALUE         XEP-0325 set
  run ACTION               a configured action
  exec NODE [var=value…]   any ad-hoc command, in one stage
  config push FILE         push a config; with -canary N to N agents first

flags:
`

// fleetOptions are the flags of `stanzactl fleet`.
type fleetOptions struct {
	match, group string
	parallel     int
	timeout      time.Duration
	wait         time.Duration // presence gathering
	json         bool
	canary       int
	canaryWait   time.Duration
}

// fleetRow is one agent's outcome.
type fleetRow struct {
	Agent     string `json:"agent"`
	OK        bool   `json:"ok"`
	Condition string `json:"error,omitempty"` // a stanza error condition, "offline", "timeout", "rolled-back", ...
	Text      string `json:"text,omitempty"`  // what went wrong, in words
	Result    string `json:"result,omitempty"`
	MS        int64  `json:"ms"`
}

// Exit codes of fleet beyond 0 (all ok) and 2 (usage).
const (
	exitFailed   = 1 // some agent failed, was offline or refused
	exitTimedOut = 3 // some agent did not answer in time
)

// parseFleet reads fleet's flags and arguments: leading JIDs, then the
// command and its arguments.
func parseFleet(args []string, stderr io.Writer) (opts fleetOptions, jids []string, cmd string, cargs []string, err error) {
	fs := flag.NewFlagSet("fleet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, fleetUsage); fs.PrintDefaults() }
	fs.StringVar(&opts.match, "match", "", "only agents whose bare JID matches this glob (path.Match), e.g. 'gh-*@iot.example'")
	fs.StringVar(&opts.group, "group", "", "only the contacts in this roster group (offline ones are rows too)")
	fs.IntVar(&opts.parallel, "parallel", 8, "agents asked at once")
	fs.DurationVar(&opts.timeout, "timeout", 10*time.Second, "how long each agent may take")
	fs.DurationVar(&opts.wait, "wait", 2*time.Second, "how long to gather the agents' presence")
	fs.BoolVar(&opts.json, "json", false, "one JSON object per agent and line on stdout, nothing else")
	fs.IntVar(&opts.canary, "canary", 0, "config push: push to this many agents first, and stop if any of them fails or rolls back")
	fs.DurationVar(&opts.canaryWait, "canary-wait", 3*time.Minute, "config push: how long canaries may take to confirm a pushed [xmpp] change")
	if err = fs.Parse(args); err != nil {
		return
	}
	rest := fs.Args()
	for len(rest) > 0 && strings.Contains(rest[0], "@") {
		if _, perr := xmpp.ParseJID(rest[0]); perr != nil {
			return opts, nil, "", nil, fmt.Errorf("%q: %v", rest[0], perr)
		}
		jids = append(jids, rest[0])
		rest = rest[1:]
	}
	cmd = "status"
	if len(rest) > 0 {
		cmd, cargs = rest[0], rest[1:]
	}
	switch {
	case opts.parallel < 1:
		err = errors.New("-parallel must be at least 1")
	case opts.match != "":
		if _, merr := path.Match(opts.match, ""); merr != nil {
			err = fmt.Errorf("-match: %v", merr)
		}
	}
	if err != nil {
		return
	}
	switch {
	case cmd == "status" && len(cargs) == 0, cmd == "read":
	case cmd == "set" && len(cargs) == 2, cmd == "run" && len(cargs) == 1:
	case cmd == "exec" && len(cargs) >= 1:
		for _, kv := range cargs[1:] {
			if !strings.Contains(kv, "=") {
				err = fmt.Errorf("exec: %q is not var=value", kv)
			}
		}
	case cmd == "config" && len(cargs) == 2 && cargs[0] == "push":
	default:
		err = fmt.Errorf("fleet: bad command %q\n\n%s", strings.Join(append([]string{cmd}, cargs...), " "), fleetUsage)
	}
	if opts.canary > 0 && cmd != "config" {
		err = errors.New("-canary is for config push")
	}
	return
}

// fleetTarget is an agent to ask: its full JID when online, or just the
// bare JID of a contact that is offline.
type fleetTarget struct {
	jid     string
	offline bool
}

// targets selects the agents: named JIDs, and the roster's contacts
// narrowed by -group and -match. Without a selector they are the contacts
// online with stanzad's caps; with one, selected contacts that are
// offline are targets too (their row says so).
func (c *ctl) targets(ctx context.Context, opts fleetOptions, jids []string) ([]fleetTarget, error) {
	res, err := c.sess.SendIQ(ctx, xmpp.RosterGet())
	if err != nil {
		return nil, fmt.Errorf("roster: %w", err)
	}
	roster := xmpp.ParseRoster(res)
	// Our initial presence makes the server send the contacts' presence;
	// a negative priority keeps chat to the bare JID away from here.
	p := xmpp.Stanza("presence", "", "", "").Add(xmpp.NewElement(xmpp.NSClient, "priority").SetText("-1"))
	if err := c.sess.Send(ctx, p); err != nil {
		return nil, err
	}
	online := map[string][]string{} // bare → full JIDs seen available
	isAgent := map[string]bool{}    // full JID → stanzad caps
	deadline := time.After(opts.wait)
collect:
	for {
		select {
		case <-ctx.Done():
			break collect
		case <-deadline:
			break collect
		case pr := <-c.presences:
			from, err := xmpp.ParseJID(pr.Attr("from"))
			if err != nil || from.Resource == "" {
				continue
			}
			bare := from.BareKey()
			switch pr.Attr("type") {
			case "":
				if !slices.Contains(online[bare], from.String()) {
					online[bare] = append(online[bare], from.String())
				}
				caps := pr.Child(xmpp.NSCaps, "c")
				isAgent[from.String()] = caps != nil && caps.Attr("node") == xmpp.DefaultCapsNode
			case "unavailable":
				online[bare] = slices.DeleteFunc(online[bare], func(s string) bool { return s == from.String() })
			}
		}
	}

	selected := map[string]bool{} // bare JIDs
	var out []fleetTarget
	add := func(bare string, named bool) {
		if selected[bare] {
			return
		}
		selected[bare] = true
		var full []string
		for _, j := range online[bare] {
			if isAgent[j] || named {
				full = append(full, j)
			}
		}
		if len(full) == 0 {
			out = append(out, fleetTarget{jid: bare, offline: true})
			return
		}
		for _, j := range full {
			out = append(out, fleetTarget{jid: j})
		}
	}
	matches := func(bare string) bool {
		ok, _ := path.Match(strings.ToLower(opts.match), bare)
		return opts.match == "" || ok
	}
	for _, j := range jids {
		jid, _ := xmpp.ParseJID(j)
		if jid.Resource != "" {
			selected[jid.BareKey()] = true
			out = append(out, fleetTarget{jid: jid.String()})
			continue
		}
		add(jid.BareKey(), true)
	}
	if len(jids) == 0 {
		selector := opts.group != "" || opts.match != ""
		for _, it := range roster {
			bare := it.JID.BareKey()
			if opts.group != "" && !slices.Contains(it.Groups, opts.group) || !matches(bare) {
				continue
			}
			if selector {
				add(bare, false)
				continue
			}
			for _, j := range online[bare] {
				if isAgent[j] {
					add(bare, false)
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b fleetTarget) int { return strings.Compare(a.jid, b.jid) })
	return out, nil
}

// fleetRun runs the fleet command and returns its exit code.
func (c *ctl) fleetRun(ctx context.Context, stdout, stderr io.Writer, opts fleetOptions, jids []string, cmd string, cargs []string, pushed []byte) int {
	targets, err := c.targets(ctx, opts, jids)
	if err != nil {
		fmt.Fprintf(stderr, "stanzactl: fleet: %v\n", err)
		return exitFailed
	}
	if len(targets) == 0 {
		fmt.Fprintln(stderr, "stanzactl: fleet: no agent online: none of your contacts runs stanzad (subscribe to an agent, name its JID, or select with -group/-match)")
		return exitFailed
	}
	do := func(ctx context.Context, jid string) fleetRow { return c.fleetOne(ctx, jid, cmd, cargs, pushed) }
	var rows []fleetRow
	pending := targets
	if cmd == "config" {
		// The first agent alone: a config it refuses goes to nobody
		// else. Then the canaries, confirmed, then the rest.
		first := max(1, opts.canary)
		rows = c.fleetBatch(ctx, opts, pending[:min(first, len(pending))], do)
		pending = pending[min(first, len(pending)):]
		if why := canaryTrouble(rows); why == "" && opts.canary > 0 {
			rows = c.confirmCanaries(ctx, opts, rows)
		}
		if why := canaryTrouble(rows); why != "" {
			for _, t := range pending {
				rows = append(rows, fleetRow{Agent: t.jid, Condition: "not-pushed", Text: why})
			}
			pending = nil
		}
	}
	rows = append(rows, c.fleetBatch(ctx, opts, pending, do)...)
	slices.SortFunc(rows, func(a, b fleetRow) int { return strings.Compare(a.Agent, b.Agent) })
	printFleet(stdout, rows, opts.json)
	code := 0
	for _, r := range rows {
		switch {
		case r.Condition == "timeout":
			code = exitTimedOut
		case !r.OK && code == 0:
			code = exitFailed
		}
	}
	return code
}

// fleetBatch asks targets, opts.parallel at a time, each within
// opts.timeout. Once ctx ends (Ctrl-C) no new request is sent; the
// targets not asked get a row that says so.
func (c *ctl) fleetBatch(ctx context.Context, opts fleetOptions, targets []fleetTarget, do func(context.Context, string) fleetRow) []fleetRow {
	rows := make([]fleetRow, len(targets))
	sem := make(chan struct{}, opts.parallel)
	var wg sync.WaitGroup
	for i, t := range targets {
		if t.offline {
			rows[i] = fleetRow{Agent: t.jid, Condition: "offline", Text: "not online"}
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			rows[i] = fleetRow{Agent: t.jid, Condition: "interrupted", Text: "not asked: interrupted"}
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			actx, cancel := context.WithTimeout(ctx, opts.timeout)
			defer cancel()
			start := time.Now()
			r := do(actx, t.jid)
			r.Agent, r.MS = t.jid, time.Since(start).Milliseconds()
			if !r.OK && actx.Err() == context.DeadlineExceeded {
				r.Condition, r.Text = "timeout", fmt.Sprintf("no answer within %v", opts.timeout)
			}
			rows[i] = r
		})
	}
	wg.Wait()
	return rows
}

// canaryTrouble says why a push must stop after rows, or "".
func canaryTrouble(rows []fleetRow) string {
	for _, r := range rows {
		if !r.OK {
			return fmt.Sprintf("stopped: %s failed (%s)", r.Agent, r.Condition)
		}
	}
	return ""
}

// confirmCanaries waits until every canary that is on probation (a
// pushed [xmpp] change) says it is online with the new config, or
// rolled back, or opts.canaryWait passes.
func (c *ctl) confirmCanaries(ctx context.Context, opts fleetOptions, rows []fleetRow) []fleetRow {
	deadline := time.Now().Add(opts.canaryWait)
	for i := range rows {
		if !strings.Contains(rows[i].Result, "goes back to the previous config") {
			continue // applied; nothing on probation
		}
		for {
			f, err := c.statusForm(ctx, rows[i].Agent)
			status, state := f.Value("config"), f.Value("config_state")
			switch {
			case err == nil && (state == "rolled-back" || state == "failed" || state == "superseded"):
				rows[i].OK, rows[i].Condition, rows[i].Text = false, state, status
			case err == nil && state == "applied":
				rows[i].Result += "\n" + status
			case time.Now().After(deadline):
				rows[i].OK, rows[i].Condition, rows[i].Text = false, "timeout", "not confirmed within -canary-wait"
			case ctx.Err() != nil:
				rows[i].OK, rows[i].Condition, rows[i].Text = false, "interrupted", "not confirmed: interrupted"
			default:
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
				continue
			}
			break
		}
	}
	return rows
}

// statusForm runs an agent's status command and returns its result form.
func (c *ctl) statusForm(ctx context.Context, jid string) (*xmpp.Form, error) {
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := xmpp.NewElement(xmpp.NSCommands, "command", "node", "status", "action", "execute")
	res, err := c.sess.SendIQ(actx, xmpp.Stanza("iq", "set", jid, "").Add(cmd))
	if err != nil {
		return nil, err
	}
	return xmpp.ParseForm(res.FirstChild().Child(xmpp.NSData, "x"))
}

// fleetOne runs cmd on one agent.
func (c *ctl) fleetOne(ctx context.Context, jid, cmd string, cargs []string, pushed []byte) fleetRow {
	one := &ctl{target: xmpp.MustParseJID(jid), log: c.log, sess: c.sess}
	var out string
	var err error
	switch cmd {
	case "status":
		info := c.probe(ctx, jid)
		if err = info.err; err == nil {
			out = fmt.Sprintf("%s, up %s, ping %.1fms: %s", info.version, info.up, float64(info.rtt.Microseconds())/1000, info.presence)
		}
	case "read":
		out, err = c.fleetRead(ctx, jid, cargs)
	case "set":
		out, err = one.set(ctx, cargs[0], cargs[1])
	case "run":
		out, err = one.exec(ctx, "action", []string{"name=" + cargs[0]}, nil)
		if err == nil && !strings.Contains(out, "\nExit code: 0\n") {
			return fleetRow{Condition: "failed", Text: "the action failed", Result: out}
		}
	case "exec":
		out, err = one.exec(ctx, cargs[0], cargs[1:], nil)
	case "config":
		out, err = one.exec(ctx, "config", nil, configForm(pushed))
	}
	if err != nil {
		row := fleetRow{Condition: "error", Text: err.Error()}
		var se *xmpp.StanzaError
		if errors.As(err, &se) {
			row.Condition, row.Text = se.Condition, se.Text
		}
		return row
	}
	return fleetRow{OK: true, Result: out}
}

// fleetRead runs the ad-hoc read with its form submitted at once (no
// device reads all) and sums the result up on one line:
// "greenhouse: temperature=20.8 °C humidity=44.9 %; relay1: state=false".
func (c *ctl) fleetRead(ctx context.Context, jid string, devices []string) (string, error) {
	f := &xmpp.Form{Type: xmpp.FormSubmit}
	if len(devices) > 0 {
		f.Fields = []xmpp.FormField{{Var: "device", Values: devices}}
	}
	cmd := xmpp.NewElement(xmpp.NSCommands, "command", "node", "read", "action", "execute").Add(f.Element())
	res, err := c.sess.SendIQ(ctx, xmpp.Stanza("iq", "set", jid, "").Add(cmd))
	if err != nil {
		return "", err
	}
	var parts []string
	for _, n := range res.FirstChild().Children {
		if n.Name == "note" {
			parts = append(parts, n.Text) // devices that failed or have nothing yet
		}
	}
	if rf, err := xmpp.ParseForm(res.FirstChild().Child(xmpp.NSData, "x")); err == nil {
		for _, fld := range rf.Fields {
			var vals []string
			for _, v := range fld.Values {
				vals = append(vals, strings.Replace(v, " = ", "=", 1))
			}
			parts = append(parts, fld.Var+": "+strings.Join(vals, " "))
		}
	}
	return strings.Join(parts, "; "), nil
}

// printFleet prints the rows: a table for people, or JSON lines.
func printFleet(w io.Writer, rows []fleetRow, asJSON bool) {
	if asJSON {
		enc := json.NewEncoder(w)
		for _, r := range rows {
			enc.Encode(r)
		}
		return
	}
	width, rwidth := len("AGENT"), len("RESULT")
	for _, r := range rows {
		width = max(width, len(r.Agent))
		if !r.OK {
			rwidth = max(rwidth, len(r.Condition))
		}
	}
	fmt.Fprintf(w, "%-*s  %-*s  %7s  %s\n", width, "AGENT", rwidth, "RESULT", "TIME", "DETAIL")
	for _, r := range rows {
		res, text := "ok", oneLine(r.Result)
		if !r.OK {
			res, text = r.Condition, oneLine(r.Text)
			if text == "" {
				text = oneLine(r.Result)
			}
		}
		ms := "-"
		if r.MS > 0 {
			ms = fmt.Sprintf("%dms", r.MS)
		}
		fmt.Fprintf(w, "%-*s  %-*s  %7s  %s\n", width, r.Agent, rwidth, res, ms, text)
	}
}

// oneLine joins a multi-line result for the table.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}
