package lifecycle_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"

	"github.com/podblocks/podblocks/lifecycle"
)

// service is a component that says when it starts and stops, and is ready once it has started.
type service struct {
	name  string
	ready chan struct{}
}

func (s *service) Ready() <-chan struct{} { return s.ready }

func (s *service) Run(ctx context.Context) error {
	fmt.Println("start", s.name)
	close(s.ready)
	<-ctx.Done()
	fmt.Println("stop", s.name)
	return nil
}

// A Group starts components in order, each once the one before is ready, and stops them in reverse.
func ExampleGroup() {
	var g lifecycle.Group
	for _, name := range []string{"db-pool", "cache", "http"} {
		g.Add(name, &service{name: name, ready: make(chan struct{})})
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-g.Ready()
		cancel()
	}()
	fmt.Println("Run:", g.Run(ctx))
	// Output:
	// start db-pool
	// start cache
	// start http
	// stop http
	// stop cache
	// stop db-pool
	// Run: <nil>
}

// The hook server answers probes the way kube-apiserver does.
func ExampleServer() {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	srv, _ := lifecycle.NewServer(lifecycle.WithListener(ln))
	srv.AddCheck(lifecycle.Readyz, lifecycle.Check{Name: "db", Func: func(context.Context) error {
		return errors.New("connection refused")
	}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- srv.Run(ctx) }()
	<-srv.Ready()
	srv.SetState(lifecycle.StateReady)

	resp, _ := http.Get("http://" + srv.Addr() + "/readyz?verbose")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode)
	fmt.Print(string(body))
	cancel()
	<-done
	// Output:
	// 500
	// [+]lifecycle ok
	// [-]db failed: connection refused
	// readyz check failed
}

// Redact hides secrets in configuration dumps such as /configz.
func ExampleRedact() {
	type config struct {
		Listen   string `json:"listen"`
		Password string `json:"password"`
		License  string `json:"license" podblocks:"secret"`
	}
	b, _ := json.Marshal(lifecycle.Redact(config{Listen: ":8080", Password: "hunter2", License: "ABC-123"}))
	fmt.Println(string(b))
	// Output:
	// {"license":"[REDACTED]","listen":":8080","password":"[REDACTED]"}
}

// A Shedder admits critical work longest and sheds sheddable work first.
func ExampleShedder() {
	s, _ := lifecycle.NewShedder(4)
	for _, p := range []lifecycle.Priority{lifecycle.Sheddable, lifecycle.Sheddable, lifecycle.Sheddable, lifecycle.Default, lifecycle.Critical, lifecycle.Critical} {
		fmt.Println(p, s.Acquire(p) == nil)
	}
	// Output:
	// sheddable true
	// sheddable true
	// sheddable false
	// default true
	// critical true
	// critical false
}

// ProcessPriority reads the pod's priority from the downward API.
func ExampleProcessPriority() {
	os.Setenv("POD_PRIORITY", "2000000000") // system-cluster-critical
	p, _ := lifecycle.ProcessPriority(os.Getenv)
	fmt.Println(p)
	// Output: critical
}
