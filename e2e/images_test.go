package e2e

import (
	"context"
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// maxExampleImage is what "images stay small" means here: a stripped static Go binary on scratch.
const maxExampleImage = 40e6

// TestImages checks that every example has an image FROM scratch that holds one static binary which
// starts there (an image with a dynamic binary fails to exec: there is no loader on scratch), and
// logs the sizes.
func TestImages(t *testing.T) {
	names := exampleNames(repoRoot())
	if len(names) == 0 {
		t.Fatal("no example binaries found under examples/")
	}
	needEngine(t, names...)
	t.Logf("images of this run:\n%s", sizeTable)
	for _, n := range names {
		t.Run(n, func(t *testing.T) {
			layers := mustDocker(t, "image", "inspect", "-f", "{{len .RootFS.Layers}} {{.Size}}", image(n))
			f := strings.Fields(layers)
			if len(f) != 2 || f[0] != "1" {
				t.Errorf("image %s: layers and size %q, want one layer (FROM scratch, one COPY)", image(n), layers)
			}
			if size, _ := strconv.ParseFloat(f[len(f)-1], 64); size > maxExampleImage {
				t.Errorf("image %s is %.1f MB, want at most %.0f MB", image(n), size/1e6, maxExampleImage/1e6)
			}
			// -h: every example prints its usage and exits 0 without serving, as the flag package's
			// commands do (help asked for is no error; internal/cmdline).
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, "docker", "run", "--rm", "--name", prefix+"help-"+n, image(n), "-h").CombinedOutput()
			var ee *exec.ExitError
			if err != nil && !errors.As(err, &ee) {
				t.Fatalf("docker run %s -h: %v", image(n), err)
			}
			status := 0
			if ee != nil {
				status = ee.ExitCode()
			}
			switch {
			case status >= 125: // 125: the engine failed; 126/127: the entrypoint could not be executed.
				t.Fatalf("docker run %s -h exited %d: %s", image(n), status, out)
			case status != 0:
				t.Errorf("docker run %s -h exited %d, want 0 (help asked for is no error):\n%s", image(n), status, out)
			}
			if !strings.Contains(strings.ToLower(string(out)), "usage") || strings.Contains(string(out), "help requested") {
				t.Errorf("docker run %s -h printed no usage, or an error:\n%s", image(n), out)
			}
		})
	}
}
