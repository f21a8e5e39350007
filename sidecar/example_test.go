package sidecar_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/podblocks/podblocks/sidecar"
	"github.com/podblocks/podblocks/sidecartest"
)

// A log-saver sidecar: follow /shared/logs/*.log into a file, with a checkpoint, so that a crash and
// restart neither lose nor duplicate a line.
func ExampleTailer() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	os.WriteFile(filepath.Join(dir, "app.log"), []byte("started\nserving on :8080\n"), 0o644)

	sink, err := sidecar.OpenFileSink(filepath.Join(dir, "shipped.jsonl"))
	if err != nil {
		panic(err)
	}
	defer sink.Close()
	tailer, err := sidecar.NewTailer([]string{filepath.Join(dir, "*.log")}, sink,
		sidecar.WithCheckpoint(filepath.Join(dir, "state.json")))
	if err != nil {
		panic(err)
	}
	runUntil(tailer, func() bool {
		data, _ := os.ReadFile(filepath.Join(dir, "shipped.jsonl"))
		return len(data) > 0 && data[len(data)-1] == '\n' && len(splitLines(data)) == 2
	})
	data, _ := os.ReadFile(filepath.Join(dir, "shipped.jsonl"))
	for _, l := range splitLines(data) {
		fmt.Println(l[len(`{"file":"`)+len(dir)+1:])
	}
	// Output:
	// app.log","line":"started","offset":0}
	// app.log","line":"serving on :8080","offset":8}
}

// runUntil runs tailer until shipped reports true (a real sidecar runs it until SIGTERM).
func runUntil(tailer *sidecar.Tailer, shipped func() bool) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tailer.Run(ctx) }()
	for !shipped() {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
}

func splitLines(b []byte) []string {
	var out []string
	start := 0
	for i, c := range b {
		if c == '\n' {
			out = append(out, string(b[start:i]))
			start = i + 1
		}
	}
	return out
}

// Reload an application when its ConfigMap volume changes.
func ExampleReloader() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	sidecartest.WriteAtomic(dir, map[string]string{"app.yaml": "replicas: 1"})

	reloaded := make(chan string, 1)
	r, err := sidecar.NewReloader([]string{dir}, func(context.Context) error {
		data, err := os.ReadFile(filepath.Join(dir, "app.yaml"))
		reloaded <- string(data)
		return err
	})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	<-r.Ready()
	sidecartest.WriteAtomic(dir, map[string]string{"app.yaml": "replicas: 3"}) // the kubelet's ..data swap
	fmt.Println("reloaded with", <-reloaded)
	cancel()
	<-done
	// Output:
	// reloaded with replicas: 3
}

// Encode a record the way the sinks ship it.
func ExampleAppendJSON() {
	out := sidecar.AppendJSON(nil, sidecar.Record{File: "/var/log/app.log", Line: []byte(`GET /a "ok"`), Offset: 120})
	fmt.Print(string(out))
	// Output:
	// {"file":"/var/log/app.log","line":"GET /a \"ok\"","offset":120}
}

// The Kubernetes streaming sidecar, `tail -n+1 -F app.log` on the sidecar's stdout so that
// `kubectl logs` shows the application's lines, with rotation and restarts handled: raw lines.
func ExampleWithFormat() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	os.WriteFile(filepath.Join(dir, "app.log"), []byte("started\nserving on :8080\n"), 0o644)

	out, err := os.Create(filepath.Join(dir, "stdout")) // os.Stdout in a sidecar
	if err != nil {
		panic(err)
	}
	defer out.Close()
	sink := sidecar.NewWriterSink(out, sidecar.WithFormat(sidecar.FormatRaw))
	tailer, err := sidecar.NewTailer([]string{filepath.Join(dir, "app.log")}, sink,
		sidecar.WithCheckpoint(filepath.Join(dir, "state.json")))
	if err != nil {
		panic(err)
	}
	stdout := func() []byte { data, _ := os.ReadFile(out.Name()); return data }
	runUntil(tailer, func() bool { return len(splitLines(stdout())) == 2 })
	fmt.Print(string(stdout()))
	// Output:
	// started
	// serving on :8080
}
