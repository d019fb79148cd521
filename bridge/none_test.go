//go:build nomqtt

package bridge

import (
	"errors"
	"testing"
)

func TestNotBuilt(t *testing.T) {
	if Built {
		t.Fatal("Built is true in a nomqtt build")
	}
	c, err := New(Options{Broker: "tcp://127.0.0.1:1883"})
	if c != nil || !errors.Is(err, ErrNotBuilt) {
		t.Fatalf("New = %v, %v; want ErrNotBuilt", c, err)
	}
}
