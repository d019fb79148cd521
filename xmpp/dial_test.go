package xmpp

import (
	"context"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// refusedAddr returns a loopback address nothing listens on.
func refusedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// silentAddr accepts connections and never sends a byte, like a host
// whose server process hangs. It counts the connections.
func silentAddr(t *testing.T) (string, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int32
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			mu.Lock()
			conns = append(conns, c) // held open until the listener's cleanup
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String(), &n
}

// blackholeAddr returns a loopback address whose SYNs are dropped: a
// listening socket with a backlog of 0 that never accepts, its one queue
// slot already taken. Connecting to it hangs as to a firewalled host.
func blackholeAddr(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
	// Fill the accept queue: the kernel drops SYNs from then on.
	for range 2 {
		c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err != nil {
			break
		}
		t.Cleanup(func() { c.Close() })
	}
	if c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond); err == nil {
		c.Close()
		t.Skip("this kernel does not drop SYNs to a full accept queue")
	}
	return addr
}

// TestDialFailover: endpoints that refuse, drop SYNs or accept and stay
// silent are passed over within ConnectTimeout each; the session comes
// from the first one that works, and the refused ones were tried first.
func TestDialFailover(t *testing.T) {
	cfg, done := scripted(t, "secret", func(p *peer) error { return nil })
	good := cfg.Servers[0]
	silent, silentConns := silentAddr(t)
	cfg.Servers = []string{refusedAddr(t), blackholeAddr(t), silent, good}
	cfg.Timeout = time.Minute
	cfg.ConnectTimeout = 300 * time.Millisecond
	t0 := time.Now()
	s, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	// Far below Timeout: each dead endpoint cost ConnectTimeout, not the
	// whole negotiation budget.
	if d := time.Since(t0); d > cfg.Timeout/2 {
		t.Errorf("failover took %v with a connect timeout of %v", d, cfg.ConnectTimeout)
	}
	if s.Endpoint() != good {
		t.Errorf("Endpoint() = %s, want %s", s.Endpoint(), good)
	}
	if silentConns.Load() != 1 {
		t.Errorf("silent endpoint saw %d connections, want 1", silentConns.Load())
	}
	s.Close(context.Background())
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestDialAllEndpointsFail: the error names every endpoint and why, and
// the last endpoint too has only ConnectTimeout to answer.
func TestDialAllEndpointsFail(t *testing.T) {
	silent, _ := silentAddr(t)
	refused := refusedAddr(t)
	cfg := Config{
		JID: MustParseJID("device@iot.test"), Password: "x",
		Servers:        []string{refused, silent},
		Timeout:        time.Minute,
		ConnectTimeout: 200 * time.Millisecond,
	}
	_, err := Dial(context.Background(), cfg)
	if err == nil {
		t.Fatal("Dial succeeded")
	}
	msg := err.Error()
	for _, want := range []string{"no endpoint of 2 worked", refused, "connection refused", silent} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
	if IsAuthError(err) {
		t.Errorf("IsAuthError(%v) = true", err)
	}
}

// TestDialAuthErrorStops: a refused login is the account's, the same on
// every node, so the next endpoint is not tried.
func TestDialAuthErrorStops(t *testing.T) {
	cfg, done := scripted(t, "wrong", func(p *peer) error { return nil })
	next, nextConns := silentAddr(t)
	cfg.Servers = append(cfg.Servers, next)
	_, err := Dial(context.Background(), cfg)
	if !IsAuthError(err) {
		t.Fatalf("err = %v, want an authentication error", err)
	}
	if n := nextConns.Load(); n != 0 {
		t.Errorf("next endpoint got %d connections after a refused login", n)
	}
	<-done
}

func TestEndpointsPreferred(t *testing.T) {
	list := []string{"a:1", "b:2", "c:3"}
	for _, tc := range []struct {
		prefer string
		want   []string
	}{
		{"", list},
		{"a:1", list},
		{"c:3", []string{"c:3", "a:1", "b:2"}},
		{"b:2", []string{"b:2", "a:1", "c:3"}},
		{"gone:4", list}, // a config change removed it
	} {
		got, err := endpoints(context.Background(), Config{Servers: list, prefer: tc.prefer})
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("prefer %q: %v %v, want %v", tc.prefer, got, err, tc.want)
		}
	}
	if !slices.Equal(list, []string{"a:1", "b:2", "c:3"}) {
		t.Errorf("endpoints changed the configured list: %v", list)
	}
}

// TestRetryWait: the bound follows the outage, not the attempt count.
func TestRetryWait(t *testing.T) {
	for _, tc := range []struct {
		down, bound time.Duration
	}{
		{0, retryFloor},
		{time.Second, retryFloor},
		{5 * time.Second, 2500 * time.Millisecond},
		{20 * time.Second, 10 * time.Second},
		{10 * time.Minute, backoffMax},
	} {
		var sum time.Duration
		const n = 2000
		for range n {
			w := retryWait(tc.down)
			if w <= 0 || w > tc.bound+time.Millisecond {
				t.Fatalf("retryWait(%v) = %v, want in (0, %v]", tc.down, w, tc.bound)
			}
			sum += w
		}
		// Spread over the whole window, not bunched at one end: the mean
		// of 2000 uniform draws is within a few percent of half.
		if mean := sum / n; mean < tc.bound*4/10 || mean > tc.bound*6/10 {
			t.Errorf("retryWait(%v): mean %v, want about %v", tc.down, mean, tc.bound/2)
		}
	}
}

