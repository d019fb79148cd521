package agent

import (
	"errors"
	"testing"

	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/devices"
	"github.com/stanzad/stanzad/xmpp"
)

func TestPresenceCaps(t *testing.T) {
	cfg := &config.Config{
		XMPP:  config.XMPP{JID: "device@iot.test/agent", PresenceStatus: "greenhouse node"},
		Agent: config.Agent{StateDir: t.TempDir()},
	}
	a, err := New(Options{Config: cfg, Devices: nil})
	if err != nil {
		t.Fatal(err)
	}
	defer a.closeState()
	p := a.presence()
	c := p.Child(xmpp.NSCaps, "c")
	if p.ChildText(xmpp.NSClient, "status") != "greenhouse node: ok" || p.Child("", "show") != nil || c == nil || c.Attr("ver") != a.ln.Load().mux.CapsVer() || c.Attr("hash") != "sha-1" {
		t.Errorf("presence = %s", p)
	}
	// Health: a failing device shows in the status, with <show>away</show>.
	a.u.Store(a.now().with([]*devUnit{{dev: devices.NewSwitch(devices.SwitchConfig{Name: "relay1"})}, {dev: devices.NewSwitch(devices.SwitchConfig{Name: "bme"})}}))
	a.health.failed(a.log, "bme", errors.New("i2c: no ack"))
	p = a.presence()
	if p.ChildText(xmpp.NSClient, "status") != "greenhouse node: 1 of 2 devices failing: bme" || p.ChildText(xmpp.NSClient, "show") != "away" {
		t.Errorf("presence with a failing device = %s", p)
	}
	select {
	case <-a.health.changed:
	default:
		t.Error("a device starting to fail did not signal a presence update")
	}
	a.health.note(a.log, devices.Reading{Device: "bme"})
	if p = a.presence(); p.ChildText(xmpp.NSClient, "status") != "greenhouse node: ok" || p.Child("", "show") != nil {
		t.Errorf("presence after recovery = %s", p)
	}
	for _, f := range []string{xmpp.NSCommands, xmpp.NSControl, xmpp.NSSensorData, xmpp.NSData} {
		found := false
		for _, g := range a.ln.Load().mux.Features() {
			found = found || g == f
		}
		if !found {
			t.Errorf("feature %s not announced (caps hash would lie)", f)
		}
	}
}
