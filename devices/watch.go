package devices

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"

	"github.com/fsnotify/fsnotify"
)

// One fsnotify watcher serves the whole process: file devices and the
// agent's config watch subscribe to directories on it. Each watcher's
// reader goroutine keeps a 64 KiB event buffer on its stack (128 KiB of
// resident stack per watcher, docs/benchmarks.md), and each holds an
// inotify instance (fs.inotify.max_user_instances is 128 for a user on
// most boards); a board with a config and three file devices would pay
// that four times.

// ErrWatchOverflow is sent on a DirWatch's Errors when events for it were
// lost, by the kernel (its queue overflowed) or because the subscriber
// fell behind: whoever watches must look at the directory again.
var ErrWatchOverflow = errors.New("file events lost (queue overflow); look again")

// watchBuffer is how many events a subscriber may have waiting before
// the next ones are replaced by ErrWatchOverflow.
const watchBuffer = 64

// DirWatch is one subscription to a directory's events: those of its
// entries and of the directory itself (its removal or rename).
type DirWatch struct {
	dir    string
	events chan fsnotify.Event
	errs   chan error
	once   sync.Once
}

// Events delivers the directory's events.
func (s *DirWatch) Events() <-chan fsnotify.Event { return s.events }

// Errors delivers ErrWatchOverflow and the watcher's own errors.
func (s *DirWatch) Errors() <-chan error { return s.errs }

// Close ends the subscription; the last one for a directory removes its
// watch, and the last one of all stops the watcher.
func (s *DirWatch) Close() { s.once.Do(func() { hub.unsubscribe(s) }) }

// WatchDir subscribes to dir's events on the shared watcher, starting it
// if needed.
func WatchDir(dir string) (*DirWatch, error) { return hub.subscribe(filepath.Clean(dir)) }

var hub watchHub

type watchHub struct {
	mu   sync.Mutex
	w    *fsnotify.Watcher
	subs map[string][]*DirWatch
}

func (h *watchHub) subscribe(dir string) (*DirWatch, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.w == nil {
		w, err := fsnotify.NewWatcher()
		if err != nil {
			return nil, err
		}
		h.w, h.subs = w, map[string][]*DirWatch{}
		go h.route(w)
	}
	// Added again even when already watched: the kernel drops a watch
	// whose directory was removed, and a new directory may have the name.
	if err := h.w.Add(dir); err != nil {
		if len(h.subs) == 0 {
			h.stopLocked()
		}
		return nil, fmt.Errorf("watch %s: %w", dir, err)
	}
	s := &DirWatch{dir: dir, events: make(chan fsnotify.Event, watchBuffer), errs: make(chan error, 1)}
	h.subs[dir] = append(h.subs[dir], s)
	return s, nil
}

func (h *watchHub) unsubscribe(s *DirWatch) {
	h.mu.Lock()
	defer h.mu.Unlock()
	list := h.subs[s.dir]
	for i, x := range list {
		if x == s {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) > 0 {
		h.subs[s.dir] = list
		return
	}
	delete(h.subs, s.dir)
	if h.w == nil {
		return
	}
	if len(h.subs) == 0 {
		h.stopLocked()
		return
	}
	h.w.Remove(s.dir) // already gone if the directory was removed
}

// stopLocked closes the watcher (fsnotify's Close returns once its
// reader has stopped). Its router ends on its own; what it still holds
// goes nowhere, since it delivers only while its watcher is the hub's.
func (h *watchHub) stopLocked() {
	h.w.Close()
	h.w, h.subs = nil, nil
}

// route hands each event to the subscribers of its directory (the
// entry's parent, or the directory itself), and errors to everyone. A
// subscriber whose buffer is full gets ErrWatchOverflow instead: one
// slow subscriber never holds up the others.
func (h *watchHub) route(w *fsnotify.Watcher) {
	for {
		select {
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			h.deliver(w, ev)
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				err = ErrWatchOverflow
			}
			h.mu.Lock()
			if h.w != w {
				h.mu.Unlock()
				return
			}
			for _, list := range h.subs {
				for _, s := range list {
					sendErr(s, err)
				}
			}
			h.mu.Unlock()
		}
	}
}

func (h *watchHub) deliver(w *fsnotify.Watcher, ev fsnotify.Event) {
	name := filepath.Clean(ev.Name)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.w != w {
		return // stopped since
	}
	for _, dir := range []string{filepath.Dir(name), name} {
		if dir == name && dir == filepath.Dir(name) {
			break // "/": delivered once
		}
		for _, s := range h.subs[dir] {
			select {
			case s.events <- ev:
			default:
				sendErr(s, ErrWatchOverflow)
			}
		}
	}
}

// sendErr leaves err for s unless an error is already waiting.
func sendErr(s *DirWatch, err error) {
	select {
	case s.errs <- err:
	default:
	}
}
