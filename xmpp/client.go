package xmpp

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/stanzad/stanzad/xmpp/sasl"
)

// The reconnect schedule (see retryWait).
const (
	retryFloor    = time.Second      // the first retries come within this, at random
	backoffMax    = 60 * time.Second // the longest wait, for outages of two minutes and more
	stableSession = 10 * time.Second // a session that lasted this long starts a new outage clock
)

// retryWait is how long to wait before the next attempt when the server
// has been out of reach for down: a random time below
// clamp(down/2, retryFloor, backoffMax).
//
// The bound grows with the outage, not with the number of attempts: a
// board whose connection was merely cut is back within a second, a fleet
// whose server is away tries less and less often, and when the server
// returns after an outage of length T every board is back within T/2
// plus a login, its attempts spread evenly over that window rather than
// arriving together (a 5 s outage: 200 boards spread over 2.5 s, about
// 80 logins/s).
func retryWait(down time.Duration) time.Duration {
	bound := min(max(down/2, retryFloor), backoffMax)
	return rand.N(bound) + time.Millisecond
}

// Client keeps a session alive: it dials, serves, and on any loss dials
// again on the schedule of retryWait, until ctx is cancelled. It stays on
// the endpoint that worked last while that endpoint works.
type Client struct {
	cfg Config
	log *slog.Logger
	// OnConnect runs after each successful Dial with Serve already
	// running, e.g. to send initial presence (not needed when
	// s.Resumed()). An error closes that session and counts as a
	// connection failure.
	OnConnect func(ctx context.Context, s *Session) error
	// OnAck receives, in send order, the tags of stanzas sent with
	// SendTracked once the server has acknowledged them. It runs on the
	// session's reader or writer and must not block or send, nor keep
	// tags after it returns (the slice is reused).
	OnAck func(tags []uint64)
	// Keepalive is the probe interval for dead-peer detection: an ack
	// request (or ping) is sent when the stream has been quiet this long,
	// and a connection with no traffic from the server for two intervals
	// is dropped and replaced. 0 disables it.
	Keepalive time.Duration

	mu      sync.Mutex
	sess    *Session
	up      chan struct{} // closed and replaced on every connect
	lastErr error         // why the last connection attempt or session failed
}

// LastError returns why the last connection attempt or session failed,
// or nil.
func (c *Client) LastError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

func (c *Client) failed(err error) {
	c.mu.Lock()
	c.lastErr = err
	c.mu.Unlock()
}

// NewClient returns a client; it does not connect until Run.
func NewClient(cfg Config) *Client {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Client{cfg: cfg, log: log, up: make(chan struct{})}
	c.cfg.scram = new(sasl.SaltCache)
	c.cfg.sm = &smState{onAck: func(tags []uint64) {
		if c.OnAck != nil {
			c.OnAck(tags)
		}
	}}
	return c
}

// Run connects and keeps reconnecting until ctx is done, then closes the
// session gracefully and returns nil. An authentication failure on the very
// first attempt is returned at once: at startup it is a configuration error
// the operator must fix. Later ones back off like any other failure.
func (c *Client) Run(ctx context.Context) error {
	var downSince time.Time // when the server went out of reach; zero: connect now
	everUp, authFailed := false, false
	for {
		if !downSince.IsZero() {
			down := time.Since(downSince)
			if authFailed {
				down = 2 * backoffMax // a password fixed on the server is picked up within a minute
			}
			wait := retryWait(down)
			c.log.Info("reconnecting", "in", wait.Round(time.Millisecond), "down_for", down.Round(time.Millisecond))
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
		}
		s, err := Dial(ctx, c.cfg)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			c.failed(err)
			if downSince.IsZero() {
				downSince = time.Now()
			}
			if authFailed = IsAuthError(err); authFailed {
				if !everUp {
					return err
				}
				c.log.Error("authentication failed; check the account and password", "err", err)
				continue
			}
			c.log.Warn("connect failed", "err", err)
			continue
		}
		everUp, authFailed = true, false
		c.cfg.prefer = s.Endpoint()
		started := time.Now()
		err = c.serve(ctx, s)
		if ctx.Err() != nil {
			return nil
		}
		c.failed(err)
		c.log.Warn("session lost", "err", err, "after", time.Since(started).Round(time.Second))
		if downSince.IsZero() || time.Since(started) > stableSession {
			downSince = time.Now()
		}
	}
}

