package lifecycle_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"

	"github.com/podblocks/podblocks/internal/await"
	"github.com/podblocks/podblocks/internal/syncbuf"
	"github.com/podblocks/podblocks/lifecycle"
)

// The RunAsInit tests run this test binary as PID 1 of a new PID namespace. It calls RunAsInit,
// which re-executes it, and the re-executed copy plays the program named by initRoleEnv.
const initRoleEnv = "LIFECYCLE_TEST_INIT_ROLE"

// initWait bounds every wait for a process in these tests.
const initWait = 20 * time.Second

// TestInitProcess is the program the RunAsInit tests run; without initRoleEnv it does nothing.
func TestInitProcess(t *testing.T) {
	role := os.Getenv(initRoleEnv)
	if role == "" {
		return
	}
	lifecycle.RunAsInit()
	os.Exit(playInitRole(role))
}

// playInitRole plays one role of the RunAsInit tests and returns its exit code. Roles:
//
//	comm           print its name as ps shows it (/proc/self/comm), and exit 0
//	whoami         print whether it is PID 1, its parent's pid and InitEnv, and exit 0
//	group          print whether it leads its process group and the terminal's foreground, and exit
//	               with the number of the SIGINT that comes next
//	exit:N         exit N
//	kill:N         kill itself with signal N
//	sleep          print "ready" and block (signals keep their default action)
//	signals        catch the forwarded signals, print "ready", and exit with the number of the first
//	orphans        run orphan-parent, wait until init reaped its orphans, print "reaped", wait for EOF
//	orphan-parent  start 3 wait-eof children, print their pids, exit 0 without waiting for them
//	wait-eof       read standard input to its end, exit 0
//	exec           run 12 exit:N children at once and check every exit status
func playInitRole(role string) int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, role+": "+format+"\n", args...)
		return 99
	}
	// caught prints line once sigs are caught and returns the number of the first that comes.
	caught := func(line string, sigs ...os.Signal) int {
		c := make(chan os.Signal, 1)
		signal.Notify(c, sigs...)
		fmt.Println(line)
		select {
		case s := <-c:
			return int(s.(syscall.Signal))
		case <-time.After(initWait):
			return fail("no signal came")
		}
	}
	name, arg, _ := strings.Cut(role, ":")
	switch name {
	case "comm":
		b, err := os.ReadFile("/proc/self/comm")
		if err != nil {
			return fail("%v", err)
		}
		fmt.Print(string(b))
		return 0
	case "whoami":
		v, ok := os.LookupEnv(lifecycle.InitEnv)
		fmt.Printf("pid1=%v ppid=%d %q %v\n", os.Getpid() == 1, os.Getppid(), v, ok)
		return 0
	case "group":
		var fg int32
		_, _, e := syscall.Syscall(syscall.SYS_IOCTL, 0, syscall.TIOCGPGRP, uintptr(unsafe.Pointer(&fg)))
		line := fmt.Sprintf("own group=%v foreground=%v", syscall.Getpgrp() == os.Getpid(), e == 0 && int(fg) == os.Getpid())
		return caught(line, syscall.SIGINT)
	case "exit":
		n, _ := strconv.Atoi(arg)
		return n
	case "kill":
		n, _ := strconv.Atoi(arg)
		syscall.Kill(os.Getpid(), syscall.Signal(n))
		time.Sleep(initWait)
		return fail("still alive after signal %d", n)
	case "sleep":
		fmt.Println("ready")
		time.Sleep(initWait)
		return fail("no signal came")
	case "signals":
		return caught("ready", forwardedSignals...)
	case "orphans":
		out, err := initRoleCommand("orphan-parent").Output()
		if err != nil {
			return fail("orphan-parent: %v", err)
		}
		pids := strings.Fields(string(out))
		if len(pids) != 3 {
			return fail("orphan-parent printed %q, want 3 pids", out)
		}
		deadline := time.Now().Add(initWait / 2) // fail before the test stops waiting for the line
		for _, p := range pids {
			pid, _ := strconv.Atoi(p)
			// kill(pid, 0) finds a zombie too: ESRCH means the orphan ended and was reaped.
			for syscall.Kill(pid, 0) != syscall.ESRCH {
				if time.Now().After(deadline) {
					return fail("orphan %d not reaped within %v", pid, initWait/2)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		fmt.Println("reaped", strings.Join(pids, " "))
		io.Copy(io.Discard, os.Stdin)
		return 0
	case "orphan-parent":
		r, w, err := os.Pipe()
		if err != nil {
			return fail("pipe: %v", err)
		}
		for range 3 {
			cmd := initRoleCommand("wait-eof")
			cmd.Stdin = r
			if err := cmd.Start(); err != nil {
				return fail("start: %v", err)
			}
			fmt.Println(cmd.Process.Pid)
		}
		runtime.KeepAlive(w) // open until this process exits, which is what ends the orphans
		return 0
	case "wait-eof":
		io.Copy(io.Discard, os.Stdin)
		return 0
	case "exec":
		var wg sync.WaitGroup
		errs := make([]error, 12)
		for i := range errs {
			wg.Go(func() {
				want := i % 4
				err := initRoleCommand(fmt.Sprintf("exit:%d", want)).Run()
				var ee *exec.ExitError
				switch {
				case want == 0 && err != nil, want != 0 && !errors.As(err, &ee):
					errs[i] = fmt.Errorf("child %d: %v, want exit status %d", i, err, want)
				case want != 0 && ee.ExitCode() != want:
					errs[i] = fmt.Errorf("child %d: exit status %d, want %d", i, ee.ExitCode(), want)
				}
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return fail("%v", err)
		}
		fmt.Println("statuses ok")
		return 0
	}
	return fail("unknown role")
}

// forwardedSignals are signals RunAsInit forwards: the usual ones, and ones outside any list a
// program might think of (SIGXCPU, SIGPIPE, SIGIO, and SIGRTMIN+3, systemd's STOPSIGNAL), which
// the init used to drop.
var forwardedSignals = []os.Signal{
	syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGTERM, syscall.SIGUSR1,
	syscall.SIGUSR2, syscall.SIGWINCH, syscall.SIGALRM, syscall.SIGCONT, syscall.SIGTSTP,
	syscall.SIGPWR, syscall.SIGXCPU, syscall.SIGPIPE, syscall.SIGIO, syscall.Signal(37),
}

// initRoleCommand runs this test binary as role.
func initRoleCommand(role string) *exec.Cmd {
	cmd := exec.Command("/proc/self/exe", "-test.run=^TestInitProcess$", "-test.count=1")
	cmd.Args[0] = os.Args[0] // as a shell would start the program: by its name
	// GORACE: under the race detector a process exiting 0 sleeps a second first; these tests
	// start dozens of processes.
	cmd.Env = append(os.Environ(), initRoleEnv+"="+role, "GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
	return cmd
}

// initProcess is the test binary running as PID 1 of a new PID namespace.
type initProcess struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser // nil when the test gave it a standard input of its own
	lines  chan string    // what it prints, a line at a time; closed at the end of its output
	stderr *syncbuf.Buffer
	waited bool
}

// startInit starts the test binary as PID 1 of a new PID namespace, playing role behind
// RunAsInit, after calling setup on the command (standard input is a pipe unless setup sets it).
// It skips the test when the namespace cannot be created.
func startInit(t *testing.T, role string, setup ...func(*exec.Cmd)) *initProcess {
	t.Helper()
	cmd := initRoleCommand(role)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	for _, f := range setup {
		f(cmd)
	}
	p := &initProcess{cmd: cmd, lines: make(chan string), stderr: new(syncbuf.Buffer)}
	cmd.Stderr = p.stderr
	if cmd.Stdin == nil {
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		p.stdin = stdin
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = w
	err = cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EINVAL) {
			t.Skipf("cannot create a PID namespace (needs root or CAP_SYS_ADMIN on Linux): %v", err)
		}
		t.Fatal(err)
	}
	go func() {
		defer close(p.lines)
		defer r.Close()
		s := bufio.NewScanner(r)
		for s.Scan() {
			p.lines <- s.Text()
		}
	}()
	t.Cleanup(func() {
		if !p.waited {
			cmd.Process.Kill() // the namespace's other processes die with its PID 1
			cmd.Wait()
		}
		for range p.lines {
		}
	})
	return p
}

// line returns the next line the process printed.
func (p *initProcess) line(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			t.Fatalf("output ended; stderr:\n%s", p.stderr)
		}
		return l
	case <-time.After(initWait):
		t.Fatalf("no line within %v; stderr:\n%s", initWait, p.stderr)
		return ""
	}
}

// wait waits for the process to exit and returns its exit code.
func (p *initProcess) wait(t *testing.T) int {
	t.Helper()
	if p.stdin != nil {
		p.stdin.Close()
	}
	timer := time.AfterFunc(initWait, func() { p.cmd.Process.Kill() })
	defer timer.Stop()
	err := p.cmd.Wait()
	p.waited = true
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	if ws := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ws.Signaled() {
		t.Fatalf("init killed by %v; stderr:\n%s", ws.Signal(), p.stderr)
	}
	return p.cmd.ProcessState.ExitCode()
}

func TestRunAsInitRunsTheProgramAsItsChild(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  string
		want string
	}{
		{"init", "", `pid1=false ppid=1 "" false`},                               // the program is the init's child, InitEnv removed
		{"opted out", lifecycle.InitEnv + "=off", `pid1=true ppid=0 "off" true`}, // the program is PID 1 itself
		{"opted out in capitals", lifecycle.InitEnv + "=OFF", `pid1=true ppid=0 "OFF" true`},
		{"child marker set by mistake", lifecycle.InitEnv + "=child", `pid1=false ppid=1 "" false`}, // an init all the same
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startInit(t, "whoami", func(cmd *exec.Cmd) { cmd.Env = append(cmd.Env, tc.env) })
			if diff := cmp.Diff(tc.want, p.line(t)); diff != "" {
				t.Errorf("PID 1, parent, %s (-want +got):\n%s", lifecycle.InitEnv, diff)
			}
			if code := p.wait(t); code != 0 {
				t.Errorf("exit code %d, want 0; stderr:\n%s", code, p.stderr)
			}
		})
	}
}

