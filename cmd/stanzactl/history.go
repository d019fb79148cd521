package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/stanzad/stanzad/xmpp"
)

// history runs the agent's ad-hoc "history" command in one stage and
// prints the points it returns: the CSV as the agent sends it, or JSON
// rows.
func (c *ctl) history(ctx context.Context, args []string, asJSON bool) (string, error) {
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
		return "", fmt.Errorf("%q is not a duration (e.g. 90m, 12h, 7d)", rest[len(rest)-1])
	}
	cmd := xmpp.NewElement(xmpp.NSCommands, "command", "node", "history", "action", "execute")
	f := &xmpp.Form{Type: xmpp.FormSubmit}
	for _, kv := range kvs {
		k, v, _ := strings.Cut(kv, "=")
		f.Fields = append(f.Fields, xmpp.FormField{Var: k, Values: []string{v}})
	}
	res, err := c.sess.SendIQ(ctx, xmpp.Stanza("iq", "set", c.target.String(), "").Add(cmd.Add(f.Element())))
	if err != nil {
		return "", err
	}
	form, err := xmpp.ParseForm(res.FirstChild().Child(xmpp.NSData, "x"))
	if err != nil {
		return "", fmt.Errorf("the agent's answer has no history: %w", err)
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
