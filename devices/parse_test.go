package devices

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParsers(t *testing.T) {
	tests := []struct {
		kind, pattern, in string
		want              string // fields as name=value, space separated
		err               string
	}{
		{kind: "line", in: "hello world", want: "line=hello world"},
		{kind: "line", in: "bad\xffbyte\x01", want: "line=bad\uFFFDbyte\uFFFD"},
		{kind: "kv", in: "temp=21.5 hum:40, door=open;ok=true", want: "temp=21.5 hum=40 door=open ok=true"},
		{kind: "kv", in: "temp=NaN", err: "not a measurement"},
		{kind: "kv", in: "temp=+Inf", err: "not a measurement"},
		{kind: "kv", in: "just words", err: "not key=value"},
		{kind: "kv", in: "", err: "no key=value"},
		{kind: "kv", in: "a b=1", err: "not key=value"},
		{kind: "kv", in: "t\xff=1", err: "not UTF-8"},
		{kind: "kv", in: strings.Repeat("a=1 ", 65), err: "more than 64"},
		{kind: "json", in: `{"t":21.5,"ok":true,"name":"x","env":{"rh":40},"list":[1],"none":null}`, want: "env.rh=40 name=x ok=true t=21.5"},
		{kind: "json", in: `[1,2]`, err: "cannot parse"},
		{kind: "json", in: `{"t":`, err: "cannot parse"},
		{kind: "json", in: `{"a b":1}`, err: "key"},
		{kind: "json", in: `{}`, err: "no values"},
		{kind: "json", in: `{"a":{"b":{"c":{"d":{"e":{"f":1}}}}}}`, err: "deeper"},
		{kind: "regexp", pattern: `T=(?P<temp>[-0-9.]+) RH=(?P<rh>\d+)`, in: "id=4 T=-3.5 RH=80", want: "temp=-3.5 rh=80"},
		{kind: "regexp", pattern: `T=(?P<temp>\S+)`, in: "no match", err: "does not match"},
		{kind: "whole", in: "line1\nline2", want: "text=line1\uFFFDline2"},
	}
	for _, tt := range tests {
		p, err := NewParser(tt.kind, tt.pattern)
		if err != nil {
			t.Fatal(err)
		}
		fs, err := p(tt.in)
		if tt.err != "" {
			if err == nil || !errors.Is(err, ErrParse) || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s(%q) = %v, %v; want error containing %q", tt.kind, tt.in, fs, err, tt.err)
			}
			continue
		}
		if err != nil || fieldString(fs) != tt.want {
			t.Errorf("%s(%q) = %q, %v; want %q", tt.kind, tt.in, fieldString(fs), err, tt.want)
		}
	}
	if _, err := NewParser("xml", ""); err == nil {
		t.Error("unknown parser accepted")
	}
}

func fieldString(fs []Field) string {
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = f.Name + "=" + f.Value()
	}
	return strings.Join(parts, " ")
}

// Lines from a serial port or a file are untrusted: no parser panics,
// and what they return can go into a stanza as it is.
func FuzzParsers(f *testing.F) {
	for _, s := range []string{"temp=21.5 hum=40", `{"a":{"b":1},"c":"x"}`, "T=1 RH=2", "\xff\x00", "a:b,c=d;e=NaN"} {
		f.Add(s)
	}
	var parsers []Parser
	for _, k := range []string{"line", "whole", "kv", "json"} {
		p, _ := NewParser(k, "")
		parsers = append(parsers, p)
	}
	re, _ := NewParser("regexp", `T=(?P<t>\S+) RH=(?P<rh>\S+)`)
	parsers = append(parsers, re)
	f.Fuzz(func(t *testing.T, s string) {
		for _, p := range parsers {
			fs, err := p(s)
			if err != nil {
				continue
			}
			if len(fs) > maxParsedFields {
				t.Fatalf("%d fields", len(fs))
			}
			for _, fl := range fs {
				if !utf8.ValidString(fl.Name) || !utf8.ValidString(fl.Str) {
					t.Fatalf("invalid UTF-8 in %+v", fl)
				}
				if strings.ContainsAny(fl.Str, "\x00\r\n") {
					t.Fatalf("control character in %q", fl.Str)
				}
			}
		}
	})
}

func BenchmarkParseKV(b *testing.B) {
	p, _ := NewParser("kv", "")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p("temp=21.5 hum=40.2 door=open"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFramer(b *testing.B) {
	chunk := []byte("temp=21.5 hum=40.2\r\nkwh=1234.5 ok=true\n")
	fr := framer{max: 4096}
	n := 0
	b.ReportAllocs()
	b.SetBytes(int64(len(chunk)))
	for b.Loop() {
		fr.feed(chunk, func([]byte, bool) { n++ })
	}
}
