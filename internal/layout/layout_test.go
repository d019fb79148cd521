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
// directly or through another package: forbidden names trees (a package
// and everything below it), exactly single packages (what is below them
// is fine).
var rules = []struct {
	pkg       string
	forbidden []string
	exactly   []string
}{
	{"xmpp/...", []string{"agent", "devices", "bridge", "internal"}, nil},
	{"devices/...", []string{"agent", "xmpp", "bridge", "internal"}, nil},
	{"bridge/...", []string{"agent", "xmpp", "devices", "internal"}, nil},
	{"agent/...", []string{"internal", "cmd"}, nil},
	// The telemetry pipeline and the control plane are rooms of their own
	// under agent (DESIGN.md, Layout): the agent wires them, not the
	// other way round, and the pipeline knows nothing of commands.
	{"agent/telemetry/...", []string{"agent/control", "internal", "cmd"}, []string{"agent"}},
	{"agent/control/...", []string{"internal", "cmd"}, []string{"agent"}},
	{"agent/throttle/...", []string{"xmpp", "devices", "bridge", "internal", "cmd",
		"agent/config", "agent/control", "agent/outbox", "agent/telemetry"}, []string{"agent"}},
}

// thirdParty lists the only non-module, non-stdlib import paths each tree
// may use (prefixes).
var thirdParty = map[string][]string{
	"xmpp/...":    {"golang.org/x/"},
	"devices/...": {"periph.io/x/", "go.bug.st/serial", "github.com/fsnotify/fsnotify", "golang.org/x/", "github.com/creack/goselect"},
	"bridge/...":  {"github.com/eclipse/paho.mqtt.golang", "github.com/gorilla/websocket", "golang.org/x/"},
	// agent/throttle: the standard library only.
	"agent/throttle/...": nil,
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
				for _, f := range r.exactly {
					if rel == f {
						t.Errorf("%s depends on %s; DESIGN.md forbids it", r.pkg, dep)
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
