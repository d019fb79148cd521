// Package tmpfs gives tests a small filesystem of their own that fills
// up: a tmpfs mounted in a temporary directory, for the outbox's
// disk-fault tests. Mounting needs root; the tests skip without it,
// except with CI=true, where CI runs as root and a skip would hide the
// tests. It imports only the standard library.
package tmpfs

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// Mount mounts a tmpfs of size bytes on a new temporary directory,
// unmounted when the test ends, and returns the directory.
func Mount(tb testing.TB, size int) string {
	tb.Helper()
	dir := tb.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("mount tmpfs: %v: %s (CI=true: run as root)", err, out)
		}
		tb.Skipf("cannot mount a tmpfs here (%v: %s): needs root", err, out)
	}
	// Registered after TempDir's cleanup, so it runs before the removal.
	tb.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// Fill appends to the file at path until its filesystem is full. It
// reports any error but the expected ENOSPC.
func Fill(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	chunk := make([]byte, 1024)
	for {
		if _, err := f.Write(chunk); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return nil
			}
			return fmt.Errorf("filling %s: %w", path, err)
		}
	}
}
