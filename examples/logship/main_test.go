package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/internal/cmdline/cmdlinetest"
	"github.com/podblocks/podblocks/internal/freeport"
	"github.com/podblocks/podblocks/internal/syncbuf"
	"github.com/podblocks/podblocks/internal/testbin"
)

var bin string

func TestMain(m *testing.M) { testbin.Main(m, "logship", &bin) }

type record struct {
	File string `json:"file"`
	Line string `json:"line"`
}

func decode(t *testing.T, data []byte) []record {
	t.Helper()
	var out []record
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		var r record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("output line %q: %v", sc.Text(), err)
		}
		if r.File == "" {
			t.Fatalf("output line %q has no file", sc.Text())
		}
		out = append(out, r)
	}
	return out
}

func appendLines(t *testing.T, path string, lines ...string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, l := range lines {
		fmt.Fprintln(f, l)
	}
}

func numbered(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("n=%06d", i))
	}
	return out
}

func start(t *testing.T, stdout io.Writer, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"-poll", "50ms"}, args...)...)
	cmd.Stdout = stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

func term(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("logship exit: %v", err)
	}
}

func TestStdoutSink(t *testing.T) {
	dir := t.TempDir()
	appendLines(t, filepath.Join(dir, "a.log"), `he said "hi"`, "tab\there")
	var out syncbuf.Buffer
	cmd := start(t, &out, "-glob", filepath.Join(dir, "*.log"), "-sink", "stdout")
	await.True(t, "2 lines", 20*time.Second, func() bool { return bytes.Count(out.Bytes(), []byte("\n")) >= 2 })
	term(t, cmd)
	got := decode(t, out.Bytes())
	want := []record{{filepath.Join(dir, "a.log"), `he said "hi"`}, {filepath.Join(dir, "a.log"), "tab\there"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}

// TestStdoutRaw follows a file through a rename rotation with -format raw: the lines come out as they
// were written, like tail -F prints them.
func TestStdoutRaw(t *testing.T) {
	dir := t.TempDir()
	app := filepath.Join(dir, "app.log")
	appendLines(t, app, `he said "hi"`, "tab\there")
	var out syncbuf.Buffer
	cmd := start(t, &out, "-glob", app, "-format", "raw")
	await.True(t, "2 lines", 20*time.Second, func() bool { return bytes.Count(out.Bytes(), []byte("\n")) >= 2 })
	old, err := os.OpenFile(app, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(app, app+".1"); err != nil {
		t.Fatal(err)
	}
	appendLines(t, app, "new file")
	await.True(t, "3 lines", 20*time.Second, func() bool { return bytes.Count(out.Bytes(), []byte("\n")) >= 3 })
	fmt.Fprintln(old, "old file, after the rename") // read from the renamed file
	old.Close()
	await.True(t, "4 lines", 20*time.Second, func() bool { return bytes.Count(out.Bytes(), []byte("\n")) >= 4 })
	term(t, cmd)
	want := "he said \"hi\"\ntab\there\nnew file\nold file, after the rename\n"
	if diff := cmp.Diff(want, string(out.Bytes())); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}

// TestBadFlags: a flag value logship cannot use, found before it starts, is a usage error (exit 2,
// naming the flag) that leaves the -sink file alone; a failure while starting, such as a sink it
// cannot open, exits 1.
func TestBadFlags(t *testing.T) {
	dir := t.TempDir()
	missing, out := filepath.Join(dir, "no-such-dir", "out.jsonl"), filepath.Join(dir, "out.jsonl")
	sink := "file:" + out
	cmdlinetest.TestExits(t, exec.Command(bin), []cmdlinetest.Exit{
		{Args: []string{"-sink", "stdout"}, Status: 2, Stderr: "logship: -glob is required"},
		// The flag package stops at the first argument that is no flag: the flags after it were dropped.
		{Args: []string{"-glob", "/x/*.log", "oops", "-sink", "kafka:x"}, Status: 2, Stderr: `logship: unexpected arguments ["oops" "-sink" "kafka:x"]`},
		{Args: []string{"-glob", "/x/*.log", "-sink", "kafka:x"}, Status: 2, Stderr: `logship: -sink "kafka:x": want stdout, file:PATH or http:URL`},
		{Args: []string{"-glob", "/x/*.log", "-sink", "file:"}, Status: 2, Stderr: `logship: -sink "file:"`},
		{Args: []string{"-glob", "/x/*.log", "-sink", "http:nohost"}, Status: 2, Stderr: `logship: -sink "http:nohost"`},
		// A port no request can reach was retried for as long as logship ran.
		{Args: []string{"-glob", "/x/*.log", "-sink", "http://127.0.0.1:99999/logs"}, Status: 2, Stderr: `logship: -sink "http://127.0.0.1:99999/logs": port "99999": want a number from 1 to 65535`},
		{Args: []string{"-glob", "/x/*/y.log"}, Status: 2, Stderr: `logship: sidecar: config globs: "/x/*/y.log": wildcards only in the last element`},
		// An empty item would be the pattern ".".
		{Args: []string{"-glob", "/x/*.log,", "-sink", sink}, Status: 2, Stderr: `logship: -glob "/x/*.log,": empty item in the comma-separated list`},
		{Args: []string{"-glob", ",", "-sink", sink}, Status: 2, Stderr: `logship: -glob ",": empty item in the comma-separated list`},
		{Args: []string{"-glob", "/x/*.log", "-format", "xml"}, Status: 2, Stderr: `logship: -format "xml": want json or raw`},
		{Args: []string{"-glob", "/x/*.log", "-format", "raw", "-sink", "http://127.0.0.1:1/"}, Status: 2, Stderr: "logship: -format raw: only with -sink stdout or file:PATH"},
		{Args: []string{"-glob", "/x/*.log", "-splice"}, Status: 2, Stderr: "logship: -splice: only with -format raw"},
		// Neither the file sink nor joined records splice: -splice would be ignored.
		{Args: []string{"-glob", "/x/*.log", "-format", "raw", "-splice", "-sink", sink}, Status: 2, Stderr: "logship: -splice: only with -sink stdout"},
		{Args: []string{"-glob", "/x/*.log", "-format", "raw", "-splice", "-multiline", "^\\S"}, Status: 2, Stderr: "logship: -splice: not with -multiline"},
		{Args: []string{"-glob", "/x/*.log", "-multiline", "("}, Status: 2, Stderr: "logship: -multiline: error parsing regexp"},
		{Args: []string{"-glob", "/x/*.log", "-poll", "0s"}, Status: 2, Stderr: "logship: -poll 0s: want more than 0"},
		{Args: []string{"-glob", "/x/*.log", "-max-line", "0"}, Status: 2, Stderr: "logship: -max-line 0: want more than 0"},
		{Args: []string{"-glob", "/x/*.log", "-sink", "file:" + missing}, Status: 1, Stderr: "logship: open sink:"},
		// A file sink the Tailer would follow shipped its own output, growing without end.
		{Args: []string{"-glob", filepath.Join(dir, "*.jsonl"), "-sink", sink}, Status: 2,
			Stderr: fmt.Sprintf(`logship: -sink %q: the file sink matches -glob %q`, sink, filepath.Join(dir, "*.jsonl"))},
		{Args: []string{"-glob", "f1/logs/*.log", "-sink", "file:f1/logs/shipped.log"}, Status: 2,
			Stderr: `logship: -sink "file:f1/logs/shipped.log": the file sink matches -glob "f1/logs/*.log"`},
		{Args: []string{"-glob", "/x/*.log," + filepath.Join(dir, "out"), "-sink", "file:" + filepath.Join(dir, "out.1")}, Status: 2,
			Stderr: "logship: -sink \"file:" + filepath.Join(dir, "out.1") + `": the file sink matches -glob`},
	})
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("after usage errors: stat %s: %v; want it not created", out, err)
	}
}

// TestUsageErrorLeavesSink: a -glob the Tailer refuses is a usage error found before the file sink
// is opened: the sink is not created, and one that exists is not touched.
func TestUsageErrorLeavesSink(t *testing.T) {
	dir := t.TempDir()
	out, kept := filepath.Join(dir, "out.jsonl"), filepath.Join(dir, "kept.jsonl")
	must(t, os.WriteFile(kept, []byte("{\"file\":\"a\",\"line\":\"x\"}\n"), 0o644))
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	must(t, os.Chtimes(kept, old, old))
	const globs = `logship: sidecar: config globs: "/x/*/y.log": wildcards only in the last element`
	cmdlinetest.TestExits(t, exec.Command(bin, "-glob", "/x/*/y.log"), []cmdlinetest.Exit{
		{Args: []string{"-sink", "file:" + out}, Status: 2, Stderr: globs},
		{Args: []string{"-sink", "file:" + out, "-state", filepath.Join(dir, "state.json")}, Status: 2, Stderr: globs},
		{Args: []string{"-sink", "file:" + kept, "-format", "raw"}, Status: 2, Stderr: globs},
	})
	for _, p := range []string{out, filepath.Join(dir, "state.json")} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("after a usage error: stat %s: %v; want it not created", p, err)
		}
	}
	if fi, err := os.Stat(kept); err != nil || !fi.ModTime().Equal(old) || fi.Size() == 0 {
		t.Errorf("after a usage error: stat %s: %v, %v; want it as it was (modified %v)", kept, fi, err, old)
	}
}

