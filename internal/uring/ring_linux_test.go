//go:build linux

package uring_test

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/podblocks/podblocks/internal/uring"
	"github.com/podblocks/podblocks/internal/uring/uringtest"
)

// pairs makes n non-blocking socket pairs, closed when the test ends: the first of each is sent
// on, the second read.
func pairs(t *testing.T, n int) (send, recv []int) {
	t.Helper()
	for range n {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { syscall.Close(fds[0]); syscall.Close(fds[1]) })
		send, recv = append(send, fds[0]), append(recv, fds[1])
	}
	return send, recv
}

// readAll returns what is queued on fd.
func readAll(t *testing.T, fd int) string {
	t.Helper()
	var b bytes.Buffer
	buf := make([]byte, 1<<16)
	for {
		n, err := syscall.Read(fd, buf)
		if n <= 0 || err != nil {
			return b.String()
		}
		b.Write(buf[:n])
	}
}

func newRing(t *testing.T, entries int) *uring.Ring {
	t.Helper()
	if why := uringtest.Probe(); why != "" {
		t.Skip("io_uring unavailable: " + why)
	}
	r, err := uring.New(entries)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

type outcome struct {
	Item  int
	Res   uring.Result
	Known bool
}

// TestBatchSend sends on 20 sockets through a ring of 8 entries: three io_uring_enter calls, every
// result in the order added, every byte on its socket.
func TestBatchSend(t *testing.T) {
	r := newRing(t, 8)
	if r.Entries() != 8 {
		t.Fatalf("Entries() = %d, want 8", r.Entries())
	}
	send, recv := pairs(t, 20)
	var b uring.Batch[int]
	var want []outcome
	for i, fd := range send {
		msg := fmt.Sprintf("message %d", i)
		b.Add(i, fd, []byte(msg))
		want = append(want, outcome{i, uring.Result{N: len(msg), Done: true}, true})
	}
	if b.Len() != 20 {
		t.Fatalf("Len() = %d, want 20", b.Len())
	}
	var got []outcome
	enters, err := b.Send(r, func(item int, res uring.Result, known bool) { got = append(got, outcome{item, res, known}) })
	if enters != 3 || err != 0 {
		t.Errorf("Send: %d io_uring_enter calls, %v; want 3, none", enters, err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("results (-want +got):\n%s", d)
	}
	for i, fd := range recv {
		if s := readAll(t, fd); s != fmt.Sprintf("message %d", i) {
			t.Errorf("socket %d read %q", i, s)
		}
	}
	if b.Len() != 0 {
		t.Errorf("Len() after Send = %d, want 0", b.Len())
	}
}

// TestSendFull: a send to a socket whose buffer is full completes with EAGAIN (not a poll that
// waits), a send that partly fits with the bytes it took, and the ring goes on.
func TestSendFull(t *testing.T) {
	r := newRing(t, 4)
	send, recv := pairs(t, 2)
	big := bytes.Repeat([]byte("x"), 8<<20)
	res := make([]uring.Result, 2)
	if _, _, e := r.SendAll(send, [][]byte{big, []byte("y")}, res); e != 0 {
		t.Fatal(e)
	}
	if !res[0].Done || res[0].Err != 0 || res[0].N <= 0 || res[0].N >= len(big) || res[1] != (uring.Result{N: 1, Done: true}) {
		t.Fatalf("results %+v; want a short send of the 8 MiB, then 1 byte", res)
	}
	if _, _, e := r.SendAll(send[:1], [][]byte{big}, res[:1]); e != 0 || res[0] != (uring.Result{Err: syscall.EAGAIN, Done: true}) {
		t.Fatalf("a send to the full socket: %+v, %v; want EAGAIN", res[0], e)
	}
	if n := len(readAll(t, recv[0])); n == 0 {
		t.Fatal("nothing read")
	}
}

// TestSetupRefused: New reports io_uring_setup's refusal, and a nil ring makes no send.
func TestSetupRefused(t *testing.T) {
	c := uringtest.Inject(t, uringtest.Faults{SetupErr: syscall.EPERM})
	r, err := uring.New(8)
	if r != nil || err == nil || err.Error() != "io_uring_setup: operation not permitted" || c.Setups.Load() != 1 {
		t.Fatalf("New: %v, %v, %d setups; want nil, io_uring_setup: operation not permitted, 1", r, err, c.Setups.Load())
	}
	if enters, e := sendNone(t, nil); enters != 0 || e != 0 {
		t.Errorf("Send without a ring: %d calls, %v; want 0, none", enters, e)
	}
}

// TestSetupRefusedOnce: a lasting refusal of io_uring_setup (EPERM, as a seccomp filter or
// kernel.io_uring_disabled) is asked for once: later calls of New fail alike without asking the
// kernel. One that may pass (EMFILE: out of descriptors) is asked for again, and a refusal is
// forgotten when its fault is removed: the fault that counts, installed first, sees New ask again
// once the last refusal's fault (EINVAL, remembered) is gone, with no fault installed since.
func TestSetupRefusedOnce(t *testing.T) {
	outer := uringtest.Inject(t, uringtest.Faults{})
	for _, tc := range []struct {
		errno  syscall.Errno
		setups int64 // io_uring_setup calls for 4 rings
	}{{syscall.EMFILE, 4}, {syscall.EPERM, 1}, {syscall.ENOSYS, 1}, {syscall.EINVAL, 1}} {
		t.Run(tc.errno.Error(), func(t *testing.T) {
			c := uringtest.Inject(t, uringtest.Faults{SetupErr: tc.errno})
			want := "io_uring_setup: " + tc.errno.Error()
			for i := range 4 {
				if r, err := uring.New(8); r != nil || err == nil || err.Error() != want {
					t.Fatalf("New #%d: %v, %v; want nil, %s", i+1, r, err, want)
				}
			}
			if n := c.Setups.Load(); n != tc.setups {
				t.Errorf("%d io_uring_setup calls for 4 rings, want %d", n, tc.setups)
			}
		})
	}
	// The faults are gone (their cleanups ran): New asks the kernel again, through outer.
	before := outer.Setups.Load()
	r, err := uring.New(8)
	if err == nil {
		r.Close()
	}
	if n := outer.Setups.Load() - before; n != 1 {
		t.Errorf("New after the refusals ended: %d io_uring_setup calls, want 1 (a refusal forgotten): %v", n, err)
	}
}

// TestSetupBadEntries: entries out of the kernel's range is the caller's error, which New returns
// without asking the kernel (whose EINVAL would read as an old kernel's) and does not remember: a
// ring of valid entries is asked for next.
func TestSetupBadEntries(t *testing.T) {
	c := uringtest.Inject(t, uringtest.Faults{})
	for _, entries := range []int{0, -1, 32769, 1 << 20} {
		if r, err := uring.New(entries); r != nil || err == nil || strings.HasPrefix(err.Error(), "io_uring_setup") {
			t.Errorf("New(%d): %v, %v; want nil and an error about the entries", entries, r, err)
		}
	}
	if n := c.Setups.Load(); n != 0 {
		t.Errorf("%d io_uring_setup calls for bad entries, want 0", n)
	}
	r, err := uring.New(8)
	if err == nil {
		r.Close()
	}
	if n := c.Setups.Load(); n != 1 || (err != nil && err.Error() == "io_uring_setup: invalid argument") {
		t.Errorf("New(8) after bad entries: %v, %d io_uring_setup calls; want the kernel asked once, no EINVAL", err, n)
	}
}

// sendNone sends "a" and "b", each on a new socket pair, through r, which must make neither: it
// checks each is left not done with its outcome known and nothing is read, and returns Send's
// io_uring_enter calls and error.
func sendNone(t *testing.T, r *uring.Ring) (enters int, err syscall.Errno) {
	t.Helper()
	send, recv := pairs(t, 2)
	var b uring.Batch[int]
	b.Add(0, send[0], []byte("a"))
	b.Add(1, send[1], []byte("b"))
	var got []outcome
	enters, err = b.Send(r, func(item int, res uring.Result, known bool) { got = append(got, outcome{item, res, known}) })
	if d := cmp.Diff([]outcome{{0, uring.Result{}, true}, {1, uring.Result{}, true}}, got); d != "" {
		t.Errorf("results (-want +got):\n%s", d)
	}
	for i, fd := range recv {
		if s := readAll(t, fd); s != "" {
			t.Errorf("socket %d read %q, want nothing", i, s)
		}
	}
	return enters, err
}

// TestEnterRefused: once io_uring_enter is refused, Send reports it and leaves every send of the
// batch not done, its outcome known (nothing was taken), the later chunks not tried.
func TestEnterRefused(t *testing.T) {
	r := newRing(t, 2)
	c := uringtest.Inject(t, uringtest.Faults{EnterOK: 1})
	send, recv := pairs(t, 5)
	var b uring.Batch[int]
	for i, fd := range send {
		b.Add(i, fd, []byte{'a' + byte(i)})
	}
	var got []outcome
	enters, err := b.Send(r, func(item int, res uring.Result, known bool) { got = append(got, outcome{item, res, known}) })
	sent := uring.Result{N: 1, Done: true}
	want := []outcome{{0, sent, true}, {1, sent, true}, {2, uring.Result{}, true}, {3, uring.Result{}, true}, {4, uring.Result{}, true}}
	if d := cmp.Diff(want, got); d != "" || enters != 2 || err != syscall.EPERM || c.Refused.Load() != 1 {
		t.Errorf("Send: %d calls, %v, %d refused; want 2, EPERM, 1; results (-want +got):\n%s", enters, err, c.Refused.Load(), d)
	}
	for i, fd := range recv {
		if s, w := readAll(t, fd), map[bool]string{true: string(rune('a' + i)), false: ""}[i < 2]; s != w {
			t.Errorf("socket %d read %q, want %q", i, s, w)
		}
	}
}

// TestLoseCompletions: when io_uring_enter fails after the kernel took the sends, their outcome is
// unknown to the caller (known false), though the bytes went out.
func TestLoseCompletions(t *testing.T) {
	r := newRing(t, 4)
	send, recv := pairs(t, 2)
	calls, picked := uringtest.LoseCompletions(t, 1, func(fds []int) bool {
		return len(fds) == 1 && fds[0] == send[1]
	})
	var b uring.Batch[int]
	var got []outcome
	each := func(item int, res uring.Result, known bool) { got = append(got, outcome{item, res, known}) }
	b.Add(0, send[1], []byte("first"))
	if _, err := b.Send(r, each); err != 0 {
		t.Fatal(err)
	}
	b.Add(1, send[0], []byte("other"))
	if _, err := b.Send(r, each); err != 0 {
		t.Fatal(err)
	}
	b.Add(2, send[1], []byte("lost"))
	_, err := b.Send(r, each)
	want := []outcome{{0, uring.Result{N: 5, Done: true}, true}, {1, uring.Result{N: 5, Done: true}, true}, {2, uring.Result{}, false}}
	if d := cmp.Diff(want, got); d != "" || err != syscall.EIO || calls.Load() != 3 || picked.Load() != 1 {
		t.Errorf("Send: %v, %d calls, %d picked; want EIO, 3, 1; results (-want +got):\n%s", err, calls.Load(), picked.Load(), d)
	}
	if s := readAll(t, recv[1]); s != "firstlost" {
		t.Errorf("read %q, want %q", s, "firstlost")
	}
}

// TestSendAllocs: a batch's sends through a ring allocate nothing once the batch has grown (an
// event loop sends so on every pass).
func TestSendAllocs(t *testing.T) {
	r := newRing(t, 8)
	send, recv := pairs(t, 4)
	var b uring.Batch[int]
	msg, buf := []byte("x"), make([]byte, 1)
	sent := 0
	pass := func() {
		for i, fd := range send {
			b.Add(i, fd, msg)
		}
		if _, err := b.Send(r, func(_ int, res uring.Result, _ bool) { sent += res.N }); err != 0 {
			t.Fatal(err)
		}
		for _, fd := range recv {
			syscall.Read(fd, buf)
		}
	}
	pass()
	if n := testing.AllocsPerRun(100, pass); n != 0 {
		t.Errorf("%v allocations per batch of sends, want 0", n)
	}
	if sent != 4*102 {
		t.Errorf("%d bytes sent, want %d", sent, 4*102)
	}
}

// TestCloseTwice: a second Close does nothing, even when the ring's descriptor number has been
// given to someone else in between.
func TestCloseTwice(t *testing.T) {
	r := newRing(t, 8)
	r.Close()
	var p [2]int // opened after the first Close: takes the ring's descriptor number, if free
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(p[0]); syscall.Close(p[1]) })
	r.Close()
	if n, err := syscall.Write(p[1], []byte("x")); n != 1 || err != nil {
		t.Fatalf("write to the pipe after the second Close: %d, %v", n, err)
	}
	if s := readAll(t, p[0]); s != "x" {
		t.Fatalf("read %q from the pipe after the second Close, want %q", s, "x")
	}
}

