package scatter

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A refused request says nothing of the replica: it neither ends a run of errors nor becomes a
// latency sample (of the average, the successful average or the sketch).
func TestObserveBadRequestIsNoSample(t *testing.T) {
	rs, err := NewReplicaSet[int, int](
		LeafFunc[int, int](func(context.Context, int) (int, error) { return 0, nil }),
		LeafFunc[int, int](func(context.Context, int) (int, error) { return 0, nil }),
	)
	if err != nil {
		t.Fatal(err)
	}
	rs.observe(0, 10*time.Millisecond, nil, false, &rs.alone, attemptPrimary)
	rs.observe(0, 5*time.Millisecond, errors.New("down"), false, &rs.alone, attemptPrimary)
	type snap struct {
		errRun, samples int
		okEWMA, ewma    float64
	}
	st := &rs.stats[0]
	before, n := snap{st.errRun, st.samples, st.okEWMA, st.ewma}, rs.sketch.Count()
	rs.observe(0, time.Microsecond, BadRequest(errors.New("k out of range")), false, &rs.alone, attemptPrimary)
	after := snap{st.errRun, st.samples, st.okEWMA, st.ewma}
	if after.errRun != before.errRun || after.okEWMA != before.okEWMA || after.ewma != before.ewma || after.samples != before.samples {
		t.Errorf("after a refused request: errRun %d, okEWMA %v, ewma %v, samples %d; want %d, %v, %v, %d as before",
			after.errRun, after.okEWMA, after.ewma, after.samples, before.errRun, before.okEWMA, before.ewma, before.samples)
	}
	if c := rs.sketch.Count(); c != n {
		t.Errorf("sketch count %d after a refused request, want %d", c, n)
	}
}
