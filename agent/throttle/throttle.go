package throttle

import (
	"sync"
	"time"
)

// maxKeys bounds memory under a flood of distinct keys: beyond it, keys
// not seen for a minute are forgotten.
const maxKeys = 4096

// Keys remembers when each key was last let through. The zero value is
// ready to use; it is safe for concurrent use.
type Keys struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

// First reports whether key was not let through in the last minute, and
// notes it.
func (k *Keys) First(key string) bool {
	now := time.Now()
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.seen == nil {
		k.seen = make(map[string]time.Time)
	}
	if last, ok := k.seen[key]; ok && now.Sub(last) < time.Minute {
		return false
	}
	if len(k.seen) > maxKeys {
		for key, t := range k.seen {
			if now.Sub(t) >= time.Minute {
				delete(k.seen, key)
			}
		}
	}
	k.seen[key] = now
	return true
}
