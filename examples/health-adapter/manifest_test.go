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
	Name          string   `yaml:"name"`
	Args          []string `yaml:"args"`
	LivenessProbe *struct {
		HTTPGet struct {
			Path string `yaml:"path"`
			Port any    `yaml:"port"`
		} `yaml:"httpGet"`
	} `yaml:"livenessProbe"`
}

// TestManifestProbes runs deploy/kubernetes/adapter.yaml's health-adapter (its own arguments, on
// loopback ports) next to a real redis-server and asks what the kubelet would: redis' liveness
// probe fails once redis stops answering (so the kubelet restarts redis), while the adapter's own
// liveness probe keeps passing (so the kubelet leaves the adapter alone).
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
	if redisC.LivenessProbe == nil || adapterC.LivenessProbe == nil {
		t.Fatalf("livenessProbe on redis %v, on health-adapter %v: want both", redisC.LivenessProbe != nil, adapterC.LivenessProbe != nil)
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
	redisLive, adapterLive := redisC.LivenessProbe.HTTPGet.Path, adapterC.LivenessProbe.HTTPGet.Path
	adaptertest.Eventually(t, 30*time.Second, func() bool {
		code, _ := get(redisLive)
		return code == 200
	}, "redis' liveness probe "+redisLive+" passing while redis answers")
	redis.Process.Kill()
	redis.Wait()
	killed = true
	adaptertest.Eventually(t, 30*time.Second, func() bool {
		code, _ := get(redisLive)
		return code == 500
	}, "redis' liveness probe "+redisLive+" failing once redis is gone")
	if code, body := get(adapterLive); code != 200 {
		t.Errorf("the adapter's liveness probe %s = %d %q with redis gone: the kubelet would restart the adapter", adapterLive, code, body)
	}
}
