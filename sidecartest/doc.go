// Package sidecartest helps test code that works with sidecar volumes: WriteAtomic updates a
// directory the way the kubelet updates ConfigMap and Secret volumes (Kubernetes' AtomicWriter), and
// TestSink is the conformance suite every sidecar.Sink implementation passes.
//
// # Lifecycle
//
// Nothing here starts goroutines or processes.
//
// # Cleanup
//
// WriteAtomic removes the previous payload directory it replaces; the target directory belongs to
// the caller (use t.TempDir()).
//
// # Concurrency
//
// WriteAtomic must not run concurrently on the same directory (the kubelet does not either).
package sidecartest
