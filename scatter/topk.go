package scatter

import "slices"

// TopKMerge returns a Merge that keeps the k best items over all shards' answers: items extracts a
// shard answer's items and better(a, b) says a ranks before b. Fold keeps a bounded heap (O(log k)
// per item, at most k items held), Final sorts it best first. Ties keep no particular order unless
// better breaks them.
func TopKMerge[Resp, T any](k int, better func(a, b T) bool, items func(Resp) []T) Merge[Resp, []T] {
	return Merge[Resp, []T]{
		Fold: func(acc []T, _ int, r Resp) []T {
			for _, it := range items(r) {
				acc = pushTopK(acc, k, better, it)
			}
			return acc
		},
		Final: func(acc []T, _ []Slot[Resp]) ([]T, error) {
			slices.SortFunc(acc, func(a, b T) int {
				switch {
				case better(a, b):
					return -1
				case better(b, a):
					return 1
				}
				return 0
			})
			return acc, nil
		},
	}
}

// pushTopK adds v to h, a min-heap (by better: the worst item at the root) of at most k items.
func pushTopK[T any](h []T, k int, better func(a, b T) bool, v T) []T {
	if k <= 0 {
		return h
	}
	if len(h) < k {
		h = append(h, v)
		for i := len(h) - 1; i > 0; { // sift up: worse items rise to the root
			p := (i - 1) / 2
			if !better(h[p], h[i]) {
				break
			}
			h[p], h[i] = h[i], h[p]
			i = p
		}
		return h
	}
	if !better(v, h[0]) {
		return h
	}
	h[0] = v
	for i := 0; ; { // sift down
		l, r, w := 2*i+1, 2*i+2, i
		if l < len(h) && better(h[w], h[l]) {
			w = l
		}
		if r < len(h) && better(h[w], h[r]) {
			w = r
		}
		if w == i {
			return h
		}
		h[i], h[w] = h[w], h[i]
		i = w
	}
}
