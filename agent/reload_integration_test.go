//go:build integration

package agent_test

import (
	"fmt"
	mqtt "github.com/eclipse/paho.mqtt.golang"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stanzad/stanzad/agent"
	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/internal/ptytest"
	"github.com/stanzad/stanzad/internal/testserver"
	"github.com/stanzad/stanzad/xmpp"
)

// liveConfig is the file of the live-reload agent: a climate sensor on
// a fast interval whose readings go to rx, a relay, and whatever extra
// sections a step adds.
func liveConfig(srv *testserver.Server, dir, interval, sinkExtra, extra string) string {
	return configHead(srv, dir) + fmt.Sprintf(`
[acl]
operators = ["operator@%[1]s"]

[[device]]
name = "greenhouse"
kind = "sim"
interval = "%[2]s"

[[device]]
name = "relay1"
kind = "sim-switch"
%[4]s
[[sink]]
kind = "chat"
to = "rx@%[1]s"
devices = ["greenhouse"]
%[3]s`, srv.Host, interval, sinkExtra, extra)
}

// replaceFile writes a file the way editors do: a new file renamed over
// the old one.
func replaceFile(t *testing.T, path, s string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	writeFile(t, tmp, s)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// Every section of the config changes on a running agent: devices are
// added, restarted and removed by editing the file, a sink's filter and
// a device's interval change through the ad-hoc reload, a sink with
// readings pending while the server is down is removed and added back.
// The session is never replaced, the operator never sees the agent go
// offline, and the sink's seqnr runs on without a gap or a duplicate.
func TestIntegrationLiveReload(t *testing.T) {
	srv := testserver.New(t, testserver.Options{})
	testserver.MustRegister(t, srv, "device", "pw-device")
	op := newPeer(t, srv, "operator")
	rx := newReceiver(t, srv, "rx")
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "stanzad.toml")
	writeFile(t, filepath.Join(dir, "password"), "pw-device")
	master, uart := ptytest.Open(t)
	writeFile(t, cfgPath, liveConfig(srv, dir, "100ms", "", ""))
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	a := runOnline(t, agent.Options{Config: cfg, ConfigPath: cfgPath, Version: "test", Logger: testLogger(t)})
	to := "device@" + srv.Host + "/agent"
	sess, _ := a.WaitConnected(t.Context())
	op.ask(t, to, "help")
	waitReadings := func(n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			rx.mu.Lock()
			got := len(rx.seqs)
			rx.mu.Unlock()
			if got >= n {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("fewer than %d readings arrived", n)
	}
	waitReadings(5)

	// A device added by editing the file answers read; an event device
	// says it has nothing yet, then what it last said and how long ago.
	replaceFile(t, cfgPath, liveConfig(srv, dir, "100ms", "", fmt.Sprintf(`
[[device]]
name = "greenhouse2"
kind = "sim"
interval = "1h"

[[device]]
name = "uart"
kind = "serial"
port = %q
`, uart)))
	var got string
	for range 50 {
		if got = op.ask(t, to, "read greenhouse2"); strings.HasPrefix(got, "greenhouse2: temperature=") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.HasPrefix(got, "greenhouse2: temperature=") {
		t.Fatalf("read of the added device: %q", got)
	}
	if got := op.ask(t, to, "read uart"); got != "uart: no reading yet" {
		t.Errorf("read of an event device before any event: %q", got)
	}
	if _, err := master.WriteString("hello\n"); err != nil {
		t.Fatal(err)
	}
	for range 50 {
		if got = op.ask(t, to, "read uart"); strings.HasPrefix(got, "uart: line=hello") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.HasPrefix(got, "uart: line=hello") {
		t.Errorf("read of an event device after an event: %q", got)
	}
	if got := op.ask(t, to, "read"); !strings.Contains(got, "uart: line=hello") || !strings.Contains(got, "greenhouse2: temperature=") {
		t.Errorf("read of every device leaves some out:\n%s", got)
	}

	// The sink's filter and the sensor's interval change through the
	// ad-hoc reload; the answer says what was done to what.
	writeFile(t, cfgPath, liveConfig(srv, dir, "150ms", "deadband = 0.001\n", ""))
	res, err := op.command(t, to, "reload", "execute", "")
	if err != nil {
		t.Fatal(err)
	}
	note := res.ChildText(xmpp.NSCommands, "note")
	for _, want := range []string{"removed: device greenhouse2, device uart", "changed: sink chat rx@" + srv.Host + " (filters)", "restarted: device greenhouse"} {
		if !strings.Contains(note, want) {
			t.Errorf("reload answer lacks %q: %s", want, note)
		}
	}
	if strings.Contains(note, "relay1") || strings.Contains(note, "xmpp") {
		t.Errorf("reload touched what did not change: %s", note)
	}
	if got := op.ask(t, to, "read uart"); !strings.Contains(got, "unknown device") {
		t.Errorf("read of a removed device: %q", got)
	}
	rx.mu.Lock()
	n := len(rx.seqs)
	rx.mu.Unlock()
	waitReadings(n + 5) // the restarted sensor reports on

	// Same session all along: no new stream, no unavailable presence.
	if s, _ := a.WaitConnected(t.Context()); s != sess {
		t.Error("a reload without [xmpp] changes replaced the session")
	}
	for len(op.pres) > 0 {
		if p := <-op.pres; p.Attr("from") == to && p.Attr("type") == "unavailable" {
			t.Errorf("the operator saw the agent go offline: %s", p)
		}
	}

	// The server goes away; readings queue for rx. The sink is removed
	// (its outbox stays on disk, and the answer says how much it holds),
	// then added back; when the server returns, every reading arrives
	// once. (The sensor is quiet while the server stops: a reading in
	// flight then may arrive twice, which the design allows for what the
	// server never acknowledged.)
	writeFile(t, cfgPath, liveConfig(srv, dir, "1h", "", ""))
	if _, err := a.Reload(t.Context(), agent.Caller{Role: agent.RoleOperator, Via: "test"}); err != nil {
		t.Fatal(err)
	}
	for a.Queued() > 0 {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	rx.mu.Lock()
	before := len(rx.seqs) // all acknowledged: the server has them
	rx.mu.Unlock()
	srv.Stop()
	writeFile(t, cfgPath, liveConfig(srv, dir, "100ms", "", ""))
	if _, err := a.Reload(t.Context(), agent.Caller{Role: agent.RoleOperator, Via: "test"}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	writeFile(t, cfgPath, strings.Replace(liveConfig(srv, dir, "100ms", "", ""), "[[sink]]\nkind = \"chat\"\nto = \"rx@"+srv.Host+"\"\ndevices = [\"greenhouse\"]\n", "", 1))
	rep, err := a.Reload(t.Context(), agent.Caller{Role: agent.RoleOperator, Via: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rep.String(), "removed: sink chat rx@"+srv.Host) || !strings.Contains(rep.String(), "readings not yet delivered") {
		t.Errorf("removing a sink with queued readings: %s", rep)
	}
	time.Sleep(500 * time.Millisecond)
	writeFile(t, cfgPath, liveConfig(srv, dir, "100ms", "", ""))
	if rep, err = a.Reload(t.Context(), agent.Caller{Role: agent.RoleOperator, Via: "test"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rep.String(), "added: sink chat rx@"+srv.Host) {
		t.Errorf("adding the sink back: %s", rep)
	}
	time.Sleep(500 * time.Millisecond)
	if err := srv.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := a.WaitConnected(t.Context()); err != nil {
		t.Fatal(err)
	}
	// The queue drains to the server, and rx (reconnecting on its own
	// backoff) gets what the server kept for it: more than it had before
	// the outage, without a hole (what waited at the server may arrive
	// after newer readings; a hole closes when it does).
	var seqs []uint64
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		rx.mu.Lock()
		seqs = append(seqs[:0], rx.seqs...)
		rx.mu.Unlock()
		if a.Queued() == 0 && len(seqs) > before+5 && uint64(len(seqs)) >= slices.Max(seqs) {
			break
		}
	}
	slices.Sort(seqs) // what waited offline at the server may come after newer ones
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			t.Fatalf("seqnr not contiguous (a reading lost or sent twice): %s", summarize(seqs))
		}
	}
	if len(seqs) < n+10 {
		t.Errorf("only %d readings arrived: %s", len(seqs), summarize(seqs))
	}
	t.Logf("%d readings, seqnr %d..%d, no gap, no duplicate", len(seqs), seqs[0], seqs[len(seqs)-1])
}

// [mqtt] reconnects the bridge only when it changed: a device added
// leaves the bridge connected (its status never goes "offline") and the
// new device's readings reach MQTT; a new topic_prefix reconnects it and
// readings move to the new topics.
func TestIntegrationReloadMQTT(t *testing.T) {
	srv := testserver.New(t, testserver.Options{})
	testserver.MustRegister(t, srv, "device", "pw-device")
	broker := testserver.NewMosquitto(t, testserver.MosquittoOptions{})
	w := newMQTTWatcher(t, broker, "watcher", "#")
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "stanzad.toml")
	writeFile(t, filepath.Join(dir, "password"), "pw-device")
	mqttSection := func(prefix string) string {
		return fmt.Sprintf("\n[mqtt]\nbroker = \"tcp://%s\"\nkeepalive = \"2s\"\ntopic_prefix = %q\n", broker.Addr, prefix)
	}
	writeFile(t, cfgPath, liveConfig(srv, dir, "200ms", "", mqttSection("stanzad/{node}")))
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	a := runOnline(t, agent.Options{Config: cfg, ConfigPath: cfgPath, Version: "test", Logger: testLogger(t)})
	w.wait(t, "stanzad/device/status", func(m mqtt.Message) bool { return string(m.Payload()) == "online" })
	w.wait(t, "stanzad/device/greenhouse/temperature", anyMsg)

	reload := func() string {
		t.Helper()
		rep, err := a.Reload(t.Context(), agent.Caller{Role: agent.RoleOperator, Via: "test"})
		if err != nil {
			t.Fatal(err)
		}
		return rep.String()
	}
	writeFile(t, cfgPath, liveConfig(srv, dir, "200ms", "", mqttSection("stanzad/{node}")+"\n[[device]]\nname = \"shed\"\nkind = \"sim\"\ninterval = \"200ms\"\n"))
	if rep := reload(); !strings.Contains(rep, "added: device shed") || strings.Contains(rep, "mqtt") {
		t.Errorf("adding a device: %s", rep)
	}
	w.wait(t, "stanzad/device/shed/temperature", anyMsg)

	writeFile(t, cfgPath, liveConfig(srv, dir, "200ms", "", mqttSection("site2/{node}")+"\n[[device]]\nname = \"shed\"\nkind = \"sim\"\ninterval = \"200ms\"\n"))
	if rep := reload(); !strings.Contains(rep, "restarted: mqtt bridge") || strings.Contains(rep, "device") {
		t.Errorf("changing topic_prefix: %s", rep)
	}
	w.wait(t, "site2/device/status", func(m mqtt.Message) bool { return string(m.Payload()) == "online" })
	w.wait(t, "site2/device/shed/temperature", anyMsg)
	w.wait(t, "site2/device/greenhouse/temperature", anyMsg)
	// The old status went "offline" only now, at the reconnect.
	var offline int
	w.mu.Lock()
	for _, m := range w.msgs {
		if m.Topic() == "stanzad/device/status" && string(m.Payload()) == "offline" {
			offline++
		}
	}
	w.mu.Unlock()
	if offline != 1 {
		t.Errorf("stanzad/device/status went offline %d times, want once (at the prefix change)", offline)
	}
}
