package control

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/devices"
	"github.com/stanzad/stanzad/xmpp"
)

func TestLimiter(t *testing.T) {
	now := time.Unix(1e9, 0)
	l := newLimiter(2, 3) // 2 per second, 3 at once
	l.now = func() time.Time { return now }
	for i := range 3 {
		if err := l.allow("a@x"); err != nil {
			t.Fatalf("command %d of the burst: %v", i+1, err)
		}
	}
	err := l.allow("a@x")
	var re *RateError
	if !errors.As(err, &re) || !errors.Is(err, ErrRateLimited) || re.Retry != 500*time.Millisecond {
		t.Fatalf("over the burst: %v, want a 500ms RateError", err)
	}
	if err := l.allow("b@x"); err != nil {
		t.Errorf("another sender limited: %v", err)
	}
	now = now.Add(500 * time.Millisecond)
	if err := l.allow("a@x"); err != nil {
		t.Errorf("after the retry time: %v", err)
	}
	if err := l.allow("a@x"); err == nil {
		t.Error("a token appeared from nowhere")
	}
	// Idle senders are forgotten when the map is full.
	for i := range maxBuckets + 10 {
		now = now.Add(time.Second)
		l.allow(strings.Repeat("x", i%7) + string(rune('a'+i%26)) + time.Duration(i).String())
	}
	if len(l.buckets) > maxBuckets {
		t.Errorf("%d buckets kept, want at most %d", len(l.buckets), maxBuckets)
	}
}

func TestTailBuffer(t *testing.T) {
	var b tailBuffer
	b.Write([]byte("short"))
	if s, cut := b.String(); s != "short" || cut {
		t.Errorf("String = %q, %v", s, cut)
	}
	// 10 KiB of 3-byte characters in odd-sized writes: the tail is at most
	// 4 KiB, valid UTF-8 and the end of what was written.
	all := strings.Repeat("€", 10<<10/3)
	for i := 0; i < len(all); i += 1000 {
		b.Write([]byte(all[i:min(i+1000, len(all))]))
	}
	s, cut := b.String()
	if !cut || len(s) > maxActionOutput || len(s) < maxActionOutput-3 || !utf8.ValidString(s) || !strings.HasSuffix(all, s) {
		t.Errorf("tail: %d bytes, cut %v, valid %v", len(s), cut, utf8.ValidString(s))
	}
}

func TestActionRun(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "act.sh")
	// Prints who asked and whether the agent's environment leaked in, and
	// starts a child that outlives the timeout unless the process group
	// is killed.
	t.Setenv("STANZAD_SECRET", "leaked")
	os.WriteFile(script, []byte("#!/bin/sh\necho \"$STANZAD_ACTION by $STANZAD_CALLER\"\necho \"secret=$STANZAD_SECRET\" >&2\n[ \"$1\" = hang ] && { sleep 30 & wait; }\nexit ${1:-0}\n"), 0o755)
	run := func(arg string, timeout time.Duration) (ActionResult, error) {
		act := &action{cfg: config.Action{Name: "t", Argv: []string{script, arg}, Timeout: config.Duration{Duration: timeout}}}
		return act.run(context.Background(), "op@iot.test")
	}
	res, err := run("0", 5*time.Second)
	if err != nil || res.ExitCode != 0 || res.Output != "t by op@iot.test\nsecret=\n" {
		t.Errorf("run 0 = %+v, %v", res, err)
	}
	if res, err := run("7", 5*time.Second); err != nil || res.ExitCode != 7 || res.TimedOut {
		t.Errorf("run 7 = %+v, %v", res, err)
	}
	start := time.Now()
	res, err = run("hang", 200*time.Millisecond)
	if err != nil || !res.TimedOut || res.ExitCode != -1 {
		t.Errorf("hang = %+v, %v", res, err)
	}
	// Not a timing assertion: the 30 s sleep child must not keep Wait.
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("a killed action took %v: its child kept running", d)
	}
	act := &action{cfg: config.Action{Name: "missing", Argv: []string{filepath.Join(dir, "nope")}, Timeout: config.Duration{Duration: time.Second}}}
	if _, err := act.run(context.Background(), ""); err == nil {
		t.Error("a missing program ran")
	}
	act.busy.Lock()
	if _, err := act.run(context.Background(), ""); !errors.Is(err, ErrBusy) {
		t.Errorf("second run = %v, want ErrBusy", err)
	}
}

