// Package rawsys holds the few system calls podblocks' hot paths make as raw system calls
// (syscall.RawSyscall): read(2) and write(2) on non-blocking sockets and pipes, and
// epoll_pwait(2) with a zero timeout. None of them blocks, so none needs the
// runtime's system call state; entering it costs more than the call on these paths: the first
// entersyscall after the process was idle wakes the runtime's sysmon thread, which then polls every
// 20µs until the process is idle again, and a call longer than one sysmon tick has its P handed off.
//
// A raw call holds its P for the length of the call, and the garbage collector cannot stop the
// world until it returns: callers keep each call short (a bounded buffer, a descriptor that cannot
// block). Regular files are not such descriptors: a read of pages not in the page cache waits for
// the disk or, on FUSE and NFS, for a server (sidecar measured a 1.8 s GC pause behind a raw pread on
// a stopped FUSE daemon), so file reads go through package syscall. Under the race detector the calls report the memory the
// kernel reads or writes, as package syscall does.
//
// Callers own the descriptor's lifetime: call these inside syscall.RawConn's Read, Write or Control
// (or on a descriptor the caller alone closes), never on a number kept from an earlier call.
package rawsys
