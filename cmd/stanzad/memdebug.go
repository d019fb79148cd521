//go:build memdebug

package main

// A memdebug build (make memdebug: bin/stanzad-memdebug, not stripped)
// tells where an idle agent's memory goes; docs/benchmarks.md's "Where
// the memory goes" comes from it. Run it in BenchmarkIntegrationIdleMemory
// with STANZAD_BIN=bin/stanzad-memdebug. On stderr:
//   - every 10 s, "memdebug": the runtime's memory classes (runtime/
//     metrics; mapped bytes, not resident);
//   - 50 s after start, "memmap": the resident pages (mincore) of every
//     anonymous writable mapping, and "memstacks": the resident part of
//     every goroutine's stack and of the threads' own stacks, and the
//     runtime's span sets (its per-size-class lists of spans: a spine
//     and a block of off-heap memory each, never given back).
//
// Run as a guest under qemu-user (STANZAD_BIN a script that execs
// qemu-arm-static on an arm build of it), memmap and memstacks are the
// guest's own: docs/benchmarks.md estimates 32-bit boards that way.
//
// STANZAD_HEAPPROFILE=file also writes heap profiles (every allocation
// sampled) at 25 s (file.early) and 45 s. The runtime's internals are read through linkname at
// field offsets from this binary's DWARF, so it follows the Go version
// it is built with; make memdebug writes them beside the binary
// (stanzad-memdebug -memdebug-offsets > bin/stanzad-memdebug.offsets):
// parsing the DWARF in the measured process would cost it 12 MB. A field
// it cannot find is left out. Never in the shipped build (runtime/
// metrics alone is 130 KB).

import (
	"debug/dwarf"
	"debug/elf"
	"fmt"
	"os"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

//go:linkname allgs runtime.allgs
var allgs []unsafe.Pointer

//go:linkname allm runtime.allm
var allm unsafe.Pointer

//go:linkname mheap_ runtime.mheap_
var mheap_ byte

func init() {
	if len(os.Args) == 2 && os.Args[1] == "-memdebug-offsets" {
		for k, v := range offsets() {
			fmt.Printf("%s %d\n", k, v)
		}
		os.Exit(0)
	}
	if out := os.Getenv("STANZAD_HEAPPROFILE"); out != "" {
		runtime.MemProfileRate = 1
		go func() {
			// out.early at 25 s, out at 45 s: go tool pprof -diff_base
			// out.early out shows what the idle agent allocates.
			for _, at := range []struct {
				sleep time.Duration
				name  string
			}{{25 * time.Second, out + ".early"}, {20 * time.Second, out}} {
				time.Sleep(at.sleep)
				runtime.GC() // the profile is as of the last collection
				if f, err := os.Create(at.name); err == nil {
					pprof.Lookup("heap").WriteTo(f, 0)
					f.Close()
				}
			}
		}()
	}
	go func() {
		var s []metrics.Sample
		for _, d := range metrics.All() {
			if strings.HasPrefix(d.Name, "/memory/classes/") || d.Name == "/sched/goroutines:goroutines" ||
				d.Name == "/gc/heap/live:bytes" || d.Name == "/gc/cycles/total:gc-cycles" {
				s = append(s, metrics.Sample{Name: d.Name})
			}
		}
		for i := 0; ; i++ {
			time.Sleep(10 * time.Second)
			metrics.Read(s)
			var b strings.Builder
			b.WriteString("memdebug")
			for _, x := range s {
				if x.Value.Kind() == metrics.KindUint64 {
					fmt.Fprintf(&b, " %s=%d", strings.TrimPrefix(strings.TrimPrefix(x.Name, "/memory/classes/"), "/"), x.Value.Uint64())
				}
			}
			fmt.Fprintln(os.Stderr, b.String())
			if i == 4 {
				fmt.Fprint(os.Stderr, residentMap(), stacksAndSpanSets())
			}
		}
	}()
}

// resident is how many bytes of [lo, hi) are resident.
func resident(lo, hi uintptr) uintptr {
	a := lo &^ 4095
	vec := make([]byte, (hi-a+4095)/4096)
	if len(vec) == 0 {
		return 0
	}
	if _, _, e := syscall.Syscall(syscall.SYS_MINCORE, a, uintptr(len(vec))*4096, uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		return 0
	}
	var n uintptr
	for _, v := range vec {
		n += uintptr(v & 1)
	}
	return n * 4096
}

// residentMap lists the anonymous writable mappings with resident pages.
func residentMap() string {
	var b strings.Builder
	maps, _ := os.ReadFile("/proc/self/maps")
	for _, l := range strings.Split(string(maps), "\n") {
		f := strings.Fields(l)
		if len(f) < 5 || !strings.HasPrefix(f[1], "rw") {
			continue
		}
		lo, hi, _ := strings.Cut(f[0], "-")
		a, _ := strconv.ParseUint(lo, 16, 64)
		z, _ := strconv.ParseUint(hi, 16, 64)
		if z-a > 256<<20 {
			continue // reservations
		}
		if r := resident(uintptr(a), uintptr(z)); r > 0 {
			fmt.Fprintf(&b, "memmap %s %s resident=%dk %s\n", f[0], f[2], r/1024, strings.Join(f[5:], " "))
		}
	}
	return b.String()
}

// offsets reads field offsets of the runtime's structs from this
// binary's DWARF: "m.gsignal" → offset; the struct sizes under "m.".
func offsets() map[string]int64 {
	out := map[string]int64{}
	f, err := elf.Open("/proc/self/exe")
	if err != nil {
		return out
	}
	defer f.Close()
	d, err := f.DWARF()
	if err != nil {
		return out
	}
	want := map[string]string{"runtime.m": "m", "runtime.mheap": "mheap", "runtime.mcentral": "mcentral", "runtime.spanSet": "spanSet"}
	r := d.Reader()
	for len(want) > 0 {
		e, err := r.Next()
		if err != nil || e == nil {
			break
		}
		name, _ := e.Val(dwarf.AttrName).(string)
		short, ok := want[name]
		if e.Tag != dwarf.TagStructType || !ok {
			continue
		}
		delete(want, name)
		if size, ok := e.Val(dwarf.AttrByteSize).(int64); ok {
			out[short+"."] = size
		}
		for {
			c, err := r.Next()
			if err != nil || c == nil || c.Tag == 0 {
				break
			}
			if n, ok := c.Val(dwarf.AttrName).(string); ok {
				if off, ok := c.Val(dwarf.AttrDataMemberLoc).(int64); ok {
					out[short+"."+n] = off
				}
			}
		}
	}
	return out
}

// savedOffsets reads what -memdebug-offsets wrote beside the binary.
func savedOffsets() map[string]int64 {
	out := map[string]int64{}
	exe, _ := os.Executable()
	data, _ := os.ReadFile(exe + ".offsets")
	for _, l := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(l, " "); ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				out[k] = n
			}
		}
	}
	return out
}

