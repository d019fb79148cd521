package devices

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// FileConfig configures a watched file or directory.
type FileConfig struct {
	Name string
	// Path is a file, or a directory whose files are all watched.
	Path string
	// Parse turns the content into fields: "line", "kv" and "json" take
	// the file's last line, "whole" the whole file.
	Parse string
	Parser
	// MaxSize caps what is read: the last MaxSize bytes for line
	// parsers, the whole file for "whole" (larger files are an error
	// reading). Default 64 KiB.
	MaxSize int64
}

// fileSettle lets a writer finish before the file is read: editors and
// loggers write in several steps.
const fileSettle = 50 * time.Millisecond

// File reports a file's content when it changes (fsnotify). It watches
// the directory, so the editor's write-new-then-rename dance and a file
// deleted and created again are seen. When a watched directory itself is
// removed, Run returns an error and the agent retries with backoff until
// it is back.
type File struct {
	cfg FileConfig
	// isDir remembers that Path was a directory, so a Run after it was
	// removed waits for the directory instead of watching for a file.
	isDir atomic.Bool
}

// NewFile returns a file device.
func NewFile(cfg FileConfig) *File {
	if cfg.MaxSize <= 0 {
		cfg.MaxSize = 64 << 10
	}
	if cfg.Parser == nil {
		cfg.Parser, _ = NewParser(cfg.Parse, "")
	}
	return &File{cfg: cfg}
}

// Name returns the device name.
func (f *File) Name() string { return f.cfg.Name }

// Run watches until ctx is done or the watched directory goes away. It
// reports the current content first.
func (f *File) Run(ctx context.Context, emit func(Reading)) error {
	path := filepath.Clean(f.cfg.Path)
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		f.isDir.Store(true)
	}
	isDir := f.isDir.Load()
	dir, target := filepath.Dir(path), filepath.Base(path)
	if isDir {
		dir, target = path, ""
	}
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	w, err := WatchDir(dir)
	if err != nil {
		return err
	}
	defer w.Close()
	if !isDir {
		if _, err := os.Stat(path); err == nil {
			emit(f.read(path))
		}
	}

	pending := map[string]bool{}
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	defer settle.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-w.Events():
			if ev.Name == dir && ev.Op&(fsnotify.Remove|fsnotify.Rename) != 0 {
				return fmt.Errorf("watched directory %s was removed", dir)
			}
			if target != "" && filepath.Base(ev.Name) != target {
				continue
			}
			if ev.Op&(fsnotify.Write|fsnotify.Create) != 0 {
				pending[ev.Name] = true
				settle.Reset(fileSettle)
			}
		case err := <-w.Errors():
			return fmt.Errorf("watch %s: %w", dir, err) // e.g. event queue overflow
		case <-settle.C:
			for name := range pending {
				delete(pending, name)
				if st, err := os.Stat(name); err != nil || !st.Mode().IsRegular() {
					continue // gone again, or a subdirectory
				}
				r := f.read(name)
				if isDir {
					r.Fields = append([]Field{Text("file", clean(filepath.Base(name)))}, r.Fields...)
				}
				emit(r)
			}
			// A directory removed while we waited shows up on the next
			// Stat: end the watch so the agent retries.
			if _, err := os.Stat(dir); err != nil {
				return fmt.Errorf("watched directory %s: %w", dir, err)
			}
		}
	}
}

// read returns the reading for the file's current content.
func (f *File) read(name string) Reading {
	r := Reading{Device: f.cfg.Name, Time: time.Now().UTC()}
	text, err := f.content(name)
	if err != nil {
		r.Err = err
		return r
	}
	r.Fields, r.Err = f.cfg.Parser(text)
	return r
}

func (f *File) content(name string) (string, error) {
	fh, err := os.Open(name)
	if err != nil {
		return "", err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return "", err
	}
	if f.cfg.Parse == "whole" {
		if st.Size() > f.cfg.MaxSize {
			return "", fmt.Errorf("%w: %s is %d bytes, more than max_size %d", ErrParse, name, st.Size(), f.cfg.MaxSize)
		}
		b, err := io.ReadAll(io.LimitReader(fh, f.cfg.MaxSize))
		return string(b), err
	}
	// The last line: read the tail only, so a growing log costs the same
	// as a small file.
	off := max(0, st.Size()-f.cfg.MaxSize)
	b, err := io.ReadAll(io.NewSectionReader(fh, off, f.cfg.MaxSize))
	if err != nil {
		return "", err
	}
	s := strings.TrimRight(string(b), "\r\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	} else if off > 0 {
		return "", fmt.Errorf("%w: last line of %s is longer than max_size %d", ErrParse, name, f.cfg.MaxSize)
	}
	if s == "" {
		return "", fmt.Errorf("%w: %s is empty", ErrParse, name)
	}
	return strings.TrimSuffix(s, "\r"), nil
}

// Read returns the file's current content (for a directory: an error,
// there is no one file to read).
func (f *File) Read(context.Context) (Reading, error) {
	if st, err := os.Stat(f.cfg.Path); err == nil && st.IsDir() {
		return Reading{}, fmt.Errorf("%s: a directory has no current value; readings come on change", f.cfg.Name)
	}
	r := f.read(f.cfg.Path)
	return r, r.Err
}
