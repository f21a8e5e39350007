package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestAdapterRedisHealth runs the adapter pod of deploy/kubernetes/adapter.yaml: redis-server, which
// speaks no HTTP, and examples/health-adapter in its network namespace turning a redis PING on
// localhost into /readyz. Pausing redis turns the pod not ready; resuming it, ready again.
func TestAdapterRedisHealth(t *testing.T) {
	needEngine(t, "redis-server", "health-adapter")
	redis := container(t, "adapter-redis", "-p", "127.0.0.1::8081", image("redis-server"),
		"--bind", "127.0.0.1", "--port", "6379", "--save", "", "--appendonly", "no")
	container(t, "adapter-health", "--network", "container:"+redis, image("health-adapter"),
		"-admin", "0.0.0.0:8081", "-readyz", "redis=127.0.0.1:6379", "-interval", "200ms", "-timeout", "300ms",
		"-failure-threshold", "2")
	ready := "http://" + hostAddr(t, redis, 8081) + "/readyz"
	// The kubelet counts 200-399 as success and anything else as failure.
	want := func(ok bool) func() error {
		return func() error {
			got, _, body, err := get(ready)
			if err != nil {
				return err
			}
			if (got >= 200 && got < 400) != ok {
				return fmt.Errorf("GET /readyz: %d %s, want success %v", got, body, ok)
			}
			if !ok && !strings.Contains(string(body), "redis") {
				return fmt.Errorf("GET /readyz: %d %q does not name the failing redis check", got, body)
			}
			return nil
		}
	}
	if err := eventually(60*time.Second, want(true)); err != nil {
		t.Fatalf("with redis up: %v", err)
	}
	mustDocker(t, "pause", redis)
	if err := eventually(30*time.Second, want(false)); err != nil {
		t.Fatalf("with redis paused: %v", err)
	}
	mustDocker(t, "unpause", redis)
	if err := eventually(30*time.Second, want(true)); err != nil {
		t.Fatalf("with redis resumed: %v", err)
	}
}
