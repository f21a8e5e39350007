package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

var (
	// engineErr is why no Docker engine is usable (nil when one is).
	engineErr error
	// prefix names every container, network and volume of this run.
	prefix string
	// imageTag is the tag of this run's images (repository imageRepo).
	imageTag string

	imagesBuilt bool
	sizeTable   string
)

const imageRepo = "podblocks-e2e"

func TestMain(m *testing.M) {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	prefix = "pbe2e-" + id + "-"
	// The tag carries the run's start time: an image's own creation time can be older than the run
	// (a cached build), so removeStale judges images by their tag.
	imageTag = fmt.Sprintf("%d-%s", time.Now().Unix(), id)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	if out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		engineErr = fmt.Errorf("docker info: %v: %s", err, bytes.TrimSpace(out))
	}
	cancel()
	if engineErr == nil {
		removeStale(time.Hour)
	}
	code := m.Run()
	if engineErr == nil {
		removeLeftovers()
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// removeLeftovers removes whatever this run left behind (t.Cleanup normally did already).
func removeLeftovers() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, kind := range []struct{ ls, rm []string }{
		{[]string{"ps", "-aq", "--filter", "name=" + prefix}, []string{"rm", "-f", "-v"}},
		{[]string{"network", "ls", "-q", "--filter", "name=" + prefix}, []string{"network", "rm"}},
		{[]string{"volume", "ls", "-q", "--filter", "name=" + prefix}, []string{"volume", "rm", "-f"}},
	} {
		out, err := exec.CommandContext(ctx, "docker", kind.ls...).Output()
		if ids := strings.Fields(string(out)); err == nil && len(ids) > 0 {
			_ = exec.CommandContext(ctx, "docker", append(kind.rm, ids...)...).Run()
		}
	}
	if imagesBuilt {
		// By reference, not by ID: a concurrent run's tag may name the same (cached) image.
		out, err := exec.CommandContext(ctx, "docker", "images", "--filter", "reference="+imageRepo+"/*:"+imageTag, "--format", "{{.Repository}}:{{.Tag}}").Output()
		if refs := strings.Fields(string(out)); err == nil && len(refs) > 0 {
			_ = exec.CommandContext(ctx, "docker", append([]string{"rmi"}, refs...)...).Run()
		}
	}
}

// removeStale removes the containers, networks and images of earlier runs that did not clean up
// (a crashed or killed test process) once they are older than age; a run never takes that long, so
// a concurrent run's resources are left alone.
func removeStale(age time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, kind := range []struct{ ls, rm []string }{
		{[]string{"ps", "-a", "--filter", "name=pbe2e-"}, []string{"rm", "-f", "-v"}},
		{[]string{"network", "ls", "--filter", "name=pbe2e-"}, []string{"network", "rm"}},
	} {
		out, err := exec.CommandContext(ctx, "docker", append(kind.ls, "--format", "{{.ID}}\t{{.CreatedAt}}")...).Output()
		if err != nil {
			continue
		}
		var old []string
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			id, created, ok := strings.Cut(l, "\t")
			if !ok {
				continue
			}
			// "2026-11-25 23:27:18 +0000 UTC"; network ls adds fractional seconds.
			at, err := time.Parse("2006-01-02 15:04:05.999999999 -0700 MST", created)
			if err == nil && time.Since(at) > age {
				old = append(old, id)
			}
		}
		if len(old) > 0 {
			_ = exec.CommandContext(ctx, "docker", append(kind.rm, old...)...).Run()
		}
	}
	// Images: untag (by reference, never by ID, which a concurrent run's tag may share) the tags of
	// runs that started more than age ago.
	out, err := exec.CommandContext(ctx, "docker", "images", "--filter", "reference="+imageRepo+"/*", "--format", "{{.Repository}}:{{.Tag}}").Output()
	if err != nil {
		return
	}
	var old []string
	for _, ref := range strings.Fields(string(out)) {
		_, tag, _ := strings.Cut(ref, ":")
		secs, _, _ := strings.Cut(tag, "-")
		if start, err := strconv.ParseInt(secs, 10, 64); err != nil || time.Since(time.Unix(start, 0)) > age {
			old = append(old, ref)
		}
	}
	if len(old) > 0 {
		_ = exec.CommandContext(ctx, "docker", append([]string{"rmi"}, old...)...).Run()
	}
}

