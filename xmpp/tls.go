package xmpp

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
)

// TLSOptions describe how to verify the server and, optionally, present a
// client certificate. Verification is always on: there is deliberately no
// option to skip it.
type TLSOptions struct {
	// CAFile is a PEM file of extra trusted roots, added to the system pool.
	CAFile string
	// ServerName overrides the name checked in the server certificate;
	// empty means the JID's domain.
	ServerName string
	// PinSHA256 lists base64 SHA-256 hashes of SubjectPublicKeyInfo; when
	// set, one certificate of the verified chain must match one pin, in
	// addition to normal verification.
	PinSHA256 []string
	// CertFile and KeyFile hold a client certificate for SASL EXTERNAL.
	CertFile, KeyFile string
}

// ErrPinMismatch is returned (wrapped) by the TLS handshake when no
// certificate matches the configured pins.
var ErrPinMismatch = errors.New("xmpp: server certificate matches no configured pin")

// TLSConfig builds a *tls.Config from opts. The returned config has
// ServerName set only if opts.ServerName is; Dial fills in the domain.
func TLSConfig(opts TLSOptions) (*tls.Config, error) {
	roots, err := x509.SystemCertPool()
	if err != nil || roots == nil {
		roots = x509.NewCertPool()
	}
	if opts.CAFile != "" {
		pem, err := os.ReadFile(opts.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read ca_file: %w", err)
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificates found", opts.CAFile)
		}
	}
	cfg := &tls.Config{
		RootCAs:    roots,
		ServerName: opts.ServerName,
		MinVersion: tls.VersionTLS12,
	}
	if opts.CertFile != "" || opts.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(opts.CertFile, opts.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if len(opts.PinSHA256) > 0 {
		pins := make([][]byte, 0, len(opts.PinSHA256))
		for _, p := range opts.PinSHA256 {
			b, err := base64.StdEncoding.DecodeString(p)
			if err != nil || len(b) != sha256.Size {
				return nil, fmt.Errorf("pin %q: want base64 of 32 bytes", p)
			}
			pins = append(pins, b)
		}
		// VerifyConnection runs after the normal chain verification, so pins
		// only ever narrow what is trusted.
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			for _, chain := range cs.VerifiedChains {
				for _, cert := range chain {
					sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
					for _, p := range pins {
						if bytes.Equal(sum[:], p) {
							return nil
						}
					}
				}
			}
			return ErrPinMismatch
		}
	}
	return cfg, nil
}

// SPKIPin returns the base64 SHA-256 pin of a certificate's public key, in
// the form PinSHA256 expects.
func SPKIPin(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}
