//go:build memdebug && memprofile

package main

import (
	"os"
	"runtime"
	"runtime/pprof"
	"time"
)

// startHeapProfiles writes STANZAD_HEAPPROFILE's heap profiles (make
// memdebug TAGS=memprofile). It is a build of its own: linking
// runtime/pprof turns on the runtime's memory profiler, whose bucket
// table alone maps 1.4 MB and touches a page of it per sampled stack,
// which the shipped build does not have (the linker turns the profiler
// off when nothing can read it).
func startHeapProfiles() {
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
				// The proto for pprof, and the text form, whose records
				// are per allocation size (for the size classes in use).
				for debug, name := range []string{at.name, at.name + ".txt"} {
					if f, err := os.Create(name); err == nil {
						pprof.Lookup("heap").WriteTo(f, debug)
						f.Close()
					}
				}
			}
		}()
	}
}