func TestRunAsInitReapsOrphans(t *testing.T) {
	p := startInit(t, "orphans")
	if l := p.line(t); !strings.HasPrefix(l, "reaped ") {
		t.Fatalf("program printed %q, want reaped <pids>", l)
	}
	// Seen from outside the namespace, the init's only child is the program, and it is no zombie.
	init := p.cmd.Process.Pid
	var children map[int]string
	await.True(t, "the init's children to be the program alone", initWait, func() bool {
		children = childrenOf(t, init)
		return len(children) == 1
	})
	for pid, state := range children {
		if state == "Z" {
			t.Errorf("the init's child %d is a zombie", pid)
		}
	}
	if code := p.wait(t); code != 0 {
		t.Errorf("exit code %d, want 0; stderr:\n%s", code, p.stderr)
	}
}

// childrenOf returns the state (R, S, Z, ...) of every process whose parent is ppid, by pid.
func childrenOf(t *testing.T, ppid int) map[int]string {
	t.Helper()
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	children := map[int]string{}
	for _, name := range stats {
		b, err := os.ReadFile(name)
		if err != nil {
			continue // the process ended
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		_, rest, ok := strings.Cut(string(b), ") ")
		fields := strings.Fields(rest)
		if !ok || len(fields) < 2 {
			t.Fatalf("%s: cannot read %q", name, b)
		}
		if fields[1] == strconv.Itoa(ppid) {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(name)))
			children[pid] = fields[0]
		}
	}
	return children
}

