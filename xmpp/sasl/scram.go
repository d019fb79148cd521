package sasl

import (
	"bytes"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"sync"
)

// ChannelBinding is the data that ties a SCRAM-*-PLUS exchange to the TLS
// connection it runs on (RFC 5929 tls-unique, RFC 9266 tls-exporter).
type ChannelBinding struct {
	Type string // "tls-unique" or "tls-exporter"
	Data []byte
}

// SCRAMOptions tune a SCRAM exchange.
type SCRAMOptions struct {
	// CB binds the exchange to the TLS channel; required for -PLUS names.
	CB *ChannelBinding
	// ClientSupportsCB sends the gs2 "y" flag: the client could bind but
	// the server did not offer a -PLUS mechanism. A server that does
	// support binding then knows the offer was stripped (RFC 5802 §6).
	ClientSupportsCB bool
	// AuthzID is the optional authorization identity.
	AuthzID string
	// Nonce replaces the random client nonce (test vectors only). It must
	// be printable ASCII without ','.
	Nonce string
	// Cache, if set, keeps the salted password between exchanges with
	// the same credentials, salt and iteration count.
	Cache *SaltCache
}

// SaltCache remembers the last SaltedPassword a SCRAM exchange computed,
// as RFC 5802 §5.1 allows: the next login with the same password, salt
// and iteration count skips PBKDF2. A server stores one salt per account,
// so every reconnect after the first is a hit. On a small ARM board 10,000
// iterations cost a tenth of a second of CPU per login; for a fleet
// reconnecting at once that is the difference between the boards' CPU
// and the network setting the pace. It holds nothing the process did not
// already hold (the password). Safe for concurrent use.
type SaltCache struct {
	mu     sync.Mutex
	key    string
	salted []byte
	hits   int // for tests
}

func (c *SaltCache) get(key string) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.salted == nil || c.key != key {
		return nil
	}
	c.hits++
	return bytes.Clone(c.salted)
}

func (c *SaltCache) put(key string, salted []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.key, c.salted = key, bytes.Clone(salted)
}

// MaxIterations caps the PBKDF2 iteration count a server may ask for, so a
// hostile server cannot pin a small board's CPU for minutes per login.
const MaxIterations = 1 << 20

// SCRAM returns a SCRAM mechanism without channel binding.
func SCRAM(name, user, password string) (Mechanism, error) {
	return SCRAMWithOptions(name, user, password, SCRAMOptions{})
}

// SCRAMWithOptions returns the SCRAM mechanism called name, one of
// SCRAM-SHA-1, SCRAM-SHA-256 and their -PLUS variants.
//
// The username is sent as given, with only ',' and '=' escaped: stanzad
// uses XMPP localparts, which nodeprep has already normalised, so the full
// SASLprep profile would change nothing for them.
func SCRAMWithOptions(name, user, password string, opts SCRAMOptions) (Mechanism, error) {
	s := &scram{name: name, user: user, password: password, opts: opts}
	base, plus := strings.CutSuffix(name, "-PLUS")
	switch base {
	case "SCRAM-SHA-1":
		s.hash = sha1.New
	case "SCRAM-SHA-256":
		s.hash = sha256.New
	default:
		return nil, fmt.Errorf("sasl: unsupported mechanism %q", name)
	}
	if plus && (opts.CB == nil || opts.CB.Type == "" || len(opts.CB.Data) == 0) {
		return nil, fmt.Errorf("sasl: %s needs channel binding data", name)
	}
	if !plus {
		s.opts.CB = nil
	}
	if strings.ContainsAny(opts.Nonce, ",") {
		return nil, errors.New("sasl: nonce must not contain ','")
	}
	return s, nil
}

type scramState int

const (
	scramInit scramState = iota
	scramSentFirst
	scramSentFinal
	scramVerified
)

type scram struct {
	name, user, password string
	opts                 SCRAMOptions
	hash                 func() hash.Hash

	state           scramState
	gs2             string
	clientFirstBare string
	nonce           string
	serverSig       []byte
}

func (s *scram) Name() string { return s.name }

func (s *scram) Start() ([]byte, error) {
	if s.state != scramInit {
		return nil, fmt.Errorf("%w: %s started twice", ErrProtocol, s.name)
	}
	s.nonce = s.opts.Nonce
	if s.nonce == "" {
		var raw [24]byte
		rand.Read(raw[:]) // never fails (crypto/rand since Go 1.24)
		s.nonce = base64.RawStdEncoding.EncodeToString(raw[:])
	}
	switch {
	case s.opts.CB != nil:
		s.gs2 = "p=" + s.opts.CB.Type + ","
	case s.opts.ClientSupportsCB:
		s.gs2 = "y,"
	default:
		s.gs2 = "n,"
	}
	if s.opts.AuthzID != "" {
		s.gs2 += "a=" + escapeName(s.opts.AuthzID)
	}
	s.gs2 += ","
	s.clientFirstBare = "n=" + escapeName(s.user) + ",r=" + s.nonce
	s.state = scramSentFirst
	return []byte(s.gs2 + s.clientFirstBare), nil
}

func (s *scram) Next(challenge []byte) ([]byte, error) {
	switch s.state {
	case scramSentFirst:
		return s.clientFinal(challenge)
	case scramSentFinal:
		// Some servers send server-final as a challenge and expect an
		// empty response before <success/>.
		if err := s.verify(challenge); err != nil {
			return nil, err
		}
		return []byte{}, nil
	default:
		return nil, fmt.Errorf("%w: unexpected challenge", ErrProtocol)
	}
}

