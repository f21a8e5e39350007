package twemproxy

import (
	"syscall"
	"unsafe"
)

// sysRead and sysWrite are read(2) and write(2) on a non-blocking socket as raw system calls: the
// runtime does not enter the system call state for them, which they never block in. Through
// syscall.Read and syscall.Write each call of a proxy round went through entersyscall, whose
// first call after the process was idle wakes sysmon from its deep sleep, after which sysmon
// polls every 20 us until the process is idle again; a write longer than a sysmon tick (a
// loopback write wakes its reader) also had its P retaken (a hand-off, and a slow exitsyscall).
// At redis-benchmark -P1 that was a sixth of the proxy's CPU, sysmon's wake-ups alone 0.65 per
// request with two Ps (strace -c -f).
func sysRead(fd int, b []byte) (int, error) { return sysRW(syscall.SYS_READ, fd, b) }

func sysWrite(fd int, b []byte) (int, error) { return sysRW(syscall.SYS_WRITE, fd, b) }

func sysRW(trap uintptr, fd int, b []byte) (int, error) {
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	n, _, e := syscall.RawSyscall(trap, uintptr(fd), uintptr(p), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// sysEpollPoll reports the ready events of epfd without waiting (epoll_pwait with a zero
// timeout), as a raw system call for the same reason.
func sysEpollPoll(epfd int, events []syscall.EpollEvent) (int, error) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])),
		uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
