package main

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// dropImagePages tells the kernel the pages of stanzad's own executable
// that are mapped now — start-up code and tables, faulted in 64 KiB at a
// time — need not stay mapped: they are clean, read-only file pages, so
// the kernel unmaps them and maps back, from the page cache or the file,
// only what runs afterwards. Writable mappings are never touched.
func dropImagePages() (dropped int64) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 00400000-00c00000 r-xp 00000000 08:01 123 /usr/bin/stanzad
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[5] != exe || fields[1][1] == 'w' || fields[1][3] != 'p' {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, uintptr(start), uintptr(end-start), syscall.MADV_DONTNEED); errno == 0 {
			dropped += int64(end - start)
		}
	}
	return dropped
}
