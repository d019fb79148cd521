// Command stanzad is the device agent daemon: it loads the config, wires
// the agent, and handles signals. All logic lives in package agent.
//
// stanzad sets GOMAXPROCS itself (one P, below), so the runtime need not
// read the cgroup files at start nor keep a goroutine re-reading them
// (docs/benchmarks.md, "Where the memory goes").
//
//go:debug containermaxprocs=0
//go:debug updatemaxprocs=0
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/stanzad/stanzad/agent"
	"github.com/stanzad/stanzad/agent/config"
	"github.com/stanzad/stanzad/bridge"
)

// Set at link time by the Makefile.
var (
	version = "dev"
	commit  = "unknown"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	// SIGHUP's default action ends the process, and systemd counts that
	// as a clean exit (no restart): caught from the start, a reload asked
	// for while stanzad starts is done once it runs.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	fs := flag.NewFlagSet("stanzad", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "/etc/stanzad/stanzad.toml", "config file")
	check := fs.Bool("check", false, "validate the config, print every problem, exit 0 or 2")
	showVersion := fs.Bool("version", false, "print version and exit")
	demo := fs.Bool("demo", false, "add simulated devices and a chat sink to each operator (for the demo)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "stanzad: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if *showVersion {
		fmt.Fprintf(stderr, "stanzad %s (commit %s) %s %s/%s%s\n", version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH, without())
		return 0
	}

	// A pushed config that never started and does not start now gives
	// way to the one before it, once (agent.RevertUnstartedPush): a push
	// must not leave a board that cannot start and so cannot be fixed.
	revert := func(why error) bool {
		if *check || *demo {
			return false
		}
		ok, err := agent.RevertUnstartedPush(*cfgPath)
		if ok || err != nil {
			fmt.Fprintf(stderr, "stanzad: %s was pushed and does not start (%v); putting the previous config back: %v\n", *cfgPath, why, errOr(err, "done, starting with it"))
		}
		return ok
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		if revert(err) {
			return run(args, stderr)
		}
		return 2
	}
	if *demo {
		agent.ApplyDemo(cfg)
	}
	if _, err := agent.BuildDevices(cfg.Devices); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", *cfgPath, err)
		if revert(err) {
			return run(args, stderr)
		}
		return 2
	}
	if cfg.MQTT != nil && !bridge.Built {
		fmt.Fprintf(stderr, "%s: [mqtt]: %v\n", *cfgPath, bridge.ErrNotBuilt)
		return 2
	}
	if *check {
		for _, w := range cfg.Warnings {
			fmt.Fprintf(stderr, "warning: %s\n", w)
		}
		fmt.Fprintf(stderr, "%s: ok\n", *cfgPath)
		return 0
	}

	if cfg.Agent.MemoryLimit > 0 {
		debug.SetMemoryLimit(int64(cfg.Agent.MemoryLimit))
	}
	if os.Getenv("GOMAXPROCS") == "" {
		// One P: the agent waits on the network and devices, never on
		// CPU. Every P keeps its own partly filled span of each size
		// class, so each one costs a few hundred kB of resident heap (4
		// on a Pi 4); one P also spends less CPU per reading (no parallel
		// GC workers spinning) at the same throughput and round trip
		// (docs/benchmarks.md). GOMAXPROCS in the environment overrides.
		runtime.GOMAXPROCS(1)
	}
	level := new(slog.LevelVar)
	log := newLogger(stderr, level, cfg.Agent.LogLevel, cfg.Agent.LogFormat)
	for _, w := range cfg.Warnings {
		log.Warn(w)
	}
	opts := agent.Options{Config: cfg, Logger: log, Version: version, Level: level, ConfigPath: *cfgPath}
	if *demo {
		opts.ConfigPath = "" // the running config is not the file's
	}
	a, err := agent.New(opts)
	if err != nil {
		log.Error("cannot start", "err", err)
		if revert(err) {
			return run(args, stderr)
		}
		return 1
	}
	if opts.ConfigPath != "" {
		agent.StartedWith(opts.ConfigPath)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()

	// Side jobs end with run: SIGHUP reloads, and for systemd READY=1 once
	// online (or after 30 s offline), STATUS= and WATCHDOG=1 while the
	// pipeline moves.
	var side sync.WaitGroup
	sideCtx, endSide := context.WithCancel(ctx)
	defer func() {
		endSide()
		side.Wait()
	}()
	side.Go(func() {
		for {
			select {
			case <-sideCtx.Done():
				return
			case <-hup:
				// Reload logs what it applied; a rejected file keeps the
				// running config and says why.
				if _, err := a.Reload(sideCtx, agent.Caller{Role: agent.RoleOperator, Via: "sighup"}); err != nil {
					log.Error("SIGHUP: reload failed", "err", err)
				}
			}
		}
	})
	connected := make(chan struct{})
	side.Go(func() {
		if _, err := a.WaitConnected(sideCtx); err == nil {
			close(connected)
		}
	})
	side.Go(func() { newNotifier().run(sideCtx, connected, 30*time.Second, a.Summary, a.Healthy) })
	side.Go(func() {
		// Once online and settled, give back what start-up used: its
		// garbage, and the pages of the binary it touched (docs/
		// benchmarks.md, "Where the memory goes").
		select {
		case <-sideCtx.Done():
			return
		case <-connected:
		}
		select {
		case <-sideCtx.Done():
			return
		case <-time.After(settleAfterStart):
		}
		debug.FreeOSMemory()
		log.Debug("start-up memory given back", "image_bytes_unmapped", dropImagePages())
	})
	side.Go(func() {
		runGiveBack(sideCtx, func(heap bool, image int64) {
			log.Debug("memory given back", "after_burst", heap, "image_bytes_unmapped", image)
		})
	})
	select {
	case err = <-done:
	case <-ctx.Done():
		log.Info("shutting down")
		// DESIGN.md: exit within 5 s of SIGTERM whatever the network does.
		select {
		case err = <-done:
		case <-time.After(5 * time.Second):
			log.Error("shutdown took longer than 5s; exiting anyway")
			return 1
		}
	}
	if err != nil {
		log.Error("stopped", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

// errOr is err's text, or ok when there is none.
func errOr(err error, ok string) string {
	if err != nil {
		return err.Error()
	}
	return ok
}

// settleAfterStart is how long after the first session stanzad gives
// start-up memory back: connecting, the roster and the first readings
// are done by then.
const settleAfterStart = 5 * time.Second

func newLogger(w io.Writer, lv *slog.LevelVar, level, format string) *slog.Logger {
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		lv.Set(slog.LevelInfo)
	}
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// without names the optional parts this build left out, for -version.
func without() string {
	var out []string
	if !bridge.Built {
		out = append(out, "mqtt")
	}
	if !agent.GPIOBuilt {
		out = append(out, "gpio")
	}
	if len(out) == 0 {
		return ""
	}
	return ", without " + strings.Join(out, ", ")
}
