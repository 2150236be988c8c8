package providers_test

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/hookgate/hookgate"

// forbidden are the modules and packages no provider package may depend
// on, directly or not: an HTTP server, an outbound client, the gateway.
var forbidden = []string{
	"github.com/gofiber/",
	"github.com/valyala/fasthttp",
	"github.com/go-resty/",
	"github.com/sony/gobreaker",
	module + "/gateway",
	module + "/outbound",
}

// allowed reports whether a package of ours may be imported by a provider
// package: the root package, config, the contract and its helpers.
func allowed(path string) bool {
	return path == module || path == module+"/config" ||
		path == module+"/providers" || strings.HasPrefix(path, module+"/providers/")
}

// TestDependencies checks the rule of docs/providers.md: the contract and
// every provider package import no HTTP server and no outbound client, and
// of ours only the root package, config and providers/...
func TestDependencies(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("no go command on PATH: %v", err) // go test runs it; never skip the check
	}
	out, err := exec.Command(goBin, "list", "-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`, module+"/providers/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 10 {
		t.Fatalf("go list listed %d packages under providers/; want at least 10:\n%s", len(lines), out)
	}
	for _, line := range lines {
		f := strings.Fields(line)
		pkg, deps := f[0], f[1:]
		for _, d := range deps {
			for _, bad := range forbidden {
				if d == bad || strings.HasPrefix(d, bad) && (strings.HasSuffix(bad, "/") || strings.HasPrefix(d, bad+"/")) {
					t.Errorf("%s depends on %s; want no %s", pkg, d, bad)
				}
			}
			if strings.HasPrefix(d, module+"/") && !allowed(d) {
				t.Errorf("%s depends on %s; want only the root package, config and providers/...", pkg, d)
			}
		}
	}
}