func TestRunAsInitForwardsSignals(t *testing.T) {
	for _, s := range forwardedSignals {
		sig := s.(syscall.Signal)
		t.Run(sig.String(), func(t *testing.T) {
			p := startInit(t, "signals")
			if l := p.line(t); l != "ready" {
				t.Fatalf("program printed %q, want ready", l)
			}
			if err := p.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			// The program exits with the number of the signal it caught, and the init with that.
			if code := p.wait(t); code != int(sig) {
				t.Errorf("exit code %d, want %d (the program caught %v); stderr:\n%s", code, int(sig), sig, p.stderr)
			}
		})
	}
}

// TestRunAsInitKeepsFaultSignals: a SIGABRT (or another signal the runtime takes for a crash) sent
// to the init is neither forwarded nor the init's end; it used to crash the init (exit 2), and the
// kernel then killed the program with no drain.
func TestRunAsInitKeepsFaultSignals(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGABRT, syscall.SIGTRAP, syscall.SIGSYS} {
		t.Run(sig.String(), func(t *testing.T) {
			p := startInit(t, "sleep")
			if l := p.line(t); l != "ready" {
				t.Fatalf("program printed %q, want ready", l)
			}
			if err := p.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond) // for a crash to happen
			if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatalf("the init is gone after %v: %v", sig, err)
			}
			if code := p.wait(t); code != 128+int(syscall.SIGTERM) {
				t.Errorf("exit code %d, want %d (the program ended by the SIGTERM after %v); stderr:\n%s", code, 128+int(syscall.SIGTERM), sig, p.stderr)
			}
		})
	}
}

func TestRunAsInitExitsAsTheProgram(t *testing.T) {
	for _, tc := range []struct {
		role   string
		signal syscall.Signal // sent to the init once the program printed "ready"
		want   int
	}{
		{role: "exit:0", want: 0},
		{role: "exit:7", want: 7},
		{role: "exit:255", want: 255},
		{role: "kill:9", want: 128 + 9},
		{role: "kill:15", want: 128 + 15},
		{role: "sleep", signal: syscall.SIGTERM, want: 128 + 15},
		{role: "sleep", signal: syscall.SIGINT, want: 128 + 2},
	} {
		t.Run(fmt.Sprintf("%s/%d", tc.role, tc.signal), func(t *testing.T) {
			p := startInit(t, tc.role)
			if tc.signal != 0 {
				if l := p.line(t); l != "ready" {
					t.Fatalf("program printed %q, want ready", l)
				}
				if err := p.cmd.Process.Signal(tc.signal); err != nil {
					t.Fatal(err)
				}
			}
			if code := p.wait(t); code != tc.want {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, tc.want, p.stderr)
			}
		})
	}
}

