// Command demo runs stanzad end to end on this machine for `make demo`: a
// private Prosody on 127.0.0.1, stanzad with simulated devices, and an
// operator (stanzactl) whose commands and the agent's answers are printed.
// Everything it starts it stops again, by PID, and its temp directory is
// removed.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/stanzad/stanzad/internal/testserver"
)

func main() {
	stanzad := flag.String("stanzad", "bin/stanzad", "stanzad binary")
	stanzactl := flag.String("stanzactl", "bin/stanzactl", "stanzactl binary")
	keep := flag.Bool("keep", false, "keep the temp directory (configs, logs) for inspection")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *stanzad, *stanzactl, *keep); err != nil {
		fmt.Fprintf(os.Stderr, "\ndemo failed: %v\n", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) {
	fmt.Printf("\n==> "+format+"\n", args...)
}

func run(ctx context.Context, stanzadBin, ctlBin string, keep bool) (err error) {
	for _, b := range []*string{&stanzadBin, &ctlBin} {
		abs, err := filepath.Abs(*b)
		if err != nil {
			return err
		}
		*b = abs
	}
	dir, err := os.MkdirTemp("", "stanzad-demo-")
	if err != nil {
		return err
	}
	defer func() {
		if keep || err != nil {
			fmt.Printf("\nfiles kept in %s\n", dir)
			return
		}
		os.RemoveAll(dir)
	}()

	step("starting a private Prosody on 127.0.0.1 (temp dir %s)", dir)
	srv, err := testserver.Start(ctx, testserver.Options{Dir: filepath.Join(dir, "prosody")})
	if err != nil {
		return err
	}
	defer srv.Stop()
	fmt.Printf("    Prosody pid %d, c2s %s, domain %s, private CA %s\n", srv.PID(), srv.Addr, srv.Host, srv.CAFile)

	devPass, opPass := secret(), secret()
	for _, acct := range [][2]string{{"device", devPass}, {"operator", opPass}} {
		if err := srv.Register(acct[0], acct[1]); err != nil {
			return err
		}
	}
	fmt.Printf("    registered device@%s and operator@%s\n", srv.Host, srv.Host)

	writeSecret := func(name, v string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(v+"\n"), 0o600); err != nil {
			panic(err)
		}
		return p
	}
	agentCfg := filepath.Join(dir, "stanzad.toml")
	err = os.WriteFile(agentCfg, []byte(fmt.Sprintf(`# written by make demo
[xmpp]
jid = "device@%[1]s/agent"
password_file = %[2]q
server = %[3]q
ca_file = %[4]q
server_name = %[1]q

[agent]
state_dir = %[5]q

[acl]
operators = ["operator@%[1]s"]

[[action]]
name = "uptime"
argv = ["/usr/bin/uptime"]
timeout = "5s"
`, srv.Host, writeSecret("device.pass", devPass), srv.Addr, srv.CAFile, filepath.Join(dir, "state"))), 0o600)
	if err != nil {
		return err
	}
	opCfg := filepath.Join(dir, "op.toml")
	err = os.WriteFile(opCfg, []byte(fmt.Sprintf(`to = "device@%[1]s/agent"

[xmpp]
jid = "operator@%[1]s/stanzactl"
password_file = %[2]q
server = %[3]q
ca_file = %[4]q
server_name = %[1]q
`, srv.Host, writeSecret("operator.pass", opPass), srv.Addr, srv.CAFile)), 0o600)
	if err != nil {
		return err
	}

	step("starting stanzad -demo (simulated devices: greenhouse, relay1)")
	agent := exec.Command(stanzadBin, "-demo", "-config", agentCfg)
	agentLog, err := os.Create(filepath.Join(dir, "stanzad.log"))
	if err != nil {
		return err
	}
	defer agentLog.Close()
	pr, pw := io.Pipe()
	agent.Stderr = pw
	agent.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := agent.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- agent.Wait(); pw.Close() }()
	go mirror(pr, agentLog, "    stanzad | ")
	defer func() {
		if agent.ProcessState == nil {
			agent.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(6 * time.Second):
				agent.Process.Kill()
				<-exited
			}
		}
	}()

	ctl := func(args ...string) (string, error) {
		full := append([]string{"-config", opCfg}, args...)
		cmd := exec.CommandContext(ctx, ctlBin, full...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		if err != nil {
			return "", fmt.Errorf("stanzactl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
		}
		return strings.TrimSpace(out.String()), nil
	}

	step("waiting for the agent to come online")
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := ctl("-timeout", "2s", "ping")
		if err == nil {
			fmt.Println("    " + out)
			break
		}
		select {
		case err := <-exited:
			return fmt.Errorf("stanzad exited: %v (log: %s)", err, agentLog.Name())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("agent not reachable: %v", err)
		}
		time.Sleep(300 * time.Millisecond)
	}

	for _, c := range []struct {
		args    []string
		refused bool // the agent must answer with an error
	}{
		{args: []string{"commands"}},
		{args: []string{"status"}},
		{args: []string{"read"}},
		{args: []string{"set", "relay1", "on"}},
		{args: []string{"read", "relay1"}},
		{args: []string{"run", "uptime"}},
		{args: []string{"-count", "1", "watch", "greenhouse"}}, // the next reading, live
		{args: []string{"set", "relay1", "maybe"}, refused: true},
		{args: []string{"read", "pump"}, refused: true},
	} {
		step("operator> stanzactl %s", strings.Join(c.args, " "))
		out, err := ctl(c.args...)
		switch {
		case err != nil && c.refused:
			out = "error: " + strings.TrimPrefix(err.Error(), "stanzactl "+strings.Join(c.args, " ")+": exit status 1: ")
		case err != nil:
			return err
		case c.refused:
			return fmt.Errorf("stanzactl %s: accepted, want an error: %s", strings.Join(c.args, " "), out)
		}
		for _, line := range strings.Split(out, "\n") {
			fmt.Println("    agent< " + line)
		}
	}

	if rss := vmRSS(agent.Process.Pid); rss != "" {
		step("stanzad resident memory: %s", rss)
	}

	step("stopping stanzad (SIGTERM) and Prosody")
	start := time.Now()
	agent.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			return fmt.Errorf("stanzad exit: %v", err)
		}
	case <-time.After(6 * time.Second):
		return errors.New("stanzad did not exit within 6s of SIGTERM")
	}
	fmt.Printf("    stanzad exited cleanly in %s\n", time.Since(start).Round(time.Millisecond))
	if err := srv.Stop(); err != nil {
		return err
	}
	fmt.Println("\ndemo ok")
	return nil
}

func mirror(r io.Reader, log io.Writer, prefix string) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fmt.Fprintln(log, sc.Text())
		fmt.Println(prefix + sc.Text())
	}
	io.Copy(io.Discard, r)
}

func secret() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func vmRSS(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			return strings.Join(strings.Fields(strings.TrimPrefix(line, "VmRSS:")), " ")
		}
	}
	return ""
}
