package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// pod starts the pod's first container (podtool pause), which holds the network and PID namespaces
// the other containers join; it returns the flags that make a container part of the pod.
func pod(t *testing.T, name string, runArgs ...string) (string, []string) {
	t.Helper()
	p := container(t, name, append(runArgs, image("podtool"), "pause")...)
	return p, []string{"--network", "container:" + p, "--pid", "container:" + p}
}

// user is the --user flag for containers writing into a test's bind-mounted directories, so the
// files belong to whoever runs the tests.
func user() []string { return []string{"--user", fmt.Sprintf("%d:%d", os.Getuid(), os.Getgid())} }

// TestSidecarLogship runs a pod of an app that writes numbered lines to a shared volume and rotates
// them (app.log -> app.log.1 -> app.log.2 ...) and the logship sidecar with a file sink on the
// volume; logship is killed (SIGKILL) twice and restarted, once while rotations happen; every line
// arrives in the sink exactly once.
func TestSidecarLogship(t *testing.T) {
	if _, err := os.Stat(filepath.Join(repoRoot(), "examples", "logship")); err != nil {
		t.Skip("examples/logship does not exist yet")
	}
	needEngine(t, "podtool", "logship")
	const lines, rotateEvery = 6000, 500
	dir := t.TempDir()
	logs, shipped := filepath.Join(dir, "logs"), filepath.Join(dir, "shipped")
	for _, d := range []string{logs, shipped} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	_, join := pod(t, "sidecar-pod")
	vols := []string{"-v", logs + ":/var/log/app", "-v", shipped + ":/shipped"}
	shipper := container(t, "sidecar-logship", append(append(append(join, user()...), vols...), image("logship"),
		"-glob", "/var/log/app/*.log", "-state", "/shipped/state.json", "-sink", "file:/shipped/app.jsonl", "-poll", "200ms")...)
	sink := filepath.Join(shipped, "app.jsonl")
	waitShipped := func(n int) {
		t.Helper()
		err := eventually(2*time.Minute, func() error {
			if got := countLines(sink); got < n {
				return fmt.Errorf("%d lines shipped, waiting for %d", got, n)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	waitRotated := func(k int) {
		t.Helper()
		err := eventually(2*time.Minute, func() error {
			if _, err := os.Stat(filepath.Join(logs, "app.log."+strconv.Itoa(k))); err != nil {
				return err
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	container(t, "sidecar-app", append(append(append(join, user()...), vols...), image("podtool"),
		"logwriter", "-dir", "/var/log/app", "-lines", strconv.Itoa(lines), "-rotate-every", strconv.Itoa(rotateEvery), "-interval", "1ms")...)

	// First kill: mid-stream; the app rotates at least twice while logship is down.
	waitShipped(1000)
	mustDocker(t, "kill", shipper)
	rotatedAt := 0
	for k := 1; k < lines/rotateEvery; k++ {
		if _, err := os.Stat(filepath.Join(logs, "app.log."+strconv.Itoa(k))); err == nil {
			rotatedAt = k
		}
	}
	waitRotated(rotatedAt + 2)
	mustDocker(t, "start", shipper)

	// Second kill: later, restarted at once.
	waitShipped(3500)
	mustDocker(t, "kill", shipper)
	mustDocker(t, "start", shipper)

	if err := eventually(2*time.Minute, func() error {
		_, err := os.Stat(filepath.Join(logs, "writer.done"))
		return err
	}); err != nil {
		t.Fatalf("the app did not finish: %v", err)
	}
	waitShipped(lines)
	// SIGTERM commits the checkpoint; the sink is then final.
	mustDocker(t, "stop", "-t", "30", shipper)

	data, err := os.ReadFile(sink)
	if err != nil {
		t.Fatal(err)
	}
	seen := make(map[int]int, lines)
	var bad []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var rec struct {
			File string `json:"file"`
			Line string `json:"line"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			bad = append(bad, sc.Text())
			continue
		}
		n, err := strconv.Atoi(strings.TrimPrefix(rec.Line, "seq="))
		if err != nil || !strings.HasPrefix(rec.File, "/var/log/app/app.log") {
			bad = append(bad, sc.Text())
			continue
		}
		seen[n]++
	}
	if len(bad) > 0 {
		t.Errorf("%d records not {file, line=seq=N} from the app's log: first %q", len(bad), bad[0])
	}
	var missing, dup []int
	for i := 1; i <= lines; i++ {
		switch seen[i] {
		case 0:
			missing = append(missing, i)
		case 1:
		default:
			dup = append(dup, i)
		}
	}
	if len(missing) > 0 || len(dup) > 0 || len(seen) != lines {
		t.Fatalf("lines 1..%d: %d missing (first %v), %d duplicated (first %v), %d distinct",
			lines, len(missing), head(missing), len(dup), head(dup), len(seen))
	}
	t.Logf("%d lines in %d files shipped exactly once across two SIGKILLs of logship", lines, lines/rotateEvery)
}

func countLines(path string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return bytes.Count(data, []byte("\n"))
}

func head(s []int) []int {
	if len(s) > 5 {
		return s[:5]
	}
	return s
}
