// Command stanzactl is the operator CLI: an XMPP client that drives
// stanzad agents.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/xmpp"
)

const usage = `usage: stanzactl [-config op.toml] [-to agent-jid] [-timeout 10s] command [args]

commands:
  ping                   XEP-0199 ping the agent, print the round trip
  disco                  XEP-0030 disco#info: identity and features
  status                 agent status
  read [device…]         current readings
  set <device> <value>   switch or set a device

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
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	cmd, cargs := fs.Arg(0), fs.Args()[1:]
	switch cmd {
	case "ping", "disco", "status":
		if len(cargs) != 0 {
			fmt.Fprintf(stderr, "stanzactl: %s takes no arguments\n", cmd)
			return 2
		}
	case "read":
	case "set":
		if len(cargs) != 2 {
			fmt.Fprintln(stderr, "stanzactl: usage: set <device> <value>")
			return 2
		}
	default:
		fmt.Fprintf(stderr, "stanzactl: unknown command %q\n\n%s", cmd, usage)
		return 2
	}

	cc, err := config.LoadClient(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if *to != "" {
		cc.To = *to
	}
	target, err := xmpp.ParseJID(cc.To)
	if err != nil {
		fmt.Fprintf(stderr, "stanzactl: agent JID: %v\n", err)
		return 2
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	c := &ctl{target: target, log: log, replies: make(chan *xmpp.Element, 16)}
	if err := c.connect(ctx, cc.XMPP); err != nil {
		fmt.Fprintf(stderr, "stanzactl: %v\n", err)
		return 1
	}
	defer c.close()

	out, err := c.do(ctx, cmd, cargs)
	if err != nil {
		fmt.Fprintf(stderr, "stanzactl: %s: %v\n", cmd, err)
		return 1
	}
	fmt.Fprintln(stdout, out)
	return 0
}

type ctl struct {
	target  xmpp.JID
	log     *slog.Logger
	sess    *xmpp.Session
	served  chan error
	replies chan *xmpp.Element
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
	c.sess, err = xmpp.Dial(ctx, xmpp.Config{
		JID: self, Password: x.Password.Reveal(), Server: x.Server,
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
	default:
		return c.chat(ctx, strings.Join(append([]string{cmd}, args...), " "))
	}
}

// chat sends a chat text command and waits for the agent's reply in the
// same thread, skipping telemetry messages that may arrive meanwhile.
func (c *ctl) chat(ctx context.Context, text string) (string, error) {
	thread := c.sess.NewID()
	m := xmpp.Stanza("message", "chat", c.target.String(), c.sess.NewID())
	m.Add(xmpp.NewElement(xmpp.NSClient, "body").SetText(text))
	m.Add(xmpp.NewElement(xmpp.NSClient, "thread").SetText(thread))
	if err := c.sess.Send(ctx, m); err != nil {
		return "", err
	}
	for {
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no answer from %s: %w", c.target, ctx.Err())
		case err := <-c.served:
			c.served <- err
			return "", fmt.Errorf("session ended: %v", err)
		case st := <-c.replies:
			from, _ := xmpp.ParseJID(st.Attr("from"))
			if from.BareKey() != c.target.BareKey() {
				continue
			}
			if st.Attr("type") == "error" {
				return "", xmpp.ParseStanzaError(st)
			}
			if st.ChildText(xmpp.NSClient, "thread") != thread {
				continue
			}
			return st.ChildText(xmpp.NSClient, "body"), nil
		}
	}
}
