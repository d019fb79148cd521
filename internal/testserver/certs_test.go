package testserver

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCertsVerify(t *testing.T) {
	names := []string{"iot.test", "conference.iot.test", "pubsub.iot.test"}
	c, err := newCerts(names, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Now())
	if err != nil {
		t.Fatalf("newCerts: %v", err)
	}
	roots, err := c.pool()
	if err != nil {
		t.Fatalf("pool: %v", err)
	}
	block, _ := pem.Decode(c.certPEM)
	if block == nil {
		t.Fatal("server certificate is not PEM")
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatalf("ParseCertificate: %v", err)
	}
	tests := []struct {
		name    string
		wantErr bool
	}{
		{"iot.test", false},
		{"conference.iot.test", false},
		{"pubsub.iot.test", false},
		{"127.0.0.1", false},
		{"other.test", true},
		{"127.0.0.2", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := leaf.Verify(x509.VerifyOptions{
				DNSName:   tt.name,
				Roots:     roots,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			})
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Errorf("Verify(%q) = %v, want error %v", tt.name, err, tt.wantErr)
			}
		})
	}

	// A second run gets an unrelated CA.
	c2, err := newCerts(names, nil, time.Now())
	if err != nil {
		t.Fatalf("newCerts: %v", err)
	}
	roots2, _ := c2.pool()
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "iot.test", Roots: roots2}); err == nil {
		t.Error("Verify with another run's CA succeeded, want error")
	}
}

func TestCertsWrite(t *testing.T) {
	c, err := newCerts([]string{"iot.test"}, nil, time.Now())
	if err != nil {
		t.Fatalf("newCerts: %v", err)
	}
	dir := t.TempDir()
	caFile, certFile, keyFile, err := c.write(dir)
	if err != nil {
		t.Fatalf("write: %v", err)
	}
	fi, err := os.Stat(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("key file mode = %v, want 0600", got)
	}
	if filepath.Dir(caFile) != dir || filepath.Dir(certFile) != dir {
		t.Errorf("files %s, %s not in %s", caFile, certFile, dir)
	}
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		t.Errorf("LoadX509KeyPair: %v", err)
	}
}

func TestLuaQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/tmp/x", `"/tmp/x"`},
		{`a"b\c`, `"a\034b\092c"`},
		{"a\nb", `"a\010b"`},
		{"é", `"\195\169"`},
	}
	for _, tt := range tests {
		if got := luaQuote(tt.in); got != tt.want {
			t.Errorf("luaQuote(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestProsodyTemplate(t *testing.T) {
	var b strings.Builder
	err := prosodyTemplate.Execute(&b, prosodyConfig{
		Dir: "/d", PIDFile: "/d/prosody.pid", DataDir: "/d/data", LogFile: "/d/prosody.log",
		CertDir: "/d/certs", CertFile: "/d/server.crt", KeyFile: "/d/server.key", C2SPort: 5222, DirectTLSPort: 5223,
		Host: "iot.test", PasswordHash: "SHA-1", MUC: true, PubSub: true,
	})
	if err != nil {
		t.Fatalf("Execute: %v", err)
	}
	cfg := b.String()
	for _, want := range []string{
		`interfaces = { "127.0.0.1" }`,
		`c2s_ports = { 5222 }`,
		`c2s_direct_tls_ports = { 5223 }`,
		`s2s_ports = { }`,
		`network_settings = { nagle = false }`,
		`c2s_require_encryption = true`,
		`password_hash = "SHA-1"`,
		`modules_disabled = { "s2s"; "s2s_auth_certs" }`,
		`VirtualHost "iot.test"`,
		`Component "conference.iot.test" "muc"`,
		`Component "pubsub.iot.test" "pubsub"`,
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("config lacks %q:\n%s", want, cfg)
		}
	}
	if strings.Contains(cfg, `"limits"`) {
		t.Errorf("config loads mod_limits:\n%s", cfg)
	}
}