func TestStanzaErrorMapping(t *testing.T) {
	tests := []struct {
		err  error
		cond string
		typ  string
	}{
		{ErrForbidden, "forbidden", xmpp.ErrorTypeAuth},
		{&RateError{Retry: time.Second}, "resource-constraint", xmpp.ErrorTypeWait},
		{ErrBusy, "resource-constraint", xmpp.ErrorTypeWait},
		{ErrUnknownDevice, "item-not-found", xmpp.ErrorTypeCancel},
		{ErrUnknownAction, "item-not-found", xmpp.ErrorTypeCancel},
		{&xmpp.FormError{Var: "v", Msg: "required"}, "bad-request", xmpp.ErrorTypeModify},
		{ErrBadConfig, "bad-request", xmpp.ErrorTypeModify},
		{ErrDevice, "internal-server-error", xmpp.ErrorTypeCancel},
	}
	for _, tt := range tests {
		se := StanzaError(tt.err)
		if se.Condition != tt.cond || se.Type != tt.typ {
			t.Errorf("StanzaError(%v) = %s/%s, want %s/%s", tt.err, se.Type, se.Condition, tt.typ, tt.cond)
		}
	}
	if se := StanzaError(ErrForbidden); se.Text != "" {
		t.Errorf("forbidden carries text %q: strangers get <forbidden/> and nothing else", se.Text)
	}
}

// hung is a device whose on-demand calls never return until released.
type hung struct{ release chan struct{} }

func (h hung) Name() string                                           { return "hung" }
func (h hung) Run(ctx context.Context, _ func(devices.Reading)) error { <-ctx.Done(); return nil }
func (h hung) Read(context.Context) (devices.Reading, error) {
	<-h.release
	return devices.Reading{Device: "hung", Fields: []devices.Field{devices.Bool("state", true)}}, nil
}
func (h hung) Set(context.Context, string) (devices.Reading, error) {
	<-h.release
	return devices.Reading{Device: "hung"}, nil
}

// A driver that hangs costs a command its timeout, once: later calls fail
// at once until it returns, and other devices are not held up.
// testHost is a Host with devices and nothing else.
type testHost struct {
	devs []devices.Device
	// rooms: the occupants (nick → real JID, "" hidden) of the rooms the
	// agent is in, by room JID.
	rooms map[string]map[string]string
	hist  History
}

func (h *testHost) History() History { return h.hist }

func (h *testHost) Occupant(from xmpp.JID) (string, bool, bool) {
	occ, in := h.rooms[from.Bare().String()]
	if !in || from.Resource == "" {
		return "", false, false
	}
	real, present := occ[from.Resource]
	return real, present, true
}

func (h *testHost) Self() xmpp.JID            { return xmpp.MustParseJID("device@iot.test/agent") }
func (h *testHost) Devices() []devices.Device { return h.devs }
func (h *testHost) Device(name string) (devices.Device, bool) {
	for _, d := range h.devs {
		if d.Name() == name {
			return d, true
		}
	}
	return nil, false
}
func (h *testHost) Last(string) (devices.Reading, bool) { return devices.Reading{}, false }
func (h *testHost) Report() StatusReport                { return StatusReport{} }
func (h *testHost) Reload(context.Context, Caller) (ReloadReport, error) {
	return ReloadReport{}, ErrNoConfigFile
}
func (h *testHost) ConfigText(context.Context) ([]byte, error) { return nil, ErrNoConfigFile }
func (h *testHost) PushConfig(context.Context, Caller, []byte) (ReloadReport, error) {
	return ReloadReport{}, ErrNoConfigFile
}

