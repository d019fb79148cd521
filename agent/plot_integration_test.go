//go:build integration

package agent_test

import (
	"bytes"
	"context"
	"image/png"
	"io"
	"math"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stanzad/stanzad/agent"
	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/devices"
	"github.com/stanzad/stanzad/internal/testserver"
	"github.com/stanzad/stanzad/xmpp"
)

// plot through Prosody's mod_http_file_share: one message whose body is
// the URL and whose oob url is the same, a PNG that downloads and
// decodes at the stated size, then the sparkline text; ad-hoc plot too.
func TestIntegrationPlot(t *testing.T) {
	srv := testserver.New(t, testserver.Options{Upload: true, MUC: true})
	testserver.MustRegister(t, srv, "device", "pw-device")
	op := newPeer(t, srv, "operator")
	lab := "lab@conference." + srv.Host
	op.createRoom(t, lab, "op", "anyone")
	cfg := agentConfig(srv, t.TempDir())
	cfg.Agent.HistoryMax = 1 << 20
	cfg.Sinks = []config.Sink{{Kind: "muc", Room: lab, Nick: "stanzad", Devices: []string{"none"}}}
	const n = 720
	done := make(chan struct{})
	a, stop := runAgent(t, cfg, replay{n: n, done: done})
	defer stop()
	<-done
	waitStatus(t, a, "in the room", 15*time.Second, func(rep agent.StatusReport) bool {
		return len(rep.Outboxes) == 1 && !strings.Contains(rep.Outboxes[0].Note, "not in the room")
	})
	to := "device@" + srv.Host + "/agent"
	time.Sleep(300 * time.Millisecond) // the last reading through the dispatcher
	op.say(t, to, "plot greenhouse 24h")
	link := op.next(t, 20*time.Second, isText)
	url := link.ChildText(xmpp.NSClient, "body")
	oob := link.Child(xmpp.NSOOB, "x")
	if !strings.HasPrefix(url, "http://127.0.0.1:") || oob == nil || oob.ChildText(xmpp.NSOOB, "url") != url {
		t.Fatalf("first answer to plot is not a link with a matching oob url: %s", link)
	}
	summary := op.next(t, 5*time.Second, isText).ChildText(xmpp.NSClient, "body")
	kept := itoa(n - 44) // the gap
	for _, want := range []string{"greenhouse humidity, last 24h (" + kept + " readings)", "greenhouse temperature, last 24h (" + kept + " readings)", "max 21 °C at "} {
		if !strings.Contains(summary, want) {
			t.Errorf("plot summary %q lacks %q", summary, want)
		}
	}
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	img, err := png.Decode(bytes.NewReader(body))
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("the link does not give a PNG: %d %v", res.StatusCode, err)
	}
	if b := img.Bounds(); b.Dx() != 720 || b.Dy() != 36+2*260 {
		t.Errorf("chart is %v, want 720 wide with two panels", b)
	}
	if out := os.Getenv("STANZAD_PLOT_OUT"); out != "" { // for the README
		os.WriteFile(out, body, 0o644)
	}
	// Ad-hoc plot: the URL in the answer.
	r, err := op.command(t, to, "plot", "execute", "", "device", "greenhouse", "field", "temperature", "duration", "12h")
	if err != nil {
		t.Fatal(err)
	}
	if u := resultForm(t, r).Value("url"); !strings.HasPrefix(u, "http://127.0.0.1:") || u == url {
		t.Errorf("ad-hoc plot url %q", u)
	}
	_, err = op.command(t, to, "plot", "execute", "", "device", "greenhouse", "field", "co2")
	wantStanzaError(t, "plot of an unknown field", err, "item-not-found", `greenhouse has no field "co2"`)

	// In the room, addressed by nick: the link as its own groupchat
	// message (body exactly the URL), then the summary to the asker.
	op.groupchat(t, lab, "stanzad: plot greenhouse temperature 6h")
	rl := op.next(t, 20*time.Second, func(m *xmpp.Element) bool {
		return m.Attr("type") == "groupchat" && m.Attr("from") == lab+"/stanzad" && m.Child(xmpp.NSOOB, "x") != nil
	})
	if u := rl.ChildText(xmpp.NSClient, "body"); !strings.HasPrefix(u, "http://127.0.0.1:") || rl.Child(xmpp.NSOOB, "x").ChildText(xmpp.NSOOB, "url") != u {
		t.Errorf("room link message: %s", rl)
	}
	if got := op.roomText(t, lab+"/stanzad", "op: greenhouse temperature, last 6h (", nil); !strings.Contains(got, "min ") {
		t.Errorf("room summary: %q", got)
	}
}

