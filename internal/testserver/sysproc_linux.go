package testserver

import "syscall"

// sysProcAttr puts the server in its own process group, so a terminal's
// Ctrl-C reaches only the test binary, which then stops the server in
// cleanup; Pdeathsig kills the server if the test binary dies first (for
// example on a test timeout), so no stray server keeps the ports.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
