//go:build !nomqtt

package bridge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Built reports whether this build has the MQTT bridge (not -tags nomqtt).
const Built = true

// Client is a connection to a broker. It is safe for concurrent use.
type Client struct {
	opts Options
	log  *slog.Logger
	c    mqtt.Client

	mu      sync.Mutex
	up      chan struct{} // closed while connected; replaced when the link drops
	isUp    bool
	lastErr error

	store    *resumeStore
	connects int // OnConnect calls so far
}

// resumeStore is paho's memory store, counting the calls of All. paho
// (v1.5.1) resends stored messages after every connect in resume(), which
// starts with All() and marks each stored publish as a duplicate; a
// message published between the connection coming up and that All() is
// stored, sent, and then modified while paho's writer may be encoding it:
// a data race inside paho (upstream issue #703) and a needless resend. So
// the client counts itself connected only once resume has taken its
// snapshot. The first All() comes from Connect itself
// (reserveStoredPublishIDs, with ConnectRetry and a persistent session).
type resumeStore struct {
	*mqtt.MemoryStore
	mu   sync.Mutex
	cond *sync.Cond
	alls int
}

func newResumeStore() *resumeStore {
	s := &resumeStore{MemoryStore: mqtt.NewMemoryStore()}
	s.cond = sync.NewCond(&s.mu)
	return s
}

func (s *resumeStore) All() []string {
	keys := s.MemoryStore.All()
	s.mu.Lock()
	s.alls++
	s.mu.Unlock()
	s.cond.Broadcast()
	return keys
}

// waitResume waits until resume() has listed the store for connection
// number n (1 for the first), or timeout passes.
func (s *resumeStore) waitResume(n int, timeout time.Duration) bool {
	stop := time.AfterFunc(timeout, s.cond.Broadcast)
	defer stop.Stop()
	deadline := time.Now().Add(timeout)
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.alls < n+1 {
		if time.Now().After(deadline) {
			return false
		}
		s.cond.Wait()
	}
	return true
}

// maxPayload caps incoming messages handed to OnMessage.
const maxPayload = 64 << 10

// New checks the options and prepares the client; Run connects.
func New(o Options) (*Client, error) {
	u, err := url.Parse(o.Broker)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("bridge: broker %q: want scheme://host:port", o.Broker)
	}
	if o.QoS > 2 {
		return nil, fmt.Errorf("bridge: qos %d: want 0, 1 or 2", o.QoS)
	}
	if o.Keepalive <= 0 {
		o.Keepalive = 30 * time.Second
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cl := &Client{opts: o, log: log, up: make(chan struct{}), store: newResumeStore()}
	po := mqtt.NewClientOptions()
	po.SetStore(cl.store)
	switch u.Scheme {
	case "tcp", "mqtt":
		po.AddBroker("tcp://" + u.Host)
	case "ssl", "tls", "mqtts":
		po.AddBroker("ssl://" + u.Host)
	case "ws", "wss":
		po.AddBroker(o.Broker)
	default:
		return nil, fmt.Errorf("bridge: broker scheme %q: want tcp, ssl, tls, mqtts, ws or wss", u.Scheme)
	}
	if u.Scheme != "tcp" && u.Scheme != "mqtt" && u.Scheme != "ws" {
		tc, err := tlsConfig(u.Hostname(), o)
		if err != nil {
			return nil, err
		}
		po.SetTLSConfig(tc)
	}
	po.SetClientID(o.ClientID)
	po.SetUsername(o.Username)
	po.SetPassword(o.Password)
	po.SetCleanSession(false) // the broker keeps our subscriptions and QoS 1/2 messages across reconnects
	po.SetKeepAlive(o.Keepalive)
	po.SetPingTimeout(o.Keepalive / 2)
	po.SetConnectTimeout(10 * time.Second)
	po.SetWriteTimeout(10 * time.Second)
	po.SetAutoReconnect(true)
	po.SetConnectRetry(true)
	po.SetConnectRetryInterval(2 * time.Second)
	po.SetMaxReconnectInterval(time.Minute)
	po.SetOrderMatters(true)
	if o.Will.Topic != "" {
		po.SetBinaryWill(o.Will.Topic, o.Will.Payload, o.QoS, o.Will.Retain)
	}
	po.SetOnConnectHandler(cl.connected)
	po.SetConnectionLostHandler(func(_ mqtt.Client, err error) {
		cl.setUp(false, err)
		log.Warn("mqtt connection lost; reconnecting", "broker", o.Broker, "err", err)
	})
	po.SetReconnectingHandler(func(_ mqtt.Client, _ *mqtt.ClientOptions) {
		log.Debug("mqtt reconnecting", "broker", o.Broker)
	})
	cl.c = mqtt.NewClient(po)
	return cl, nil
}

