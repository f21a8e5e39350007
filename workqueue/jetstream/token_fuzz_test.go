package jetstream

import (
	"strconv"
	"testing"
)

// FuzzParseToken checks the lease token parser: it accepts only what appendToken writes (appending
// what it read gives the input back, within maxTokenLen bytes), so every token has one spelling.
func FuzzParseToken(f *testing.F) {
	f.Add("9.1.9.z.a")
	f.Add("123456789012.2.1300." + strconv.FormatUint(1<<63, 36) + ".queue_name-1")
	f.Add("9999999999999999999.9999999999999999999.9999999999999999999.3w5e11264sgsf.q")
	for _, tok := range badTokens {
		f.Add(tok)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tk, epoch, name, ok := parseToken(s)
		if !ok {
			return
		}
		if len(s) > maxTokenLen {
			t.Fatalf("parseToken(%q) accepted %d bytes, more than maxTokenLen (%d)", s, len(s), maxTokenLen)
		}
		if got := string(appendToken(nil, tk, epoch, name)); got != s {
			t.Fatalf("parseToken(%q) = %+v, %d, %q; written back: %q", s, tk, epoch, name, got)
		}
	})
}
