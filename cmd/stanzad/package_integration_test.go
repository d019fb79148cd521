//go:build integration

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stanzad/stanzad/internal/testserver"
)

// The packages `make package` builds (make test builds them first): their
// metadata and contents, lintian, and on this machine the amd64 package
// installed, checked, run under the unit's user against a private Prosody
// and purged; every ARM binary runs under qemu, and the armhf one logs in
// and answers a read.
func TestIntegrationPackages(t *testing.T) {
	debs := packages(t)
	version := strings.TrimSpace(sh(t, "sh", "../../systemd/debian/version.sh"))
	for arch, deb := range debs {
		t.Run("contents "+arch, func(t *testing.T) { checkDeb(t, deb, arch, version) })
	}
	if _, err := exec.LookPath("lintian"); err != nil {
		requireInCI(t, "lintian is not installed (make deps installs it)")
	} else {
		for arch, deb := range debs {
			out, _ := exec.Command("lintian", "--tag-display-limit", "0", deb).CombinedOutput()
			for _, l := range strings.Split(string(out), "\n") {
				if strings.HasPrefix(l, "E:") || strings.HasPrefix(l, "W:") {
					t.Errorf("lintian %s: %s", arch, l)
				}
			}
		}
	}
	t.Run("qemu", func(t *testing.T) { runUnderQemu(t, debs) })
	t.Run("install", func(t *testing.T) { installAndPurge(t, debs["amd64"]) })
}

// packages finds dist/stanzad_*_{amd64,arm64,armhf,armel}.deb.
func packages(t *testing.T) map[string]string {
	t.Helper()
	debs := map[string]string{}
	for _, arch := range []string{"amd64", "arm64", "armhf", "armel"} {
		m, _ := filepath.Glob("../../dist/stanzad_*_" + arch + ".deb")
		switch len(m) {
		case 0:
			requireInCI(t, "no dist/stanzad_*_"+arch+".deb: run make package (make test does)")
			t.SkipNow()
		case 1:
			abs, _ := filepath.Abs(m[0])
			debs[arch] = abs
		default:
			t.Fatalf("several %s packages in dist/: %v (make package removes old ones)", arch, m)
		}
	}
	return debs
}

// requireInCI fails with CI=true, where every part of the test must run,
// and skips otherwise.
func requireInCI(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(why)
	}
	t.Skip(why)
}

