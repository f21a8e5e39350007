package sidecar

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
)

// countedLabels returns the label values that the package's code (not its tests) counts each
// counter by, by the name of the field the counter is in: the string literals in calls
// x.field.WithLabelValues("value").
func countedLabels(t *testing.T) map[string][]string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	counted := map[string][]string{}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) != 1 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "WithLabelValues" {
				return true
			}
			field, ok := sel.X.(*ast.SelectorExpr)
			lit, isLit := call.Args[0].(*ast.BasicLit)
			if !ok || !isLit || lit.Kind != token.STRING {
				return true
			}
			v, err := strconv.Unquote(lit.Value)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(counted[field.Sel.Name], v) {
				counted[field.Sel.Name] = append(counted[field.Sel.Name], v)
			}
			return true
		})
	}
	return counted
}

// TestTailerMetricHelpListsEveryLabelValue: the Help of each of the Tailer's counters by a label
// lists, in its parentheses, the values the Tailer counts it by, no more and no fewer:
// skipped_total's missed "nul" (a run of NUL bytes skipped at a line's start).
func TestTailerMetricHelpListsEveryLabelValue(t *testing.T) {
	m := newTailerMetrics(nil)
	vecs := map[string]*prometheus.CounterVec{"skipped": m.skipped, "rotations": m.rotations}
	for f := range reflect.TypeFor[tailerMetrics]().Fields() {
		if _, ok := vecs[f.Name]; !ok && f.Type == reflect.TypeFor[*prometheus.CounterVec]() {
			t.Errorf("tailerMetrics.%s is a counter by a label that the test does not check: add it to vecs", f.Name)
		}
	}
	counted := countedLabels(t)
	for field, vec := range vecs {
		want := counted[field]
		if len(want) == 0 {
			t.Errorf("tailerMetrics.%s: no label values counted: the test does not find the calls", field)
			continue
		}
		reg := prometheus.NewRegistry()
		if err := reg.Register(vec); err != nil {
			t.Fatal(err)
		}
		for _, v := range want {
			vec.WithLabelValues(v)
		}
		families, err := reg.Gather()
		if err != nil || len(families) != 1 {
			t.Fatalf("tailerMetrics.%s: gathered %d metric families, %v", field, len(families), err)
		}
		help := families[0].GetHelp()
		open, end := strings.LastIndex(help, "("), strings.LastIndex(help, ")")
		if open < 0 || end < open {
			t.Errorf("%s: Help %q lists no label values in parentheses", families[0].GetName(), help)
			continue
		}
		listed := strings.Split(help[open+1:end], ", ")
		slices.Sort(listed)
		slices.Sort(want)
		if diff := cmp.Diff(want, listed); diff != "" {
			t.Errorf("%s: Help %q lists label values (-counted +listed):\n%s", families[0].GetName(), help, diff)
		}
	}
}
