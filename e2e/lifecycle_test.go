package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestLifecycleDockerStop runs examples/lifecycle as a container and stops it the way the kubelet
// does (SIGTERM, then SIGKILL after the grace period): it turns not ready at once, keeps serving
// during the propagation delay, lets a request in flight finish, and exits 0 before the grace period.
func TestLifecycleDockerStop(t *testing.T) {
	needEngine(t, "lifecycle")
	c := container(t, "lifecycle", "-p", "127.0.0.1::8080", "-p", "127.0.0.1::8081", image("lifecycle"),
		"-listen", ":8080", "-admin", "0.0.0.0:8081", "-propagation", "2s", "-grace", "20s")
	app, admin := "http://"+hostAddr(t, c, 8080), "http://"+hostAddr(t, c, 8081)
	waitHTTP(t, admin+"/readyz", 60*time.Second)
	waitHTTP(t, app+"/", 10*time.Second)

	// A request in flight when the stop begins: 4 s of work, longer than the propagation delay.
	type result struct {
		code int
		err  error
	}
	inflight := make(chan result, 1)
	go func() {
		res, err := (&http.Client{Timeout: 30 * time.Second}).Get(app + "/work?ms=4000")
		if err != nil {
			inflight <- result{err: err}
			return
		}
		res.Body.Close()
		inflight <- result{code: res.StatusCode}
	}()
	// SIGTERM only once the server has admitted the request (its in-flight gauge says 1).
	err := eventually(10*time.Second, func() error {
		_, _, body, err := get(admin + "/metrics")
		if err != nil {
			return err
		}
		if !strings.Contains(string(body), `podblocks_lifecycle_shed_inflight{class="default"} 1`) {
			return errNotYet
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the request never arrived: %v", err)
	}
	stopped := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := docker(t.Context(), "stop", "-t", "20", c)
		stopped <- err
	}()

	// Not ready soon after SIGTERM, while / still answers (propagation delay).
	err = eventually(10*time.Second, func() error {
		code, _, _, err := get(admin + "/readyz")
		if err != nil {
			return err
		}
		if code == http.StatusOK {
			return fmt.Errorf("/readyz still 200")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("not ready after SIGTERM: %v", err)
	}
	if code, _, body, err := get(app + "/"); err != nil || code != http.StatusOK {
		t.Errorf("GET / during the propagation delay: %d %s %v, want 200", code, body, err)
	}
	if r := <-inflight; r.err != nil || r.code != http.StatusOK {
		t.Errorf("the request in flight at SIGTERM: %d %v, want 200", r.code, r.err)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	state := mustDocker(t, "inspect", "-f", "{{.State.ExitCode}} {{.State.OOMKilled}}", c)
	if strings.TrimSpace(state) != "0 false" {
		t.Errorf("exit code and OOM %q, want 0 false (a clean drain, not the SIGKILL after -t)", state)
	}
	if elapsed >= 20*time.Second {
		t.Errorf("docker stop took %v: the drain reached the grace period", elapsed)
	}
	t.Logf("drained and exited 0 in %v (propagation 2s, request in flight 4s)", elapsed.Round(100*time.Millisecond))
}
