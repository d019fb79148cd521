//go:build integration

package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/stanzad/stanzad/internal/testserver"
)

// A wrong password at startup is a runtime failure: exit 1, a clear
// message, and the password nowhere in the output.
func TestIntegrationWrongPasswordExits1(t *testing.T) {
	srv := testserver.New(t, testserver.Options{})
	testserver.MustRegister(t, srv, "device", "the-right-one")
	cfg := writeConfig(t, fmt.Sprintf(`[xmpp]
jid = "device@%s/agent"
password = "not-the-password"
server = %q
ca_file = %q

[agent]
state_dir = %q
`, srv.Host, srv.Addr, srv.CAFile, t.TempDir()))
	var stderr bytes.Buffer
	code := run([]string{"-config", cfg}, &stderr)
	out := stderr.String()
	if code != 1 || !strings.Contains(out, "not-authorized") {
		t.Fatalf("exit %d, stderr:\n%s\nwant exit 1 and not-authorized", code, out)
	}
	if strings.Contains(out, "not-the-password") {
		t.Fatalf("stderr shows the password:\n%s", out)
	}
}
