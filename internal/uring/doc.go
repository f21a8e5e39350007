// Package uring makes many sends, each on its own socket, in one io_uring_enter(2) instead of
// one sendto(2) each: an event loop queues the sends of a pass in a Batch and makes them with
// Batch.Send through its Ring.
//
// Why: where a proxy shares its CPUs with its peers, a send that wakes a peer often has the
// scheduler place the peer on the proxy's CPU, and the proxy is preempted when that sendto returns:
// the peer handles the one message, sleeps, and the proxy's next send wakes it again. One
// io_uring_enter makes every send of the pass before the proxy can be preempted (the kernel
// preempts a task only on its way back to user space, unless it is built for full preemption), so
// each woken peer finds all of its messages at once.
//
// Every send is IORING_OP_SEND with MSG_DONTWAIT|MSG_NOSIGNAL, issued inline: a send that finds
// the socket buffer full completes with EAGAIN instead of arming a poll, so every completion is
// posted by the time io_uring_enter returns, and Send waits for all of them before it returns: no
// buffer is referenced by the kernel once it has.
//
// # Fallback
//
// New fails where io_uring is missing, disabled (kernel.io_uring_disabled), refused by a seccomp
// filter (the default profiles of Docker >= 25 and containerd 2.0, gVisor), on kernels before 5.18
// (IORING_SETUP_SUBMIT_ALL is required) and on every system but Linux: the caller then sends with
// one system call per send. Such a refusal lasts: New remembers it and fails at once from then on,
// so a process asks the kernel once however many event loops make rings. Should io_uring_enter
// fail later, Send reports it, every send it could not make is left not done, and the caller must
// Close the ring and send with one system call per send from then on; a send whose outcome the
// failure made unknown is reported so (known false).
//
// # Lifecycle and cleanup
//
// New makes a ring; Close unmaps it and closes its descriptor, and the ring makes no send after
// that (SendAll reports EBADF). Close is idempotent: a second Close does nothing. A Batch holds
// nothing to release. After an error from Batch.Send (or Ring.SendAll), Close the ring and send
// with one system call per send from then on: a failed ring is not used again, and its submission
// queue is left as the failure found it.
//
// # Concurrency
//
// A Ring and a Batch belong to one goroutine (an event loop), Close included.
//
// # Tests
//
// Package uringtest has io_uring_setup or io_uring_enter refused, or completions lost, for the
// tests of packages that use rings, as a kernel or seccomp filter would.
package uring