// TestSendAfterClose: a closed ring makes no send: Send reports EBADF and leaves every send not
// done, its outcome known.
func TestSendAfterClose(t *testing.T) {
	r := newRing(t, 8)
	r.Close()
	if enters, err := sendNone(t, r); enters != 0 || err != syscall.EBADF {
		t.Errorf("Send on a closed ring: %d calls, %v; want 0, EBADF", enters, err)
	}
}

// TestCloseReleases: Close unmaps the ring and closes its descriptor: after 100 rings are made and
// closed, the process has as many descriptors and io_uring mappings as before.
func TestCloseReleases(t *testing.T) {
	if why := uringtest.Probe(); why != "" {
		t.Skip("io_uring unavailable, no ring to release: " + why)
	}
	count := func() (fds, maps int) {
		t.Helper()
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile("/proc/self/maps")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, "io_uring") {
				maps++
			}
		}
		return len(ents), maps
	}
	fds0, maps0 := count()
	var rings []*uring.Ring
	for range 100 {
		r, err := uring.New(8)
		if err != nil {
			for _, r := range rings {
				r.Close()
			}
			t.Fatal(err)
		}
		rings = append(rings, r)
	}
	// The counts see the rings: each has a descriptor and three mappings.
	if fds, maps := count(); fds < fds0+100 || maps < maps0+300 {
		t.Errorf("with 100 rings open: %d descriptors, %d io_uring mappings; want at least %d, %d", fds, maps, fds0+100, maps0+300)
	}
	for _, r := range rings {
		r.Close()
	}
	if fds, maps := count(); fds != fds0 || maps != maps0 {
		t.Errorf("after 100 rings closed: %d descriptors, %d io_uring mappings; want %d, %d as before", fds, maps, fds0, maps0)
	}
}
