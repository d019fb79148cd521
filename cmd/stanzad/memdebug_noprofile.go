//go:build memdebug && !memprofile

package main

// startHeapProfiles does nothing without the memprofile tag: see
// memdebug_profile.go.
func startHeapProfiles() {}
