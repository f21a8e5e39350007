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

// An order whose tick was taken before the replica's last error was recorded (rr.Add, then
// s.mu.Lock, while observe records errAt in between) sees the replica failing; of two orders due
// at once, the later tick locking first, only one takes the try; and errAt never moves back.
func TestRankTickBeforeError(t *testing.T) {
	st := replicaStat{errRun: 10, errAt: 1000}
	if got := st.rank(999); got != rankFailing {
		t.Errorf("rank(999) after an error recorded at 1000 = %d, want rankFailing (%d); errAt now %d", got, rankFailing, st.errAt)
	}
	st = replicaStat{errRun: 10, errAt: 0} // due since tick 1024
	a, b := st.rank(2000), st.rank(1999)
	if a != rankProbe || b != rankFailing || st.errAt != 2000 {
		t.Errorf("ranks at ticks 2000 then 1999 = %d, %d (errAt %d); want %d, %d (errAt 2000)", a, b, st.errAt, rankProbe, rankFailing)
	}
	st.failed(1990) // an error read at an older counter than the try taken at 2000
	if st.errAt != 2000 || st.errRun != 11 {
		t.Errorf("after an error at 1990: errAt %d errRun %d, want 2000, 11", st.errAt, st.errRun)
	}
}
