// Command stanzactl is the operator CLI: an XMPP client that drives
// stanzad agents.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/xmpp"
)

const usage = `usage: stanzactl [-config op.toml] [-to agent-jid] [-timeout 10s] command [args]

commands:
  ping                   XEP-0199 ping the agent, print the round trip
  disco                  XEP-0030 disco#info: identity and features
  commands               list the ad-hoc commands (XEP-0050) you may run
  exec <node> [var=value…]
                         run an ad-hoc command; with values, in one stage
  status                 agent status (ad-hoc "status")
  read [device…]         current readings (XEP-0323 momentary readout)
  history <device> [field] [duration]
                         the device's readings from the agent's history as
                         CSV (time,field,min,avg,max,readings; -json: JSON
                         rows); duration e.g. 90m, 12h, 7d (default: a day)
  plot <device> [field] [duration]
                         a chart of the same, uploaded by the agent (XEP-0363):
                         prints its URL; -o FILE also downloads the PNG
  set <device> <value>   switch or set a device (XEP-0325)
  run <action>           run a configured action (ad-hoc "action")
  reload                 make the agent re-read its config (ad-hoc "reload")
  config get             print the agent's running config (secrets as "<secret>")
  config push FILE       check, write and apply FILE on the agent ("-": stdin);
                         "<secret>" keeps the running secret (ad-hoc "config")
  watch [device…]        print readings as the agent sends them (you need a
                         chat sink to you; -pubsub SERVICE watches the devices'
                         pubsub nodes instead), until Ctrl-C or -count readings
  fleet [flags] [jid…] [status|read|set|run|exec|config push …]
                         one command to many agents: those you are subscribed
                         to, narrowed by -group/-match, or the JIDs given;
                         "stanzactl fleet -h" for its flags

op.toml has an [xmpp] table like stanzad's and a top-level
  to = "device@iot.test/agent"
naming the agent (a full JID; -to overrides it).
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("stanzactl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	cfgPath := fs.String("config", "op.toml", "operator config file")
	to := fs.String("to", "", "agent JID (overrides the config's to)")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the agent")
	verbose := fs.Bool("v", false, "log protocol progress to stderr")
	count := fs.Int("count", 0, "watch: stop after this many readings (0: until interrupted)")
	pubsub := fs.String("pubsub", "", "watch: the pubsub service whose device nodes to watch")
	asJSON := fs.Bool("json", false, "history: print JSON rows instead of CSV")
	outFile := fs.String("o", "", "plot: write the chart's PNG to this file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	cmd, cargs := fs.Arg(0), fs.Args()[1:]
	var fleetOpts fleetOptions
	var fleetJIDs, fleetArgs []string
	var fleetCmd string
	switch cmd {
	case "ping", "disco", "status", "commands", "reload":
		if len(cargs) != 0 {
			fmt.Fprintf(stderr, "stanzactl: %s takes no arguments\n", cmd)
			return 2
		}
	case "read", "watch":
	case "fleet":
		var err error
		if fleetOpts, fleetJIDs, fleetCmd, fleetArgs, err = parseFleet(cargs, stderr); err != nil {
			if !errors.Is(err, flag.ErrHelp) {
				fmt.Fprintf(stderr, "stanzactl: %v\n", err)
			}
			return 2
		}
	case "config":
		switch {
		case len(cargs) == 1 && cargs[0] == "get":
		case len(cargs) == 2 && cargs[0] == "push":
		default:
			fmt.Fprintln(stderr, "stanzactl: usage: config get | config push FILE")
			return 2
		}
	case "history", "plot":
		if len(cargs) < 1 || len(cargs) > 3 {
			fmt.Fprintf(stderr, "stanzactl: usage: %s <device> [field] [duration]\n", cmd)
			return 2
		}
	case "set":
		if len(cargs) != 2 {
			fmt.Fprintln(stderr, "stanzactl: usage: set <device> <value>")
			return 2
		}
	case "run":
		if len(cargs) != 1 {
			fmt.Fprintln(stderr, "stanzactl: usage: run <action>")
			return 2
		}
	case "exec":
		if len(cargs) == 0 {
			fmt.Fprintln(stderr, "stanzactl: usage: exec <node> [var=value…]")
			return 2
		}
		for _, kv := range cargs[1:] {
			if !strings.Contains(kv, "=") {
				fmt.Fprintf(stderr, "stanzactl: exec: %q is not var=value\n", kv)
				return 2
			}
		}
	default:
		fmt.Fprintf(stderr, "stanzactl: unknown command %q\n\n%s", cmd, usage)
		return 2
	}

	var pushed []byte
	pushFile := ""
	switch {
	case cmd == "config" && cargs[0] == "push":
		pushFile = cargs[1]
	case cmd == "fleet" && fleetCmd == "config":
		pushFile = fleetArgs[1]
	}
	if pushFile != "" {
		var err error
		if pushed, err = readPush(pushFile); err != nil {
			fmt.Fprintf(stderr, "stanzactl: config push: %v\n", err)
			return 2
		}
	}
	cc, err := config.LoadClient(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if *to != "" {
		cc.To = *to
	}
	var target xmpp.JID
	if cmd != "fleet" {
		if target, err = xmpp.ParseJID(cc.To); err != nil {
			fmt.Fprintf(stderr, "stanzactl: agent JID: %v\n", err)
			return 2
		}
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	c := &ctl{target: target, log: log, replies: make(chan *xmpp.Element, 256), presences: make(chan *xmpp.Element, 256), json: *asJSON, out: *outFile}
	if err := c.connect(ctx, cc.XMPP); err != nil {
		fmt.Fprintf(stderr, "stanzactl: %v\n", err)
		return 1
	}
	defer c.close()

	if cmd == "watch" {
		// A watch runs until interrupted, not for -timeout.
		sctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if err := c.watch(sctx, stdout, cargs, *pubsub, *count); err != nil {
			fmt.Fprintf(stderr, "stanzactl: watch: %v\n", err)
			return 1
		}
		return 0
	}
	if cmd == "fleet" {
		// Many agents: each gets fleet's -timeout; Ctrl-C stops asking
		// and prints what came back.
		sctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return c.fleetRun(sctx, stdout, stderr, fleetOpts, fleetJIDs, fleetCmd, fleetArgs, pushed)
	}
	if cmd == "config" {
		if cargs[0] == "get" {
			text, err := c.configGet(ctx)
			if err != nil {
				fmt.Fprintf(stderr, "stanzactl: config get: %v\n", err)
				return 1
			}
			fmt.Fprint(stdout, text)
			return 0
		}
		out, err := c.exec(ctx, "config", nil, configForm(pushed))
		if err != nil {
			fmt.Fprintf(stderr, "stanzactl: config push: %v\n", err)
			return 1
		}
		fmt.Fprintln(stdout, out)
		return 0
	}
	out, err := c.do(ctx, cmd, cargs)
	if errors.Is(err, errFailed) {
		fmt.Fprintln(stdout, out)
		return 1
	}
	if err != nil {
		fmt.Fprintf(stderr, "stanzactl: %s: %v\n", cmd, err)
		return 1
	}
	fmt.Fprintln(stdout, out)
	return 0
}

type ctl struct {
	target    xmpp.JID
	log       *slog.Logger
	sess      *xmpp.Session
	served    chan error
	replies   chan *xmpp.Element // messages
	presences chan *xmpp.Element
	json      bool   // history: JSON rows
	out       string // plot: where to write the PNG
}

func (c *ctl) connect(ctx context.Context, x config.XMPP) error {
	self, err := xmpp.ParseJID(x.JID)
	if err != nil {
		return err
	}
	tc, err := xmpp.TLSConfig(xmpp.TLSOptions{
		CAFile: x.CAFile, ServerName: x.ServerName, PinSHA256: x.PinSHA256,
		CertFile: x.ClientCert, KeyFile: x.ClientKey,
	})
	if err != nil {
		return err
	}
	mux := xmpp.NewMux(xmpp.Identity{Category: "client", Type: "console", Name: "stanzactl"}, xmpp.Software{Name: "stanzactl"})
	mux.Message = func(_ context.Context, _ *xmpp.Session, st *xmpp.Element) {
		select {
		case c.replies <- st:
		default:
		}
	}
	mux.Presence = func(_ context.Context, _ *xmpp.Session, st *xmpp.Element) {
		select {
		case c.presences <- st:
		default:
		}
	}
	c.sess, err = xmpp.Dial(ctx, xmpp.Config{
		JID: self, Password: x.Password.Reveal(), Servers: x.Server,
		DirectTLS: x.TLS == "direct", TLS: tc, Handler: mux,
		Logger: c.log.With("component", "xmpp"),
	})
	if err != nil {
		return err
	}
	c.served = make(chan error, 1)
	go func() { c.served <- c.sess.Serve(context.Background()) }()
	return nil
}

func (c *ctl) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c.sess.Close(ctx)
	<-c.served
}

func (c *ctl) do(ctx context.Context, cmd string, args []string) (string, error) {
	switch cmd {
	case "ping":
		start := time.Now()
		iq := xmpp.Stanza("iq", "get", c.target.String(), "").Add(xmpp.NewElement(xmpp.NSPing, "ping"))
		if _, err := c.sess.SendIQ(ctx, iq); err != nil {
			return "", err
		}
		return fmt.Sprintf("pong from %s in %s", c.target, time.Since(start).Round(time.Microsecond)), nil
	case "disco":
		iq := xmpp.Stanza("iq", "get", c.target.String(), "").Add(xmpp.NewElement(xmpp.NSDiscoInf, "query"))
		res, err := c.sess.SendIQ(ctx, iq)
		if err != nil {
			return "", err
		}
		var b strings.Builder
		for _, el := range res.Child(xmpp.NSDiscoInf, "query").Children {
			switch el.Name {
			case "identity":
				fmt.Fprintf(&b, "identity: %s/%s %s\n", el.Attr("category"), el.Attr("type"), el.Attr("name"))
			case "feature":
				fmt.Fprintf(&b, "feature:  %s\n", el.Attr("var"))
			}
		}
		return strings.TrimSuffix(b.String(), "\n"), nil
	case "commands":
		res, err := c.sess.SendIQ(ctx, xmpp.Stanza("iq", "get", c.target.String(), "").
			Add(xmpp.NewElement(xmpp.NSDiscoIt, "query", "node", xmpp.NSCommands)))
		if err != nil {
			return "", err
		}
		var b strings.Builder
		for _, it := range res.FirstChild().Children {
			fmt.Fprintf(&b, "%-10s %s\n", it.Attr("node"), it.Attr("name"))
		}
		return strings.TrimSuffix(b.String(), "\n"), nil
	case "exec":
		return c.exec(ctx, args[0], args[1:], nil)
	case "status":
		return c.exec(ctx, "status", nil, nil)
	case "run":
		out, err := c.exec(ctx, "action", []string{"name=" + args[0]}, nil)
		if err == nil && !strings.Contains(out, "\nExit code: 0\n") {
			return out, errFailed // printed, and the exit status says so
		}
		return out, err
	case "reload":
		return c.exec(ctx, "reload", nil, nil)
	case "read":
		return c.read(ctx, args)
	case "history":
		return c.history(ctx, args, c.json)
	case "plot":
		return c.plot(ctx, args, c.out)
	case "set":
		return c.set(ctx, args[0], args[1])
	}
	return "", fmt.Errorf("unknown command %q", cmd)
}

// errFailed marks a command that ran but failed (an action's non-zero
// exit): its output is printed and stanzactl exits 1.
var errFailed = errors.New("failed")

// errIncomplete is returned when an ad-hoc command asks for more input
// than the command line gave.
var errIncomplete = errors.New("the command needs more input")

// exec runs an ad-hoc command. With var=value arguments (or a form) it
// submits them with the first execute, so a command completes in one
// round trip.
func (c *ctl) exec(ctx context.Context, node string, kvs []string, form *xmpp.Form) (string, error) {
	cmd := xmpp.NewElement(xmpp.NSCommands, "command", "node", node, "action", "execute")
	if form != nil {
		cmd.Add(form.Element())
	} else if len(kvs) > 0 {
		f := &xmpp.Form{Type: xmpp.FormSubmit}
		for _, kv := range kvs {
			k, v, _ := strings.Cut(kv, "=")
			if fld := f.Field(k); fld != nil {
				fld.Values = append(fld.Values, v) // repeated var: list-multi
				continue
			}
			f.Fields = append(f.Fields, xmpp.FormField{Var: k, Values: []string{v}})
		}
		cmd.Add(f.Element())
	}
	res, err := c.sess.SendIQ(ctx, xmpp.Stanza("iq", "set", c.target.String(), "").Add(cmd))
	if err != nil {
		return "", err
	}
	out := res.FirstChild()
	text := formatCommand(out)
	if out.Attr("status") == "executing" {
		// Leave no session behind on the agent.
		cancel := xmpp.NewElement(xmpp.NSCommands, "command", "node", node, "action", "cancel", "sessionid", out.Attr("sessionid"))
		c.sess.SendIQ(ctx, xmpp.Stanza("iq", "set", c.target.String(), "").Add(cancel))
		return "", fmt.Errorf("%w; pass the fields as var=value:\n%s", errIncomplete, text)
	}
	return text, nil
}

// formatCommand renders a XEP-0050 answer: notes, then the form's fields
// as "label: value" (or, for a form to fill in, what each field wants).
func formatCommand(cmd *xmpp.Element) string {
	var b strings.Builder
	for _, n := range cmd.Children {
		if n.Name == "note" {
			fmt.Fprintf(&b, "%s: %s\n", n.Attr("type"), n.Text)
		}
	}
	f, err := xmpp.ParseForm(cmd.Child(xmpp.NSData, "x"))
	if err != nil {
		return strings.TrimSuffix(b.String(), "\n")
	}
	for _, fld := range f.Fields {
		if fld.Type == xmpp.FieldHidden {
			continue
		}
		label := fld.Label
		if label == "" {
			label = fld.Var
		}
		if f.Type == xmpp.FormForm {
			var opts []string
			for _, o := range fld.Options {
				opts = append(opts, o.Value)
			}
			req := ""
			if fld.Required {
				req = ", required"
			}
			fmt.Fprintf(&b, "  %s=<%s%s> %s", fld.Var, fld.Type, req, label)
			if len(opts) > 0 {
				fmt.Fprintf(&b, " (one of: %s)", strings.Join(opts, ", "))
			}
			b.WriteByte('\n')
			continue
		}
		switch len(fld.Values) {
		case 0:
			fmt.Fprintf(&b, "%s: -\n", label)
		case 1:
			fmt.Fprintf(&b, "%s: %s\n", label, fld.Values[0])
		default:
			fmt.Fprintf(&b, "%s:\n  %s\n", label, strings.Join(fld.Values, "\n  "))
		}
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// read asks for a XEP-0323 momentary readout and prints the readings
// that come back in messages carrying the request's seqnr.
func (c *ctl) read(ctx context.Context, names []string) (string, error) {
	seq := strconv.FormatInt(time.Now().UnixNano()&0x7fffffff, 10)
	req := xmpp.NewElement(xmpp.NSSensorData, "req", "seqnr", seq, "momentary", "true")
	for _, n := range names {
		req.Add(xmpp.NewElement(xmpp.NSSensorData, "node", "nodeId", n))
	}
	if _, err := c.sess.SendIQ(ctx, xmpp.Stanza("iq", "get", c.target.String(), "").Add(req)); err != nil {
		return "", err
	}
	var lines []string
	for {
		st, err := c.message(ctx)
		if err != nil {
			return "", err
		}
		for _, el := range st.Children {
			if el.Space != xmpp.NSSensorData || el.Attr("seqnr") != seq {
				continue
			}
			for _, n := range el.Children {
				switch n.Name {
				case "node":
					for _, ts := range n.Children {
						line := n.Attr("nodeId") + ":"
						for _, f := range ts.Children {
							line += " " + f.Attr("name") + "=" + f.Attr("value")
							if u := f.Attr("unit"); u != "" {
								line += " " + u
							}
						}
						lines = append(lines, line)
					}
				case "error":
					lines = append(lines, n.Attr("nodeId")+": error: "+n.Text)
				}
			}
			if el.Attr("done") == "true" {
				return strings.Join(lines, "\n"), nil
			}
		}
	}
}

// set switches or sets a device with XEP-0325. The parameter type follows
// the value: on/off/true/false as boolean, numbers as double, else string.
func (c *ctl) set(ctx context.Context, device, value string) (string, error) {
	typ, v := "string", value
	switch strings.ToLower(value) {
	case "on", "true", "yes":
		typ, v = "boolean", "true"
	case "off", "false", "no":
		typ, v = "boolean", "false"
	default:
		if _, err := strconv.ParseFloat(value, 64); err == nil {
			typ = "double"
		}
	}
	set := xmpp.NewElement(xmpp.NSControl, "set").Add(xmpp.NewElement(xmpp.NSControl, typ, "name", device, "value", v))
	if _, err := c.sess.SendIQ(ctx, xmpp.Stanza("iq", "set", c.target.String(), "").Add(set)); err != nil {
		return "", err
	}
	return "ok, " + device + " set to " + v, nil
}

// message returns the next message from the agent, skipping anything
// from others.
func (c *ctl) message(ctx context.Context) (*xmpp.Element, error) {
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no answer from %s: %w", c.target, ctx.Err())
		case err := <-c.served:
			c.served <- err
			return nil, fmt.Errorf("session ended: %v", err)
		case st := <-c.replies:
			from, _ := xmpp.ParseJID(st.Attr("from"))
			if from.BareKey() != c.target.BareKey() {
				continue
			}
			if st.Attr("type") == "error" {
				return nil, xmpp.ParseStanzaError(st)
			}
			return st, nil
		}
	}
}

// readPush reads a config file to push ("-": stdin), with the checks the
// agent would make first: size and UTF-8. The agent checks the rest.
func readPush(name string) ([]byte, error) {
	var data []byte
	var err error
	if name == "-" {
		data, err = io.ReadAll(io.LimitReader(os.Stdin, config.MaxFileSize+1))
	} else {
		data, err = os.ReadFile(name)
	}
	switch {
	case err != nil:
		return nil, err
	case len(data) > config.MaxFileSize:
		return nil, fmt.Errorf("%s is larger than %d bytes, the limit for a config", name, config.MaxFileSize)
	case !utf8.Valid(data):
		return nil, fmt.Errorf("%s is not UTF-8 text", name)
	}
	return data, nil
}

// configForm is the ad-hoc "config" submission of a file: one
// text-multi value per line.
func configForm(data []byte) *xmpp.Form {
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	return &xmpp.Form{Type: xmpp.FormSubmit, Fields: []xmpp.FormField{{Var: "config", Type: xmpp.FieldTextMulti, Values: lines}}}
}

// configGet runs the first stage of ad-hoc "config" and returns the file
// it shows; the command session is cancelled.
func (c *ctl) configGet(ctx context.Context) (string, error) {
	cmd := xmpp.NewElement(xmpp.NSCommands, "command", "node", "config", "action", "execute")
	res, err := c.sess.SendIQ(ctx, xmpp.Stanza("iq", "set", c.target.String(), "").Add(cmd))
	if err != nil {
		return "", err
	}
	out := res.FirstChild()
	if sid := out.Attr("sessionid"); out.Attr("status") == "executing" {
		cancel := xmpp.NewElement(xmpp.NSCommands, "command", "node", "config", "action", "cancel", "sessionid", sid)
		c.sess.SendIQ(ctx, xmpp.Stanza("iq", "set", c.target.String(), "").Add(cancel))
	}
	f, err := xmpp.ParseForm(out.Child(xmpp.NSData, "x"))
	if err != nil {
		return "", fmt.Errorf("the agent's answer has no config form: %w", err)
	}
	fld := f.Field("config")
	if fld == nil {
		return "", errors.New("the agent's answer has no config field")
	}
	return strings.Join(fld.Values, "\n") + "\n", nil
}
