package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// TestJSONFormat: -format json gives a line with data after its object a parse_error (the raw
// line kept as msg), and keeps both fields of a key written twice, as logfmt lines do.
func TestJSONFormat(t *testing.T) {
	var out, errb bytes.Buffer
	in := strings.NewReader(`{"a":1}}` + "\n" + `{"msg":"x","msg":"y"}` + "\n")
	if err := run(context.Background(), []string{"-format", "json"}, in, &out, &errb); err != nil {
		t.Fatalf("run: %v (%s)", err, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("output %q, want 2 lines", out.String())
	}
	var first, second map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &second); err != nil {
		t.Fatal(err)
	}
	if first["parse_error"] == nil || first["msg"] != `{"a":1}}` {
		t.Errorf("first line %v, want a parse_error with the raw line as msg", first)
	}
	if second["msg"] != "x" || second["orig_msg"] != "y" {
		t.Errorf("second line %v, want msg x and orig_msg y", second)
	}
}