func tlsConfig(host string, o Options) (*tls.Config, error) {
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("bridge: %w", err)
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("bridge: %s: no certificates", o.CAFile)
		}
	}
	tc := &tls.Config{RootCAs: roots, ServerName: host, MinVersion: tls.VersionTLS12}
	if o.ClientCert != "" {
		cert, err := tls.LoadX509KeyPair(o.ClientCert, o.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("bridge: client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// connected runs on every (re)connect: status, then subscriptions.
func (cl *Client) connected(c mqtt.Client) {
	o := cl.opts
	cl.mu.Lock()
	cl.connects++
	n := cl.connects
	cl.mu.Unlock()
	if !cl.store.waitResume(n, 2*time.Second) {
		cl.log.Debug("mqtt: paho's resume not seen; publishing anyway")
	}
	if o.Status.Topic != "" {
		c.Publish(o.Status.Topic, o.QoS, o.Status.Retain, o.Status.Payload) // completes on its own
	}
	if len(o.Subscribe) > 0 && o.OnMessage != nil {
		filters := make(map[string]byte, len(o.Subscribe))
		for _, f := range o.Subscribe {
			filters[f] = o.QoS
		}
		t := c.SubscribeMultiple(filters, cl.message)
		go func() {
			if t.WaitTimeout(10*time.Second) && t.Error() != nil {
				cl.log.Error("mqtt subscribe failed", "filters", strings.Join(o.Subscribe, " "), "err", t.Error())
			}
		}()
	}
	cl.setUp(true, nil)
	cl.log.Info("mqtt connected", "broker", o.Broker, "client_id", o.ClientID)
}

func (cl *Client) message(_ mqtt.Client, m mqtt.Message) {
	if len(m.Payload()) > maxPayload {
		cl.log.Warn("mqtt message too large; dropped", "topic", m.Topic(), "bytes", len(m.Payload()), "max", maxPayload)
		return
	}
	cl.opts.OnMessage(Message{Topic: m.Topic(), Payload: m.Payload(), Retain: m.Retained()})
}

func (cl *Client) setUp(up bool, err error) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if err != nil {
		cl.lastErr = err
	}
	if up == cl.isUp {
		return
	}
	cl.isUp = up
	if up {
		close(cl.up)
	} else {
		cl.up = make(chan struct{})
	}
}

// Run connects (retrying until the broker answers) and keeps the
// connection until ctx is done; then it publishes the will message itself
// and disconnects. A broker that refuses the credentials is retried too,
// with the error in the log.
func (cl *Client) Run(ctx context.Context) error {
	t := cl.c.Connect()
	select {
	case <-t.Done(): // connected, or failed for good (paho retries otherwise)
		if err := t.Error(); err != nil {
			cl.log.Error("mqtt connect failed", "broker", cl.opts.Broker, "err", err)
		}
	case <-ctx.Done():
	}
	<-ctx.Done()
	if w := cl.opts.Will; w.Topic != "" && cl.c.IsConnectionOpen() {
		cl.c.Publish(w.Topic, cl.opts.QoS, w.Retain, w.Payload).WaitTimeout(2 * time.Second)
	}
	cl.c.Disconnect(500)
	cl.setUp(false, nil)
	return nil
}

// Connected returns a channel that is closed while the client is
// connected (a new one after the link drops).
func (cl *Client) Connected() <-chan struct{} {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.up
}

// IsConnected reports whether the link to the broker is up.
func (cl *Client) IsConnected() bool {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return cl.isUp
}

// Pending is a publish on its way.
type Pending struct{ t mqtt.Token }

// Done is closed when the broker has acknowledged the message (QoS 1, 2),
// it was written (QoS 0), or it failed.
func (p Pending) Done() <-chan struct{} { return p.t.Done() }

// Err is the publish's outcome once Done is closed.
func (p Pending) Err() error { return p.t.Error() }

// Publish sends m with the client's QoS. It does not wait: see Pending.
// While the broker is away it fails at once with ErrNotConnected, so the
// caller keeps the message (the agent's outbox) rather than paho's memory.
func (cl *Client) Publish(m Message) (Pending, error) {
	if !cl.IsConnected() {
		return Pending{}, ErrNotConnected
	}
	return Pending{cl.c.Publish(m.Topic, cl.opts.QoS, m.Retain, m.Payload)}, nil
}
