//go:build integration

package agent_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stanzad/stanzad/agent"
	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/devices"
	"github.com/stanzad/stanzad/internal/testserver"
	"github.com/stanzad/stanzad/internal/tmpfs"
)

// The state directory's filesystem fills up while readings flow: the
// agent keeps them in memory and delivers them; when space comes back
// the outbox is on disk again within its retry period; then the server
// goes away, readings queue on disk, the agent is SIGKILLed and started
// again: every reading arrives once. The agent runs in a child process
// (this test binary) so it can really be killed; its state is on a small
// tmpfs.
func TestIntegrationStateDiskFull(t *testing.T) {
	state := tmpfs.Mount(t, 256<<10)
	srv := testserver.New(t, testserver.Options{})
	testserver.MustRegister(t, srv, "device", "pw-device")
	rx := newReceiver(t, srv, "operator")

	child := exec.Command(os.Args[0], "-test.run=^TestChildDiskAgent$")
	child.Env = append(os.Environ(), "STANZAD_DCHILD_STATE="+state, "STANZAD_DCHILD_SERVER="+srv.Addr,
		"STANZAD_DCHILD_CA="+srv.CAFile)
	child.Stderr = os.Stderr
	in, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	await := func(want string, timeout time.Duration) {
		t.Helper()
		deadline := time.After(timeout)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("child ended before %q", want)
				}
				t.Logf("child: %s", l)
				if l == want {
					return
				}
			case <-deadline:
				t.Fatalf("child did not say %q within %v", want, timeout)
			}
		}
	}
	await("online", 15*time.Second)
	time.Sleep(time.Second)
	// Keep the filesystem full: the outbox empties its log every second
	// while everything is acknowledged, and the page it frees would let
	// it go on writing without ever failing. The filler takes it.
	filler := filepath.Join(state, "filler")
	stopFill := make(chan struct{})
	filled := make(chan struct{})
	go func() {
		defer close(filled)
		for {
			if err := tmpfs.Fill(filler); err != nil {
				t.Error(err)
			}
			select {
			case <-stopFill:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	var stopOnce sync.Once
	stopFilling := func() { stopOnce.Do(func() { close(stopFill); <-filled }) }
	t.Cleanup(stopFilling) // also when await fails: no t.Error after the test
	await("degraded", 20*time.Second)
	stopFilling()
	time.Sleep(2 * time.Second) // readings keep flowing from memory
	os.Remove(filler)
	freed := time.Now()
	await("healthy", 15*time.Second) // the first retry comes 10 s after the failure
	t.Logf("on disk again %v after space came back", time.Since(freed).Round(100*time.Millisecond))

	// Readings stop, the last ones are acknowledged, the server goes
	// away, and more readings queue — on disk now. (Stopping the server
	// while a reading is in flight would let it arrive twice, which the
	// design allows for what the server never acknowledged.)
	fmt.Fprintln(in, "pause")
	var k int
	for k == 0 {
		select {
		case l := <-lines:
			t.Logf("child: %s", l)
			fmt.Sscanf(l, "paused %d", &k)
		case <-time.After(10 * time.Second):
			t.Fatal("child did not pause")
		}
	}
	time.Sleep(time.Second)
	srv.Stop()
	const more = 100
	fmt.Fprintln(in, "more", more)
	await("emitted", 30*time.Second)
	time.Sleep(1500 * time.Millisecond) // past the outbox's fsync interval
	child.Process.Signal(syscall.SIGKILL)
	child.Wait()

	if err := srv.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	runAgent(t, faultConfig(srv, state, srv.Addr))
	rx.expect(t, 1, k+more, 60*time.Second)
}

// TestChildDiskAgent is the agent process of TestIntegrationStateDiskFull.
// Its device counts a reading every 50 ms. It says "online" once
// connected, and "degraded" and "healthy" as its outbox leaves and comes
// back to the disk. Told "pause" on stdin, the device stops and it says
// "paused K" (K readings taken); told "more M", the device takes M more
// and it says "emitted".
func TestChildDiskAgent(t *testing.T) {
	state := os.Getenv("STANZAD_DCHILD_STATE")
	if state == "" {
		t.Skip("runs only as the child of TestIntegrationStateDiskFull")
	}
	cfg := &config.Config{
		XMPP: config.XMPP{JID: "device@iot.test/agent", Password: config.Secret("pw-device"),
			Server: config.Endpoints{os.Getenv("STANZAD_DCHILD_SERVER")}, TLS: "starttls", CAFile: os.Getenv("STANZAD_DCHILD_CA")},
		Agent: config.Agent{StateDir: state},
		ACL:   config.ACL{Operators: []string{"operator@iot.test"}},
		Sinks: []config.Sink{{Kind: "chat", To: "operator@iot.test", Devices: []string{"*"}}},
	}
	dev := &phases{pause: make(chan struct{}), paused: make(chan int), more: make(chan int), done: make(chan struct{})}
	a, err := agent.New(agent.Options{Config: cfg, Logger: testLogger(t), Devices: []devices.Device{dev}})
	if err != nil {
		t.Fatal(err)
	}
	go a.Run(context.Background())
	if _, err := a.WaitConnected(t.Context()); err != nil {
		t.Fatal(err)
	}
	fmt.Println("online")
	cmds := make(chan string)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			cmds <- sc.Text()
		}
	}()
	degraded := false
	for tick := time.NewTicker(100 * time.Millisecond); ; {
		select {
		case <-tick.C:
		case c := <-cmds:
			var m int
			if c == "pause" {
				dev.pause <- struct{}{}
				fmt.Println("paused", <-dev.paused)
			} else if _, err := fmt.Sscanf(c, "more %d", &m); err == nil {
				dev.more <- m
			}
		case <-dev.done:
			fmt.Println("emitted")
			dev.done = nil
		}
		rep, err := a.Status(context.Background(), agent.Caller{Role: agent.RoleOperator})
		if err != nil {
			t.Fatal(err)
		}
		if d := rep.Outboxes[0].Degraded; d != degraded {
			degraded = d
			fmt.Println(map[bool]string{true: "degraded", false: "healthy"}[d])
		}
	}
}

// phases is TestChildDiskAgent's device: a reading every 50 ms until
// paused (it reports how many), then as many more as it is told, every
// 10 ms, then done.
type phases struct {
	pause  chan struct{}
	paused chan int
	more   chan int
	done   chan struct{}
}

func (p *phases) Name() string { return "counter" }

func (p *phases) Run(ctx context.Context, emit func(devices.Reading)) error {
	i := 0
	reading := func() {
		i++
		emit(devices.Reading{Device: "counter", Time: time.Now().UTC(), Fields: []devices.Field{devices.Number("n", float64(i), 0, "")}})
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for paused := false; !paused; {
		select {
		case <-ctx.Done():
			return nil
		case <-p.pause:
			paused = true
		case <-tick.C:
			reading()
		}
	}
	p.paused <- i
	var m int
	select {
	case <-ctx.Done():
		return nil
	case m = <-p.more:
	}
	for range m {
		time.Sleep(10 * time.Millisecond)
		reading()
	}
	close(p.done)
	<-ctx.Done()
	return nil
}
