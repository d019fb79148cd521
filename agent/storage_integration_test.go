//go:build integration

package agent_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stanzad/stanzad/agent"
	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/devices"
	"github.com/stanzad/stanzad/internal/testserver"
)

// The state directory's filesystem fills up while readings flow: the
// agent keeps them in memory and delivers them; when space comes back
// the outbox is on disk again within its retry period; then the server
// goes away, readings queue on disk, the agent is SIGKILLed and started
// again: every reading arrives once. The agent runs in a child process
// (this test binary) so it can really be killed; its state is on a small
// tmpfs.
func TestIntegrationStateDiskFull(t *testing.T) {
	state := mountTmpfs(t, 256<<10)
	srv := testserver.New(t, testserver.Options{})
	testserver.MustRegister(t, srv, "device", "pw-device")
	rx := newReceiver(t, srv, "operator")
	const n = 400 // 20 s at 50 ms

	child := exec.Command(os.Args[0], "-test.run=^TestChildDiskAgent$")
	child.Env = append(os.Environ(), "STANZAD_DCHILD_STATE="+state, "STANZAD_DCHILD_SERVER="+srv.Addr,
		"STANZAD_DCHILD_CA="+srv.CAFile, "STANZAD_DCHILD_READINGS="+strconv.Itoa(n))
	child.Stderr = os.Stderr
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
	filler := fillUp(t, state)
	await("degraded", 10*time.Second)
	time.Sleep(2 * time.Second) // readings keep flowing from memory
	os.Remove(filler)
	freed := time.Now()
	await("healthy", 15*time.Second) // the first retry comes 10 s after the failure
	t.Logf("on disk again %v after space came back", time.Since(freed).Round(100*time.Millisecond))

	srv.Stop() // readings now queue on disk
	await("emitted", 30*time.Second)
	time.Sleep(1500 * time.Millisecond) // past the outbox's fsync interval
	child.Process.Signal(syscall.SIGKILL)
	child.Wait()

	if err := srv.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	runAgent(t, faultConfig(srv, state, srv.Addr))
	rx.expect(t, 1, n, 60*time.Second)
}

// TestChildDiskAgent is the agent process of TestIntegrationStateDiskFull.
// It says "online" once connected, "degraded" and "healthy" as its outbox
// leaves and comes back to the disk, and "emitted" after its last reading.
func TestChildDiskAgent(t *testing.T) {
	state := os.Getenv("STANZAD_DCHILD_STATE")
	if state == "" {
		t.Skip("runs only as the child of TestIntegrationStateDiskFull")
	}
	n, _ := strconv.Atoi(os.Getenv("STANZAD_DCHILD_READINGS"))
	cfg := &config.Config{
		XMPP: config.XMPP{JID: "device@iot.test/agent", Password: config.Secret("pw-device"),
			Server: os.Getenv("STANZAD_DCHILD_SERVER"), TLS: "starttls", CAFile: os.Getenv("STANZAD_DCHILD_CA")},
		Agent: config.Agent{StateDir: state},
		ACL:   config.ACL{Operators: []string{"operator@iot.test"}},
		Sinks: []config.Sink{{Kind: "chat", To: "operator@iot.test", Devices: []string{"*"}}},
	}
	emitted := make(chan struct{})
	a, err := agent.New(agent.Options{Config: cfg, Logger: testLogger(t),
		Devices: []devices.Device{counter{n: n, every: 50 * time.Millisecond, done: emitted}}})
	if err != nil {
		t.Fatal(err)
	}
	go a.Run(context.Background())
	if _, err := a.WaitConnected(t.Context()); err != nil {
		t.Fatal(err)
	}
	fmt.Println("online")
	degraded := false
	for tick := time.NewTicker(100 * time.Millisecond); ; <-tick.C {
		rep, err := a.Status(context.Background(), agent.Caller{Role: agent.RoleOperator})
		if err != nil {
			t.Fatal(err)
		}
		if d := rep.Outboxes[0].Degraded; d != degraded {
			degraded = d
			fmt.Println(map[bool]string{true: "degraded", false: "healthy"}[d])
		}
		select {
		case <-emitted:
			fmt.Println("emitted")
			emitted = nil
		default:
		}
	}
}

// mountTmpfs mounts a tmpfs of size bytes for the test: a filesystem
// that fills up. It needs root; CI runs as root and must not skip.
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount tmpfs: %v: %s (CI=true: run as root)", err, out)
		}
		t.Skipf("cannot mount a tmpfs here (%v: %s): needs root", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// fillUp writes a file into dir until its filesystem is full.
func fillUp(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling %s: %v", dir, err)
			}
			return path
		}
	}
}
