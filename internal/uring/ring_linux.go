//go:build linux

package uring

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/podblocks/podblocks/internal/uring/internal/hook"
)

// Ring is a small io_uring through which one goroutine makes many sends in one io_uring_enter.
type Ring struct {
	fd                     int
	sqRing, cqRing, sqeMem []byte
	sqHead, sqTail         *uint32
	sqMask                 uint32
	sqArray                []uint32
	sqes                   []ringSQE
	cqHead, cqTail         *uint32
	cqMask                 uint32
	cqes                   []ringCQE
}

// ringSQE is struct io_uring_sqe (64 bytes), with the fields a send sets.
type ringSQE struct {
	opcode   uint8
	flags    uint8
	ioprio   uint16
	fd       int32
	off      uint64
	addr     uint64
	len      uint32
	msgFlags uint32
	userData uint64
	_        [3]uint64
}

// ringCQE is struct io_uring_cqe (16 bytes).
type ringCQE struct {
	userData uint64
	res      int32
	flags    uint32
}

// ringOffsets is struct io_sqring_offsets or io_cqring_offsets: the same size and, for the fields
// used here (head, tail, ring mask), the same layout; f[2] is the SQ ring's array (after flags and
// dropped), f[1] the CQ ring's cqes (after overflow).
type ringOffsets struct {
	head, tail, ringMask, ringEntries uint32
	f                                 [4]uint32
	userAddr                          uint64
}

// ringParams is struct io_uring_params.
type ringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sqOff, cqOff                                                           ringOffsets
}

const (
	ioringOpSend         = 26
	ioringEnterGetEvents = 1
	ioringOffCQRing      = 0x8000000
	ioringOffSQEs        = 0x10000000
	// ioringSetupSubmitAll (Linux 5.18) submits every SQE of a call even if one fails. It is
	// required: a kernel without it is refused, so every kernel that makes a ring also has
	// IORING_OP_SEND (5.6).
	ioringSetupSubmitAll = 1 << 7
	// maxEntries is IORING_MAX_ENTRIES: io_uring_setup refuses more entries (without
	// IORING_SETUP_CLAMP) and none with EINVAL, as it refuses a flag it does not know.
	maxEntries = 32768
)

// New makes a ring for up to entries sends per io_uring_enter (the kernel may round entries up:
// Entries tells). Where io_uring is missing, disabled or refused it returns the error
// ("io_uring_setup: " and the errno), and the caller sends with one system call per send.
//
// A refusal that lasts as long as the process (see refusedForGood) is remembered: later calls
// return the same error without asking the kernel again, so a process whose every event loop
// makes a ring asks once where io_uring is refused. entries out of the kernel's range (1 to
// maxEntries) is the caller's error, not the kernel's refusal: New returns it without asking the
// kernel and remembers nothing, since the kernel's EINVAL would look like an old kernel's.
func New(entries int) (*Ring, error) {
	if entries < 1 || entries > maxEntries {
		return nil, fmt.Errorf("io_uring: %d entries, want 1 to %d", entries, maxEntries)
	}
	gen := hook.Gen.Load()
	if r := refusal.Load(); r != nil && r.gen == gen {
		return nil, r.err
	}
	p := ringParams{flags: ioringSetupSubmitAll}
	setup := func() (int, syscall.Errno) {
		fd, _, e := syscall.RawSyscall(sysIOUringSetup, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
		return int(fd), e
	}
	var fd int
	var e syscall.Errno
	if hook.Setup != nil {
		fd, e = hook.Setup(setup)
	} else {
		fd, e = setup()
	}
	if e != 0 {
		err := fmt.Errorf("io_uring_setup: %w", e)
		if refusedForGood(e) {
			refusal.Store(&refused{err: err, gen: gen})
		}
		return nil, err
	}
	// The descriptor is close-on-exec already: io_uring_setup always makes it so.
	r := &Ring{fd: fd}
	var err error
	mmap := func(off int64, size int) []byte {
		if err != nil {
			return nil
		}
		var m []byte
		m, err = syscall.Mmap(r.fd, off, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED|syscall.MAP_POPULATE)
		return m
	}
	r.sqRing = mmap(0, int(p.sqOff.f[2])+int(p.sqEntries)*4)
	r.cqRing = mmap(ioringOffCQRing, int(p.cqOff.f[1])+int(p.cqEntries)*int(unsafe.Sizeof(ringCQE{})))
	r.sqeMem = mmap(ioringOffSQEs, int(p.sqEntries)*int(unsafe.Sizeof(ringSQE{})))
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("io_uring mmap: %w", err)
	}
	u32 := func(b []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&b[off])) }
	r.sqHead, r.sqTail, r.sqMask = u32(r.sqRing, p.sqOff.head), u32(r.sqRing, p.sqOff.tail), *u32(r.sqRing, p.sqOff.ringMask)
	r.sqArray = unsafe.Slice(u32(r.sqRing, p.sqOff.f[2]), p.sqEntries)
	r.sqes = unsafe.Slice((*ringSQE)(unsafe.Pointer(&r.sqeMem[0])), p.sqEntries)
	r.cqHead, r.cqTail, r.cqMask = u32(r.cqRing, p.cqOff.head), u32(r.cqRing, p.cqOff.tail), *u32(r.cqRing, p.cqOff.ringMask)
	r.cqes = unsafe.Slice((*ringCQE)(unsafe.Pointer(&r.cqRing[p.cqOff.f[1]])), p.cqEntries)
	return r, nil
}

// refused is a remembered refusal of io_uring_setup, with the generation of the test hooks
// (hook.Gen) it was seen under: a test that installs or removes a fault has New ask again.
type refused struct {
	err error
	gen uint64
}