// Without an upload service, plot answers with the text alone and says
// why.
func TestIntegrationPlotNoUpload(t *testing.T) {
	got := plotWithout(t, testserver.Options{})
	body := got.ChildText(xmpp.NSClient, "body")
	if got.Child(xmpp.NSOOB, "x") != nil || !strings.HasPrefix(body, "no chart: the server offers no HTTP upload service") || !strings.Contains(body, "counter n, last") {
		t.Fatalf("plot without upload: %s", got)
	}
}

// A chart larger than the upload service takes: the text answer says so.
func TestIntegrationPlotTooLarge(t *testing.T) {
	got := plotWithout(t, testserver.Options{Upload: true, UploadSizeLimit: 1000})
	body := got.ChildText(xmpp.NSClient, "body")
	if got.Child(xmpp.NSOOB, "x") != nil || !strings.HasPrefix(body, "no chart: the chart is ") || !strings.Contains(body, "takes at most 1000") {
		t.Fatalf("plot over the upload limit: %s", got)
	}
}

// plotWithout asks an agent with five counter readings, on a server
// configured by opts, for "plot counter" and returns the first answer.
func plotWithout(t *testing.T, opts testserver.Options) *xmpp.Element {
	t.Helper()
	srv := testserver.New(t, opts)
	testserver.MustRegister(t, srv, "device", "pw-device")
	op := newPeer(t, srv, "operator")
	cfg := agentConfig(srv, t.TempDir())
	cfg.Agent.HistoryMax = 1 << 20
	cfg.Sinks = nil
	done := make(chan struct{})
	_, stop := runAgent(t, cfg, counter{n: 5, every: 10 * time.Millisecond, done: done})
	t.Cleanup(func() { stop() })
	<-done
	time.Sleep(300 * time.Millisecond) // the last reading through the dispatcher
	op.say(t, "device@"+srv.Host+"/agent", "plot counter")
	return op.next(t, 20*time.Second, isText)
}

// replay is a greenhouse that reports the last day at once: n readings
// two minutes apart ending now, temperature between 9 and 21 °C over
// the day, humidity opposite, and 44 readings (an hour and a half)
// missing after midway: a gap the chart shows.
type replay struct {
	n    int
	done chan struct{}
}

func (r replay) Name() string { return "greenhouse" }

func (r replay) Run(ctx context.Context, emit func(devices.Reading)) error {
	start := time.Now().Add(-time.Duration(r.n) * 2 * time.Minute)
	for i := range r.n {
		if i > r.n/2 && i <= r.n/2+44 {
			continue
		}
		at := start.Add(time.Duration(i+1) * 2 * time.Minute)
		day := float64(i) / float64(r.n) * 2 * math.Pi
		temp := math.Round((15+6*math.Sin(day-1.6))*10) / 10
		emit(devices.Reading{Device: "greenhouse", Time: at, Fields: []devices.Field{
			devices.Number("temperature", temp, 1, "°C"),
			devices.Number("humidity", math.Round(80-2*temp), 0, "%"),
		}})
		if i%50 == 0 {
			time.Sleep(5 * time.Millisecond) // within what the bus holds
		}
	}
	close(r.done)
	<-ctx.Done()
	return nil
}
