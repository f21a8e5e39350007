package workqueue

import (
	"math"
	"strconv"
	"testing"
	"time"
)

// parseDigits must accept exactly what strconv.ParseUint(s, 10, bits) accepts, with the same value
// (the seeds include both sides of its 9-digit fast path, with a bad byte at its last digit).
func FuzzParseDigits(f *testing.F) {
	for _, s := range []string{"0", "7", "007", "", "+1", "-1", "1_0", "0x1", " 1", "2147483647", "2147483648",
		"18446744073709551615", "18446744073709551616", "99999999999999999999", "00000000000000000000001",
		"999999999", "1000000000", "00000000:", "12345678/", "0000000000", "4294967295"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, c := range []struct {
			max  uint64
			bits int
		}{{math.MaxUint64, 64}, {math.MaxInt32, 31}} {
			want, err := strconv.ParseUint(s, 10, c.bits)
			got, ok := parseDigits(s, c.max)
			if ok != (err == nil) || (ok && got != want) {
				t.Errorf("parseDigits(%q, %d) = %d, %v; strconv.ParseUint(_, 10, %d) = %d, %v", s, c.max, got, ok, c.bits, want, err)
			}
		}
	})
}

// leaseLeft takes a deadline made in this process on the monotonic clock and one that came over the
// wire (no monotonic reading) on the wall clock; both give the time left.
func TestPoolWorkerLeaseLeft(t *testing.T) {
	w := &poolWorker{epoch: time.Now().Add(-time.Hour)}
	local := time.Now().Add(30 * time.Second) // leased, then started
	start := w.since()
	for _, tc := range []struct {
		name string
		d    time.Time
	}{{"monotonic", local}, {"wall clock only", local.Round(0)}, {"parsed", mustParse(t, local.Format(time.RFC3339Nano))}} {
		if left := w.leaseLeft(tc.d, start); left < 29*time.Second || left > 30*time.Second {
			t.Errorf("%s: %v left of a lease ending in 30s", tc.name, left)
		}
	}
}

func mustParse(t *testing.T, s string) time.Time {
	t.Helper()
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}
