//go:build !nomqtt

package bridge

import (
	"testing"
	"time"
)

func TestNewRejects(t *testing.T) {
	for _, o := range []Options{
		{Broker: "127.0.0.1:1883"},
		{Broker: "http://127.0.0.1:1883"},
		{Broker: "tcp://127.0.0.1:1883", QoS: 3},
		{Broker: "ssl://127.0.0.1:8883", CAFile: "/nonexistent/ca.pem"},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
	if _, err := New(Options{Broker: "tcp://127.0.0.1:1883", ClientID: "x"}); err != nil {
		t.Errorf("a plain broker: %v", err)
	}
}

// FuzzMatch: topics come from the broker, filters from the config.
func TestResumeStoreWait(t *testing.T) {
	s := newResumeStore()
	s.Open()
	if s.waitResume(1, 10*time.Millisecond) {
		t.Fatal("no listing yet, but waitResume(1) returned true")
	}
	s.All() // Connect: reserveStoredPublishIDs
	done := make(chan bool)
	go func() { done <- s.waitResume(1, 5*time.Second) }()
	select {
	case <-done:
		t.Fatal("returned before resume listed the store")
	case <-time.After(20 * time.Millisecond):
	}
	s.All() // resume of connection 1
	if !<-done {
		t.Fatal("waitResume(1) timed out after resume")
	}
	if s.waitResume(2, 10*time.Millisecond) {
		t.Fatal("connection 2 has had no resume yet")
	}
}

// fakeMessage is an incoming paho message.
type fakeMessage struct {
	topic   string
	payload []byte
}

func (m fakeMessage) Duplicate() bool   { return false }
func (m fakeMessage) Qos() byte         { return 1 }
func (m fakeMessage) Retained() bool    { return false }
func (m fakeMessage) Topic() string     { return m.topic }
func (m fakeMessage) MessageID() uint16 { return 1 }
func (m fakeMessage) Payload() []byte   { return m.payload }
func (m fakeMessage) Ack()              {}

// A message over 64 KiB never reaches the agent; one at the limit does.
func TestMessageSizeLimit(t *testing.T) {
	var got []Message
	cl, err := New(Options{Broker: "tcp://127.0.0.1:1", OnMessage: func(m Message) { got = append(got, m) }})
	if err != nil {
		t.Fatal(err)
	}
	cl.message(nil, fakeMessage{"a", make([]byte, maxPayload+1)})
	cl.message(nil, fakeMessage{"b", make([]byte, maxPayload)})
	if len(got) != 1 || got[0].Topic != "b" {
		t.Fatalf("delivered %d messages (%v), want only the one at the limit", len(got), got)
	}
}
