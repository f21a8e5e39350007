package workqueue

import (
	"math"
	"strconv"
	"testing"
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
