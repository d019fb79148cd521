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
// Built with make memdebug TAGS=memprofile, STANZAD_HEAPPROFILE=file
// also writes heap profiles (every allocation sampled) at 25 s
// (file.early) and 45 s, each also as text (file.txt), and file.classes:
// every size class with live objects, what was allocated in it between
// the two profiles, and which packages hold its live objects
// (memdebug_profile.go). The runtime's internals are read through linkname at
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
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
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

//go:linkname spanSetBlockPool runtime.spanSetBlockPool
var spanSetBlockPool uint64 // an lfstack: a tagged pointer

//go:linkname gcBitsArenas runtime.gcBitsArenas
var gcBitsArenas byte // a struct: fields at DWARF offsets

func init() {
	if len(os.Args) == 2 && os.Args[1] == "-memdebug-offsets" {
		for k, v := range offsets() {
			fmt.Printf("%s %d\n", k, v)
		}
		os.Exit(0)
	}
	startHeapProfiles()
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
			b.WriteString(spanSets())
			fmt.Fprintln(os.Stderr, b.String())
			if i == 4 {
				fmt.Fprint(os.Stderr, residentMap(), stacksAndSpanSets(), spansByClass())
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
	want := map[string]string{"runtime.m": "m", "runtime.mheap": "mheap", "runtime.mcentral": "mcentral", "runtime.spanSet": "spanSet", "runtime.mspan": "mspan", "runtime.mutex": "mutex", "runtime.g": "g"}
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
	startpc, hasPC := off["g.startpc"]
	status, hasStatus := off["g.atomicstatus"]
	var each strings.Builder
	var dead, deadStacks int
	var deadRes uintptr
	for _, g := range allgs {
		lo, hi := *(*uintptr)(g), *(*uintptr)(unsafe.Add(g, unsafe.Sizeof(uintptr(0))))
		isDead := hasStatus && *(*uint32)(unsafe.Add(g, status))&^0x1000 == 6 // _Gdead, without _Gscan
		if isDead {
			dead++
		}
		if hi > lo {
			mapped += hi - lo
			r := resident(lo, hi)
			res += r
			if isDead {
				deadStacks++
				deadRes += r
			}
			if hasPC && r > 8<<10 { // the larger ones, by the function they run
				name := "?"
				if f := runtime.FuncForPC(*(*uintptr)(unsafe.Add(g, startpc))); f != nil {
					name = f.Name()
				}
				fmt.Fprintf(&each, "memstack %s mapped=%dk resident=%dk\n", name, (hi-lo)/1024, r/1024)
			}
		}
	}
	fmt.Fprintf(&b, "memstacks goroutines mapped=%dk resident=%dk (exited: %d, %d keeping a stack, resident=%dk)",
		mapped/1024, res/1024, dead, deadStacks, deadRes/1024)
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
				lo, hi := *(*uintptr)(g), *(*uintptr)(unsafe.Add(g, unsafe.Sizeof(uintptr(0))))
				mapped += hi - lo
				res += resident(lo, hi)
			}
		}
		fmt.Fprintf(&b, " threads=%d thread-stacks mapped=%dk resident=%dk", threads, mapped/1024, res/1024)
	}
	b.WriteString(spanSets())
	return b.String() + "\n" + each.String()
}

// spanSets counts the runtime's span sets (mheap.central is an array of
// padded mcentrals, one per span class; each has partial[2] and full[2]
// span sets): the classes that ever had one, the sets with a spine (2
// KiB each), the blocks attached to them (4 KiB each) and how many of
// those sets are empty now.
func spanSets() string {
	off := savedOffsets()
	central, ok1 := off["mheap.central"]
	spanalloc, ok2 := off["mheap.spanalloc"] // the field after central
	partial, ok3 := off["mcentral.partial"]
	setSize, ok4 := off["spanSet."]
	spineLen, ok5 := off["spanSet.spineLen"]
	spineCap, ok6 := off["spanSet.spineCap"]
	index, ok7 := off["spanSet.index"]
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7) {
		return ""
	}
	const classes = 136 // numSpanClasses: 68 size classes, scan and noscan
	stride := (spanalloc - central) / classes
	used, spines, blocks, idle := 0, 0, 0, 0
	for c := int64(0); c < classes; c++ {
		any := false
		for i := int64(0); i < 4; i++ {
			set := unsafe.Add(unsafe.Pointer(&mheap_), central+c*stride+partial+i*setSize)
			if *(*uintptr)(unsafe.Add(set, spineCap)) > 0 {
				spines++
				any = true
			}
			n := int(*(*uintptr)(unsafe.Add(set, spineLen)))
			blocks += n
			// index packs head (high 32 bits) and tail.
			ht := *(*uint64)(unsafe.Add(set, index))
			if n > 0 && ht>>32 == ht&(1<<32-1) {
				idle++
			}
		}
		if any {
			used++
		}
	}
	return fmt.Sprintf(" span-classes=%d span-set-spines=%d blocks=%d blocks-on-empty-sets=%d blocks-pooled=%d mark-bit-arenas=%s",
		used, spines, blocks, idle, pooledBlocks(), markBitArenas(off))
}

