package main

import (
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/podblocks/podblocks/adaptertest"
	"github.com/podblocks/podblocks/internal/freeport"
)

// manifestContainer is what TestManifestProbes reads of a container of adapter.yaml.
type manifestContainer struct {
	Name           string   `yaml:"name"`
	Args           []string `yaml:"args"`
	LivenessProbe  *probe   `yaml:"livenessProbe"`
	ReadinessProbe *probe   `yaml:"readinessProbe"`
}

type probe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

// TestManifestProbes runs deploy/kubernetes/adapter.yaml's health-adapter (its own arguments, on
// loopback ports) next to a real redis-server and asks what the kubelet would: once redis stops
// answering, the adapter's readiness probe fails (the pod leaves its Service) while its liveness
// probe keeps passing (the kubelet leaves the adapter alone); and redis' own life does not hang on
// the adapter (no liveness probe of redis goes through the adapter's port, where an adapter that
// crashed would get a healthy redis restarted).
func TestManifestProbes(t *testing.T) {
	redisBin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not installed (apt-get install redis-server): skipping the manifest's redis probes")
	}
	b, err := os.ReadFile("../../deploy/kubernetes/adapter.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Spec struct {
			Template struct {
				Spec struct {
					Containers []manifestContainer `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	byName := map[string]manifestContainer{}
	for _, c := range doc.Spec.Template.Spec.Containers {
		byName[c.Name] = c
	}
	redisC, adapterC := byName["redis"], byName["health-adapter"]
	if adapterC.LivenessProbe == nil || adapterC.ReadinessProbe == nil {
		t.Fatalf("health-adapter: livenessProbe %v, readinessProbe %v: want both", adapterC.LivenessProbe != nil, adapterC.ReadinessProbe != nil)
	}
	if p := redisC.LivenessProbe; p != nil && p.HTTPGet.Path != "" {
		t.Errorf("redis' livenessProbe asks %s over HTTP (the adapter's port): a crashed adapter would get redis restarted", p.HTTPGet.Path)
	}

	addr := freeport.TCP(t)
	_, port, _ := net.SplitHostPort(addr)
	redis := exec.Command(redisBin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := redis.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			redis.Process.Kill()
			redis.Wait()
		}
	}()
	// The manifest's arguments, on loopback ports and with a short interval.
	args := append([]string(nil), adapterC.Args...)
	for i, a := range args {
		switch {
		case i > 0 && args[i-1] == "-admin":
			args[i] = "127.0.0.1:0"
		case i > 0 && args[i-1] == "-interval":
			args[i] = "100ms"
		case strings.HasSuffix(a, "=127.0.0.1:6379"):
			args[i] = strings.TrimSuffix(a, "127.0.0.1:6379") + addr
		}
	}
	get, stop := start(t, args...)
	defer stop()
	ready, live := adapterC.ReadinessProbe.HTTPGet.Path, adapterC.LivenessProbe.HTTPGet.Path
	adaptertest.Eventually(t, 30*time.Second, func() bool {
		code, _ := get(ready)
		return code == 200
	}, "the adapter's readiness probe "+ready+" passing while redis answers")
	redis.Process.Kill()
	redis.Wait()
	killed = true
	adaptertest.Eventually(t, 30*time.Second, func() bool {
		code, _ := get(ready)
		return code == 500
	}, "the adapter's readiness probe "+ready+" failing once redis is gone")
	if code, body := get(live); code != 200 {
		t.Errorf("the adapter's liveness probe %s = %d %q with redis gone: the kubelet would restart the adapter", live, code, body)
	}
}
