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
	// CAFile is a PEM file of extra trusted roots, tried before the
	// system roots (see TLSConfig).
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
//
// With a CAFile, the server is verified against its roots first and
// against the system roots only if they do not verify it: a board with a
// private CA then never loads the system pool, which costs about 1.5 MiB
// of resident memory for the life of the process (Go parses and keeps
// every root). This is the same verification crypto/tls does (chain to a
// trusted root, the server name, validity), run in VerifyConnection over
// two pools in turn; it cannot be skipped.
func TLSConfig(opts TLSOptions) (*tls.Config, error) {
	var pins [][]byte
	for _, p := range opts.PinSHA256 {
		b, err := base64.StdEncoding.DecodeString(p)
		if err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("pin %q: want base64 of 32 bytes", p)
		}
		pins = append(pins, b)
	}
	cfg := &tls.Config{
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
	if opts.CAFile == "" {
		roots, err := x509.SystemCertPool()
		if err != nil || roots == nil {
			roots = x509.NewCertPool()
		}
		cfg.RootCAs = roots
		if len(pins) > 0 {
			// VerifyConnection runs after the normal chain verification, so
			// pins only ever narrow what is trusted.
			cfg.VerifyConnection = func(cs tls.ConnectionState) error { return checkPins(cs.VerifiedChains, pins) }
		}
		return cfg, nil
	}
	pem, err := os.ReadFile(opts.CAFile)
	if err != nil {
		return nil, fmt.Errorf("read ca_file: %w", err)
	}
	own := x509.NewCertPool()
	if !own.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca_file %s: no PEM certificates found", opts.CAFile)
	}
	// crypto/tls's own verification would need one pool holding both;
	// VerifyConnection does the same checks over each pool in turn.
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		chains, err := verifyChain(cs, own)
		var unknown x509.UnknownAuthorityError
		if errors.As(err, &unknown) {
			if sys, serr := x509.SystemCertPool(); serr == nil && sys != nil {
				chains, err = verifyChain(cs, sys)
			}
		}
		if err != nil {
			return &tls.CertificateVerificationError{UnverifiedCertificates: cs.PeerCertificates, Err: err}
		}
		if len(pins) > 0 {
			return checkPins(chains, pins)
		}
		return nil
	}
	return cfg, nil
}

// verifyChain is crypto/tls's client verification of the server: a chain
// from the leaf through the certificates the server sent to one of roots,
// for the name the client asked for, valid now, for server auth.
func verifyChain(cs tls.ConnectionState, roots *x509.CertPool) ([][]*x509.Certificate, error) {
	if len(cs.PeerCertificates) == 0 {
		return nil, errors.New("xmpp: server sent no certificate")
	}
	opts := x509.VerifyOptions{
		Roots:         roots,
		DNSName:       cs.ServerName,
		Intermediates: x509.NewCertPool(),
	}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	return cs.PeerCertificates[0].Verify(opts)
}

// checkPins accepts chains of which a certificate's public key matches a
// pin.
func checkPins(chains [][]*x509.Certificate, pins [][]byte) error {
	for _, chain := range chains {
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

// SPKIPin returns the base64 SHA-256 pin of a certificate's public key, in
// the form PinSHA256 expects.
func SPKIPin(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}
