// Package ptytest opens Linux pseudo-terminals for tests of serial
// devices: the test writes on the master side what a device would send,
// and the code under test opens the slave side as its serial port.
package ptytest

import (
	"os"
	"strconv"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// Open returns the master side of a new pseudo-terminal and the path of
// its slave side. It skips the test where the system has no ptys. The
// caller closes the master (closing it is how a test unplugs the port).
func Open(tb testing.TB) (*os.File, string) {
	tb.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		tb.Skipf("no pseudo-terminals: %v", err)
	}
	fd := int(m.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		tb.Fatal(err)
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		m.Close()
		tb.Fatal(err)
	}
	return m, "/dev/pts/" + strconv.Itoa(n)
}
