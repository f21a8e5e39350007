package e2e

import (
	"context"
	"errors"
	"os/exec"
	"testing"
	"time"
)

// TestTourInContainer runs examples/tour from its FROM scratch image (nothing but the binary, a
// tmpfs on /tmp as an emptyDir would give it): every act must pass there too, within 60 s.
func TestTourInContainer(t *testing.T) {
	needEngine(t, "tour")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	name := prefix + "tour"
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", name).Run() })
	start := time.Now()
	out, err := exec.CommandContext(ctx, "docker", "run", "--name", name, "--tmpfs", "/tmp", image("tour")).CombinedOutput()
	elapsed := time.Since(start)
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("docker run tour: %v", err)
	}
	if err != nil {
		t.Fatalf("the tour exited %d in its container after %v:\n%s", ee.ExitCode(), elapsed, out)
	}
	if elapsed > 60*time.Second {
		t.Errorf("the tour took %v in its container, want at most 60s", elapsed)
	}
	t.Logf("tour exited 0 in %v", elapsed.Round(100*time.Millisecond))
}