func TestHungDevice(t *testing.T) {
	h := hung{release: make(chan struct{})}
	sw := devices.NewSwitch(devices.SwitchConfig{Name: "relay1"})
	host := &testHost{devs: []devices.Device{h, sw}}
	pl := New(host, slog.New(slog.DiscardHandler), host.Self(), &config.Config{})
	pl.calls.timeout = 100 * time.Millisecond
	op := Caller{Role: RoleOperator, Via: "test"}
	rs, err := pl.Read(context.Background(), op, []string{"hung"})
	if err != nil || len(rs) != 1 || rs[0].Err == nil || !strings.Contains(rs[0].Err.Error(), "no answer within") {
		t.Fatalf("Read of a hung device = %+v, %v", rs, err)
	}
	_, err = pl.Set(context.Background(), op, "hung", "on")
	if !errors.Is(err, ErrDeviceBusy) || StanzaError(err).Condition != "resource-constraint" {
		t.Fatalf("Set while the read hangs = %v, want ErrDeviceBusy as resource-constraint", err)
	}
	// The short bound was for the hung device only: a healthy call on a
	// loaded machine (race detector, parallel packages) may take longer.
	pl.calls.timeout = time.Minute
	if r, err := pl.Set(context.Background(), op, "relay1", "on"); err != nil || !r.Fields[0].Bool {
		t.Errorf("another device held up: %+v, %v", r, err)
	}
	close(h.release)
	for range 100 { // the abandoned call returns and frees the device
		if rs, _ := pl.Read(context.Background(), op, []string{"hung"}); rs[0].Err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("device still busy after its call returned")
}

// A call that returns at once is never mistaken for a timeout: the call's
// own cancel ends its context just after the result is ready.
func TestDeviceCallsFastCall(t *testing.T) {
	var dc deviceCalls
	for i := range 2000 {
		r, err := dc.do(context.Background(), "relay1", func(context.Context) (devices.Reading, error) {
			return devices.Reading{Device: "relay1"}, nil
		})
		if err != nil || r.Device != "relay1" {
			t.Fatalf("call %d: %+v, %v", i, r, err)
		}
	}
}

// Members lists the ACL's bare keys, lower-cased and sorted: the members
// of the whitelist nodes the agent owns.
func TestMembers(t *testing.T) {
	host := &testHost{}
	pl := New(host, slog.New(slog.DiscardHandler), host.Self(), &config.Config{ACL: config.ACL{
		Operators: []string{"alice@iot.test", "Carol@IoT.test/phone"}, Viewers: []string{"bob@iot.test"}}})
	if got, want := pl.Members(), []string{"alice@iot.test", "bob@iot.test", "carol@iot.test"}; !slices.Equal(got, want) {
		t.Errorf("Members() = %q, want %q", got, want)
	}
}

// IQs a room relays: checked on the occupant's real JID, refused with the
// reason when the agent cannot tell who it is, and never trusted from a
// room the agent is not in.
func TestRelayedIQs(t *testing.T) {
	host := &testHost{rooms: map[string]map[string]string{
		"site@conference.iot.test": {"alice": "alice@iot.test/gajim", "bob": "bob@iot.test/psi", "ghost": "", "mallory": "mallory@evil.test/x"},
	}}
	cfg := &config.Config{ACL: config.ACL{Operators: []string{"alice@iot.test"}, Viewers: []string{"bob@iot.test"}}}
	pl := New(host, slog.New(slog.DiscardHandler), host.Self(), cfg)
	iq := xmpp.Stanza("iq", "set", "", "").Add(xmpp.NewElement(xmpp.NSCommands, "command"))
	for _, tt := range []struct {
		from, want string // want: a role, or the forbidden text
		role       Role
	}{
		{"site@conference.iot.test/alice", "", RoleOperator},
		{"site@conference.iot.test/bob", "", RoleViewer},
		{"site@conference.iot.test/mallory", "forbidden:", RoleNone},
		{"site@conference.iot.test/ghost", "forbidden:this room hides your JID", RoleNone},
		{"site@conference.iot.test/nobody", "forbidden:you are not in site@conference.iot.test", RoleNone},
		// A room the agent is not in: a stranger, whatever its nick says.
		{"other@conference.iot.test/alice", "forbidden:", RoleNone},
		{"alice@iot.test/gajim", "", RoleOperator},
	} {
		from := xmpp.MustParseJID(tt.from)
		err := pl.AllowIQ(context.Background(), from, iq)
		got := ""
		if err != nil {
			se := StanzaError(err)
			got = se.Condition + ":" + se.Text
		}
		if !strings.HasPrefix(got, tt.want) || (tt.want == "forbidden:" && got != "forbidden:") {
			t.Errorf("AllowIQ(%s) = %q, want %q", tt.from, got, tt.want)
		}
		if r := pl.iqRole(from); r != tt.role {
			t.Errorf("iqRole(%s) = %v, want %v", tt.from, r, tt.role)
		}
	}
	c, _ := pl.iqCaller(xmpp.MustParseJID("site@conference.iot.test/alice"), "adhoc")
	if c.JID.String() != "alice@iot.test/gajim" || c.Via != "adhoc via site@conference.iot.test" {
		t.Errorf("relayed caller = %+v, want alice's real JID via the room", c)
	}
	// The session principal follows the person, not the nick.
	occupant := xmpp.MustParseJID("site@conference.iot.test/alice")
	before := pl.principal(occupant)
	host.rooms["site@conference.iot.test"]["alice"] = "mallory@evil.test/x"
	if after := pl.principal(occupant); after == before {
		t.Errorf("principal did not change with the person behind the nick: %q", after)
	}
}
