package config

import (
	"bytes"
	"strings"
	"testing"
)

const withSecrets = `# the board's account
[xmpp]
jid = "device@iot.test/agent"
password = 'hunter"2' # inline, quoted with single quotes

[[sink]]
kind = "muc"
room = "site@conference.iot.test"
password = """room pass"""
`

func TestRedact(t *testing.T) {
	got := string(Redact([]byte(withSecrets)))
	if strings.Contains(got, "hunter") || strings.Contains(got, "room pass") {
		t.Fatalf("a secret is shown:\n%s", got)
	}
	want := strings.NewReplacer(`'hunter"2'`, `"<secret>"`, `"""room pass"""`, `"<secret>"`).Replace(withSecrets)
	if got != want {
		t.Fatalf("Redact changed more than the secrets:\n%s\nwant:\n%s", got, want)
	}
}

func TestUnredactKeepsRunningSecrets(t *testing.T) {
	shown := Redact([]byte(withSecrets))
	// The operator adds a device and pushes the file back.
	pushed := append(append([]byte(nil), shown...), "\n[[device]]\nname = \"t\"\nkind = \"sim\"\n"...)
	got, err := Unredact(pushed, []byte(withSecrets), "pushed")
	if err != nil {
		t.Fatal(err)
	}
	want := withSecrets + "\n[[device]]\nname = \"t\"\nkind = \"sim\"\n"
	if string(got) != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
	// A new password replaces the running one.
	changed := bytes.Replace(shown, []byte(`password = "<secret>" #`), []byte(`password = "new" #`), 1)
	got, err = Unredact(changed, []byte(withSecrets), "pushed")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(got), `password = "new"`) || !strings.Contains(string(got), `"""room pass"""`) {
		t.Fatalf("got:\n%s", got)
	}
}

func TestUnredactPlaceholderWithoutSecret(t *testing.T) {
	pushed := []byte("[xmpp]\njid = \"a@b\"\n\n[[sink]]\nkind = \"muc\"\npassword = \"<secret>\"\n")
	_, err := Unredact(pushed, []byte("[xmpp]\njid = \"a@b\"\npassword = \"x\"\n"), "pushed")
	if err == nil {
		t.Fatal("a placeholder with no running secret behind it was accepted")
	}
	if !strings.Contains(err.Error(), "pushed:6: sink[0].password") {
		t.Fatalf("error does not name the line and key: %v", err)
	}
}

// FuzzRedact: whatever the document, no inline password survives
// redaction, and pushing the redacted text back restores the original.
func FuzzRedact(f *testing.F) {
	f.Add([]byte(withSecrets))
	f.Add([]byte("password = 'a'\n[a]\npassword=\"\"\"b\"\"\"\n[[b]]\nc={password='d'}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		red := Redact(data)
		ix := newIndex(data)
		if ix.err != nil {
			return
		}
		for _, sp := range newIndex(red).spans {
			if !isPlaceholder(red[sp.start:sp.end]) {
				t.Fatalf("secret at %s survived: %q", sp.path, red[sp.start:sp.end])
			}
		}
		back, err := Unredact(red, data, "f")
		if err != nil {
			t.Fatalf("Unredact(Redact(x), x): %v", err)
		}
		if !bytes.Equal(back, data) && len(ix.spans) == len(newIndex(red).spans) {
			t.Fatalf("round trip changed the document:\n%q\n%q", data, back)
		}
	})
}

// Sinks reordered while their secrets stay "<secret>": each secret must
// not follow the position to another room.
func TestUnredactMovedSinks(t *testing.T) {
	running := "[[sink]]\nkind = \"muc\"\nroom = \"a@conference.x\"\npassword = \"pa\"\n[[sink]]\nkind = \"muc\"\nroom = \"b@conference.x\"\npassword = \"pb\"\n"
	swapped := "[[sink]]\nkind = \"muc\"\nroom = \"b@conference.x\"\npassword = \"<secret>\"\n[[sink]]\nkind = \"muc\"\nroom = \"a@conference.x\"\npassword = \"<secret>\"\n"
	_, err := Unredact([]byte(swapped), []byte(running), "pushed")
	if err == nil || !strings.Contains(err.Error(), "sink[0].password") || !strings.Contains(err.Error(), "write the password") {
		t.Fatalf("swapped sinks kept each other's secrets: %v", err)
	}
	// In place, they keep their own.
	got, err := Unredact(Redact([]byte(running)), []byte(running), "pushed")
	if err != nil || string(got) != running {
		t.Fatalf("in place: %v\n%s", err, got)
	}
}
