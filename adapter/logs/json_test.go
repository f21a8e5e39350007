package logs

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestJSONTrailingData(t *testing.T) {
	for _, line := range []string{`{"a":1}}`, `{"a":1} }`, `{"a":1}]`, `{"a":1} x`, `{"a":1} {"b":2}`} {
		if _, err := (JSON{}).Parse([]byte(line)); !errors.Is(err, ErrNotObject) {
			t.Errorf("Parse(%q) error = %v, want ErrNotObject", line, err)
		}
	}
}

// TestJSONDuplicateKeys: a JSON line with a key twice keeps both fields, as a logfmt line does:
// the first of a reserved key is used, the next is written as orig_<key>; of another key the
// last is written.
func TestJSONDuplicateKeys(t *testing.T) {
	got, err := (JSON{}).Parse([]byte(`{"msg":"x","b":1,"msg":"y","a":true}`))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Field{{"a", true}, {"b", json.Number("1")}, {"msg", "x"}, {"msg", "y"}}, got); diff != "" {
		t.Errorf("Parse (-want +got):\n%s", diff)
	}
	record := func(f Format, line string) map[string]any {
		var buf bytes.Buffer
		n, err := New(f, &buf, WithClock(func() time.Time { return fixed }))
		if err != nil {
			t.Fatal(err)
		}
		n.Line([]byte(line))
		var m map[string]any
		if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
			t.Fatalf("output %q: %v", buf.Bytes(), err)
		}
		return m
	}
	j := record(JSON{}, `{"msg":"x","msg":"y","k":"1","k":"2"}`)
	l := record(Logfmt{}, `msg=x msg=y k=1 k=2`)
	if diff := cmp.Diff(l, j); diff != "" {
		t.Errorf("JSON line's record differs from the logfmt line's (-logfmt +json):\n%s", diff)
	}
	if j["msg"] != "x" || j["orig_msg"] != "y" {
		t.Errorf("record %v, want msg x and orig_msg y", j)
	}
}

// FuzzJSONParse: JSON.Parse accepts a line exactly when it is one valid JSON object, and gives
// one field per member, the line's keys in sorted order.
func FuzzJSONParse(f *testing.F) {
	for _, s := range []string{`{"msg":"hi","n":1.5}`, `{"a":1}}`, `{"a":1,}`, `{"a":1,"a":2}`, `[1]`, `{} x`, `{"a":{"b":[1]}}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		fields, err := (JSON{}).Parse([]byte(line))
		trimmed := bytes.TrimSpace([]byte(line))
		valid := json.Valid(trimmed) && len(trimmed) > 0 && trimmed[0] == '{'
		if (err == nil) != valid {
			t.Fatalf("Parse(%q) error %v, json.Valid object %v", line, err, valid)
		}
		if err != nil {
			return
		}
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		var keys []string
		dec.Token()
		for dec.More() {
			k, _ := dec.Token()
			keys = append(keys, k.(string))
			var skip json.RawMessage
			dec.Decode(&skip)
		}
		slices.Sort(keys)
		var got []string
		for _, fl := range fields {
			got = append(got, fl.Key)
		}
		if diff := cmp.Diff(keys, got); diff != "" {
			t.Errorf("Parse(%q) keys (-want +got):\n%s", line, diff)
		}
	})
}
