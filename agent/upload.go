package agent

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stanzad/stanzad/xmpp"
)

// XEP-0363 uploads (charts for plot): the service is found through disco
// on the agent's server once per session; the file goes up with a small
// HTTP/1.1 PUT of our own (net/http would add ~1 MB to a build without
// the MQTT bridge, which links it).

// uploadState caches the upload service of one session.
type uploadState struct {
	mu   sync.Mutex
	sess *xmpp.Session
	svc  xmpp.UploadService
	err  error
}

// uploadTimeout bounds an upload: discovery, slot and PUT.
const uploadTimeout = 30 * time.Second

// Upload puts data on the server's HTTP upload service and returns the
// URL to fetch it from.
func (h *host) Upload(ctx context.Context, name, contentType string, data []byte) (string, error) {
	a := (*Agent)(h)
	ln := a.ln.Load()
	s := ln.client.Session()
	if s == nil {
		return "", errors.New("offline: no session to ask for an upload slot")
	}
	ctx, cancel := context.WithTimeout(ctx, uploadTimeout)
	defer cancel()
	svc, err := a.uploadService(ctx, s)
	if err != nil {
		return "", err
	}
	if svc.MaxSize > 0 && int64(len(data)) > svc.MaxSize {
		return "", fmt.Errorf("the chart is %d bytes and %s takes at most %d", len(data), svc.JID, svc.MaxSize)
	}
	slot, err := xmpp.RequestSlot(ctx, s, svc.JID, name, int64(len(data)), contentType)
	if err != nil {
		return "", fmt.Errorf("upload slot refused by %s: %w", svc.JID, err)
	}
	loopback := isLoopback(s.Endpoint())
	for _, u := range []string{slot.PutURL, slot.GetURL} {
		if err := checkUploadURL(u, loopback); err != nil {
			return "", err
		}
	}
	tc, err := xmpp.TLSConfig(xmpp.TLSOptions{CAFile: ln.caFile})
	if err != nil {
		return "", err
	}
	if err := httpPut(ctx, slot, data, contentType, tc); err != nil {
		return "", fmt.Errorf("upload to %s failed: %w", hostOf(slot.PutURL), err)
	}
	return slot.GetURL, nil
}

// uploadService finds (once per session) the server's upload service.
func (a *Agent) uploadService(ctx context.Context, s *xmpp.Session) (xmpp.UploadService, error) {
	u := &a.upload
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.sess != s {
		u.svc, u.err = xmpp.FindUpload(ctx, s)
		if ctx.Err() == nil {
			u.sess = s
		}
	}
	return u.svc, u.err
}

// isLoopback reports whether a host:port is on loopback.
func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func hostOf(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Host
	}
	return raw
}

// checkUploadURL accepts https URLs, and http ones only on loopback
// when the XMPP server is on loopback too (a test, a board's own
// server): anything else would send the chart, or let clients fetch it,
// in clear text.
func checkUploadURL(raw string, serverLoopback bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("upload URL %q: %w", raw, err)
	}
	switch {
	case u.Scheme == "https" && u.Host != "":
		return nil
	case u.Scheme == "http" && serverLoopback && isLoopback(u.Host):
		return nil
	}
	return fmt.Errorf("the upload service gave %s, which is not https; not sending the chart in clear text", raw)
}

// httpPut PUTs body to slot.PutURL with the slot's headers and returns
// nil on a 2xx answer.
func httpPut(ctx context.Context, slot xmpp.UploadSlot, body []byte, contentType string, tc *tls.Config) error {
	u, err := url.Parse(slot.PutURL)
	if err != nil {
		return err
	}
	port := u.Port()
	if port == "" {
		port = "443"
		if u.Scheme == "http" {
			port = "80"
		}
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(u.Hostname(), port))
	if err != nil {
		return err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if u.Scheme == "https" {
		tc = tc.Clone()
		tc.ServerName = u.Hostname()
		tlsConn := tls.Client(conn, tc)
		if err := tlsConn.HandshakeContext(ctx); err != nil {
			return err
		}
		conn = tlsConn
	}
	var req strings.Builder
	fmt.Fprintf(&req, "PUT %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\nUser-Agent: stanzad\r\n",
		u.RequestURI(), u.Host, contentType, len(body))
	for k, v := range slot.Headers {
		fmt.Fprintf(&req, "%s: %s\r\n", k, v)
	}
	req.WriteString("\r\n")
	if _, err := io.WriteString(conn, req.String()); err != nil {
		return err
	}
	if _, err := conn.Write(body); err != nil {
		return err
	}
	br := bufio.NewReaderSize(conn, 1024)
	status, err := br.ReadString('\n')
	if err != nil {
		return fmt.Errorf("no HTTP answer: %w", err)
	}
	f := strings.Fields(status)
	code := 0
	if len(f) >= 2 && strings.HasPrefix(f[0], "HTTP/") {
		code, _ = strconv.Atoi(f[1])
	}
	if code < 200 || code > 299 {
		return fmt.Errorf("HTTP answer %q", strings.TrimSpace(status))
	}
	return nil
}
