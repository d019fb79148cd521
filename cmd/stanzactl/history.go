package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/stanzad/stanzad/xmpp"
)

// history runs the agent's ad-hoc "history" command in one stage and
// prints the points it returns: the CSV as the agent sends it, or JSON
// rows.
func (c *ctl) history(ctx context.Context, args []string, asJSON bool) (string, error) {
	form, err := c.historyCommand(ctx, "history", args)
	if err != nil {
		return "", err
	}
	csv := form.Value("csv")
	if csv == "" {
		return "", fmt.Errorf("the agent's answer has no history rows (an older stanzad?)")
	}
	if !asJSON {
		return csv, nil
	}
	return historyJSON(csv)
}

// plot runs the agent's ad-hoc "plot" and prints the chart's URL (and
// the summary); with out, it downloads the PNG there too.
func (c *ctl) plot(ctx context.Context, args []string, out string) (string, error) {
	form, err := c.historyCommand(ctx, "plot", args)
	if err != nil {
		return "", err
	}
	url := form.Value("url")
	if url == "" {
		return "", fmt.Errorf("the agent drew no chart (no upload service on its server?)")
	}
	if out != "" {
		if err := download(ctx, url, out); err != nil {
			return "", err
		}
	}
	return url, nil
}

// historyCommand runs ad-hoc node (history or plot) in one stage with
// "<device> [field] [duration]" and returns the answer's form.
func (c *ctl) historyCommand(ctx context.Context, node string, args []string) (*xmpp.Form, error) {
	kvs := []string{"device=" + args[0]}
	rest := args[1:]
	if len(rest) > 0 && isSpan(rest[len(rest)-1]) {
		kvs = append(kvs, "duration="+rest[len(rest)-1])
		rest = rest[:len(rest)-1]
	}
	switch len(rest) {
	case 0:
	case 1:
		kvs = append(kvs, "field="+rest[0])
	default:
		return nil, fmt.Errorf("%q is not a duration (e.g. 90m, 12h, 7d)", rest[len(rest)-1])
	}
	cmd := xmpp.NewElement(xmpp.NSCommands, "command", "node", node, "action", "execute")
	f := &xmpp.Form{Type: xmpp.FormSubmit}
	for _, kv := range kvs {
		k, v, _ := strings.Cut(kv, "=")
		f.Fields = append(f.Fields, xmpp.FormField{Var: k, Values: []string{v}})
	}
	res, err := c.sess.SendIQ(ctx, xmpp.Stanza("iq", "set", c.target.String(), "").Add(cmd.Add(f.Element())))
	if err != nil {
		return nil, err
	}
	form, err := xmpp.ParseForm(res.FirstChild().Child(xmpp.NSData, "x"))
	if err != nil {
		return nil, fmt.Errorf("the agent's answer has no form: %w", err)
	}
	return form, nil
}

// download GETs url into the file out.
func download(ctx context.Context, url, out string) error {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, res.Status)
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return err
	}
	return os.WriteFile(out, body, 0o644)
}

// isSpan reports whether s reads as a history duration (90m, 12h, 7d).
func isSpan(s string) bool {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		_, err := strconv.Atoi(days)
		return err == nil
	}
	_, err := time.ParseDuration(s)
	return err == nil
}

// historyRow is one JSON row of stanzactl history -json.
type historyRow struct {
	Time     string  `json:"time"`
	Field    string  `json:"field"`
	Min      float64 `json:"min"`
	Avg      float64 `json:"avg"`
	Max      float64 `json:"max"`
	Readings int     `json:"readings"`
}

// historyJSON turns the agent's CSV (header, then rows) into a JSON array.
func historyJSON(csv string) (string, error) {
	lines := strings.Split(csv, "\n")
	rows := make([]historyRow, 0, len(lines))
	for i, l := range lines[1:] {
		cols := strings.Split(l, ",")
		if len(cols) != 6 {
			return "", fmt.Errorf("history row %d: %q", i+1, l)
		}
		r := historyRow{Time: cols[0], Field: cols[1]}
		var errs [4]error
		r.Min, errs[0] = strconv.ParseFloat(cols[2], 64)
		r.Avg, errs[1] = strconv.ParseFloat(cols[3], 64)
		r.Max, errs[2] = strconv.ParseFloat(cols[4], 64)
		r.Readings, errs[3] = strconv.Atoi(cols[5])
		for _, err := range errs {
			if err != nil {
				return "", fmt.Errorf("history row %d: %w", i+1, err)
			}
		}
		rows = append(rows, r)
	}
	b, err := json.MarshalIndent(rows, "", "  ")
	return string(b), err
}
