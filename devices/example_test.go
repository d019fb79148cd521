package devices_test

import (
	"context"
	"fmt"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"github.com/stanzad/stanzad/devices"
)

func ExampleNewParser() {
	p, _ := devices.NewParser("kv", "")
	fields, err := p("temp=21.5 door=open ok=true")
	if err != nil {
		panic(err)
	}
	for _, f := range fields {
		fmt.Printf("%s=%s\n", f.Name, f.Value())
	}
	_, err = p("temp=NaN")
	fmt.Println(err)
	// Output:
	// temp=21.5
	// door=open
	// ok=true
	// cannot parse: temp: NaN is not a measurement
}

func ExampleNewGPIOOut() {
	pin := &gpiotest.Pin{N: "GPIO17"} // on a board: gpioreg.ByName("GPIO17")
	relay := devices.NewGPIOOut(devices.GPIOOutConfig{
		Name: "relay1",
		Open: func() (gpio.PinIO, error) { return pin, nil },
	})
	ctx, stop := context.WithCancel(context.Background())
	started := make(chan struct{})
	done := make(chan error)
	go func() {
		done <- relay.Run(ctx, func(devices.Reading) {
			select {
			case <-started:
			default:
				close(started)
			}
		})
	}()
	<-started
	r, _ := relay.Set(ctx, "on")
	fmt.Println(r.Fields[0].Name, r.Fields[0].Value(), pin.Read())
	stop()
	<-done
	// Output: state true High
}