func sh(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func checkDeb(t *testing.T, deb, arch, version string) {
	field := func(f string) string { return strings.TrimSpace(sh(t, "dpkg-deb", "-f", deb, f)) }
	if got := field("Architecture"); got != arch {
		t.Errorf("Architecture %q, want %q", got, arch)
	}
	if got := field("Version"); got != version {
		t.Errorf("Version %q, want %q (systemd/debian/version.sh)", got, version)
	}
	if got := field("Depends"); !strings.Contains(got, "adduser") {
		t.Errorf("Depends %q lacks adduser (postinst may use it)", got)
	}
	if got := strings.TrimSpace(sh(t, "dpkg-deb", "-I", deb, "conffiles")); got != "/etc/stanzad/stanzad.toml" {
		t.Errorf("conffiles %q", got)
	}
	list := sh(t, "dpkg-deb", "-c", deb)
	for path, mode := range map[string]string{
		"./usr/bin/stanzad":                       "-rwxr-xr-x root/root",
		"./usr/bin/stanzactl":                     "-rwxr-xr-x root/root",
		"./lib/systemd/system/stanzad.service":    "-rw-r--r-- root/root",
		"./usr/lib/sysusers.d/stanzad.conf":       "-rw-r--r-- root/root",
		"./usr/lib/tmpfiles.d/stanzad.conf":       "-rw-r--r-- root/root",
		"./etc/stanzad/stanzad.toml":              "-rw-r----- root/root",
		"./usr/share/doc/stanzad/README.md":       "-rw-r--r-- root/root",
		"./usr/share/doc/stanzad/copyright":       "-rw-r--r-- root/root",
		"./usr/share/doc/stanzad/docs/devices.md": "-rw-r--r-- root/root",
	} {
		line := ""
		for _, l := range strings.Split(list, "\n") {
			if strings.HasSuffix(l, " "+path) {
				line = l
			}
		}
		if !strings.HasPrefix(line, mode) {
			t.Errorf("%s: %q, want mode and owner %q", path, line, mode)
		}
	}
}

// extract unpacks deb into a new directory and returns it.
func extract(t *testing.T, deb string) string {
	t.Helper()
	dir := t.TempDir()
	sh(t, "dpkg-deb", "-x", deb, dir)
	return dir
}

// agentConfig is a config for a packaged agent against srv.
func agentConfig(srv *testserver.Server, user, caFile, passwordFile, stateDir string) string {
	return fmt.Sprintf(`[xmpp]
jid = "%[1]s@%[2]s/agent"
password_file = %[3]q
server = %[4]q
ca_file = %[5]q

[agent]
state_dir = %[6]q

[acl]
operators = ["operator@%[2]s"]

[[device]]
name = "greenhouse"
kind = "sim"
interval = "1h"

[[sink]]
kind = "chat"
to = "operator@%[2]s"
`, user, srv.Host, passwordFile, srv.Addr, caFile, stateDir)
}

// waitRead runs stanzactl read against user@host/agent until it answers.
func waitRead(t *testing.T, stanzactl string, srv *testserver.Server, user string) string {
	t.Helper()
	op := filepath.Join(t.TempDir(), "op.toml")
	os.WriteFile(op, []byte(fmt.Sprintf("to = \"%s@%s/agent\"\n[xmpp]\njid = \"operator@%s/ctl\"\npassword = \"pw-operator\"\nserver = %q\nca_file = %q\n",
		user, srv.Host, srv.Host, srv.Addr, srv.CAFile)), 0o600)
	var out []byte
	for range 60 {
		var err error
		out, err = exec.Command(stanzactl, "-config", op, "read", "greenhouse").CombinedOutput()
		if err == nil && strings.Contains(string(out), "greenhouse: temperature=") {
			return string(out)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("%s@ never answered read: %s", user, out)
	return ""
}

// runUnderQemu: every packaged ARM binary answers -version; the armhf
// stanzad logs into Prosody and answers a read.
func runUnderQemu(t *testing.T, debs map[string]string) {
	qemu := map[string]string{"arm64": "qemu-aarch64-static", "armhf": "qemu-arm-static", "armel": "qemu-arm-static"}
	for _, q := range qemu {
		if _, err := exec.LookPath(q); err != nil {
			requireInCI(t, q+" is not installed (make deps installs qemu-user-static)")
		}
	}
	dirs := map[string]string{}
	for arch, q := range qemu {
		dirs[arch] = extract(t, debs[arch])
		for _, bin := range []string{"stanzad", "stanzactl"} {
			out, err := exec.Command(q, filepath.Join(dirs[arch], "usr/bin", bin), "-version").CombinedOutput()
			if bin == "stanzactl" { // stanzactl has no -version: its usage, exit 2, proves it runs
				if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "usage: stanzactl") {
					t.Errorf("%s %s under %s: %v\n%s", arch, bin, q, err, out)
				}
				continue
			}
			if err != nil || !strings.Contains(string(out), "linux/arm") {
				t.Errorf("%s stanzad -version under %s: %v\n%s", arch, q, err, out)
			}
		}
	}

	srv := testserver.New(t, testserver.Options{})
	testserver.MustRegister(t, srv, "armhf", "pw-armhf")
	testserver.MustRegister(t, srv, "operator", "pw-operator")
	dir := t.TempDir()
	pw := filepath.Join(dir, "password")
	os.WriteFile(pw, []byte("pw-armhf"), 0o600)
	cfg := filepath.Join(dir, "stanzad.toml")
	os.WriteFile(cfg, []byte(agentConfig(srv, "armhf", srv.CAFile, pw, filepath.Join(dir, "state"))), 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "qemu-arm-static", filepath.Join(dirs["armhf"], "usr/bin/stanzad"), "-config", cfg)
	var log strings.Builder
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); cmd.Wait() }()
	out := waitRead(t, filepath.Join(extract(t, debs["amd64"]), "usr/bin/stanzactl"), srv, "armhf")
	t.Logf("armhf stanzad under qemu-arm-static answered: %s", strings.TrimSpace(out))
}

