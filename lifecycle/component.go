package lifecycle

import "context"

// Component is anything long-lived: a proxy, an elector, a worker pool, a hook server.
//
// Run blocks until ctx is done or a fatal error occurs. It returns nil when ctx ended it, and it returns
// only after every goroutine it started has exited. Constructors of components validate their input and
// start nothing; all work happens inside Run.
type Component interface {
	Run(ctx context.Context) error
}

// Func adapts a plain function to a Component.
type Func func(ctx context.Context) error

// Run calls f(ctx).
func (f Func) Run(ctx context.Context) error { return f(ctx) }

// Readier is implemented by components that have a "ready" moment (listening, leader known, caches
// synced). The channel is closed once the component is ready and is never closed otherwise.
// Group waits for it before it starts the next component.
type Readier interface {
	Ready() <-chan struct{}
}

// Checkpointer is implemented by components whose state should be saved on graceful deletion. Group
// calls Checkpoint while stopping, before the component's context is cancelled.
type Checkpointer interface {
	Checkpoint(ctx context.Context) error
}

// Restorer is implemented by components that restore saved state. Group calls Restore before Run.
type Restorer interface {
	Restore(ctx context.Context) error
}

// StatusProvider is the shape of a section on the hook server's /statusz page: a title and a snapshot
// table. Key/value sections use the header []string{"key", "value"}. Components implement it without
// importing this package; Statusz must be safe for concurrent use.
type StatusProvider interface {
	Statusz() (title string, header []string, rows [][]string)
}
