package xmpp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// twoStage is a command that asks for a name, then a greeting, and
// completes with both; "bad" as a greeting is a modify error.
func twoStage() *Command {
	return &Command{
		Node: "greet", Name: "Greet",
		Allowed: func(from JID) bool { return from.Local != "viewer" },
		Run: func(_ context.Context, r *CommandRequest) (*CommandResponse, error) {
			switch {
			case r.Stage == 0 && r.Form == nil:
				return &CommandResponse{Next: true, Form: &Form{Type: FormForm, Fields: []FormField{{Var: "name"}}}}, nil
			case r.Stage == 0:
				return &CommandResponse{Next: true, Last: true, State: r.Form.Value("name"),
					Form: &Form{Type: FormForm, Fields: []FormField{{Var: "greeting"}}}}, nil
			default:
				if r.Form.Value("greeting") == "bad" {
					return nil, &StanzaError{Type: ErrorTypeModify, Condition: "bad-request", Text: "bad greeting"}
				}
				return &CommandResponse{Notes: []Note{{Text: fmt.Sprintf("%s, %v", r.Form.Value("greeting"), r.State)}}}, nil
			}
		},
	}
}

type adhocClient struct {
	t    *testing.T
	c    *Commands
	from string
}

func (a adhocClient) do(attrs, payload string) (*Element, error) {
	a.t.Helper()
	iq := parseEl(a.t, fmt.Sprintf(`<iq type='set' id='1' from='%s'><command xmlns='%s' %s>%s</command></iq>`,
		a.from, NSCommands, attrs, payload))
	return a.c.handle(context.Background(), nil, iq)
}

func submit(field, value string) string {
	return fmt.Sprintf(`<x xmlns='jabber:x:data' type='submit'><field var='%s'><value>%s</value></field></x>`, field, value)
}

func wantCondition(t *testing.T, err error, cond, specific string) {
	t.Helper()
	var se *StanzaError
	if !errors.As(err, &se) || se.Condition != cond || (specific != "" && (se.App == nil || se.App.Name != specific)) {
		t.Fatalf("error = %v, want %s/%s", err, cond, specific)
	}
}

