package scrape

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Path is a compiled JSONPath subset: a root ("$", or a kubectl-style "{...}" wrapper), then
// ".field", "['field']", "[N]" (negative counts from the end) and "[*]" / ".*" (every element or
// value). Examples: "$.stats.requests", "{.values[*]}", "$.items[0]['weird key']".
type Path struct {
	src   string
	steps []step
}

type step struct {
	field string
	index int
	kind  stepKind
}

type stepKind uint8

const (
	stepField stepKind = iota
	stepIndex
	stepAll
)

// ErrBadPath is a path that cannot be compiled.
var ErrBadPath = errors.New("scrape: bad path")

// CompilePath compiles a path.
func CompilePath(s string) (Path, error) {
	p := Path{src: s}
	in := strings.TrimSpace(s)
	if strings.HasPrefix(in, "{") {
		if !strings.HasSuffix(in, "}") {
			return p, fmt.Errorf("%w %q: unbalanced braces", ErrBadPath, s)
		}
		in = strings.TrimSpace(in[1 : len(in)-1]) // json_exporter writes '{ .counter }'
	}
	in = strings.TrimPrefix(in, "$")
	if in == "" && s != "" && strings.TrimSpace(s) != "$" && strings.TrimSpace(s) != "{}" {
		return p, fmt.Errorf("%w %q: empty", ErrBadPath, s)
	}
	for len(in) > 0 {
		switch in[0] {
		case '.':
			in = in[1:]
			if strings.HasPrefix(in, "*") {
				p.steps = append(p.steps, step{kind: stepAll})
				in = in[1:]
				continue
			}
			end := strings.IndexAny(in, ".[ \t")
			if end < 0 {
				end = len(in)
			}
			if end == 0 {
				return p, fmt.Errorf("%w %q: empty field name", ErrBadPath, s)
			}
			p.steps = append(p.steps, step{field: in[:end]})
			in = in[end:]
		case '[':
			end := strings.IndexByte(in, ']')
			if end < 0 {
				return p, fmt.Errorf("%w %q: unclosed [", ErrBadPath, s)
			}
			sel := in[1:end]
			in = in[end+1:]
			switch {
			case sel == "*":
				p.steps = append(p.steps, step{kind: stepAll})
			case len(sel) >= 2 && (sel[0] == '\'' || sel[0] == '"') && sel[len(sel)-1] == sel[0]:
				p.steps = append(p.steps, step{field: sel[1 : len(sel)-1]})
			default:
				n, err := strconv.Atoi(sel)
				if err != nil {
					return p, fmt.Errorf("%w %q: selector [%s]", ErrBadPath, s, sel)
				}
				p.steps = append(p.steps, step{kind: stepIndex, index: n})
			}
		default:
			return p, fmt.Errorf("%w %q: unexpected %q", ErrBadPath, s, in[0])
		}
	}
	return p, nil
}

// String returns the path as written.
func (p Path) String() string { return p.src }

// Eval returns every value the path selects in doc (a value decoded by encoding/json with
// UseNumber or without). Object members selected by [*] come in key order.
func (p Path) Eval(doc any) []any {
	cur := []any{doc}
	for _, st := range p.steps {
		var next []any
		for _, v := range cur {
			switch st.kind {
			case stepField:
				if m, ok := v.(map[string]any); ok {
					if x, ok := m[st.field]; ok {
						next = append(next, x)
					}
				}
			case stepIndex:
				if a, ok := v.([]any); ok {
					i := st.index
					if i < 0 {
						i += len(a)
					}
					if i >= 0 && i < len(a) {
						next = append(next, a[i])
					}
				}
			case stepAll:
				switch x := v.(type) {
				case []any:
					next = append(next, x...)
				case map[string]any:
					for _, k := range sortedKeys(x) {
						next = append(next, x[k])
					}
				}
			}
		}
		cur = next
	}
	return cur
}
