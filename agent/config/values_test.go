package config

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{"10s", 10 * time.Second, ""},
		{"1m30s", 90 * time.Second, ""},
		{"0s", 0, ""},
		{"250ms", 250 * time.Millisecond, ""},
		{"10 sec", 0, `invalid duration "10 sec"`},
		{"30", 0, `invalid duration "30"`},
		{"", 0, `invalid duration ""`},
		{"-1s", 0, `negative duration "-1s"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var d Duration
			err := d.UnmarshalText([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("UnmarshalText(%q) = %v, want error containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil || d.Duration != tt.want {
				t.Fatalf("UnmarshalText(%q) = %v, %v; want %v", tt.in, d.Duration, err, tt.want)
			}
		})
	}
}

func TestSize(t *testing.T) {
	tests := []struct {
		in      string
		want    Size
		wantErr bool
	}{
		{"512", 512, false},
		{"0", 0, false},
		{"512B", 512, false},
		{"4KiB", 4 << 10, false},
		{"16MiB", 16 << 20, false},
		{"2GiB", 2 << 30, false},
		{"64KB", 64000, false},
		{"3MB", 3e6, false},
		{"1GB", 1e9, false},
		{"1.5MiB", 3 << 19, false},
		{"16 MiB", 16 << 20, false},
		{"1_024", 1024, false},
		{"0x10", 16, false},
		{"8191PiB", 0, true}, // unknown unit
		{"16mib", 0, true},   // units are case-sensitive
		{"16kb", 0, true},
		{"-1", 0, true},
		{"-1KiB", 0, true},
		{"KiB", 0, true},
		{"", 0, true},
		{"lots", 0, true},
		{"nan", 0, true},
		{"inf", 0, true},
		{"9223372036854775807", 1<<63 - 1, false},
		{"9223372036854775808", 0, true},
		{"8589934592GiB", 0, true},
		{"1e30", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var s Size
			err := s.UnmarshalText([]byte(tt.in))
			if (err != nil) != tt.wantErr || err == nil && s != tt.want {
				t.Fatalf("UnmarshalText(%q) = %d, %v; want %d, error %v", tt.in, s, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestSizeString(t *testing.T) {
	for s, want := range map[Size]string{0: "0", 100: "100", 1024: "1KiB", 1536: "1536", 16 << 20: "16MiB", 3 << 30: "3GiB", 64000: "64000"} {
		if got := s.String(); got != want {
			t.Errorf("Size(%d).String() = %q, want %q", int64(s), got, want)
		}
		var back Size
		if err := back.UnmarshalText([]byte(s.String())); err != nil || back != s {
			t.Errorf("round trip of %d = %d, %v", int64(s), back, err)
		}
	}
}

func TestSecretNeverPrints(t *testing.T) {
	const pw = "hunter2-very-secret"
	cfg, err := Parse([]byte(`[xmpp]
jid = "device@iot.test"
password = "`+pw+`"

[[device]]
name = "muc-dev"
kind = "sim"

[[sink]]
kind = "muc"
room = "room@conference.iot.test"
password = "`+pw+`"
`), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.XMPP.Password.Reveal() != pw || cfg.Sinks[0].Password.Reveal() != pw {
		t.Fatalf("Reveal() = %q, want the password", cfg.XMPP.Password.Reveal())
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "%v %+v %s %#v %x %q %d|", cfg.XMPP, cfg, cfg.XMPP.Password, cfg, cfg.XMPP.Password, cfg.XMPP.Password, cfg.XMPP.Password)
	fmt.Fprint(&buf, cfg.XMPP.Password, cfg.Sinks, *cfg, "|")
	fmt.Fprintln(&buf, cfg.XMPP.Password.String())
	for _, h := range []slog.Handler{slog.NewTextHandler(&buf, nil), slog.NewJSONHandler(&buf, nil)} {
		log := slog.New(h)
		log.Info("cfg", "password", cfg.XMPP.Password, "xmpp", cfg.XMPP, "cfg", cfg, "sinks", cfg.Sinks)
		log.Info("attr", slog.Any("pw", cfg.XMPP.Password), slog.String("s", cfg.XMPP.Password.String()))
	}
	if out := buf.String(); strings.Contains(out, pw) || !strings.Contains(out, "[redacted]") {
		t.Fatalf("output leaks the password or lacks [redacted]:\n%s", out)
	}
	if got := Secret("").String(); got != "" {
		t.Errorf(`Secret("").String() = %q, want ""`, got)
	}
}