// installAndPurge installs the amd64 package on this machine and checks
// what it set up, then purges it and checks nothing is left.
func installAndPurge(t *testing.T, deb string) {
	if os.Geteuid() != 0 {
		requireInCI(t, "installing a package needs root")
	}
	if exec.Command("dpkg-query", "-W", "-f=${Status}", "stanzad").Run() == nil {
		out, _ := exec.Command("dpkg-query", "-W", "-f=${Status}", "stanzad").Output()
		if strings.Contains(string(out), "installed") && !strings.Contains(string(out), "not-installed") && !strings.Contains(string(out), "config-files") {
			t.Fatalf("stanzad is installed on this machine (%s); this test installs and purges it, so it does not run here", out)
		}
	}
	t.Cleanup(func() { exec.Command("dpkg", "--purge", "stanzad").Run() })
	sh(t, "dpkg", "-i", deb)

	// The user, its groups, the directories and the conffile's mode.
	sh(t, "getent", "passwd", "stanzad")
	if exec.Command("getent", "group", "dialout").Run() == nil {
		if groups := sh(t, "id", "-nG", "stanzad"); !strings.Contains(groups, "dialout") {
			t.Errorf("stanzad's groups %q lack dialout", groups)
		}
	}
	for path, want := range map[string]string{
		"/etc/stanzad":              "770 root stanzad",
		"/etc/stanzad/stanzad.toml": "640 root stanzad",
		"/var/lib/stanzad":          "750 stanzad stanzad",
		"/usr/bin/stanzad":          "755 root root",
	} {
		if got := strings.TrimSpace(sh(t, "stat", "-c", "%a %U %G", path)); got != want {
			t.Errorf("%s: %s, want %s", path, got, want)
		}
	}
	if _, err := os.Lstat("/etc/systemd/system/multi-user.target.wants/stanzad.service"); err != nil {
		t.Errorf("the unit is not enabled: %v", err)
	}

	// The unit: it verifies, scores ≤ 2.0, and waits for the password.
	if out, err := exec.Command("systemd-analyze", "verify", "/lib/systemd/system/stanzad.service").CombinedOutput(); err != nil || strings.Contains(string(out), "stanzad.service") {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	sec := sh(t, "systemd-analyze", "security", "--offline=yes", "/lib/systemd/system/stanzad.service")
	m := regexp.MustCompile(`Overall exposure level for stanzad\.service: ([0-9.]+)`).FindStringSubmatch(sec)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", sec)
	}
	if score, _ := strconv.ParseFloat(m[1], 64); score > 2.0 {
		t.Errorf("exposure %v > 2.0:\n%s", score, sec)
	}
	t.Logf("systemd-analyze security: exposure %s", m[1])
	unit, _ := os.ReadFile("/lib/systemd/system/stanzad.service")
	if !strings.Contains(string(unit), "ConditionPathExists=/etc/stanzad/password") {
		t.Error("the unit does not wait for the password file")
	}

	// The example config passes -check once the password file exists.
	os.WriteFile("/etc/stanzad/password", []byte("a-password"), 0o640)
	sh(t, "chgrp", "stanzad", "/etc/stanzad/password")
	if out, err := exec.Command("/usr/bin/stanzad", "-check", "-config", "/etc/stanzad/stanzad.toml").CombinedOutput(); err != nil {
		t.Errorf("stanzad -check on the installed example: %v\n%s", err, out)
	}

	// Running: under systemd where it is PID 1, else as the unit's user.
	srv := testserver.New(t, testserver.Options{})
	testserver.MustRegister(t, srv, "device", "pw-device")
	testserver.MustRegister(t, srv, "operator", "pw-operator")
	ca, _ := os.ReadFile(srv.CAFile)
	os.WriteFile("/etc/stanzad/test-ca.pem", ca, 0o644)
	os.WriteFile("/etc/stanzad/password", []byte("pw-device"), 0o640)
	os.WriteFile("/etc/stanzad/stanzad.toml", []byte(agentConfig(srv, "device", "/etc/stanzad/test-ca.pem", "/etc/stanzad/password", "/var/lib/stanzad")), 0o640)
	stop := runInstalled(t)
	waitRead(t, "/usr/bin/stanzactl", srv, "device")
	// Once settled it gives start-up memory and its binary's pages back,
	// and answers as before.
	time.Sleep(settleAfterStart + 2*time.Second)
	waitRead(t, "/usr/bin/stanzactl", srv, "device")
	if got := strings.TrimSpace(sh(t, "stat", "-c", "%U", "/var/lib/stanzad/outbox")); got != "stanzad" {
		t.Errorf("the state the agent wrote belongs to %s", got)
	}
	stop()

	// An upgrade (here: the same package again) keeps the state and the
	// edited config; a remove keeps both too.
	sh(t, "dpkg", "-i", deb)
	sh(t, "dpkg", "-r", "stanzad")
	for _, p := range []string{"/var/lib/stanzad/outbox", "/etc/stanzad/password"} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("after upgrade and remove: %v", err)
		}
	}
	if b, _ := os.ReadFile("/etc/stanzad/stanzad.toml"); !strings.Contains(string(b), "test-ca.pem") {
		t.Errorf("the edited config did not survive upgrade and remove:\n%s", b)
	}

	// Purge: nothing of stanzad is left.
	sh(t, "dpkg", "--purge", "stanzad")
	for _, p := range []string{"/etc/stanzad", "/var/lib/stanzad", "/usr/bin/stanzad", "/usr/bin/stanzactl",
		"/lib/systemd/system/stanzad.service", "/usr/lib/sysusers.d/stanzad.conf", "/usr/lib/tmpfiles.d/stanzad.conf",
		"/usr/share/doc/stanzad", "/etc/systemd/system/multi-user.target.wants/stanzad.service"} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s is left after purge", p)
		}
	}
	if exec.Command("getent", "passwd", "stanzad").Run() == nil {
		t.Error("user stanzad is left after purge")
	}
}

// runInstalled starts the installed agent: with systemctl where systemd
// is PID 1, else directly as the unit's user. It returns its stop.
func runInstalled(t *testing.T) (stop func()) {
	t.Helper()
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		sh(t, "systemctl", "start", "stanzad")
		return func() { exec.Command("systemctl", "stop", "stanzad").Run() }
	}
	t.Log("systemd is not PID 1 here: running the installed stanzad directly as user stanzad (setpriv)")
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "setpriv", "--reuid=stanzad", "--regid=stanzad", "--init-groups",
		"/usr/bin/stanzad", "-config", "/etc/stanzad/stanzad.toml")
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	var log strings.Builder
	cmd.Stderr = &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			cmd.Wait()
			if t.Failed() {
				t.Logf("stanzad's log:\n%s", log.String())
			}
		})
	}
	t.Cleanup(stop)
	return stop
}
