// Package sidecar provides building blocks for the sidecar pattern: a helper container that shares
// a volume (and in Kubernetes, optionally, the PID namespace) with the application container.
//
//   - Tailer follows log files by glob and ships their lines to a Sink (WriterSink for stdout,
//     FileSink, HTTPSink), as JSON lines or, with WithFormat(FormatRaw), as they were read. It identifies files by inode and a fingerprint of their first bytes,
//     follows rename rotation (reading a renamed file to its end, also across restarts) and
//     copytruncate, and commits its offsets to a checkpoint only after the sink confirmed delivery.
//     With a Committer sink (FileSink) a crash at any moment loses and duplicates nothing.
//   - Syncer publishes content from git (through the git binary) or an HTTP archive by atomic
//     symlink swap, and runs ordered, retried hooks after each publish and once at startup.
//   - Reloader watches files and ConfigMap/Secret volumes (Kubernetes' ..data symlink swaps),
//     compares content hashes, debounces, and signals a process, calls a webhook or a func.
//   - Topz serves the processes of a shared PID namespace with CPU and memory from /proc; CPU use
//     is over the last second or more, however many viewers ask and however often (see Topz).
//   - Supervisor runs child processes with restart backoff and exits when the main container is
//     done (a done file on the shared volume, or an HTTP call), so the sidecars of Jobs finish.
//     NewSupervisor rejects a child whose program is not there; restarts are counted by child in
//     podblocks_sidecar_supervisor_restarts_total{child}.
//
// # Lifecycle
//
// Tailer, Reloader, Syncer and Supervisor are components: constructors validate and start nothing;
// Run blocks until its context ends (then returns nil) and returns only after every goroutine and
// child process it started has exited. Tailer, Reloader and Syncer expose Ready. Topz, HTTPSink,
// WriterSink and FileSink start nothing.
//
// # Cleanup
//
// Run closes every file and watch it opened. FileSink must be closed by its owner after the Tailer
// using it returned. The Syncer keeps the current and the previous revision directory (readers may
// still be in it) and removes older ones. The Supervisor sends SIGTERM to its children when it stops,
// then SIGKILL after the grace period; with Child.Group, to each child's process group too, and what
// a child that exits on its own leaves running in its group is killed (see Supervisor). On Linux a
// child is killed, too, when the Supervisor's process dies without stopping it (SIGKILLed: a
// parent-death signal).
//
// # Concurrency
//
// Statusz, Ready, Reloads, Version, Trigger, Done and the HTTP handlers are safe for concurrent use
// with Run. A Tailer calls its Sink from one goroutine at a time. One Tailer per checkpoint file:
// two processes sharing a checkpoint corrupt each other's offsets.
//
// # Delivery guarantees
//
// Rename rotation: every line exactly once with a Committer sink, at-least-once with the others,
// across crashes and restarts, as long as a rotated file still exists when the Tailer comes back.
// Copytruncate: lines written between the end of the copy and the truncation are in no file and are
// lost by any tailer; the copy is recognised by its fingerprint and read from where the original had
// been delivered, so nothing else is lost. A crash during a copytruncate rotation may repeat or lose
// the lines of that window. A new file is taken for a copy only when it is named as a rotated
// sibling of the original (app.log.1 or app.log-2026... for app.log) and starts with the same bytes
// (up to 1 KiB): a sibling that merely starts like the original is therefore skipped up to where the
// original was read. An inode reused for a new file whose first bytes equal the old file's (up to
// 1 KiB, or up to its length if shorter) is taken for the old file. A copy shorter than 64 bytes
// that lacks lines the Tailer read from the original after the copy was taken (before the
// truncation) cannot be told from a new file: it is read again from its start.
//
// Deleted files: a file deleted while the Tailer has it open is read on from its descriptor until it
// has not grown for WithDeletedGrace (default 5s). When Run stops, it is read up to the size it has
// then, for at most 5s (a writer may append faster than the sink takes lines); the rest is logged. A restart
// cannot open it again: what was appended to it after the last checkpoint commit is lost (with a
// Committer sink, so is what had been shipped from it after that commit, which the restart rolls
// back); the Tailer commits right after reading from such a file, and a restart logs each such
// entry with its delivered offset and never resumes it (the inode may hold a new file by then).
//
// Reserved space and NUL bytes: NUL bytes up to a file's end are taken for space reserved ahead of
// the writer (fallocate, ftruncate up, log4j2's memory-mapped appender) and read once written, however
// many. NUL bytes followed by other bytes are the file's: where they start a line (a writer that
// reserved space crashed, and its restart appended after what it never wrote) they are skipped, the
// checkpoint moves past them and the line after them is shipped; after other bytes of a line they make
// it binary, and it is skipped. NUL bytes are read once more before that: a read that caught a writer
// filling reserved space in the middle of a write (NUL bytes it was replacing, then bytes it wrote
// next) is read again from that line's start, and the line is shipped whole. The writer must fill
// reserved space in order, as those do: lines written later into NUL bytes that bytes written past
// them made the file's own are lost.
//
// On Windows the Tailer opens files sharing read, write and delete access, so a writer can rename or
// delete a followed file (rotation) as on Unix.
package sidecar
