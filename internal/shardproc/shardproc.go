// Package shardproc starts real memcached, redis-server and nutcracker processes on loopback for the
// sharding ambassador's tests, benchmarks and tour act.
//
// # Lifecycle
//
// Start* returns a running Proc; Stop kills it and waits for it to exit. Stop is idempotent.
//
// # Concurrency
//
// A Proc's methods are safe for concurrent use.
package shardproc

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/podblocks/podblocks/internal/freeport"
	"github.com/podblocks/podblocks/internal/pdeathsig"
)

// Well-known binary paths (Debian packages memcached, redis-server, nutcracker).
var (
	MemcachedPath  = "/usr/bin/memcached"
	RedisPath      = "/usr/bin/redis-server"
	NutcrackerPath = "/usr/sbin/nutcracker"
)

// ErrMissing is returned when the binary to start is not installed.
var ErrMissing = errors.New("shardproc: binary not installed")

// Proc is one started process listening on Addr.
type Proc struct {
	Addr string
	Port int
	name string
	args []string
	// attr, if set, gives the attributes the process starts with (before the parent-death signal).
	attr func() *syscall.SysProcAttr

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// FreePort returns a currently unused loopback TCP port (freeport.Port).
func FreePort() (int, error) { return freeport.Port() }

// FreePorts returns n distinct currently unused loopback TCP ports.
func FreePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close() // held until all are picked, so they are distinct
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Running reports whether process pid exists and is no zombie, as /proc/PID/stat shows it (Linux);
// false where there is no /proc.
func Running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state is the field after the ") " that closes the command name.
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] != 'Z'
}

// Have reports whether the binary at path exists.
func Have(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// memcachedConns is the connection limit (-c) StartMemcached asks for where the open-files limit
// allows it.
const memcachedConns = 4096

// StartMemcached starts memcached on a free loopback port, as user nobody, with a limit of 4096
// connections (-c), or of this process's hard limit of open files where that is lower: memcached
// sets both its limits of open files to -c and exits if it cannot, and as user nobody (or any
// user but root) it cannot raise the hard limit it inherits.
func StartMemcached() (*Proc, error) {
	conns := strconv.Itoa(min(memcachedConns, nofileHard()))
	return start(MemcachedPath, func(port int) []string {
		return []string{"-l", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "0", "-u", "nobody", "-m", "64", "-t", "1", "-c", conns}
	}, dropRootAttr)
}

// StartRedis starts redis-server on a free loopback port, without persistence.
func StartRedis() (*Proc, error) {
	return start(RedisPath, func(port int) []string {
		return []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--protected-mode", "no", "--daemonize", "no", "--loglevel", "warning"}
	}, nil)
}

// StartNutcracker starts nutcracker with the config file conf, its stats on statsPort; it waits until
// listenAddr (one of the config's pools) accepts connections.
func StartNutcracker(conf string, statsPort int, listenAddr string) (*Proc, error) {
	if !Have(NutcrackerPath) {
		return nil, fmt.Errorf("%w: %s", ErrMissing, NutcrackerPath)
	}
	p := &Proc{Addr: listenAddr, name: NutcrackerPath,
		args: []string{"-c", conf, "-s", strconv.Itoa(statsPort), "-a", "127.0.0.1", "-o", os.DevNull, "-v", "0"}}
	if err := p.Start(); err != nil {
		return nil, err
	}
	return p, nil
}

func start(path string, args func(port int) []string, attr func() *syscall.SysProcAttr) (*Proc, error) {
	if !Have(path) {
		return nil, fmt.Errorf("%w: %s", ErrMissing, path)
	}
	var last error
	for range 5 { // the free port can be taken by someone else before we bind it
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		p := &Proc{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Port: port, name: path, args: args(port), attr: attr}
		if last = p.Start(); last == nil {
			return p, nil
		}
	}
	return nil, last
}

// Start (re)starts the process with its original arguments and waits until Addr accepts connections.
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return errors.New("shardproc: already running")
	}
	cmd := exec.Command(p.name, p.args...)
	stderr := &tail{max: stderrTail}
	cmd.Stdout, cmd.Stderr = nil, stderr
	// The kernel kills the process when this one dies (Linux), even by SIGKILL: no server is left
	// behind on a port. The signal follows the thread that starts the child, so the goroutine that
	// starts and waits for it keeps its thread locked, and ends with it (see pdeathsig).
	var attr *syscall.SysProcAttr
	if p.attr != nil {
		attr = p.attr()
	}
	cmd.SysProcAttr = pdeathsig.Set(attr)
	started, done := make(chan error, 1), make(chan struct{})
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = cmd.Wait()
		close(done)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("shardproc: start %s: %w", p.name, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", p.Addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-done:
			return fmt.Errorf("shardproc: %s exited before listening on %s (%v); its stderr ends: %q",
				p.name, p.Addr, cmd.ProcessState, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("shardproc: %s not listening on %s: %w", p.name, p.Addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.cmd, p.done = cmd, done
	return nil
}

// stderrTail is how much of the end of a process's stderr Start keeps for its error.
const stderrTail = 4 << 10

// tail is an io.Writer that keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	if len(p) > t.max {
		p = p[len(p)-t.max:]
	}
	if drop := len(t.b) + len(p) - t.max; drop > 0 {
		t.b = append(t.b[:0], t.b[drop:]...)
	}
	t.b = append(t.b, p...)
	return n, nil
}

// String returns the bytes kept.
func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// Pause stops the process with SIGSTOP: it keeps its sockets but answers nothing, like a hung
// server. Resume continues it. On systems without SIGSTOP (Windows) it returns an error wrapping
// errors.ErrUnsupported.
func (p *Proc) Pause() error { return p.control(stopProcess) }

// Resume continues a paused process (SIGCONT). On systems without SIGCONT (Windows) it returns an
// error wrapping errors.ErrUnsupported.
func (p *Proc) Resume() error { return p.control(continueProcess) }

// control applies f to the running process.
func (p *Proc) control(f func(*os.Process) error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return errors.New("shardproc: not running")
	}
	return f(p.cmd.Process)
}

// Stop kills the process and waits for it to exit. It is a no-op on a stopped process.
func (p *Proc) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	p.cmd, p.done = nil, nil
}
