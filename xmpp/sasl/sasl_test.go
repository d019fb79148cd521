package sasl

import (
	"bytes"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// Test vectors: RFC 5802 §5 (SCRAM-SHA-1) and RFC 7677 §3 (SCRAM-SHA-256).
var vectors = []struct {
	mech, nonce, clientFirst, serverFirst, clientFinal, serverFinal string
}{
	{
		mech:        "SCRAM-SHA-1",
		nonce:       "fyko+d2lbbFgONRv9qkxdawL",
		clientFirst: "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
		serverFirst: "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
		clientFinal: "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
		serverFinal: "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
	},
	{
		mech:        "SCRAM-SHA-256",
		nonce:       "rOprNGfwEbeRWgbNEkqO",
		clientFirst: "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
		serverFirst: "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
		clientFinal: "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
		serverFinal: "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
	},
}

func TestSCRAMVectors(t *testing.T) {
	for _, v := range vectors {
		t.Run(v.mech, func(t *testing.T) {
			for _, finalAsChallenge := range []bool{false, true} {
				m, err := SCRAMWithOptions(v.mech, "user", "pencil", SCRAMOptions{Nonce: v.nonce})
				if err != nil {
					t.Fatal(err)
				}
				first, err := m.Start()
				if err != nil || string(first) != v.clientFirst {
					t.Fatalf("Start() = %q, %v; want %q", first, err, v.clientFirst)
				}
				final, err := m.Next([]byte(v.serverFirst))
				if err != nil || string(final) != v.clientFinal {
					t.Fatalf("Next(server-first) = %q, %v; want %q", final, err, v.clientFinal)
				}
				if finalAsChallenge {
					resp, err := m.Next([]byte(v.serverFinal))
					if err != nil || resp == nil || len(resp) != 0 {
						t.Fatalf("Next(server-final) = %q, %v; want empty response", resp, err)
					}
					if err := m.Finish(nil); err != nil {
						t.Fatalf("Finish(nil) after verified challenge = %v", err)
					}
				} else if err := m.Finish([]byte(v.serverFinal)); err != nil {
					t.Fatalf("Finish(server-final) = %v", err)
				}
			}
		})
	}
}

func TestSCRAMRejectsServer(t *testing.T) {
	v := vectors[1]
	badSig := "v=" + base64.StdEncoding.EncodeToString(make([]byte, 32))
	tests := []struct {
		name        string
		serverFirst string
		serverFinal string // used with Finish when serverFirst succeeds
		want        error
	}{
		{"wrong signature", v.serverFirst, badSig, ErrServerAuth},
		{"no signature", v.serverFirst, "", ErrServerAuth},
		{"signature not base64", v.serverFirst, "v=***", ErrServerAuth},
		{"nonce not ours", "r=other" + v.nonce + "x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", "", ErrProtocol},
		{"nonce not extended", "r=" + v.nonce + ",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", "", ErrProtocol},
		{"bad salt", "r=" + v.nonce + "x,s=!!,i=4096", "", ErrProtocol},
		{"zero iterations", "r=" + v.nonce + "x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0", "", ErrProtocol},
		{"huge iterations", "r=" + v.nonce + "x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=999999999", "", ErrProtocol},
		{"mandatory extension", "m=ext,r=" + v.nonce + "x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", "", ErrProtocol},
		{"duplicate attribute", "r=" + v.nonce + "x,r=" + v.nonce + "y,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", "", ErrProtocol},
		{"garbage", "hello", "", ErrProtocol},
		{"empty", "", "", ErrProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, _ := SCRAMWithOptions(v.mech, "user", "pencil", SCRAMOptions{Nonce: v.nonce})
			m.Start()
			_, err := m.Next([]byte(tt.serverFirst))
			if err == nil {
				err = m.Finish([]byte(tt.serverFinal))
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestSCRAMServerErrorAttribute(t *testing.T) {
	v := vectors[1]
	m, _ := SCRAMWithOptions(v.mech, "user", "pencil", SCRAMOptions{Nonce: v.nonce})
	m.Start()
	if _, err := m.Next([]byte(v.serverFirst)); err != nil {
		t.Fatal(err)
	}
	err := m.Finish([]byte("e=invalid-proof"))
	if err == nil || !strings.Contains(err.Error(), "invalid-proof") {
		t.Fatalf("Finish(e=invalid-proof) = %v, want error naming the condition", err)
	}
}

// serverProof computes what a correct server would answer, so the -PLUS and
// gs2 variants are checked end to end and not only against fixed strings.
func serverProof(t *testing.T, password, clientFirstBare, serverFirst, clientFinalNoProof string) (wantProof, serverFinal string) {
	t.Helper()
	attrs, err := parseAttrs([]byte(serverFirst))
	if err != nil {
		t.Fatal(err)
	}
	salt, _ := base64.StdEncoding.DecodeString(attrs['s'])
	var iter int
	fmt.Sscan(attrs['i'], &iter)
	salted, _ := pbkdf2.Key(sha256.New, password, salt, iter, 32)
	mac := func(k []byte, s string) []byte { h := hmac.New(sha256.New, k); h.Write([]byte(s)); return h.Sum(nil) }
	auth := clientFirstBare + "," + serverFirst + "," + clientFinalNoProof
	ck := mac(salted, "Client Key")
	sk := sha256.Sum256(ck)
	sig := mac(sk[:], auth)
	for i := range ck {
		ck[i] ^= sig[i]
	}
	return base64.StdEncoding.EncodeToString(ck), "v=" + base64.StdEncoding.EncodeToString(mac(mac(salted, "Server Key"), auth))
}

func TestSCRAMChannelBinding(t *testing.T) {
	cb := &ChannelBinding{Type: "tls-exporter", Data: bytes.Repeat([]byte{0xab}, 32)}
	tests := []struct {
		name    string
		mech    string
		opts    SCRAMOptions
		wantGS2 string
		wantC   []byte
	}{
		{"no binding", "SCRAM-SHA-256", SCRAMOptions{}, "n,,", []byte("n,,")},
		{"could bind, not offered", "SCRAM-SHA-256", SCRAMOptions{ClientSupportsCB: true}, "y,,", []byte("y,,")},
		{"plus", "SCRAM-SHA-256-PLUS", SCRAMOptions{CB: cb}, "p=tls-exporter,,", append([]byte("p=tls-exporter,,"), cb.Data...)},
		{"cb ignored without plus", "SCRAM-SHA-256", SCRAMOptions{CB: cb}, "n,,", []byte("n,,")},
		{"authzid escaped", "SCRAM-SHA-256", SCRAMOptions{AuthzID: "a,b=c"}, "n,a=a=2Cb=3Dc,", []byte("n,a=a=2Cb=3Dc,")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Nonce = "abc"
			m, err := SCRAMWithOptions(tt.mech, "us,er", "secret", tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			first, _ := m.Start()
			bare := "n=us=2Cer,r=abc"
			if string(first) != tt.wantGS2+bare {
				t.Fatalf("Start() = %q, want %q", first, tt.wantGS2+bare)
			}
			sf := "r=abcdef,s=" + base64.StdEncoding.EncodeToString([]byte("salt")) + ",i=64"
			final, err := m.Next([]byte(sf))
			if err != nil {
				t.Fatal(err)
			}
			noProof := "c=" + base64.StdEncoding.EncodeToString(tt.wantC) + ",r=abcdef"
			proof, sfinal := serverProof(t, "secret", bare, sf, noProof)
			if want := noProof + ",p=" + proof; string(final) != want {
				t.Fatalf("client-final = %q, want %q", final, want)
			}
			if err := m.Finish([]byte(sfinal)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestSCRAMConstructorErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts SCRAMOptions
	}{
		{"SCRAM-MD5", SCRAMOptions{}},
		{"SCRAM-SHA-1-PLUS", SCRAMOptions{}},
		{"SCRAM-SHA-256-PLUS", SCRAMOptions{CB: &ChannelBinding{Type: "tls-unique"}}},
		{"SCRAM-SHA-256", SCRAMOptions{Nonce: "a,b"}},
	} {
		if _, err := SCRAMWithOptions(tt.name, "u", "p", tt.opts); err == nil {
			t.Errorf("SCRAMWithOptions(%q, %+v) = nil error", tt.name, tt.opts)
		}
	}
}

func TestSCRAMRandomNonce(t *testing.T) {
	a, _ := SCRAM("SCRAM-SHA-256", "u", "p")
	b, _ := SCRAM("SCRAM-SHA-256", "u", "p")
	fa, _ := a.Start()
	fb, _ := b.Start()
	if bytes.Equal(fa, fb) || len(fa) < len("n,,n=u,r=")+32 {
		t.Fatalf("nonces not random or too short: %q %q", fa, fb)
	}
	if _, err := a.Start(); err == nil {
		t.Fatal("second Start succeeded")
	}
}

func TestPreferred(t *testing.T) {
	all := []string{"PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS", "EXTERNAL", "DIGEST-MD5"}
	tests := []struct {
		name    string
		offered []string
		have    Capabilities
		want    []string
	}{
		{"everything", all, Capabilities{TLS: true, ChannelBinding: true, ClientCert: true},
			[]string{"EXTERNAL", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1"}},
		{"no cb, no cert", all, Capabilities{TLS: true}, []string{"SCRAM-SHA-256", "SCRAM-SHA-1"}},
		{"prosody sha1", []string{"SCRAM-SHA-1", "PLAIN"}, Capabilities{TLS: true}, []string{"SCRAM-SHA-1"}},
		{"plain only over tls", []string{"PLAIN"}, Capabilities{TLS: true}, []string{"PLAIN"}},
		{"plain never without tls", []string{"PLAIN"}, Capabilities{}, nil},
		{"plus stripped when offered only plus", []string{"SCRAM-SHA-256-PLUS"}, Capabilities{TLS: true}, nil},
		{"case and space", []string{" scram-sha-256 "}, Capabilities{TLS: true}, []string{"SCRAM-SHA-256"}},
		{"nothing usable", []string{"DIGEST-MD5", "X-OAUTH2"}, Capabilities{TLS: true}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Preferred(tt.offered, tt.have); !slices.Equal(got, tt.want) {
				t.Fatalf("Preferred(%q, %+v) = %q, want %q", tt.offered, tt.have, got, tt.want)
			}
		})
	}
}

func TestPlainAndExternal(t *testing.T) {
	p := Plain("user", "pencil")
	b, _ := p.Start()
	if string(b) != "\x00user\x00pencil" {
		t.Fatalf("PLAIN Start() = %q", b)
	}
	if _, err := p.Next([]byte("x")); err == nil {
		t.Fatal("PLAIN accepted a challenge")
	}
	e := External("")
	b, _ = e.Start()
	if b == nil || len(b) != 0 {
		t.Fatalf("EXTERNAL Start() = %#v, want empty non-nil", b)
	}
	if _, err := e.Next([]byte("junk")); err == nil {
		t.Fatal("EXTERNAL accepted a non-empty challenge")
	}
}

// FuzzSCRAM feeds arbitrary server messages to a SCRAM client: it must never
// panic and must never report success for anything but the right proof.
func FuzzSCRAM(f *testing.F) {
	v := vectors[1]
	f.Add([]byte(v.serverFirst), []byte(v.serverFinal))
	f.Add([]byte(v.serverFirst), []byte("e=other-error"))
	f.Add([]byte("r=,s=,i="), []byte("v="))
	f.Add([]byte("r=rOprNGfwEbeRWgbNEkqOx,s=QQ==,i=1,,"), []byte{})
	f.Fuzz(func(t *testing.T, first, final []byte) {
		m, _ := SCRAMWithOptions(v.mech, "user", "pencil", SCRAMOptions{Nonce: v.nonce})
		m.Start()
		if _, err := m.Next(first); err != nil {
			return
		}
		if err := m.Finish(final); err == nil {
			if string(first) != v.serverFirst && !bytes.Contains(final, []byte("v=")) {
				t.Fatalf("success without a server signature: %q %q", first, final)
			}
			if string(first) == v.serverFirst && string(final) != v.serverFinal {
				t.Fatalf("accepted wrong server-final %q", final)
			}
		}
	})
}

// TestSCRAMSaltCache: a second login with the same salt and iteration
// count reuses the salted password; another salt, password or hash does
// not; and every exchange still proves itself to a real server.
func TestSCRAMSaltCache(t *testing.T) {
	cache := new(SaltCache)
	login := func(mech, password, salt string) {
		t.Helper()
		m, err := SCRAMWithOptions(mech, "user", password, SCRAMOptions{Nonce: "abc", Cache: cache})
		if err != nil {
			t.Fatal(err)
		}
		first, _ := m.Start()
		sf := "r=abcdef,s=" + base64.StdEncoding.EncodeToString([]byte(salt)) + ",i=4096"
		final, err := m.Next([]byte(sf))
		if err != nil {
			t.Fatal(err)
		}
		noProof, proof, _ := strings.Cut(string(final), ",p=")
		if mech != "SCRAM-SHA-256" {
			return // serverProof speaks SHA-256 only
		}
		wantProof, serverFinal := serverProof(t, password, string(first[3:]), sf, noProof)
		if proof != wantProof {
			t.Fatalf("%s %s/%s: proof %s, want %s", mech, password, salt, proof, wantProof)
		}
		if _, err := m.Next([]byte(serverFinal)); err != nil {
			t.Fatalf("server signature refused: %v", err)
		}
	}
	for _, step := range []struct {
		mech, password, salt string
		hits                 int
	}{
		{"SCRAM-SHA-256", "secret", "salt", 0},
		{"SCRAM-SHA-256", "secret", "salt", 1},
		{"SCRAM-SHA-256", "secret", "salt", 2},
		{"SCRAM-SHA-256", "secret", "pepper", 2}, // the account was re-created
		{"SCRAM-SHA-256", "other", "pepper", 2},  // the password changed
		{"SCRAM-SHA-1", "other", "pepper", 2},    // another hash
		{"SCRAM-SHA-256", "secret", "salt", 2},   // only the last is kept
		{"SCRAM-SHA-256", "secret", "salt", 3},
	} {
		login(step.mech, step.password, step.salt)
		if cache.hits != step.hits {
			t.Fatalf("after %s %s/%s: %d cache hits, want %d", step.mech, step.password, step.salt, cache.hits, step.hits)
		}
	}
}