func (c *Client) serve(ctx context.Context, s *Session) error {
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	if c.Keepalive > 0 {
		var kwg sync.WaitGroup
		kwg.Go(func() { c.keepalive(s) }) // ends when Serve does
		defer kwg.Wait()
	}
	if c.OnConnect != nil {
		if err := c.OnConnect(ctx, s); err != nil {
			// The link may have gone before the close gets through,
			// leaving the stream resumable on the server: resuming it
			// would skip the setup that failed (initial presence).
			if c.cfg.sm != nil {
				c.cfg.sm.giveUp()
			}
			s.Close(context.WithoutCancel(ctx))
			<-done
			return err
		}
	}
	c.mu.Lock()
	c.sess = s
	close(c.up)
	c.up = make(chan struct{})
	c.mu.Unlock()
	c.log.Info("connected", "jid", s.JID().String(), "endpoint", s.Endpoint())
	err := <-done
	c.mu.Lock()
	c.sess = nil
	c.mu.Unlock()
	return err
}

// keepalive probes the server while s is alive and drops the connection
// when nothing has arrived for two intervals: a frozen server or a
// half-open TCP connection would otherwise hold the session forever.
func (c *Client) keepalive(s *Session) {
	k := c.Keepalive
	t := time.NewTicker(k / 4)
	defer t.Stop()
	lastProbe := time.Now()
	for {
		select {
		case <-s.Done():
			return
		case <-t.C:
		}
		quiet := time.Since(s.LastRead())
		if quiet > 2*k {
			c.log.Warn("server silent; dropping the connection", "silent_for", quiet.Round(time.Millisecond))
			s.shutdown() // no </stream:stream>: the stream stays resumable
			return
		}
		if quiet >= k && time.Since(lastProbe) >= k {
			lastProbe = time.Now()
			if err := s.RequestAck(); err != nil {
				return
			}
		}
	}
}

// Session returns the live session, or nil while disconnected.
func (c *Client) Session() *Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess
}

// WaitConnected blocks until a live session is up or ctx is done.
func (c *Client) WaitConnected(ctx context.Context) (*Session, error) {
	for {
		c.mu.Lock()
		s, up := c.sess, c.up
		c.mu.Unlock()
		if s != nil {
			select {
			case <-s.Done(): // ended; Run has not cleared it yet
			default:
				return s, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-up:
		}
	}
}

// Send sends on the live session or fails with ErrNotConnected.
func (c *Client) Send(ctx context.Context, st *Element) error {
	s := c.Session()
	if s == nil {
		return ErrNotConnected
	}
	return s.Send(ctx, st)
}

// SendTracked sends a pre-encoded stanza on the live session and reports
// tag to OnAck once the server has it (see Session.SendTracked).
func (c *Client) SendTracked(ctx context.Context, b []byte, tag uint64) error {
	s := c.Session()
	if s == nil {
		return ErrNotConnected
	}
	return s.SendTracked(ctx, b, tag)
}

// SendRaw sends a pre-encoded stanza on the live session.
func (c *Client) SendRaw(ctx context.Context, b []byte) error {
	s := c.Session()
	if s == nil {
		return ErrNotConnected
	}
	return s.SendRaw(ctx, b)
}

// SendIQ sends an IQ on the live session and waits for the answer.
func (c *Client) SendIQ(ctx context.Context, iq *Element) (*Element, error) {
	s := c.Session()
	if s == nil {
		return nil, ErrNotConnected
	}
	return s.SendIQ(ctx, iq)
}
