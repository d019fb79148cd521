package agent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
)

// seqFile persists a reading sequence number (the seqnr of XEP-0323
// messages) so receivers see a contiguous sequence across restarts.
//
// Each Next writes the new value in place with pwrite: one small syscall
// and no fsync, so the value survives a crash of the process (the page
// cache holds it) but not necessarily a power loss. Close fsyncs. After a
// power loss the counter can repeat values a receiver has seen; it never
// skips silently.
type seqFile struct {
	mu   sync.Mutex
	f    *os.File
	last uint64
	buf  [8]byte
}

func openSeq(path string) (*seqFile, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, err
	}
	s := &seqFile{f: f}
	n, err := f.ReadAt(s.buf[:], 0)
	switch {
	case n == 8:
		s.last = binary.BigEndian.Uint64(s.buf[:])
	case n == 0 && (err == nil || errors.Is(err, io.EOF)):
		// New file.
	default:
		f.Close()
		return nil, fmt.Errorf("sequence file %s is corrupt (%d bytes)", path, n)
	}
	return s, nil
}

// Next returns the next sequence number and persists it.
func (s *seqFile) Next() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last++
	binary.BigEndian.PutUint64(s.buf[:], s.last)
	if _, err := s.f.WriteAt(s.buf[:], 0); err != nil {
		return s.last, fmt.Errorf("persist seqnr: %w", err)
	}
	return s.last, nil
}

// Last returns the last number handed out.
func (s *seqFile) Last() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

func (s *seqFile) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return errors.Join(s.f.Sync(), s.f.Close())
}