// stacksAndSpanSets reports resident stack memory (a g starts with its
// stack's bounds) and the runtime's span sets.
func stacksAndSpanSets() string {
	off := savedOffsets()
	var b strings.Builder
	var mapped, res uintptr
	for _, g := range allgs {
		lo, hi := *(*uintptr)(g), *(*uintptr)(unsafe.Add(g, 8))
		if hi > lo {
			mapped += hi - lo
			res += resident(lo, hi)
		}
	}
	fmt.Fprintf(&b, "memstacks goroutines mapped=%dk resident=%dk", mapped/1024, res/1024)
	gsignal, ok1 := off["m.gsignal"]
	link, ok2 := off["m.alllink"]
	if ok1 && ok2 {
		mapped, res = 0, 0
		threads := 0
		for m := allm; m != nil; m = *(*unsafe.Pointer)(unsafe.Add(m, link)) {
			threads++
			for _, o := range []int64{0, gsignal} { // g0 is the first field
				g := *(*unsafe.Pointer)(unsafe.Add(m, o))
				if g == nil {
					continue
				}
				lo, hi := *(*uintptr)(g), *(*uintptr)(unsafe.Add(g, 8))
				mapped += hi - lo
				res += resident(lo, hi)
			}
		}
		fmt.Fprintf(&b, " threads=%d thread-stacks mapped=%dk resident=%dk", threads, mapped/1024, res/1024)
	}
	// mheap.central is an array of padded mcentrals, one per span class;
	// each has partial[2] and full[2] span sets.
	central, ok1 := off["mheap.central"]
	spanalloc, ok2 := off["mheap.spanalloc"] // the field after central
	partial, ok3 := off["mcentral.partial"]
	setSize, ok4 := off["spanSet."]
	spineLen, ok5 := off["spanSet.spineLen"]
	spineCap, ok6 := off["spanSet.spineCap"]
	if ok1 && ok2 && ok3 && ok4 && ok5 && ok6 {
		const classes = 136 // numSpanClasses: 68 size classes, scan and noscan
		stride := (spanalloc - central) / classes
		used, spines, blocks := 0, 0, 0
		for c := int64(0); c < classes; c++ {
			any := false
			for i := int64(0); i < 4; i++ {
				set := unsafe.Add(unsafe.Pointer(&mheap_), central+c*stride+partial+i*setSize)
				if *(*uintptr)(unsafe.Add(set, spineCap)) > 0 {
					spines++
					any = true
				}
				blocks += int(*(*uintptr)(unsafe.Add(set, spineLen)))
			}
			if any {
				used++
			}
		}
		fmt.Fprintf(&b, " span-classes=%d span-set-spines=%d blocks=%d", used, spines, blocks)
	}
	return b.String() + "\n"
}
