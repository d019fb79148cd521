//go:build memdebug && memprofile

package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"sort"
	"strings"
	"time"
)

// startHeapProfiles writes STANZAD_HEAPPROFILE's heap profiles (make
// memdebug TAGS=memprofile). It is a build of its own: linking
// runtime/pprof turns on the runtime's memory profiler, whose bucket
// table alone maps 1.4 MB and touches a page of it per sampled stack,
// which the shipped build does not have (the linker turns the profiler
// off when nothing can read it).
func startHeapProfiles() {
	out := os.Getenv("STANZAD_HEAPPROFILE")
	if out == "" {
		return
	}
	runtime.MemProfileRate = 1
	go func() {
		// out.early at 25 s, out at 45 s: go tool pprof -diff_base
		// out.early out shows what the idle agent allocates.
		var early []runtime.MemProfileRecord
		for _, at := range []struct {
			sleep time.Duration
			name  string
		}{{25 * time.Second, out + ".early"}, {20 * time.Second, out}} {
			time.Sleep(at.sleep)
			runtime.GC() // the profile is as of the last collection
			recs := memRecords()
			// The proto for pprof, and the text form, whose records
			// are per allocation size (for the size classes in use).
			for debug, name := range []string{at.name, at.name + ".txt"} {
				if f, err := os.Create(name); err == nil {
					pprof.Lookup("heap").WriteTo(f, debug)
					f.Close()
				}
			}
			if early == nil {
				early = recs
				continue
			}
			if f, err := os.Create(out + ".classes"); err == nil {
				writeClasses(f, early, recs)
				f.Close()
			}
		}
	}()
}

// memRecords is the runtime's memory profile, every record.
func memRecords() []runtime.MemProfileRecord {
	for {
		n, _ := runtime.MemProfile(nil, true)
		recs := make([]runtime.MemProfileRecord, n+50)
		if n, ok := runtime.MemProfile(recs, true); ok {
			return recs[:n]
		}
	}
}

// writeClasses writes, for every size class with live objects (as of
// the last collection), how many there are, how many objects of its
// size were allocated between the two profiles (the idle agent's
// garbage), and which packages allocated the live ones. A class that
// only holds live objects of one package is what that package costs the
// runtime beyond the objects themselves (docs/decisions.md §14). The
// memdebug report's own allocations are left out.
func writeClasses(w io.Writer, early, late []runtime.MemProfileRecord) {
	classOf := sizeClasses()
	// The runtime keeps a record per stack and size.
	type key struct {
		stack [32]uintptr
		size  int64
	}
	before := map[key]int64{}
	for _, r := range early {
		if r.AllocObjects > 0 {
			before[key{r.Stack0, r.AllocBytes / r.AllocObjects}] = r.AllocObjects
		}
	}
	type class struct {
		live, allocated int64
		owners          map[string]int64
	}
	classes := map[int]*class{}
	for _, r := range late {
		frames := stackFuncs(r.Stack())
		if slices.ContainsFunc(frames, isMemdebug) || r.AllocObjects == 0 {
			continue
		}
		size := r.AllocBytes / r.AllocObjects
		c := classes[classOf(int(size))]
		if c == nil {
			c = &class{owners: map[string]int64{}}
			classes[classOf(int(size))] = c
		}
		c.allocated += r.AllocObjects - before[key{r.Stack0, size}]
		if n := r.InUseObjects(); n > 0 {
			c.live += n
			c.owners[owner(frames)] += n
		}
	}
	sizes := make([]int, 0, len(classes))
	for size, c := range classes {
		if c.live > 0 {
			sizes = append(sizes, size)
		}
	}
	sort.Ints(sizes)
	fmt.Fprintf(w, "# %d size classes with live objects (noscan and scan not told apart); large objects (over 32 KiB) have their own spans\n", len(sizes))
	fmt.Fprintf(w, "# class_bytes live_objects allocated_between_profiles owners (live objects)\n")
	for _, size := range sizes {
		c := classes[size]
		owners := make([]string, 0, len(c.owners))
		for o, n := range c.owners {
			owners = append(owners, fmt.Sprintf("%s(%d)", o, n))
		}
		sort.Strings(owners)
		fmt.Fprintf(w, "%d %d %d %s\n", size, c.live, c.allocated, strings.Join(owners, " "))
	}
}

// sizeClasses returns a function from an allocation's size to its size
// class's, learnt from the runtime itself: append rounds a slice's
// capacity up to its size class. Sizes over 32 KiB are their own class.
func sizeClasses() func(int) int {
	const maxSmall = 32 << 10
	var bounds []int // each class's size, ascending
	for n := 1; n <= maxSmall; {
		c := cap(append([]byte(nil), make([]byte, n)...))
		bounds = append(bounds, c)
		n = c + 1
	}
	return func(size int) int {
		if i, _ := slices.BinarySearch(bounds, size); i < len(bounds) {
			return bounds[i]
		}
		return size
	}
}

// stackFuncs names a stack's functions, innermost first.
func stackFuncs(pcs []uintptr) []string {
	var out []string
	frames := runtime.CallersFrames(pcs)
	for {
		f, more := frames.Next()
		out = append(out, f.Function)
		if !more {
			return out
		}
	}
}

func isMemdebug(fn string) bool {
	return strings.HasPrefix(fn, "main.init.0") || strings.HasPrefix(fn, "main.startHeapProfiles") ||
		strings.HasPrefix(fn, "runtime/metrics.") || strings.HasPrefix(fn, "runtime/pprof.")
}

// owner is the package that asked for an allocation: the innermost
// function outside the runtime and the general-purpose standard
// packages (strings, bytes, os, reflect...), which allocate for their
// callers.
func owner(frames []string) string {
	for _, fn := range frames {
		pkg := funcPackage(fn)
		if !generalPurpose[pkg] && !strings.HasPrefix(pkg, "internal/") && !strings.HasPrefix(pkg, "vendor/") {
			return strings.TrimPrefix(pkg, "github.com/stanzad/stanzad/")
		}
	}
	return "runtime"
}

// funcPackage is the import path of a function's package.
func funcPackage(fn string) string {
	slash := strings.LastIndexByte(fn, '/') + 1
	if dot := strings.IndexByte(fn[slash:], '.'); dot >= 0 {
		return fn[:slash+dot]
	}
	return fn
}

var generalPurpose = map[string]bool{
	"runtime": true, "sync": true, "reflect": true, "slices": true, "maps": true,
	"bytes": true, "strings": true, "strconv": true, "unicode/utf8": true, "fmt": true,
	"errors": true, "io": true, "bufio": true, "os": true, "syscall": true, "time": true,
	"context": true, "path": true, "path/filepath": true, "sort": true, "unique": true,
	"encoding/binary": true, "encoding/base64": true, "encoding/hex": true, "hash/crc32": true,
	"math/big": true, "weak": true, "iter": true,
}
