package scatter

import (
	"context"
	"sync"

	"go.uber.org/zap"
)

// EndpointsFunc returns the current replica addresses and a channel closed when they change: the
// shape of an ambassador Source's Endpoints (ambassador.Static, DNS, File), mapped to addresses.
type EndpointsFunc func() ([]string, <-chan struct{})

// DynamicReplicaSet is a shard whose replicas follow a changing address list, for example the
// endpoints of a Kubernetes headless service through an ambassador DNS source:
//
//	eps := func() ([]string, <-chan struct{}) {
//		es, ch := src.Endpoints()
//		urls := make([]string, len(es))
//		for i, e := range es {
//			urls[i] = "http://" + e.Addr + "/search"
//		}
//		return urls, ch
//	}
//	shard, _ := scatter.NewDynamicReplicaSet(eps, func(u string) scatter.Leaf[Q, A] { return scatter.NewHTTPLeaf[Q, A](u, client) })
//
// When the list changes it builds a new ReplicaSet, reusing the leaves of addresses that stayed;
// latency statistics and probation start afresh. A nil change channel means the addresses never
// change. An address for which newLeaf returns nil is skipped (logged once, to Log or else the
// fan-out's logger) and the set is built from the others; newLeaf is asked again for it at the
// next change. When newLeaf refuses every address of a non-empty list, the set keeps its previous
// replicas until the next change. With no address, calls fail with ErrNoReplicas.
// Safe for concurrent use.
type DynamicReplicaSet[Req, Resp any] struct {
	// Log gets a warning per address newLeaf refuses (nil: the fan-out's logger when called by
	// one, else none). Set it before the first call.
	Log *zap.Logger

	endpoints EndpointsFunc
	newLeaf   func(addr string) Leaf[Req, Resp]

	mu      sync.Mutex
	cur     *ReplicaSet[Req, Resp]
	leaves  map[string]Leaf[Req, Resp]
	refused map[string]bool // addresses of the current list newLeaf refused (each logged once)
	changed <-chan struct{} // closed when the addresses change; nil: they never do
	built   bool            // cur, leaves and changed are from a call of endpoints
}

// NewDynamicReplicaSet returns a shard whose replicas are newLeaf(addr) for each address endpoints
// returns.
func NewDynamicReplicaSet[Req, Resp any](endpoints EndpointsFunc, newLeaf func(addr string) Leaf[Req, Resp]) (*DynamicReplicaSet[Req, Resp], error) {
	if endpoints == nil || newLeaf == nil {
		return nil, &ConfigError{Field: "NewDynamicReplicaSet", Reason: "endpoints and newLeaf must not be nil"}
	}
	return &DynamicReplicaSet[Req, Resp]{endpoints: endpoints, newLeaf: newLeaf}, nil
}

// Current returns the replica set for the current addresses (nil and ErrNoReplicas when there
// are none).
func (d *DynamicReplicaSet[Req, Resp]) Current() (*ReplicaSet[Req, Resp], error) {
	return d.current(nil)
}

// current is Current, logging refused addresses to d.Log, else to log (nil: none).
func (d *DynamicReplicaSet[Req, Resp]) current(log *zap.Logger) (*ReplicaSet[Req, Resp], error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.built {
		select {
		case <-d.changed: // a nil channel never changes: the set is kept for good
		default:
			if d.cur == nil {
				return nil, ErrNoReplicas
			}
			return d.cur, nil
		}
	}
	if d.Log != nil {
		log = d.Log
	}
	addrs, changed := d.endpoints()
	leaves := make(map[string]Leaf[Req, Resp], len(addrs))
	refused := map[string]bool{}
	reps := make([]Leaf[Req, Resp], 0, len(addrs))
	for _, a := range addrs {
		if _, dup := leaves[a]; dup || refused[a] {
			continue
		}
		l, ok := d.leaves[a]
		if !ok {
			if l = d.newLeaf(a); l == nil {
				if !d.refused[a] && log != nil {
					log.Warn("replica address refused by newLeaf: skipped until the addresses change", zap.String("addr", a))
				}
				refused[a] = true
				continue
			}
		}
		leaves[a] = l
		reps = append(reps, l)
	}
	d.changed, d.refused, d.built = changed, refused, true
	if len(reps) == 0 && len(addrs) > 0 && d.cur != nil {
		return d.cur, nil // every new address refused: keep serving the old replicas
	}
	var rs *ReplicaSet[Req, Resp]
	if len(reps) > 0 {
		var err error
		if rs, err = NewReplicaSet(reps...); err != nil {
			return nil, err
		}
	}
	d.leaves, d.cur = leaves, rs
	if rs == nil {
		return nil, ErrNoReplicas
	}
	return rs, nil
}

// Call calls the current replica set.
func (d *DynamicReplicaSet[Req, Resp]) Call(ctx context.Context, req Req) (Resp, error) {
	rs, err := d.Current()
	if err != nil {
		var zero Resp
		return zero, err
	}
	return rs.Call(ctx, req)
}

func (d *DynamicReplicaSet[Req, Resp]) callShard(ctx context.Context, req Req, p *policy, rep *Report) (Resp, error) {
	rs, err := d.current(p.log)
	if err != nil {
		var zero Resp
		rep.Attempts = 0
		return zero, err
	}
	return rs.callShard(ctx, req, p, rep)
}
