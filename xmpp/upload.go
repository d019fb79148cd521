package xmpp

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// XEP-0363 HTTP File Upload, the client side, and XEP-0066 out-of-band
// links.
const (
	NSUpload = "urn:xmpp:http:upload:0"
	NSOOB    = "jabber:x:oob"
)

// ErrNoUpload is returned by FindUpload when the server offers no
// upload service.
var ErrNoUpload = errors.New("the server offers no HTTP upload service (XEP-0363)")

// UploadService is a server's upload component.
type UploadService struct {
	JID     string
	MaxSize int64 // 0: not stated
}

// FindUpload looks for the upload service among the items of the
// account's server (disco#items, then disco#info of each, XEP-0363 §2),
// and the server itself.
func FindUpload(ctx context.Context, s *Session) (UploadService, error) {
	domain := s.JID().Domain
	candidates := []string{domain}
	if res, err := s.SendIQ(ctx, Stanza("iq", "get", domain, "").Add(NewElement(NSDiscoIt, "query"))); err == nil {
		for _, it := range res.FirstChild().Children {
			if it.Name == "item" && it.Attr("jid") != "" && it.Attr("node") == "" && len(candidates) < 32 {
				candidates = append(candidates, it.Attr("jid"))
			}
		}
	}
	for _, jid := range candidates {
		res, err := s.SendIQ(ctx, Stanza("iq", "get", jid, "").Add(NewElement(NSDiscoInf, "query")))
		if err != nil {
			if ctx.Err() != nil {
				return UploadService{}, ctx.Err()
			}
			continue
		}
		if svc, ok := uploadInfo(jid, res.FirstChild()); ok {
			return svc, nil
		}
	}
	return UploadService{}, ErrNoUpload
}

// uploadInfo reads a disco#info answer: whether it has the upload
// feature, and the max-file-size of its XEP-0128 form.
func uploadInfo(jid string, q *Element) (UploadService, bool) {
	if q == nil {
		return UploadService{}, false
	}
	found := false
	svc := UploadService{JID: jid}
	for _, c := range q.Children {
		switch {
		case c.Name == "feature" && c.Attr("var") == NSUpload:
			found = true
		case c.Name == "x" && c.Space == NSData:
			f, err := ParseForm(c)
			if err != nil || f.Value("FORM_TYPE") != NSUpload {
				continue
			}
			if n, err := strconv.ParseInt(f.Value("max-file-size"), 10, 64); err == nil && n > 0 {
				svc.MaxSize = n
			}
		}
	}
	return svc, found
}

// UploadSlot is where to PUT a file and where it can then be fetched.
type UploadSlot struct {
	PutURL, GetURL string
	// Headers to send with the PUT; only those XEP-0363 §5 allows
	// (Authorization, Cookie, Expires) are kept.
	Headers map[string]string
}

// RequestSlot asks service for an upload slot for a file (XEP-0363 §4).
// A refusal (file too large, quota) is the server's stanza error.
func RequestSlot(ctx context.Context, s *Session, service, filename string, size int64, contentType string) (UploadSlot, error) {
	req := NewElement(NSUpload, "request", "filename", filename, "size", strconv.FormatInt(size, 10), "content-type", contentType)
	res, err := s.SendIQ(ctx, Stanza("iq", "get", service, "").Add(req))
	if err != nil {
		return UploadSlot{}, err
	}
	return ParseSlot(res.FirstChild())
}

// ParseSlot reads a <slot/>.
func ParseSlot(slot *Element) (UploadSlot, error) {
	if slot == nil || slot.Space != NSUpload || slot.Name != "slot" {
		return UploadSlot{}, errors.New("upload slot: the answer has no <slot/>")
	}
	var sl UploadSlot
	for _, c := range slot.Children {
		switch c.Name {
		case "put":
			sl.PutURL = c.Attr("url")
			for _, h := range c.Children {
				name := strings.TrimSpace(h.Attr("name"))
				if h.Name != "header" || strings.ContainsAny(h.Text, "\r\n") {
					continue
				}
				switch strings.ToLower(name) {
				case "authorization", "cookie", "expires":
					if sl.Headers == nil {
						sl.Headers = map[string]string{}
					}
					sl.Headers[name] = h.Text
				}
			}
		case "get":
			sl.GetURL = c.Attr("url")
		}
	}
	if sl.PutURL == "" || sl.GetURL == "" {
		return UploadSlot{}, fmt.Errorf("upload slot: put url %q, get url %q", sl.PutURL, sl.GetURL)
	}
	return sl, nil
}

// LinkMessage is a message whose body is exactly url with a XEP-0066
// <x xmlns='jabber:x:oob'><url/></x> of the same URL: what Gajim,
// Conversations and others show inline as the file itself.
func LinkMessage(typ, to, url string) *Element {
	m := Stanza("message", typ, to, "")
	m.Add(NewElement(NSClient, "body").SetText(url))
	return m.Add(NewElement(NSOOB, "x").Add(NewElement(NSOOB, "url").SetText(url)))
}