// needEngine skips the test when no Docker engine is reachable, and builds the images named (once
// per run each).
func needEngine(t *testing.T, names ...string) {
	t.Helper()
	if engineErr != nil {
		if os.Getenv("PODBLOCKS_E2E_REQUIRE") != "" {
			t.Fatalf("PODBLOCKS_E2E_REQUIRE is set but no Docker engine is reachable: %v", engineErr)
		}
		t.Skipf("no Docker engine reachable, skipping the container tests: %v", engineErr)
	}
	imagesMu.Lock()
	defer imagesMu.Unlock()
	var missing []string
	for _, n := range names {
		if !built[n] {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		table, err := buildImages(missing)
		imagesBuilt = true // remove whatever got built, even after a failure
		if err != nil {
			t.Fatalf("build images %v: %v", missing, err)
		}
		sizeTable += table
		for _, n := range missing {
			built[n] = true
		}
	}
}

var (
	imagesMu sync.Mutex
	built    = map[string]bool{}
)

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// buildImages builds the named images with images/build.sh and returns its size table.
func buildImages(names []string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	root := repoRoot()
	cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(root, "images", "build.sh")}, names...)...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "REPO="+imageRepo, "TAG="+imageTag)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("images/build.sh: %v: %s", err, stderr.String())
	}
	return string(out), nil
}

// exampleNames lists the directories under examples/ holding a main package.
func exampleNames(root string) []string {
	dirs, _ := os.ReadDir(filepath.Join(root, "examples"))
	var names []string
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		files, _ := filepath.Glob(filepath.Join(root, "examples", d.Name(), "*.go"))
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			src, err := os.ReadFile(f)
			if err == nil && bytes.HasPrefix(bytes.TrimSpace(stripComments(src)), []byte("package main")) {
				names = append(names, d.Name())
				break
			}
		}
	}
	return names
}

// stripComments drops leading // comment lines (a file's doc comment) so the package clause is first.
func stripComments(src []byte) []byte {
	for {
		src = bytes.TrimLeft(src, " \t\r\n")
		if !bytes.HasPrefix(src, []byte("//")) {
			return src
		}
		i := bytes.IndexByte(src, '\n')
		if i < 0 {
			return nil
		}
		src = src[i+1:]
	}
}

func image(name string) string { return imageRepo + "/" + name + ":" + imageTag }

// docker runs the docker CLI and returns its trimmed stdout.
func docker(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// mustDocker runs docker with a one-minute deadline and fails the test on error.
func mustDocker(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := docker(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// cleanupDocker runs docker in a t.Cleanup, logging (not failing) on error.
func cleanupDocker(t *testing.T, args ...string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := docker(ctx, args...); err != nil {
			t.Logf("cleanup: %v", err)
		}
	})
}

// network creates a user-defined bridge network, removed when the test ends.
func network(t *testing.T, name string) string {
	t.Helper()
	full := prefix + name
	mustDocker(t, "network", "create", full)
	cleanupDocker(t, "network", "rm", full)
	return full
}

// container starts a detached container named prefix+name (docker run -d ARGS...), removed (with
// its anonymous volumes) when the test ends; ARGS hold the run options, the image and its arguments.
// On failure of the test its logs are written to the test log.
func container(t *testing.T, name string, args ...string) string {
	t.Helper()
	full := prefix + name
	// Registered before the run: cleanups run last-in first-out, so the container goes before
	// the networks and volumes it uses.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if t.Failed() {
			logs, _ := exec.CommandContext(ctx, "docker", "logs", "--tail", "40", full).CombinedOutput()
			t.Logf("logs of %s:\n%s", full, logs)
		}
		_, _ = docker(ctx, "unpause", full)
		if _, err := docker(ctx, "rm", "-f", "-v", full); err != nil && !strings.Contains(err.Error(), "No such container") {
			t.Logf("cleanup: %v", err)
		}
	})
	mustDocker(t, append([]string{"run", "-d", "--name", full}, args...)...)
	return full
}

// hostAddr is the 127.0.0.1:PORT the engine published for the container's port (-p 127.0.0.1::PORT).
func hostAddr(t *testing.T, name string, port int) string {
	t.Helper()
	out := mustDocker(t, "port", name, fmt.Sprintf("%d/tcp", port))
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "127.0.0.1:") {
			return strings.TrimSpace(l)
		}
	}
	t.Fatalf("docker port %s %d: no 127.0.0.1 binding in %q", name, port, out)
	return ""
}

// eventually polls cond every 100 ms until it returns nil or the deadline passes; it returns the
// last error.
func eventually(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %v: %w", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var httpClient = &http.Client{Timeout: 3 * time.Second}

// get fetches url and returns status, headers and body.
func get(url string) (int, http.Header, []byte, error) {
	res, err := httpClient.Get(url)
	if err != nil {
		return 0, nil, nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	return res.StatusCode, res.Header, body, err
}

// waitHTTP waits until GET url answers 200.
func waitHTTP(t *testing.T, url string, timeout time.Duration) {
	t.Helper()
	err := eventually(timeout, func() error {
		code, _, body, err := get(url)
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("GET %s: %d %s", url, code, body)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

var errNotYet = errors.New("not yet")
