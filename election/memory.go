package election

import (
	"context"
	"sync"
	"time"
)

// Memory is an in-process Backend: candidates in one process queue in FIFO order for a lock that
// never expires. Use it in tests and in single-process programs. The zero value is ready to use;
// it must not be copied after first use.
type Memory struct {
	mu      sync.Mutex
	token   uint64        // the last token handed out
	holder  *memoryLease  // nil when nobody leads
	queue   []*memoryWait // waiting candidates, oldest first
	changed chan struct{} // closed and replaced on every change of holder
}

type memoryWait struct{ id string }

var _ Backend = (*Memory)(nil)

// NewMemory returns an empty Memory backend.
func NewMemory() *Memory { return &Memory{} }

// changedLocked returns the channel that is closed on the next change of holder.
func (m *Memory) changedLocked() chan struct{} {
	if m.changed == nil {
		m.changed = make(chan struct{})
	}
	return m.changed
}

func (m *Memory) broadcastLocked() {
	if m.changed != nil {
		close(m.changed)
		m.changed = nil
	}
}

// Campaign implements Backend.
func (m *Memory) Campaign(ctx context.Context, id string) (Lease, error) {
	w := &memoryWait{id: id}
	m.mu.Lock()
	m.queue = append(m.queue, w)
	for {
		if m.holder == nil && m.queue[0] == w {
			m.queue = m.queue[1:]
			m.token++
			l := &memoryLease{m: m, term: Term{ID: id, Token: m.token}, lost: make(chan struct{})}
			m.holder = l
			m.broadcastLocked()
			m.mu.Unlock()
			return l, nil
		}
		ch := m.changedLocked()
		m.mu.Unlock()
		select {
		case <-ch:
			m.mu.Lock()
		case <-ctx.Done():
			m.mu.Lock()
			for i, q := range m.queue {
				if q == w {
					m.queue = append(m.queue[:i:i], m.queue[i+1:]...)
					break
				}
			}
			// The candidate behind us may now be first in line.
			m.broadcastLocked()
			m.mu.Unlock()
			return nil, ctx.Err()
		}
	}
}

// Observe implements Backend.
func (m *Memory) Observe(ctx context.Context, fn func(Term)) error {
	first := true
	var last Term
	for {
		m.mu.Lock()
		var cur Term
		if m.holder != nil {
			cur = m.holder.term
		}
		ch := m.changedLocked()
		m.mu.Unlock()
		if first || cur != last {
			first = false
			last = cur
			fn(cur)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil
		}
	}
}

type memoryLease struct {
	m    *Memory
	term Term
	lost chan struct{}
	once sync.Once
}

func (l *memoryLease) Term() Term            { return l.term }
func (l *memoryLease) Lost() <-chan struct{} { return l.lost }
func (l *memoryLease) ValidUntil() time.Time { return time.Time{} }

func (l *memoryLease) Release(context.Context) error {
	l.once.Do(func() {
		l.m.mu.Lock()
		if l.m.holder == l {
			l.m.holder = nil
			l.m.broadcastLocked()
		}
		l.m.mu.Unlock()
		close(l.lost)
	})
	return nil
}
