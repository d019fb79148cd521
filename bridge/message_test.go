package bridge

import (
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	tests := []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/+", "a/b", true},
		{"a/+", "a/b/c", false},
		{"a/#", "a", true}, // # also matches the parent level
		{"a/#", "a/b/c", true},
		{"#", "a/b", true},
		{"+/+", "a/b", true},
		{"+", "/a", false},
		{"+/a", "/a", true},
		{"#", "$SYS/broker", false},
		{"$SYS/#", "$SYS/broker", true},
		{"a/b/c", "a/b", false},
	}
	for _, tt := range tests {
		if got := Match(tt.filter, tt.topic); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.filter, tt.topic, got, tt.want)
		}
	}
}

func FuzzMatch(f *testing.F) {
	f.Add("a/+/c", "a/b/c")
	f.Add("#", "$SYS/x")
	f.Add("a/#", "a")
	f.Fuzz(func(t *testing.T, filter, topic string) {
		Match(filter, topic)
		if !strings.ContainsAny(topic, "+#") && !strings.HasPrefix(topic, "$") && !Match(topic, topic) {
			t.Fatalf("%q does not match itself", topic)
		}
	})
}

// The client counts itself connected only after paho's resume has listed
// the store for that connection (the first listing is Connect's own).
