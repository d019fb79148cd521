package xmpp

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// Backoff bounds for reconnecting.
const (
	backoffMin    = time.Second
	backoffMax    = 60 * time.Second
	stableSession = 10 * time.Second // a session that lasted this long resets the backoff
)

// Client keeps a session alive: it dials, serves, and on any loss dials
// again with exponential backoff and full jitter, until ctx is cancelled.
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
	// session's reader or writer and must not block or send.
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
	delay := time.Duration(0)
	everUp := false
	for {
		if delay > 0 {
			wait := rand.N(delay) + time.Millisecond // full jitter
			c.log.Info("reconnecting", "in", wait.Round(time.Millisecond))
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
			if IsAuthError(err) {
				if !everUp {
					return err
				}
				c.log.Error("authentication failed; check the account and password", "err", err)
				delay = backoffMax
				continue
			}
			c.log.Warn("connect failed", "err", err)
			delay = nextBackoff(delay)
			continue
		}
		everUp = true
		started := time.Now()
		err = c.serve(ctx, s)
		if ctx.Err() != nil {
			return nil
		}
		c.failed(err)
		c.log.Warn("session lost", "err", err, "after", time.Since(started).Round(time.Second))
		if time.Since(started) > stableSession {
			delay = 0
		}
		delay = nextBackoff(delay)
	}
}

func nextBackoff(d time.Duration) time.Duration {
	if d < backoffMin {
		return backoffMin
	}
	return min(2*d, backoffMax)
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
	c.log.Info("connected", "jid", s.JID().String())
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
