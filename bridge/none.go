//go:build nomqtt

package bridge

import "context"

// Built reports whether this build has the MQTT bridge (not -tags nomqtt).
const Built = false

// Client is never created in this build.
type Client struct{}

// Pending is never returned in this build.
type Pending struct{}

// New refuses: the bridge is not in this build.
func New(Options) (*Client, error) { return nil, ErrNotBuilt }

func (*Client) Run(context.Context) error        { return ErrNotBuilt }
func (*Client) Connected() <-chan struct{}       { return nil }
func (*Client) IsConnected() bool                { return false }
func (*Client) Publish(Message) (Pending, error) { return Pending{}, ErrNotBuilt }
func (Pending) Done() <-chan struct{}            { return nil }
func (Pending) Err() error                       { return ErrNotBuilt }
