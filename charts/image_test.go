package charts

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/chat-operators/officialaccount-operator/internal/testenv"
)

// No container engine runs on the build machines, so this checks what can be checked
// without one: the binary the Dockerfile builds is static, and the image's entrypoint and
// user are what the chart's pods expect.
func TestDockerfileMatchesTheChart(t *testing.T) {
	dockerfile, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	stages := strings.Split(string(dockerfile), "\nFROM ")
	final := stages[len(stages)-1]
	if !strings.HasPrefix(final, "gcr.io/distroless/static:nonroot") {
		t.Errorf("final stage is %q, want distroless static nonroot", strings.SplitN(final, "\n", 2)[0])
	}
	if !regexp.MustCompile(`(?m)^USER [1-9][0-9]*(:[0-9]+)?$`).MatchString(final) {
		t.Error("the image has no numeric non-root USER, which the chart's runAsNonRoot needs")
	}
	if !strings.Contains(final, `ENTRYPOINT ["/manager"]`) {
		t.Error(`the entrypoint is not ["/manager"]; the chart sets only args`)
	}
	if !strings.Contains(string(dockerfile), "CGO_ENABLED=0") || !strings.Contains(string(dockerfile), "./cmd") {
		t.Error("the Dockerfile does not build ./cmd with CGO_ENABLED=0")
	}

	objs := render(t, "--set", "sdkAppIDs={1400000000}", "--set", "auth.allowUnsigned=true")
	dep := objs["Deployment/oao-officialaccount-operator"]
	containers, _, _ := unstructuredSlice(dep.Object, "spec", "template", "spec", "containers")
	if _, hasCommand := containers[0].(map[string]any)["command"]; hasCommand {
		t.Error("the chart overrides the image's entrypoint")
	}
}

// The Dockerfile copies the source folders one by one: each folder of this module that
// the manager imports must be among them, or the image does not build.
func TestDockerfileCopiesEveryFolderTheManagerImports(t *testing.T) {
	dockerfile, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	list := exec.Command("go", "list", "-deps", "-f", "{{if .Module}}{{if .Module.Main}}{{.ImportPath}}{{end}}{{end}}", "./cmd")
	list.Dir = testenv.RepoRoot()
	out, err := list.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const module = "github.com/chat-operators/officialaccount-operator/"
	for _, pkg := range strings.Fields(string(out)) {
		folder, _, _ := strings.Cut(strings.TrimPrefix(pkg, module), "/")
		if !strings.Contains(string(dockerfile), "\nCOPY "+folder+"/ "+folder+"/\n") {
			t.Errorf("the Dockerfile does not copy %s/, which %s is in", folder, pkg)
		}
	}
}

func TestTheManagerBuildsAsAStaticBinary(t *testing.T) {
	out := filepath.Join(t.TempDir(), "manager")
	// The Dockerfile's build, but for -trimpath, which changes nothing about linking and
	// would make Go compile every package again instead of reusing the tests' build cache.
	cmd := exec.Command("go", "build", "-o", out, "./cmd")
	cmd.Dir = testenv.RepoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	f, err := elf.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("the binary needs a dynamic loader; distroless/static has none")
		}
	}
}