// pooledBlocks counts the span-set blocks in the runtime's pool: freed
// by sets, kept (resident) for reuse. The pool is an lfstack whose head
// is a tagged pointer (runtime/tagptr*.go as of Go 1.26: on 64-bit, 49
// address bits and blocks aligned to 512 bytes, so the pointer is the
// value shifted right by 24 and left by 9; on 32-bit, the high word);
// each block starts with the lfnode's next. -1 when that does not hold.
func pooledBlocks() int {
	var untag func(uint64) uintptr
	switch runtime.GOARCH {
	case "amd64", "arm64":
		untag = func(v uint64) uintptr { return uintptr(int64(v) >> 24 << 9) }
	case "arm", "386":
		untag = func(v uint64) uintptr { return uintptr(v >> 32) }
	default:
		return -1
	}
	n := 0
	for v := atomic.LoadUint64(&spanSetBlockPool); v != 0 && n < 1<<16; n++ {
		p := untag(v)
		if p == 0 || p%512 != 0 {
			return -1
		}
		v = **(**uint64)(unsafe.Pointer(&p))
	}
	return n
}

// markBitArenas counts the collector's mark-bit arenas (64 KiB each,
// cleared whole when reused) on its free, next, current and previous
// lists: gcBitsArenas is a mutex and then four list heads; an arena
// starts with its free index and its next.
func markBitArenas(off map[string]int64) string {
	mutex, ok := off["mutex."]
	if !ok {
		return "?"
	}
	ptr := int64(unsafe.Sizeof(uintptr(0)))
	first := (mutex + ptr - 1) / ptr * ptr
	var b strings.Builder
	for i, name := range []string{"free", "next", "current", "previous"} {
		n := 0
		for a := *(*unsafe.Pointer)(unsafe.Add(unsafe.Pointer(&gcBitsArenas), first+int64(i)*ptr)); a != nil && n < 1<<10; n++ {
			a = *(*unsafe.Pointer)(unsafe.Add(a, ptr))
		}
		if i > 0 {
			b.WriteByte('/')
		}
		fmt.Fprintf(&b, "%s:%d", name, n)
	}
	return b.String()
}

// spansByClass reports the heap's spans in use per span class: how many,
// their pages, the objects they hold and the bytes they leave unused
// (an "s" class holds pointers, "n" does not), largest waste first.
// allspans is read without the heap's lock: a diagnostic, not exact.
func spansByClass() string {
	off := savedOffsets()
	allspans, ok1 := off["mheap.allspans"]
	class, ok2 := off["mspan.spanclass"]
	state, ok3 := off["mspan.state"]
	npages, ok4 := off["mspan.npages"]
	nelems, ok5 := off["mspan.nelems"]
	count, ok6 := off["mspan.allocCount"]
	elem, ok7 := off["mspan.elemsize"]
	start, ok8 := off["mspan.startAddr"]
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7 && ok8) {
		return ""
	}
	type row struct {
		class           uint8
		elem            uintptr
		spans, pages    int
		objs, slots     int
		resident, waste uintptr
	}
	rows := map[uint8]*row{}
	spans := *(*[]unsafe.Pointer)(unsafe.Add(unsafe.Pointer(&mheap_), allspans))
	const pageSize = 8192
	for _, s := range spans {
		if s == nil || *(*uint8)(unsafe.Add(s, state)) != 1 { // mSpanInUse
			continue
		}
		c := *(*uint8)(unsafe.Add(s, class))
		r := rows[c]
		if r == nil {
			r = &row{class: c, elem: *(*uintptr)(unsafe.Add(s, elem))}
			rows[c] = r
		}
		n := int(*(*uintptr)(unsafe.Add(s, npages)))
		base := *(*uintptr)(unsafe.Add(s, start))
		r.spans++
		r.pages += n
		r.objs += int(*(*uint16)(unsafe.Add(s, count)))
		r.slots += int(*(*uint16)(unsafe.Add(s, nelems)))
		r.resident += resident(base, base+uintptr(n)*pageSize)
	}
	list := make([]*row, 0, len(rows))
	var tot row
	for _, r := range rows {
		r.waste = r.resident - min(r.resident, uintptr(r.objs)*r.elem)
		list = append(list, r)
		tot.spans += r.spans
		tot.pages += r.pages
		tot.resident += r.resident
		tot.waste += r.waste
		tot.objs += r.objs
	}
	sort.Slice(list, func(i, j int) bool { return list[i].waste > list[j].waste })
	var b strings.Builder
	fmt.Fprintf(&b, "memspans classes=%d spans=%d pages=%d resident=%dk objects=%d unused=%dk\n",
		len(list), tot.spans, tot.pages, tot.resident/1024, tot.objs, tot.waste/1024)
	for _, r := range list {
		kind := "s"
		if r.class&1 == 1 {
			kind = "n"
		}
		fmt.Fprintf(&b, "memspans class=%d%s elem=%d spans=%d pages=%d objects=%d/%d resident=%dk unused=%dk\n",
			r.class>>1, kind, r.elem, r.spans, r.pages, r.objs, r.slots, r.resident/1024, r.waste/1024)
	}
	return b.String()
}
