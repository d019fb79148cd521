//go:build integration

package agent_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stanzad/stanzad/agent"
	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/internal/ptytest"
	"github.com/stanzad/stanzad/internal/testserver"
	"github.com/stanzad/stanzad/xmpp"
)

// Real device kinds, built from config as on a board, end to end through
// Prosody: a file, a serial port (a pty), a 1-Wire sensor (a fake sysfs),
// the system itself, and an I2C sensor on a bus that does not exist,
// which must show in status as failing while everything else works.
func TestIntegrationDevices(t *testing.T) {
	srv := testserver.New(t, testserver.Options{})
	testserver.MustRegister(t, srv, "device", "pw-device")
	op := newPeer(t, srv, "operator")
	dir := t.TempDir()

	statusFile := filepath.Join(dir, "status.txt")
	os.WriteFile(statusFile, []byte("state=boot\n"), 0o644)
	w1 := filepath.Join(dir, "sys/bus/w1/devices/28-0316a2795dff")
	os.MkdirAll(w1, 0o755)
	os.WriteFile(filepath.Join(w1, "w1_slave"), []byte("72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=21500\n"), 0o644)
	master, slave := ptytest.Open(t)
	defer master.Close()

	cfg := agentConfig(srv, filepath.Join(dir, "state"))
	cfg.Devices = []config.Device{
		{Name: "status", Kind: "file", Path: statusFile, Parse: "kv", MaxSize: 64 << 10},
		{Name: "meter", Kind: "serial", Port: slave, Baud: 9600, Parity: "none", DataBits: 8, StopBits: 1, Parse: "kv", MaxLine: 4096, Writable: true},
		{Name: "probe", Kind: "onewire-ds18b20", ID: "28-0316a2795dff", Root: dir, Interval: config.Duration{Duration: time.Hour}},
		{Name: "host", Kind: "system", Root: "/", Interval: config.Duration{Duration: time.Hour}},
		{Name: "shed", Kind: "i2c-sht3x", Bus: "/dev/i2c-99", Address: 0x44, Interval: config.Duration{Duration: time.Hour}},
	}
	cfg.Sinks = []config.Sink{{Kind: "chat", To: "operator@" + srv.Host, Devices: []string{"status", "meter", "probe"}}}
	runOnline(t, agent.Options{Config: cfg, Version: "test", Logger: testLogger(t)})
	to := cfg.XMPP.JID

	bodies := map[string]bool{}
	want := func(body string) {
		t.Helper()
		for !bodies[body] {
			m := op.next(t, 10*time.Second, isReading)
			for _, line := range strings.Split(m.ChildText(xmpp.NSClient, "body"), "\n") { // a batch: a line each
				bodies[line] = true
			}
		}
	}
	want("status: state=boot")
	want("probe: temperature=21.500 °C")

	os.WriteFile(statusFile, []byte("state=running\n"), 0o644)
	want("status: state=running")

	for range 50 { // the port may not be open yet
		master.Write([]byte("kwh=1234.5 ok=true\n"))
		if m := op.next(t, 10*time.Second, isReading); strings.HasPrefix(m.ChildText(xmpp.NSClient, "body"), "meter:") {
			if b := m.ChildText(xmpp.NSClient, "body"); b != "meter: kwh=1234.5 ok=true" {
				t.Fatalf("serial reading %q", b)
			}
			break
		}
	}
	if got := op.ask(t, to, "set meter RESET"); !strings.Contains(got, "ok, meter: sent=RESET") {
		t.Errorf("set on the serial port: %q", got)
	}

	if got := op.ask(t, to, "read host"); !strings.Contains(got, "uptime=") || !strings.Contains(got, "load1=") {
		t.Errorf("read host: %q", got)
	}
	// The missing bus: the device is reported as failing; the agent and
	// the other devices carry on.
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := op.ask(t, to, "status")
		if strings.Contains(got, "shed (failing since") && strings.Contains(got, "i2c") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status does not show shed failing:\n%s", got)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if got := op.ask(t, to, "read shed"); !strings.Contains(got, "shed: error:") {
		t.Errorf("read shed: %q", got)
	}
}