// TestRunAsInitKeepsExecStatuses checks the point of running the program as the init's child: its
// os/exec children's exit statuses are its own, so Cmd.Wait sees them and never fails with ECHILD.
func TestRunAsInitKeepsExecStatuses(t *testing.T) {
	p := startInit(t, "exec")
	if l := p.line(t); l != "statuses ok" {
		t.Fatalf("program printed %q, want statuses ok; stderr:\n%s", l, p.stderr)
	}
	if code := p.wait(t); code != 0 {
		t.Errorf("exit code %d, want 0; stderr:\n%s", code, p.stderr)
	}
}

// TestRunAsInitReturnsWhenNotPID1 runs RunAsInit in the test process, which is not PID 1: it
// returns, and removes InitEnv only when it holds the value the init gives its child.
func TestRunAsInitReturnsWhenNotPID1(t *testing.T) {
	for _, tc := range []struct {
		value string
		kept  bool
	}{{"child", false}, {"off", true}, {"", true}} {
		t.Setenv(lifecycle.InitEnv, tc.value)
		lifecycle.RunAsInit()
		if _, ok := os.LookupEnv(lifecycle.InitEnv); ok != tc.kept {
			t.Errorf("%s=%q: still set %v after RunAsInit, want %v", lifecycle.InitEnv, tc.value, ok, tc.kept)
		}
	}
}

// TestRunAsInitGivesTheProgramTheTerminal runs the init with a terminal as its controlling terminal
// and standard input, as `docker run -it` does: the program gets a process group of its own, in the
// terminal's foreground, so a ^C typed on the terminal reaches the program (once, from the terminal,
// and not a second time through the init). Without a terminal it gets its own group all the same.
func TestRunAsInitGivesTheProgramTheTerminal(t *testing.T) {
	t.Run("terminal", func(t *testing.T) {
		master, tty := openPty(t)
		p := startInit(t, "group", func(cmd *exec.Cmd) {
			cmd.Stdin = tty
			cmd.SysProcAttr.Setsid, cmd.SysProcAttr.Setctty, cmd.SysProcAttr.Ctty = true, true, 0
		})
		if diff := cmp.Diff("own group=true foreground=true", p.line(t)); diff != "" {
			t.Fatalf("(-want +got):\n%s", diff)
		}
		if _, err := master.Write([]byte{3}); err != nil { // ^C
			t.Fatal(err)
		}
		if code := p.wait(t); code != int(syscall.SIGINT) {
			t.Errorf("exit code %d, want %d (the program caught SIGINT); stderr:\n%s", code, int(syscall.SIGINT), p.stderr)
		}
	})
	t.Run("no terminal", func(t *testing.T) {
		p := startInit(t, "group")
		if diff := cmp.Diff("own group=true foreground=false", p.line(t)); diff != "" {
			t.Fatalf("(-want +got):\n%s", diff)
		}
		if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		if code := p.wait(t); code != int(syscall.SIGINT) {
			t.Errorf("exit code %d, want %d (the program caught SIGINT); stderr:\n%s", code, int(syscall.SIGINT), p.stderr)
		}
	})
}

// openPty opens a pseudo-terminal and returns its master and terminal sides, closed when the test
// ends. Neither becomes the test process' controlling terminal.
func openPty(t *testing.T) (master, tty *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	var unlock int32
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		t.Fatalf("unlock pty: %v", e)
	}
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, master.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		t.Fatalf("pty number: %v", e)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tty.Close() })
	return master, tty
}

// The program started by the init is named as the program was started (ps, top): after its argv[0]
// (what a symlink to a versioned binary is called, say), cut to 15 bytes, not "exe".
func TestRunAsInitKeepsTheProgramName(t *testing.T) {
	for _, tc := range []struct{ argv0, want string }{
		{os.Args[0], filepath.Base(os.Args[0])},
		{"/usr/local/bin/myapp", "myapp"},
		{"myapp-with-a-long-name", "myapp-with-a-lo"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			want := tc.want
			if len(want) > 15 { // TASK_COMM_LEN - 1
				want = want[:15]
			}
			p := startInit(t, "comm", func(cmd *exec.Cmd) { cmd.Args[0] = tc.argv0 })
			if got := p.line(t); got != want {
				t.Errorf("the program's comm = %q, want %q", got, want)
			}
			if code := p.wait(t); code != 0 {
				t.Errorf("exit code %d, want 0; stderr:\n%s", code, p.stderr)
			}
		})
	}
}