func (s *scram) clientFinal(serverFirst []byte) ([]byte, error) {
	attrs, err := parseAttrs(serverFirst)
	if err != nil {
		return nil, err
	}
	if _, ok := attrs['m']; ok {
		return nil, fmt.Errorf("%w: unsupported mandatory extension", ErrProtocol)
	}
	if e, ok := attrs['e']; ok {
		return nil, fmt.Errorf("sasl: server error %q", e)
	}
	nonce, salt64, iter64 := attrs['r'], attrs['s'], attrs['i']
	if !strings.HasPrefix(nonce, s.nonce) || len(nonce) == len(s.nonce) {
		return nil, fmt.Errorf("%w: server nonce does not extend ours", ErrProtocol)
	}
	salt, err := base64.StdEncoding.DecodeString(salt64)
	if err != nil || len(salt) == 0 {
		return nil, fmt.Errorf("%w: bad salt", ErrProtocol)
	}
	iter, err := strconv.Atoi(iter64)
	if err != nil || iter < 1 {
		return nil, fmt.Errorf("%w: bad iteration count %q", ErrProtocol, iter64)
	}
	if iter > MaxIterations {
		return nil, fmt.Errorf("%w: iteration count %d above limit %d", ErrProtocol, iter, MaxIterations)
	}

	cbind := []byte(s.gs2)
	if s.opts.CB != nil {
		cbind = append(cbind, s.opts.CB.Data...)
	}
	withoutProof := "c=" + base64.StdEncoding.EncodeToString(cbind) + ",r=" + nonce
	authMessage := s.clientFirstBare + "," + string(serverFirst) + "," + withoutProof

	salted, err := s.saltedPassword(salt, iter)
	if err != nil {
		return nil, err
	}
	clientKey := s.mac(salted, "Client Key")
	h := s.hash()
	h.Write(clientKey)
	storedKey := h.Sum(nil)
	clientSig := s.mac(storedKey, authMessage)
	proof := clientKey
	for i := range proof {
		proof[i] ^= clientSig[i]
	}
	s.serverSig = s.mac(s.mac(salted, "Server Key"), authMessage)
	s.state = scramSentFinal
	return []byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)), nil
}

func (s *scram) saltedPassword(salt []byte, iter int) ([]byte, error) {
	c := s.opts.Cache
	var key string
	if c != nil {
		base, _ := strings.CutSuffix(s.name, "-PLUS") // binding does not change the salted password
		key = base + "\x00" + s.password + "\x00" + string(salt) + "\x00" + strconv.Itoa(iter)
		if salted := c.get(key); salted != nil {
			return salted, nil
		}
	}
	salted, err := pbkdf2.Key(s.hash, s.password, salt, iter, s.hash().Size())
	if err != nil {
		return nil, fmt.Errorf("sasl: %w", err)
	}
	if c != nil {
		c.put(key, salted)
	}
	return salted, nil
}

func (s *scram) mac(key []byte, msg string) []byte {
	m := hmac.New(s.hash, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

func (s *scram) verify(serverFinal []byte) error {
	attrs, err := parseAttrs(serverFinal)
	if err != nil {
		return err
	}
	if e, ok := attrs['e']; ok {
		return fmt.Errorf("sasl: server error %q", e)
	}
	v, err := base64.StdEncoding.DecodeString(attrs['v'])
	if err != nil || subtle.ConstantTimeCompare(v, s.serverSig) != 1 {
		return ErrServerAuth
	}
	s.state = scramVerified
	return nil
}

func (s *scram) Finish(additional []byte) error {
	switch {
	case s.state == scramVerified && len(additional) == 0:
		return nil
	case s.state == scramSentFinal && len(additional) > 0:
		return s.verify(additional)
	case s.state == scramVerified:
		return fmt.Errorf("%w: server-final sent twice", ErrProtocol)
	default:
		return fmt.Errorf("%w: success without server signature", ErrServerAuth)
	}
}

// parseAttrs splits a SCRAM message "a=v,b=w" into attributes. Attribute
// names are single letters; values may contain '='.
func parseAttrs(msg []byte) (map[byte]string, error) {
	if len(msg) == 0 {
		return nil, fmt.Errorf("%w: empty message", ErrProtocol)
	}
	attrs := make(map[byte]string, 4)
	for part := range bytes.SplitSeq(msg, []byte{','}) {
		if len(part) < 2 || part[1] != '=' || !isAlpha(part[0]) {
			return nil, fmt.Errorf("%w: malformed attribute %q", ErrProtocol, truncate(part))
		}
		if _, dup := attrs[part[0]]; dup {
			return nil, fmt.Errorf("%w: duplicate attribute %q", ErrProtocol, part[0])
		}
		attrs[part[0]] = string(part[2:])
	}
	return attrs, nil
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func truncate(b []byte) []byte {
	if len(b) > 32 {
		return b[:32]
	}
	return b
}

// escapeName encodes a saslname (RFC 5802 §5.1).
func escapeName(s string) string {
	if !strings.ContainsAny(s, ",=") {
		return s
	}
	return strings.NewReplacer("=", "=3D", ",", "=2C").Replace(s)
}