// refusal is the process's remembered refusal of io_uring_setup, nil until there is one.
var refusal atomic.Pointer[refused]

// refusedForGood reports whether io_uring_setup's error e holds for the rest of the process:
// io_uring missing (ENOSYS: not built in, or an emulated kernel such as gVisor), disabled
// (kernel.io_uring_disabled: EPERM) or refused by a seccomp filter (EPERM or EACCES), or a kernel
// before 5.18 that does not know IORING_SETUP_SUBMIT_ALL (EINVAL: New asks only with entries the
// kernel takes, so that is the EINVAL left). Running out of memory or descriptors (ENOMEM, EMFILE,
// ENFILE) may pass, and is not remembered.
func refusedForGood(e syscall.Errno) bool {
	switch e {
	case syscall.ENOSYS, syscall.EPERM, syscall.EACCES, syscall.EINVAL:
		return true
	}
	return false
}

// Entries is how many sends one io_uring_enter makes at most.
func (r *Ring) Entries() int { return len(r.sqes) }

// Close unmaps the ring and closes its descriptor. Close is idempotent: a second Close does
// nothing, so it cannot unmap memory or close a descriptor that has since been given to someone
// else.
func (r *Ring) Close() {
	if r.fd < 0 {
		return
	}
	for _, m := range [][]byte{r.sqeMem, r.cqRing, r.sqRing} {
		if m != nil {
			syscall.Munmap(m)
		}
	}
	syscall.Close(r.fd)
	r.fd = -1
	r.sqRing, r.cqRing, r.sqeMem = nil, nil, nil
	r.sqHead, r.sqTail, r.cqHead, r.cqTail = nil, nil, nil, nil
	r.sqArray, r.sqes, r.cqes = nil, nil, nil
}

// SendAll sends bufs[i] (non-empty) to fds[i] for every i, at most Entries of them, in one
// io_uring_enter, and sets res[i]. calls counts the io_uring_enter calls made (more than one only
// when a call is interrupted). A non-zero errno is the ring's own failure: sends it had not taken
// are left with res[i].Done false (not sent), and it waited for every send it had taken, unless
// waiting failed too (taken is then false, and the unfinished sends' outcome is unknown).
//
// After a failure the ring must be closed, not used again: SendAll leaves the sends the kernel
// did not take in the submission queue (it does not take them back), so a later SendAll on the
// ring would submit them again. A closed ring takes no send and reports EBADF.
func (r *Ring) SendAll(fds []int, bufs [][]byte, res []Result) (calls int, taken bool, err syscall.Errno) {
	clear(res)
	if r.fd < 0 {
		return 0, true, syscall.EBADF
	}
	tail := *r.sqTail // only this goroutine writes the tail; the kernel only reads it
	for i, fd := range fds {
		idx := (tail + uint32(i)) & r.sqMask
		r.sqes[idx] = ringSQE{opcode: ioringOpSend, fd: int32(fd), addr: uint64(uintptr(unsafe.Pointer(&bufs[i][0]))),
			len: uint32(len(bufs[i])), msgFlags: syscall.MSG_DONTWAIT | syscall.MSG_NOSIGNAL, userData: uint64(i)}
		r.sqArray[idx] = idx
	}
	end := tail + uint32(len(fds))
	atomic.StoreUint32(r.sqTail, end)
	defer runtime.KeepAlive(bufs)
	got := 0
	reap := func() {
		head := atomic.LoadUint32(r.cqHead)
		for ctail := atomic.LoadUint32(r.cqTail); head != ctail; head++ {
			c := r.cqes[head&r.cqMask]
			if c.res < 0 {
				res[c.userData] = Result{Err: syscall.Errno(-c.res), Done: true}
			} else {
				res[c.userData] = Result{N: int(c.res), Done: true}
			}
			got++
		}
		atomic.StoreUint32(r.cqHead, head)
	}
	for got < len(fds) {
		calls++
		e := r.enter(end-atomic.LoadUint32(r.sqHead), uint32(len(fds)-got))
		reap()
		if e == 0 || e == syscall.EINTR {
			continue
		}
		// taken: every send not completed was never taken by the kernel (its outcome is known).
		left := end - atomic.LoadUint32(r.sqHead)
		return calls, got+int(left) == len(fds), e
	}
	return calls, true, 0
}

// enter is io_uring_enter(2) with IORING_ENTER_GETEVENTS, or the test hook's stand-in. The
// hook's closures are made only when a hook is set: the send path does not allocate.
func (r *Ring) enter(toSubmit, minComplete uint32) syscall.Errno {
	if hook.Enter != nil {
		return r.hookedEnter(toSubmit, minComplete)
	}
	return r.sysEnter(toSubmit, minComplete)
}

func (r *Ring) sysEnter(toSubmit, minComplete uint32) syscall.Errno {
	_, _, e := syscall.RawSyscall6(sysIOUringEnter, uintptr(r.fd), uintptr(toSubmit), uintptr(minComplete),
		ioringEnterGetEvents, 0, 0)
	return e
}

func (r *Ring) hookedEnter(toSubmit, minComplete uint32) syscall.Errno {
	return hook.Enter(&hook.Call{
		Enter:   func() syscall.Errno { return r.sysEnter(toSubmit, minComplete) },
		Pending: r.pending,
		Drop:    func() { atomic.StoreUint32(r.cqHead, atomic.LoadUint32(r.cqTail)) },
	})
}

// pending returns the descriptors of the sends submitted and not yet taken by the kernel.
func (r *Ring) pending() []int {
	var fds []int
	for i, end := atomic.LoadUint32(r.sqHead), atomic.LoadUint32(r.sqTail); i != end; i++ {
		fds = append(fds, int(r.sqes[r.sqArray[i&r.sqMask]].fd))
	}
	return fds
}