// TestSIGKILLFileSinkExactlyOnce kills the built binary at random moments while the application
// writes and rotates (logrotate style: app.log.1 -> app.log.2, app.log -> app.log.1): every line
// reaches the file sink exactly once.
func TestSIGKILLFileSinkExactlyOnce(t *testing.T) {
	for _, format := range []string{"json", "raw"} {
		t.Run(format, func(t *testing.T) { testSIGKILLFileSinkExactlyOnce(t, format) })
	}
}

func testSIGKILLFileSinkExactlyOnce(t *testing.T, format string) {
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	if err := os.Mkdir(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	out, state := filepath.Join(dir, "out.jsonl"), filepath.Join(dir, "state.json")
	args := []string{"-glob", filepath.Join(logs, "*.log"), "-state", state, "-sink", "file:" + out, "-format", format}
	cmd := start(t, nil, args...)
	await.True(t, "first checkpoint", 20*time.Second, func() bool { _, err := os.Stat(state); return err == nil })

	const total, perFile = 3000, 40
	app := filepath.Join(logs, "app.log")
	writerDone := make(chan error, 1)
	go func() {
		rotations := 0
		f, err := os.OpenFile(app, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		for i := 0; i < total && err == nil; i++ {
			if _, err = fmt.Fprintf(f, "n=%06d\n", i); err != nil {
				break
			}
			if i%5 == 4 {
				time.Sleep(5 * time.Millisecond)
			}
			if i%perFile == perFile-1 {
				rotations++
				for k := rotations; k >= 1 && err == nil; k-- {
					if err = os.Rename(fmt.Sprintf("%s.%d", app, k), fmt.Sprintf("%s.%d", app, k+1)); os.IsNotExist(err) {
						err = nil
					}
				}
				if err == nil {
					err = os.Rename(app, app+".1")
				}
				f.Close()
				if err == nil {
					f, err = os.OpenFile(app, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
				}
			}
		}
		f.Close()
		writerDone <- err
	}()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	kills := 0
	for running := true; running; {
		select {
		case err := <-writerDone:
			if err != nil {
				t.Fatalf("writer: %v", err)
			}
			running = false
		case <-time.After(time.Duration(50+rng.IntN(300)) * time.Millisecond):
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			kills++
			cmd = start(t, nil, args...)
		}
	}
	countLines := func() int { data, _ := os.ReadFile(out); return bytes.Count(data, []byte("\n")) }
	deadline := time.Now().Add(60 * time.Second)
	for countLines() < total && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	term(t, cmd)
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	if format == "raw" {
		for _, l := range strings.SplitAfter(string(data), "\n") {
			if l != "" {
				counts[strings.TrimSuffix(l, "\n")]++
			}
		}
	} else {
		for _, r := range decode(t, data) {
			counts[r.Line]++
		}
	}
	var bad []string
	for _, l := range numbered(0, total) {
		if counts[l] != 1 {
			bad = append(bad, fmt.Sprintf("%s x%d", l, counts[l]))
		}
	}
	t.Logf("%d lines, %d rotations, %d SIGKILLs, %d output lines", total, total/perFile, kills, countLines())
	if len(bad) > 0 {
		t.Errorf("%d lines not shipped exactly once, first: %v", len(bad), bad[:min(10, len(bad))])
	}
	if kills < 5 {
		t.Errorf("only %d kills", kills)
	}
}

// TestRotationsWhileDownOldestFirst stops logship, rotates twice, and restarts it: the renamed file
// is read to its end and the rotated siblings that appeared meanwhile are read oldest first.
func TestRotationsWhileDownOldestFirst(t *testing.T) {
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	if err := os.Mkdir(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	out, state, app := filepath.Join(dir, "out.jsonl"), filepath.Join(dir, "state.json"), filepath.Join(logs, "app.log")
	args := []string{"-glob", filepath.Join(logs, "*.log"), "-state", state, "-sink", "file:" + out}
	appendLines(t, app, numbered(0, 3)...)
	cmd := start(t, nil, args...)
	await.True(t, "3 lines", 20*time.Second, func() bool { data, _ := os.ReadFile(out); return bytes.Count(data, []byte("\n")) >= 3 })
	term(t, cmd)

	appendLines(t, app, numbered(3, 5)...)
	must(t, os.Rename(app, app+".1"))
	appendLines(t, app, numbered(5, 9)...)
	must(t, os.Rename(app+".1", app+".2"))
	must(t, os.Rename(app, app+".1"))
	appendLines(t, app, numbered(9, 10)...)
	now := time.Now()
	for i, p := range []string{app + ".2", app + ".1", app} {
		mt := now.Add(time.Duration(i-3) * time.Second)
		must(t, os.Chtimes(p, mt, mt))
	}
	cmd = start(t, nil, args...)
	await.True(t, "10 lines", 20*time.Second, func() bool { data, _ := os.ReadFile(out); return bytes.Count(data, []byte("\n")) >= 10 })
	time.Sleep(100 * time.Millisecond)
	term(t, cmd)
	data, _ := os.ReadFile(out)
	var got []string
	for _, r := range decode(t, data) {
		got = append(got, r.Line)
	}
	if diff := cmp.Diff(numbered(0, 10), got); diff != "" {
		t.Errorf("shipped, in order (-want +got):\n%s", diff)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestHTTPSinkRetriesUntilAccepted(t *testing.T) {
	var mu sync.Mutex
	var body bytes.Buffer
	fails := 2
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if fails > 0 {
			fails--
			http.Error(w, "not yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.Copy(&body, r.Body)
	}))
	defer srv.Close()
	dir := t.TempDir()
	appendLines(t, filepath.Join(dir, "a.log"), "one", "two")
	cmd := start(t, nil, "-glob", filepath.Join(dir, "*.log"), "-sink", "http:"+srv.URL)
	read := func() []byte { mu.Lock(); defer mu.Unlock(); return append([]byte(nil), body.Bytes()...) }
	await.True(t, "2 posted lines", 20*time.Second, func() bool { return bytes.Count(read(), []byte("\n")) >= 2 })
	term(t, cmd)
	var got []string
	for _, r := range decode(t, read()) {
		got = append(got, r.Line)
	}
	if diff := cmp.Diff([]string{"one", "two"}, got); diff != "" {
		t.Errorf("posted (-want +got):\n%s", diff)
	}
}

// TestReusedInodeToldApart: the checkpoint says the inode of app.log held another file, read up to
// some offset; its fingerprint does not match app.log's content, so app.log is read from the start.
func TestReusedInodeToldApart(t *testing.T) {
	dir := t.TempDir()
	logs := filepath.Join(dir, "logs")
	must(t, os.Mkdir(logs, 0o755))
	out, state, app := filepath.Join(dir, "out.jsonl"), filepath.Join(dir, "state.json"), filepath.Join(logs, "app.log")
	args := []string{"-glob", filepath.Join(logs, "*.log"), "-state", state, "-sink", "file:" + out}
	appendLines(t, app, "old-0", "old-1")
	cmd := start(t, nil, args...)
	await.True(t, "2 lines", 20*time.Second, func() bool { data, _ := os.ReadFile(out); return bytes.Count(data, []byte("\n")) >= 2 })
	term(t, cmd)
	// The file is deleted and a new one takes its inode (forced here: same inode, new content).
	f, err := os.OpenFile(app, os.O_WRONLY|os.O_TRUNC, 0)
	must(t, err)
	fmt.Fprintln(f, "new-0-longer")
	fmt.Fprintln(f, "new-1-longer")
	f.Close()
	cmd = start(t, nil, args...)
	await.True(t, "4 lines", 20*time.Second, func() bool { data, _ := os.ReadFile(out); return bytes.Count(data, []byte("\n")) >= 4 })
	time.Sleep(100 * time.Millisecond)
	term(t, cmd)
	data, _ := os.ReadFile(out)
	var got []string
	for _, r := range decode(t, data) {
		got = append(got, r.Line)
	}
	if diff := cmp.Diff([]string{"old-0", "old-1", "new-0-longer", "new-1-longer"}, got); diff != "" {
		t.Errorf("shipped (-want +got):\n%s", diff)
	}
}

// TestHelpAndUnknownFlag: -h prints the usage and exits 0; an unknown flag exits 2 with the flag
// package's message, as flag.ExitOnError would.
func TestHelpAndUnknownFlag(t *testing.T) {
	cmdlinetest.TestHelpAndBadFlag(t, "-glob", exec.Command(bin))
}

// TestMetrics: -metrics ADDR serves the tailer's metrics at /metrics, as examples/reloader's and
// examples/log-adapter's -metrics do, among them the checkpoint's commits and errors; an address
// with an impossible port exits 2 and a port in use exits 1, before anything is shipped.
func TestMetrics(t *testing.T) {
	dir := t.TempDir()
	appendLines(t, filepath.Join(dir, "a.log"), numbered(0, 3)...)
	addr := freeport.TCP(t)
	out := filepath.Join(dir, "out.jsonl")
	cmd := start(t, io.Discard, "-glob", filepath.Join(dir, "*.log"), "-state", filepath.Join(dir, "state.json"),
		"-sink", "file:"+out, "-metrics", addr)
	var body string
	await.True(t, "3 lines counted on /metrics", 20*time.Second, func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return strings.Contains(body, "podblocks_sidecar_tailer_lines_total 3\n")
	})
	for _, m := range []string{"podblocks_sidecar_tailer_checkpoint_commits_total", "podblocks_sidecar_tailer_checkpoint_errors_total 0", "podblocks_sidecar_tailer_files 1"} {
		if !strings.Contains(body, m) {
			t.Errorf("/metrics has no %q:\n%s", m, body)
		}
	}
	term(t, cmd)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	busyOut := filepath.Join(dir, "busy.jsonl")
	cmdlinetest.TestExits(t, exec.Command(bin, "-glob", filepath.Join(dir, "*.log")), []cmdlinetest.Exit{
		{Args: []string{"-metrics", "127.0.0.1:99999"}, Status: 2, Stderr: `logship: -metrics "127.0.0.1:99999": port "99999"`},
		{Args: []string{"-metrics", ln.Addr().String(), "-sink", "file:" + busyOut}, Status: 1, Stderr: "address already in use"},
	})
	if _, err := os.Stat(busyOut); !os.IsNotExist(err) {
		t.Errorf("with the -metrics port in use: stat %s: %v; want it not created", busyOut, err)
	}
}

// TestStateDirectoryCreated: a -state in a directory that does not exist yet (the manifest's
// /var/log/app/.logship/state.json on a fresh emptyDir) is created, and a restart resumes from it
// instead of shipping everything again; a -state that cannot be written exits 1 at start, naming
// it. logship used to warn that the checkpoint could not be written, about four times a second,
// ship on, and exit 0.
func TestStateDirectoryCreated(t *testing.T) {
	dir := t.TempDir()
	app := filepath.Join(dir, "app.log")
	appendLines(t, app, numbered(0, 5)...)
	state := filepath.Join(dir, ".logship", "state.json")
	out := filepath.Join(dir, "out.jsonl")
	args := []string{"-glob", app, "-state", state, "-sink", "file:" + out}
	for run := range 2 {
		cmd := start(t, io.Discard, args...)
		await.True(t, "the checkpoint at the file's end", 20*time.Second, func() bool {
			data, err := os.ReadFile(state)
			return err == nil && bytes.Contains(data, fmt.Appendf(nil, `"offset":%d`, (run+1)*len("n=000000\n")*5))
		})
		term(t, cmd)
		appendLines(t, app, numbered(5, 10)...)
	}
	data, err := os.ReadFile(out)
	must(t, err)
	var got []string
	for _, r := range decode(t, data) {
		got = append(got, r.Line)
	}
	if diff := cmp.Diff(numbered(0, 10), got); diff != "" {
		t.Errorf("shipped over two runs (-want +got):\n%s", diff)
	}

	bad := filepath.Join(dir, "bad", "state.json")
	must(t, os.MkdirAll(bad+".tmp", 0o755)) // the file each commit writes first, then renames
	cmdlinetest.TestExits(t, exec.Command(bin, "-glob", app, "-sink", "file:"+filepath.Join(dir, "bad.jsonl")), []cmdlinetest.Exit{
		{Args: []string{"-state", bad}, Status: 1, Stderr: "logship: checkpoint " + bad + ": write checkpoint:"},
	})
}

// TestCopyTruncateWhileStopped: logrotate's copytruncate runs while logship is stopped (SIGTERM or
// SIGKILL). The restart finds app.log truncated and app.log.1 a copy of what it had shipped, and
// ships only the lines appended after the truncation. It used to ship the whole copy again (1500
// records for 800 lines).
func TestCopyTruncateWhileStopped(t *testing.T) {
	for _, stop := range []string{"SIGTERM", "SIGKILL"} {
		t.Run(stop, func(t *testing.T) {
			dir := t.TempDir()
			app := filepath.Join(dir, "app.log")
			appendLines(t, app, numbered(0, 700)...)
			state, out := filepath.Join(dir, "state.json"), filepath.Join(dir, "out.jsonl")
			args := []string{"-glob", filepath.Join(dir, "*.log"), "-state", state, "-sink", "file:" + out}
			shipped := func() []string {
				data, err := os.ReadFile(out)
				must(t, err)
				var lines []string
				for _, r := range decode(t, data[:bytes.LastIndexByte(data, '\n')+1]) {
					lines = append(lines, r.Line)
				}
				return lines
			}
			cmd := start(t, io.Discard, args...)
			await.True(t, "700 lines committed", 20*time.Second, func() bool {
				data, err := os.ReadFile(state)
				return err == nil && bytes.Contains(data, fmt.Appendf(nil, `"offset":%d`, 700*len("n=000000\n")))
			})
			if stop == "SIGKILL" {
				must(t, cmd.Process.Kill())
				_ = cmd.Wait()
			} else {
				term(t, cmd)
			}
			data, err := os.ReadFile(app)
			must(t, err)
			must(t, os.WriteFile(app+".1", data, 0o644))
			must(t, os.Truncate(app, 0))
			appendLines(t, app, numbered(700, 800)...)

			cmd = start(t, io.Discard, args...)
			// Both files committed at their ends: app.log.1 as the copy found (from the offset
			// app.log had reached, or, wrongly, read again from its start).
			await.True(t, "both files committed at their ends", 20*time.Second, func() bool {
				data, err := os.ReadFile(state)
				return err == nil && bytes.Count(data, fmt.Appendf(nil, `"offset":%d`, 700*len("n=000000\n"))) == 1 &&
					bytes.Contains(data, fmt.Appendf(nil, `"offset":%d`, 100*len("n=000000\n"))) && bytes.Contains(data, []byte("app.log.1"))
			})
			term(t, cmd)
			if diff := cmp.Diff(numbered(0, 800), shipped()); diff != "" {
				t.Errorf("shipped (-want +got):\n%s", diff)
			}
		})
	}
}