// fakeDNS serves SRV records for one name over UDP on loopback and
// returns a resolver that asks it.
func fakeDNS(t *testing.T, name string, srvs []dnsmessage.SRVResource) *net.Resolver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var p dnsmessage.Parser
			h, err := p.Start(buf[:n])
			if err != nil {
				continue
			}
			q, err := p.Question()
			if err != nil {
				continue
			}
			b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true})
			b.EnableCompression()
			b.StartQuestions()
			b.Question(q)
			b.StartAnswers()
			if q.Type == dnsmessage.TypeSRV && q.Name.String() == name {
				for _, r := range srvs {
					b.SRVResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}, r)
				}
			}
			msg, err := b.Finish()
			if err == nil {
				pc.WriteTo(msg, from)
			}
		}
	}()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", pc.LocalAddr().String())
	}}
}

func srv(prio, weight uint16, port int) dnsmessage.SRVResource {
	return dnsmessage.SRVResource{Priority: prio, Weight: weight, Port: uint16(port),
		Target: dnsmessage.MustNewName("localhost.")}
}

// TestDialSRV: without configured servers the SRV records decide, lowest
// priority first, and a dead target fails over to the next.
func TestDialSRV(t *testing.T) {
	cfg, done := scripted(t, "secret", func(p *peer) error { return nil })
	_, port, _ := net.SplitHostPort(cfg.Servers[0])
	goodPort := mustAtoi(t, port)
	_, deadPort, _ := net.SplitHostPort(refusedAddr(t))
	cfg.Servers = nil
	cfg.Resolver = fakeDNS(t, "_xmpp-client._tcp.iot.test.", []dnsmessage.SRVResource{
		srv(20, 0, goodPort),
		srv(10, 0, mustAtoi(t, deadPort)),
	})
	addrs, err := endpoints(context.Background(), cfg)
	if want := []string{"localhost:" + deadPort, "localhost:" + port}; err != nil || !slices.Equal(addrs, want) {
		t.Fatalf("endpoints = %v %v, want %v", addrs, err, want)
	}
	s, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	if s.Endpoint() != "localhost:"+port {
		t.Errorf("Endpoint() = %s", s.Endpoint())
	}
	s.Close(context.Background())
	<-done
}

// TestSRVWeights: within one priority, targets are picked at random in
// proportion to their weight (RFC 2782), so a fleet spreads over a
// cluster as its DNS says.
func TestSRVWeights(t *testing.T) {
	cfg := Config{JID: MustParseJID("device@iot.test")}
	cfg.Resolver = fakeDNS(t, "_xmpp-client._tcp.iot.test.", []dnsmessage.SRVResource{
		srv(10, 75, 1001), srv(10, 25, 1002), srv(20, 100, 1003),
	})
	const n = 400
	first := 0
	for range n {
		addrs, err := resolve(context.Background(), cfg)
		if err != nil || len(addrs) != 3 {
			t.Fatalf("resolve = %v, %v", addrs, err)
		}
		if addrs[2] != "localhost:1003" {
			t.Fatalf("priority 20 not last: %v", addrs)
		}
		if addrs[0] == "localhost:1001" {
			first++
		}
	}
	// 75% expected; 400 draws put it within ±7% (>3σ) of that.
	if first < n*68/100 || first > n*82/100 {
		t.Errorf("weight 75 target first in %d of %d lookups, want about 75%%", first, n)
	}
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestSRVBadRecords: what a DNS server publishes is outside input. "."
// says the service is not offered (RFC 2782): an error, nothing dialled.
// A record whose target is not a host name is dropped, and the valid
// ones are used, not the domain:5222 fallback.
func TestSRVBadRecords(t *testing.T) {
	cfg := Config{JID: MustParseJID("device@iot.test")}
	cfg.Resolver = fakeDNS(t, "_xmpp-client._tcp.iot.test.", []dnsmessage.SRVResource{
		{Priority: 0, Weight: 0, Port: 0, Target: dnsmessage.MustNewName(".")},
	})
	if addrs, err := resolve(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "publishes no xmpp-client") {
		t.Errorf("SRV \".\": %v, %v; want an error", addrs, err)
	}

	cfg.Resolver = fakeDNS(t, "_xmpp-client._tcp.iot.test.", []dnsmessage.SRVResource{
		{Priority: 10, Port: 5222, Target: dnsmessage.MustNewName("-bad-.iot.test.")},
		srv(20, 0, 5223),
	})
	addrs, err := resolve(context.Background(), cfg)
	if err != nil || !slices.Equal(addrs, []string{"localhost:5223"}) {
		t.Errorf("one bad record: %v, %v; want [localhost:5223]", addrs, err)
	}
}
