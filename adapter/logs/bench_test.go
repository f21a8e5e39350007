package logs

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// jsonLines are the lines BenchmarkJSONParse and TestJSONParseAllocs parse: a short record, a
// wide access-log record and one with nested values, an escaped key and a number beyond int64.
var jsonLines = []struct {
	name string
	line []byte
}{
	{"small", []byte(`{"time":"2026-11-28T16:00:00Z","level":"info","msg":"request served","status":200,"dur":0.0123}`)},
	{"wide", []byte(`{"time":"2026-11-28T16:00:00Z","level":"info","msg":"request served","method":"GET","path":"/api/v1/items?x=1","status":200,"bytes":12345,"dur_ms":12.3,"remote":"10.0.0.1:5555","ua":"Mozilla/5.0 (X11; Linux x86_64)","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","user":"alice","tenant":"acme","region":"eu-west-1","retry":false}`)},
	{"nested", []byte(`{"level":"warn","msg":"x","req":{"h":{"a":"b","c":[1,2,3]},"id":12345678901234567890123},"k\"ey":"v"}`)},
}

// mapParse is the baseline JSON.Parse is measured against: the line decoded into a map (which
// loses a repeated key), its fields sorted.
func mapParse(line []byte) ([]Field, error) {
	dec := json.NewDecoder(bytes.NewReader(bytes.TrimSpace(line)))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	out := make([]Field, 0, len(m))
	for k, v := range m {
		out = append(out, Field{k, v})
	}
	slices.SortFunc(out, func(a, b Field) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// BenchmarkJSONParse compares JSON.Parse with the map decode it builds on (mapParse), in the
// same run.
func BenchmarkJSONParse(b *testing.B) {
	for _, l := range jsonLines {
		for _, f := range []struct {
			name  string
			parse func([]byte) ([]Field, error)
		}{{"map", mapParse}, {"Parse", JSON{}.Parse}} {
			b.Run(l.name+"/"+f.name, func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(l.line)))
				for b.Loop() {
					if _, err := f.parse(l.line); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// TestJSONParseAllocs: JSON.Parse of a line without a repeated key allocates little more than
// decoding it into a map does (reading it member by member allocated three times as much).
func TestJSONParseAllocs(t *testing.T) {
	for _, l := range jsonLines {
		base := testing.AllocsPerRun(100, func() { mapParse(l.line) })
		got := testing.AllocsPerRun(100, func() { JSON{}.Parse(l.line) })
		if got > base+4 {
			t.Errorf("%s: Parse made %v allocations, the map decode %v; want at most 4 more", l.name, got, base)
		}
	}
}
