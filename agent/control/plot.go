package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/stanzad/stanzad/agent/chart"
	"github.com/stanzad/stanzad/xmpp"
)

// Uploader puts a file where clients can fetch it (XEP-0363) and returns
// its URL.
type Uploader interface {
	Upload(ctx context.Context, name, contentType string, data []byte) (string, error)
}

// plotTimeout bounds a plot: the history query, drawing and the upload.
const plotTimeout = 45 * time.Second

// ErrPlotBusy is returned while another chart is being drawn: one at a
// time, so a burst of requests cannot take a board's memory.
var ErrPlotBusy = errors.New("busy drawing another chart")

// PlotAnswer is a plot's result: the chart's URL (empty when it could
// not be uploaded, with Why), the history summary, and the PNG.
type PlotAnswer struct {
	URL, Why string
	History  HistoryAnswer
	PNG      []byte
}

// Plot draws the history req asks for as a PNG and uploads it. Viewers
// and operators; audit-logged at debug like history. Errors are those
// of History; a failed upload is not an error (the answer says why).
func (pl *Plane) Plot(ctx context.Context, c Caller, req HistoryRequest) (ans PlotAnswer, err error) {
	if !pl.plotting.CompareAndSwap(false, true) {
		return ans, ErrPlotBusy
	}
	defer pl.plotting.Store(false)
	ctx, cancel := context.WithTimeout(ctx, plotTimeout)
	defer cancel()
	start := time.Now()
	defer func() {
		pl.audit(ctx, c, slog.LevelDebug, "plot", []string{req.Device, req.Field, req.Span.String()}, err, time.Since(start))
	}()
	h, err := pl.history(c, req)
	if err != nil {
		return ans, err
	}
	ans.History = h
	ch := chart.Chart{Title: fmt.Sprintf("%s, last %s", h.Device, roundSpan(h.To.Sub(h.From))), From: h.From, To: h.To}
	for _, f := range h.Fields {
		ch.Panels = append(ch.Panels, chart.Panel{Name: f.Field, Unit: f.Unit, Points: f.Points})
	}
	png, _, err := chart.Render(ch)
	if err != nil {
		return ans, err
	}
	ans.PNG = png
	up, ok := pl.host.(Uploader)
	if !ok {
		ans.Why = "this agent cannot upload files"
		return ans, nil
	}
	name := fmt.Sprintf("%s-%s.png", sanitizeName(h.Device), h.To.UTC().Format("20060102-150405"))
	if ans.URL, err = up.Upload(ctx, name, "image/png", png); err != nil {
		ans.Why = err.Error()
		pl.log.Warn("chart not uploaded", "device", h.Device, "err", err)
		err = nil
	}
	return ans, nil
}

// sanitizeName keeps a file name to letters, digits, '-' and '_'.
func sanitizeName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

// chatPlot answers plot in chat from a goroutine of its own: drawing
// and uploading take seconds, and chat messages are handled one at a
// time. The link goes first, then the summary; without a link, the
// summary says why.
func (pl *Plane) chatPlot(ctx context.Context, c Caller, cmd ChatCommand, send ReplyFunc) {
	if err := pl.Admit(ctx, c); err != nil {
		send(ctx, ChatReply{Text: "slow down: " + err.Error()})
		return
	}
	req, _ := ParseHistoryArgs(cmd.Verb, cmd.Args) // checked by ParseChatCommand
	// ctx is the session's: the plot ends with it (its answer could not
	// be sent anyway), and Plot bounds it by plotTimeout.
	go func() {
		ans, err := pl.Plot(ctx, c, req)
		switch {
		case err != nil:
			send(ctx, ChatReply{Text: chatError("plot", err)})
		case ans.URL == "":
			send(ctx, ChatReply{Text: "no chart: " + ans.Why + "\n" + ans.History.Text()})
		default:
			send(ctx, ChatReply{Link: ans.URL, Text: ans.History.Text()})
		}
	}()
}

// adhocPlot is plot as an ad-hoc command: the form of history, and an
// answer with the chart's URL (field "url") and the summary.
func (pl *Plane) adhocPlot(ctx context.Context, r *xmpp.CommandRequest) (*xmpp.CommandResponse, error) {
	c, req, first, err := pl.historyStage(ctx, r, "Chart of a sensor")
	if first != nil || err != nil {
		return first, err
	}
	ans, err := pl.Plot(ctx, c, req)
	if err != nil {
		return nil, wrapStanza(err)
	}
	res := &xmpp.Form{Type: xmpp.FormResult, Title: "Chart of " + ans.History.Device}
	var notes []xmpp.Note
	if ans.URL != "" {
		res.Fields = append(res.Fields, resultField("url", "Chart", ans.URL))
	} else {
		notes = append(notes, xmpp.Note{Type: "warn", Text: "no chart: " + ans.Why})
	}
	res.Fields = append(res.Fields, ans.History.textFields()...)
	return &xmpp.CommandResponse{Form: res, Notes: notes}, nil
}
