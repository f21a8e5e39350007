package jsondoc_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"go.uber.org/goleak"

	"github.com/podblocks/podblocks/internal/jsondoc"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestEnd(t *testing.T) {
	for _, tc := range []struct {
		in       string
		trailing bool
	}{
		{`{"a":1}`, false},
		{" [1] \n\t", false},
		{`1`, false},
		{`{"a":1}}`, true},
		{`[1]]`, true},
		{`1]`, true},
		{`{"a":1} }`, true},
		{`{"a":1} x`, true},
		{`{} {}`, true},
		{`1 2`, true},
	} {
		dec := json.NewDecoder(bytes.NewReader([]byte(tc.in)))
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("Decode(%q): %v", tc.in, err)
		}
		err := jsondoc.End(dec)
		if got := errors.Is(err, jsondoc.ErrTrailing); got != tc.trailing || (err != nil && !got) {
			t.Errorf("End after %q = %v, want trailing %v", tc.in, err, tc.trailing)
		}
	}
}

// FuzzEnd: a text passes Decode and End exactly when json.Valid accepts it.
func FuzzEnd(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"a":1}}`, `[1]]`, `1]`, `1 2`, ` "x" `} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		dec := json.NewDecoder(bytes.NewReader([]byte(in)))
		dec.UseNumber() // a float64 would refuse 1e400
		var v any
		ok := dec.Decode(&v) == nil && jsondoc.End(dec) == nil
		if ok != json.Valid([]byte(in)) {
			t.Errorf("%q: Decode+End ok %v, json.Valid %v", in, ok, !ok)
		}
	})
}
