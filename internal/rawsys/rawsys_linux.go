package rawsys

import (
	"syscall"
	"unsafe"
)

// Read is read(2) as a raw system call.
func Read(fd int, b []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(ptr(b)), uintptr(len(b)))
	return wrote(b, n, e)
}

// Write is write(2) as a raw system call.
func Write(fd int, b []byte) (int, syscall.Errno) {
	raceRead(b)
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(ptr(b)), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}

// EpollPoll reports epfd's ready events without waiting (epoll_pwait with a zero timeout).
func EpollPoll(epfd int, events []syscall.EpollEvent) (int, syscall.Errno) {
	return epollPwait(epfd, events, 0)
}

// EpollWait waits up to msec milliseconds (-1: no limit) for epfd's events: a raw system call when
// msec is 0, else through the runtime's system call state, as a call that blocks must be.
func EpollWait(epfd int, events []syscall.EpollEvent, msec int) (int, syscall.Errno) {
	if msec == 0 {
		return epollPwait(epfd, events, 0)
	}
	n, _, e := syscall.Syscall6(syscall.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(unsafe.SliceData(events))),
		uintptr(len(events)), uintptr(msec), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}

func epollPwait(epfd int, events []syscall.EpollEvent, msec int) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(unsafe.SliceData(events))),
		uintptr(len(events)), uintptr(msec), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}

func ptr(b []byte) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b)) }

// wrote returns a read's result, telling the race detector about the n bytes written into b.
func wrote(b []byte, n uintptr, e syscall.Errno) (int, syscall.Errno) {
	if e != 0 {
		return 0, e
	}
	raceWrite(b[:n])
	return int(n), 0
}
