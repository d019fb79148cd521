package agent

import (
	"context"
	"errors"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/stanzad/stanzad/devices"
)

// configSettle is how long the config file must be quiet before a change
// is reloaded: editors and config managers write in several steps.
const configSettle = 500 * time.Millisecond

// watchConfig reloads the config when its file changes, until ctx is
// done. It watches the directory, not the file, because editors and
// configuration managers replace files by renaming a new one over them,
// which ends a watch on the old inode. A watch that cannot be set up is
// logged; SIGHUP and the ad-hoc reload still work.
func (a *Agent) watchConfig(ctx context.Context) {
	dir, name := filepath.Split(filepath.Clean(a.configPath))
	if dir == "" {
		dir = "."
	}
	w, err := devices.WatchDir(dir)
	if err != nil {
		a.log.Warn("config file not watched; reload with SIGHUP", "dir", dir, "err", err)
		return
	}
	defer w.Close()
	a.followConfig(ctx, name, w.Events(), w.Errors())
}

// followConfig reloads the config once events for the file called name
// have been quiet for configSettle, and after the watcher lost events
// (one of them may have been a change), if the file differs from the
// running config.
func (a *Agent) followConfig(ctx context.Context, name string, events <-chan fsnotify.Event, errs <-chan error) {
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	defer settle.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-events:
			if filepath.Base(ev.Name) == name && ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename) != 0 {
				settle.Reset(configSettle)
			}
		case err := <-errs:
			a.log.Warn("config watch", "err", err)
			if errors.Is(err, devices.ErrWatchOverflow) {
				settle.Reset(configSettle) // a change may be among the lost
			}
		case <-settle.C:
			if !a.fileChanged() {
				continue // the file a push wrote, already running
			}
			if _, err := a.Reload(ctx, Caller{Role: RoleOperator, Via: "file-change"}); err != nil {
				a.log.Error("config file changed but was not reloaded", "err", err)
			}
		}
	}
}
