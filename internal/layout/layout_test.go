package layout

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

const module = "github.com/stanzad/stanzad"

// rules lists, per package tree, the module packages it must never reach,
// directly or through another package.
var rules = []struct {
	pkg       string
	forbidden []string
}{
	{"xmpp/...", []string{"agent", "devices", "bridge", "internal"}},
	{"devices/...", []string{"agent", "xmpp", "bridge", "internal"}},
	{"bridge/...", []string{"agent", "xmpp", "devices", "internal"}},
	{"agent/...", []string{"internal", "cmd"}},
}

// thirdParty lists the only non-module, non-stdlib import paths each tree
// may use (prefixes).
var thirdParty = map[string][]string{
	"xmpp/...":    {"golang.org/x/"},
	"devices/...": {"periph.io/x/", "go.bug.st/serial", "github.com/fsnotify/fsnotify", "golang.org/x/", "github.com/creack/goselect"},
	"bridge/...":  {"github.com/eclipse/paho.mqtt.golang", "github.com/gorilla/websocket", "golang.org/x/"},
}

func goTool() string {
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

func TestImports(t *testing.T) {
	for _, r := range rules {
		t.Run(r.pkg, func(t *testing.T) {
			out, err := exec.Command(goTool(), "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "../../"+r.pkg).Output()
			if ee, ok := err.(*exec.ExitError); ok {
				t.Fatalf("go list: %v\n%s", err, ee.Stderr)
			} else if err != nil {
				t.Fatalf("go list: %v", err)
			}
			for _, dep := range strings.Fields(string(out)) {
				rel, inModule := strings.CutPrefix(dep, module+"/")
				if !inModule {
					if allowed, ok := thirdParty[r.pkg]; ok && !hasAnyPrefix(dep, allowed) {
						t.Errorf("%s depends on %s, which is not on its list of allowed libraries", r.pkg, dep)
					}
					continue
				}
				for _, f := range r.forbidden {
					if rel == f || strings.HasPrefix(rel, f+"/") {
						t.Errorf("%s depends on %s; DESIGN.md forbids %s", r.pkg, dep, f)
					}
				}
			}
		})
	}
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
