package ambassador

import (
	"slices"
	"testing"
)

// TestAttemptsTriedOnce: a retry back to an endpoint already tried does not record it again, so
// the endpoints a request has failed on stay in tried: A, B, A, A, C leaves A, B and C.
func TestAttemptsTriedOnce(t *testing.T) {
	a, b, c := &Backend{Endpoint: Endpoint{Addr: "a:1"}}, &Backend{Endpoint: Endpoint{Addr: "b:1"}}, &Backend{Endpoint: Endpoint{Addr: "c:1"}}
	var at attempts
	for _, be := range []*Backend{a, b, a, a, c} {
		at.failed(&tryError{}, be)
	}
	if got, want := at.tried(), []*Backend{a, b, c}; !slices.Equal(got, want) {
		addrs := func(bs []*Backend) (s []string) {
			for _, be := range bs {
				s = append(s, be.Addr)
			}
			return s
		}
		t.Errorf("tried after failures on a, b, a, a, c = %v, want %v", addrs(got), addrs(want))
	}
	if allocs := testing.AllocsPerRun(100, func() { at.failed(nil, a) }); allocs != 0 {
		t.Errorf("failed on a tried endpoint allocates %v times", allocs)
	}
}