func TestCommandsStages(t *testing.T) {
	c := &Commands{}
	c.Add(twoStage())
	op := adhocClient{t, c, "op@iot.test/gajim"}

	res, err := op.do(`node='greet' action='execute'`, "")
	if err != nil {
		t.Fatal(err)
	}
	sid := res.Attr("sessionid")
	if res.Attr("status") != "executing" || sid == "" || res.Child(NSCommands, "actions").Attr("execute") != "next" ||
		res.Child(NSCommands, "actions").Child(NSCommands, "prev") != nil {
		t.Fatalf("first stage = %s", res)
	}
	if _, err := op.do(`node='greet' action='complete' sessionid='`+sid+`'`, ""); err == nil {
		t.Fatal("a stage without a form was accepted")
	}
	res, err = op.do(`node='greet' sessionid='`+sid+`'`, submit("name", "Ada"))
	if err != nil {
		t.Fatal(err)
	}
	acts := res.Child(NSCommands, "actions")
	if res.Attr("status") != "executing" || acts.Attr("execute") != "complete" || acts.Child(NSCommands, "prev") == nil ||
		res.Child(NSData, "x").Child(NSData, "field").Attr("var") != "greeting" {
		t.Fatalf("second stage = %s", res)
	}
	// next is not allowed on the last stage; prev goes back to the name.
	_, err = op.do(`node='greet' action='next' sessionid='`+sid+`'`, submit("greeting", "hi"))
	wantCondition(t, err, "bad-request", "bad-action")
	res, err = op.do(`node='greet' action='prev' sessionid='`+sid+`'`, "")
	if err != nil || res.Child(NSData, "x").Child(NSData, "field").Attr("var") != "name" {
		t.Fatalf("prev = %s, %v", res, err)
	}
	if _, err = op.do(`node='greet' action='next' sessionid='`+sid+`'`, submit("name", "Grace")); err != nil {
		t.Fatal(err)
	}
	// Another requester cannot hijack the session, even with the same bare JID.
	other := adhocClient{t, c, "op@iot.test/psi"}
	_, err = other.do(`node='greet' action='complete' sessionid='`+sid+`'`, submit("greeting", "hi"))
	wantCondition(t, err, "bad-request", "bad-sessionid")
	// A bad value keeps the session open for a corrected submission.
	_, err = op.do(`node='greet' action='complete' sessionid='`+sid+`'`, submit("greeting", "bad"))
	wantCondition(t, err, "bad-request", "")
	res, err = op.do(`node='greet' action='complete' sessionid='`+sid+`'`, submit("greeting", "hello"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Attr("status") != "completed" || res.ChildText(NSCommands, "note") != "hello, Grace" {
		t.Fatalf("completed = %s", res)
	}
	if n := c.Sessions(); n != 0 {
		t.Errorf("%d sessions left after completion", n)
	}
	_, err = op.do(`node='greet' action='complete' sessionid='`+sid+`'`, submit("greeting", "again"))
	wantCondition(t, err, "bad-request", "bad-sessionid")
}

func TestCommandsCancelExpireLimits(t *testing.T) {
	now := time.Unix(1e9, 0)
	c := &Commands{Timeout: time.Minute, now: func() time.Time { return now }}
	c.Add(twoStage())
	op := adhocClient{t, c, "op@iot.test/gajim"}

	res, _ := op.do(`node='greet'`, "")
	sid := res.Attr("sessionid")
	res, err := op.do(`node='greet' action='cancel' sessionid='`+sid+`'`, "")
	if err != nil || res.Attr("status") != "canceled" || c.Sessions() != 0 {
		t.Fatalf("cancel = %s, %v, sessions %d", res, err, c.Sessions())
	}

	res, _ = op.do(`node='greet'`, "")
	sid = res.Attr("sessionid")
	now = now.Add(2 * time.Minute)
	_, err = op.do(`node='greet' sessionid='`+sid+`'`, submit("name", "late"))
	wantCondition(t, err, "bad-request", "bad-sessionid")

	for i := range maxSessionsPerJID {
		if _, err := op.do(`node='greet'`, ""); err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
	}
	_, err = op.do(`node='greet'`, "")
	wantCondition(t, err, "resource-constraint", "")

	_, err = op.do(`node='nope'`, "")
	wantCondition(t, err, "item-not-found", "")
	_, err = op.do(`node='greet' action='jump'`, "")
	wantCondition(t, err, "bad-request", "malformed-action")
	_, err = op.do(`node='greet' action='next'`, "")
	wantCondition(t, err, "bad-request", "bad-action")
	_, err = adhocClient{t, c, "viewer@iot.test/x"}.do(`node='greet'`, "")
	wantCondition(t, err, "forbidden", "")
	// A malformed form is refused before the command sees it.
	_, err = op.do(`node='greet'`, `<x xmlns='jabber:x:data' type='bogus'/>`)
	wantCondition(t, err, "bad-request", "")
	_, err = op.do(`node='greet'`, `<x xmlns='jabber:x:data' type='submit'><field var='a'/><field var='a'/></x>`)
	wantCondition(t, err, "bad-request", "")
}

func TestCommandsShortcut(t *testing.T) {
	c := &Commands{}
	c.Add(&Command{Node: "echo", Run: func(_ context.Context, r *CommandRequest) (*CommandResponse, error) {
		if r.Form == nil {
			return &CommandResponse{Next: true, Last: true, Form: &Form{Type: FormForm}}, nil
		}
		return &CommandResponse{Form: &Form{Type: FormResult, Fields: []FormField{{Var: "echo", Values: r.Form.Values("v")}}}}, nil
	}})
	res, err := adhocClient{t, c, "op@iot.test/ctl"}.do(`node='echo' action='execute'`, submit("v", "x&lt;y"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Attr("status") != "completed" || res.Attr("sessionid") == "" || !strings.Contains(res.String(), "<value>x&lt;y</value>") {
		t.Fatalf("shortcut = %s", res)
	}
	if c.Sessions() != 0 {
		t.Error("a completed one-shot left a session")
	}
}

func TestCapsVer(t *testing.T) {
	// XEP-0115 §5.2 example.
	got := capsVer([]Identity{{Category: "client", Type: "pc", Name: "Exodus 0.9.1"}},
		[]string{"http://jabber.org/protocol/muc", NSDiscoInf, NSCaps, NSDiscoIt})
	if want := "QgayPKawpkPSDYmwT/WM94uAlu0="; got != want {
		t.Errorf("capsVer = %q, want %q", got, want)
	}
	m := NewMux(Identity{Name: "stanzad"}, Software{})
	before := m.CapsVer()
	m.AddFeature(NSCommands)
	if m.CapsVer() == before {
		t.Error("caps ver did not change with the features")
	}
	if c := m.Caps(); c.Attr("node") != DefaultCapsNode || c.Attr("ver") != m.CapsVer() {
		t.Errorf("Caps = %s", c)
	}
}

// A room occupant's session is bound to the person behind the nick: when
// someone else takes the nick, the session is not theirs.
func TestCommandsPrincipal(t *testing.T) {
	behind := map[string]string{"site@conference.iot.test/op": "alice@iot.test"}
	c := &Commands{Principal: func(from JID) string {
		if p, ok := behind[from.String()]; ok {
			return p
		}
		return from.BareKey()
	}}
	c.Add(twoStage())
	occupant := adhocClient{t, c, "site@conference.iot.test/op"}
	res, err := occupant.do(`node='greet' action='execute'`, "")
	if err != nil {
		t.Fatal(err)
	}
	sid := res.Attr("sessionid")
	if _, err := occupant.do(`node='greet' sessionid='`+sid+`'`, submit("name", "Ada")); err != nil {
		t.Fatalf("the same person, next stage: %v", err)
	}
	behind["site@conference.iot.test/op"] = "mallory@evil.test" // alice left, mallory took the nick
	_, err = occupant.do(`node='greet' action='complete' sessionid='`+sid+`'`, submit("greeting", "hi"))
	wantCondition(t, err, "forbidden", "")
	if n := c.Sessions(); n != 0 {
		t.Errorf("the taken-over session is still open (%d)", n)
	}

	// The session limit counts people, not the room they share.
	for i := range maxSessionsPerJID + 1 {
		behind["site@conference.iot.test/op"] = fmt.Sprintf("p%d@iot.test", i)
		if _, err := occupant.do(`node='greet' action='execute'`, ""); err != nil {
			t.Fatalf("occupant %d refused: %v", i, err)
		}
	}
}
