package xmpp

import (
	"context"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestTLSConfigCAFile: with a CA file the server is verified by
// VerifyConnection, against the file's roots and then the system's, with
// the same outcomes as crypto/tls's own verification: the right CA and
// name pass; another CA, another name or a wrong pin fail with the
// errors the rest of the package knows.
func TestTLSConfigCAFile(t *testing.T) {
	pki := newTestPKI(t)
	other := newTestPKI(t)
	write := func(b []byte) string {
		p := filepath.Join(t.TempDir(), "ca.pem")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ca, otherCA := write(pki.caPEM), write(other.caPEM)
	leaf, err := x509.ParseCertificate(pki.server.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	otherLeaf, err := x509.ParseCertificate(other.server.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts TLSOptions
		ok   bool
		want func(error) bool
	}{
		{"own CA", TLSOptions{CAFile: ca}, true, nil},
		{"own CA, pinned", TLSOptions{CAFile: ca, PinSHA256: []string{SPKIPin(leaf)}}, true, nil},
		{"own CA, wrong pin", TLSOptions{CAFile: ca, PinSHA256: []string{SPKIPin(otherLeaf)}}, false,
			func(err error) bool { return errors.Is(err, ErrPinMismatch) }},
		{"another CA", TLSOptions{CAFile: otherCA}, false,
			func(err error) bool { var u x509.UnknownAuthorityError; return errors.As(err, &u) }},
		{"another name", TLSOptions{CAFile: ca, ServerName: "evil.test"}, false,
			func(err error) bool { var h x509.HostnameError; return errors.As(err, &h) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tlsCfg, err := TLSConfig(tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			cfg, done := scriptedPKI(t, &peer{}, pki, "secret", func(p *peer) error { return nil })
			cfg.TLS = tlsCfg
			s, err := Dial(context.Background(), cfg)
			if tc.ok {
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				s.Close(context.Background())
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				s.Close(context.Background())
				t.Fatal("Dial succeeded")
			}
			if !tc.want(err) || !isTyped(err) {
				t.Fatalf("Dial: %v (%T)", err, err)
			}
		})
	}
}
