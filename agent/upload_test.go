package agent

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stanzad/stanzad/xmpp"
)

// Only https leaves the machine; plain http only on loopback when the
// XMPP server is on loopback too.
func TestCheckUploadURL(t *testing.T) {
	for _, tt := range []struct {
		url      string
		loopback bool
		ok       bool
	}{
		{"https://upload.example.org/f/x.png", false, true},
		{"https://upload.example.org/f/x.png", true, true},
		{"http://127.0.0.1:5280/f/x.png", true, true},
		{"http://localhost/f/x.png", true, true},
		{"http://127.0.0.1:5280/f/x.png", false, false},
		{"http://upload.example.org/f/x.png", true, false},
		{"ftp://upload.example.org/x.png", false, false},
		{"https:///x.png", false, false},
		{"::", false, false},
	} {
		err := checkUploadURL(tt.url, tt.loopback)
		if (err == nil) != tt.ok {
			t.Errorf("checkUploadURL(%q, server on loopback %v) = %v", tt.url, tt.loopback, err)
		}
		if err != nil && tt.url != "::" && !strings.Contains(err.Error(), "not https") {
			t.Errorf("checkUploadURL(%q): %v does not say why", tt.url, err)
		}
	}
}

// The PUT sends the body, its type and length and the slot's headers,
// and a non-2xx answer is an error naming it.
func TestHTTPPut(t *testing.T) {
	var got struct {
		method, ctype, auth string
		body                []byte
	}
	status := http.StatusCreated
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.method, got.ctype, got.auth = r.Method, r.Header.Get("Content-Type"), r.Header.Get("Authorization")
		got.body, _ = io.ReadAll(r.Body)
		w.WriteHeader(status)
	}))
	defer srv.Close()
	slot := xmpp.UploadSlot{PutURL: srv.URL + "/file_share/abc/chart.png", GetURL: srv.URL + "/x",
		Headers: map[string]string{"Authorization": "Basic Zm9vOmJhcg=="}}
	body := []byte("\x89PNG fake")
	if err := httpPut(context.Background(), slot, body, "image/png", &tls.Config{}); err != nil {
		t.Fatal(err)
	}
	if got.method != "PUT" || got.ctype != "image/png" || got.auth != "Basic Zm9vOmJhcg==" || string(got.body) != string(body) {
		t.Errorf("the server got %+v", got)
	}
	status = http.StatusRequestEntityTooLarge
	if err := httpPut(context.Background(), slot, body, "image/png", &tls.Config{}); err == nil || !strings.Contains(err.Error(), "413") {
		t.Errorf("a 413 answer: %v", err)
	}
	srv.Close()
	if err := httpPut(context.Background(), slot, body, "image/png", &tls.Config{}); err == nil {
		t.Error("a PUT to a closed server succeeded")
	}
}
