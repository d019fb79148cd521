package control

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/agent/history"
	"github.com/stanzad/stanzad/devices"
	"github.com/stanzad/stanzad/xmpp"
)

// history over chat: the numbers are those fed in, the errors say what
// to ask instead, and roles apply as for read.
func TestChatHistory(t *testing.T) {
	store, err := history.Open(t.TempDir(), history.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	now := time.Now()
	// Two hours of greenhouse readings, one a minute: 10 °C rising to a
	// peak of 30 °C an hour ago, then falling.
	for i := 120; i >= 0; i-- {
		v := 30 - float64(absInt(i-60))/3
		store.Add(devices.Reading{Device: "greenhouse", Time: now.Add(-time.Duration(i) * time.Minute), Fields: []devices.Field{
			devices.Number("temperature", v, 1, "°C"),
			devices.Number("humidity", 50, 0, "%"),
		}})
	}
	host := &testHost{devs: []devices.Device{devices.NewSwitch(devices.SwitchConfig{Name: "greenhouse"}), devices.NewSwitch(devices.SwitchConfig{Name: "relay1"})}, hist: store}
	pl := New(host, slog.New(slog.DiscardHandler), host.Self(), &config.Config{})
	viewer := Caller{Role: RoleViewer, Via: "test"}
	ctx := context.Background()

	got := pl.chatText(ctx, viewer, "history greenhouse temperature 90m")
	for _, want := range []string{"greenhouse temperature, last 1h30m (", "min 10 °C at " + now.Local().Format("15:04"), "max 30 °C at " + now.Add(-time.Hour).Local().Format("15:04")} {
		if !strings.Contains(got, want) {
			t.Errorf("history text %q lacks %q", got, want)
		}
	}
	lines := strings.Split(got, "\n")
	if len(lines) != 3 || !strings.ContainsAny(lines[1], "▁█") {
		t.Errorf("history text is not a title, a sparkline and a summary: %q", got)
	}
	// Without a duration: the last day, or all there is (2 h here).
	if got := pl.chatText(ctx, viewer, "history greenhouse"); !strings.Contains(got, "greenhouse humidity, last 2h1m (121 readings)") || !strings.Contains(got, "greenhouse temperature, last 2h1m (121 readings)") {
		t.Errorf("history of every field: %q", got)
	}
	for cmd, want := range map[string]string{
		"history greenhouse co2":       `history: greenhouse has no field "co2"; fields: humidity, temperature`,
		"history shed":                 `history: unknown device "shed" (devices: greenhouse, relay1)`,
		"history relay1":               "history: relay1 has no history yet",
		"history greenhouse 30d":       "history: the history goes back 2h (to ",
		"history greenhouse x 1 2 3 4": "bad command: usage: history",
	} {
		if got := pl.chatText(ctx, viewer, cmd); !strings.HasPrefix(got, want) {
			t.Errorf("%q: %q, want it to start with %q", cmd, got, want)
		}
	}
	if _, err := pl.History(ctx, Caller{Role: RoleNone}, HistoryRequest{Device: "greenhouse", Span: time.Hour}); !errors.Is(err, ErrForbidden) {
		t.Errorf("a stranger's history request: %v", err)
	}
	_, err = pl.History(ctx, viewer, HistoryRequest{Device: "greenhouse", Field: "co2", Span: time.Hour})
	if se := StanzaError(err); se.Condition != "item-not-found" {
		t.Errorf("unknown field as %s, want item-not-found", se.Condition)
	}
	host.hist = nil
	if got := pl.chatText(ctx, viewer, "history greenhouse"); !strings.Contains(got, "keeps no history") {
		t.Errorf("without a history: %q", got)
	}
}

func absInt(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// A submitted history or plot form: the device is required, the
// duration must be one.
func TestHistoryRequestForm(t *testing.T) {
	form := func(kv ...string) *xmpp.Form {
		f := &xmpp.Form{Type: xmpp.FormSubmit}
		for i := 0; i+1 < len(kv); i += 2 {
			f.Fields = append(f.Fields, xmpp.FormField{Var: kv[i], Values: []string{kv[i+1]}})
		}
		return f
	}
	if req, err := historyRequest(form("device", "greenhouse", "field", "temperature", "duration", "7d")); err != nil ||
		req != (HistoryRequest{Device: "greenhouse", Field: "temperature", Span: 7 * 24 * time.Hour}) {
		t.Errorf("good form: %+v, %v", req, err)
	}
	for _, f := range []*xmpp.Form{form(), form("field", "temperature"), form("device", "g", "duration", "soon"), form("device", "g", "duration", "0s"), form("device", "g", "duration", "-1h")} {
		if _, err := historyRequest(f); !errors.Is(err, ErrBadRequest) {
			t.Errorf("historyRequest(%+v) = %v, want a bad request", f.Fields, err)
		}
	}
}
