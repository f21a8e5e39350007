// Package rawsys holds the few system calls podblocks' hot paths make as raw system calls
// (syscall.RawSyscall): read(2) and write(2) on non-blocking sockets and pipes, pread(2) on
// regular files, and epoll_pwait(2) with a zero timeout. None of them blocks, so none needs the
// runtime's system call state; entering it costs more than the call on these paths: the first
// entersyscall after the process was idle wakes the runtime's sysmon thread, which then polls every
// 20µs until the process is idle again, and a call longer than one sysmon tick has its P handed off.
//
// A raw call holds its P for the length of the call: callers keep each call short (a bounded
// buffer, a descriptor that cannot block). Under the race detector the calls report the memory the
// kernel reads or writes, as package syscall does.
//
// Callers own the descriptor's lifetime: call these inside syscall.RawConn's Read, Write or Control
// (or on a descriptor the caller alone closes), never on a number kept from an earlier call.
package rawsys
