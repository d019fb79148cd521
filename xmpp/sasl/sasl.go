package sasl

import (
	"errors"
	"strings"
)

// Mechanism is one client-side SASL exchange. A Mechanism is used once:
// Start, then Next for every challenge, then Finish with the data the
// server sent along with its success.
type Mechanism interface {
	// Name is the IANA mechanism name, e.g. "SCRAM-SHA-256".
	Name() string
	// Start returns the initial response. A non-nil empty slice means an
	// empty initial response (sent as "=" in XMPP).
	Start() ([]byte, error)
	// Next answers a server challenge.
	Next(challenge []byte) ([]byte, error)
	// Finish checks the additional data of the server's success. For SCRAM
	// this is where the server proves it knows the password; a success
	// without that proof is an error.
	Finish(additional []byte) error
}

// ErrProtocol reports a server message that breaks the mechanism's rules.
var ErrProtocol = errors.New("sasl: protocol violation")

// ErrServerAuth reports that the server failed to prove knowledge of the
// password (SCRAM server signature mismatch or missing): the server may be
// an impostor, so the session must not be used.
var ErrServerAuth = errors.New("sasl: server authentication failed")

// Capabilities describe what the client can do on this connection.
type Capabilities struct {
	TLS            bool // the stream is encrypted
	ChannelBinding bool // channel binding data is available (enables -PLUS)
	ClientCert     bool // a client certificate was presented (enables EXTERNAL)
}

// preference lists mechanisms from best to worst.
var preference = []string{
	"EXTERNAL",
	"SCRAM-SHA-256-PLUS",
	"SCRAM-SHA-1-PLUS",
	"SCRAM-SHA-256",
	"SCRAM-SHA-1",
	"PLAIN",
}

// Preferred returns the mechanisms of offered the client may use, best
// first. EXTERNAL needs a client certificate, -PLUS variants need channel
// binding, and PLAIN is used only over TLS and only when the server offers
// no SCRAM at all, so a man in the middle who strips SCRAM from the offer
// gains nothing over TLS and a password never crosses a plain connection.
func Preferred(offered []string, have Capabilities) []string {
	has := make(map[string]bool, len(offered))
	scram := false
	for _, o := range offered {
		o = strings.ToUpper(strings.TrimSpace(o))
		has[o] = true
		if strings.HasPrefix(o, "SCRAM-SHA-1") || strings.HasPrefix(o, "SCRAM-SHA-256") {
			scram = true
		}
	}
	var out []string
	for _, m := range preference {
		if !has[m] {
			continue
		}
		switch {
		case m == "EXTERNAL" && !have.ClientCert:
			continue
		case strings.HasSuffix(m, "-PLUS") && !have.ChannelBinding:
			continue
		case m == "PLAIN" && (!have.TLS || scram):
			continue
		}
		out = append(out, m)
	}
	return out
}

// Plain returns the PLAIN mechanism (RFC 4616) with an empty authorization
// identity. It sends the password in the clear and must only be used inside
// TLS; Preferred enforces that.
func Plain(user, password string) Mechanism {
	return &plain{user: user, password: password}
}

type plain struct {
	user, password string
	started        bool
}

func (p *plain) Name() string { return "PLAIN" }

func (p *plain) Start() ([]byte, error) {
	p.started = true
	b := make([]byte, 0, 2+len(p.user)+len(p.password))
	b = append(b, 0)
	b = append(b, p.user...)
	b = append(b, 0)
	b = append(b, p.password...)
	return b, nil
}

func (p *plain) Next([]byte) ([]byte, error) {
	return nil, errors.New("sasl: PLAIN: unexpected challenge")
}

func (p *plain) Finish([]byte) error { return nil }

// External returns the EXTERNAL mechanism: the server authenticates the
// client by its TLS certificate. authzid is normally empty (derive the
// identity from the certificate).
func External(authzid string) Mechanism {
	return external(authzid)
}

type external string

func (e external) Name() string { return "EXTERNAL" }

func (e external) Start() ([]byte, error) { return []byte(e), nil }

func (e external) Next(challenge []byte) ([]byte, error) {
	if len(challenge) != 0 {
		return nil, errors.New("sasl: EXTERNAL: unexpected non-empty challenge")
	}
	return []byte(e), nil
}

func (e external) Finish([]byte) error { return nil }
