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
// A ".field" name ends at '.', '[' or white space and may not hold '{' or '}'; a quoted name
// ('...' or "...") holds any byte but its quote, ']' and braces included ("$['a]b']").
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
			end := strings.IndexAny(in, ".[ \t{}") // a brace in a name is a mistake: {.a}{.b}, $.a}
			if end < 0 {
				end = len(in)
			}
			if end == 0 {
				return p, fmt.Errorf("%w %q: empty field name", ErrBadPath, s)
			}
			p.steps = append(p.steps, step{field: in[:end]})
			in = in[end:]
		case '[':
			if len(in) > 1 && (in[1] == '\'' || in[1] == '"') { // ['key'] or ["key"]: any byte but the quote
				q := strings.IndexByte(in[2:], in[1])
				if q < 0 || !strings.HasPrefix(in[2+q+1:], "]") {
					return p, fmt.Errorf("%w %q: unclosed quoted selector", ErrBadPath, s)
				}
				p.steps = append(p.steps, step{field: in[2 : 2+q]})
				in = in[2+q+2:]
				continue
			}
			end := strings.IndexByte(in, ']')
			if end < 0 {
				return p, fmt.Errorf("%w %q: unclosed [", ErrBadPath, s)
			}
			sel := in[1:end]
			in = in[end+1:]
			switch {
			case sel == "*":
				p.steps = append(p.steps, step{kind: stepAll})
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

// closeBrace returns the index of the '}' that closes the path starting at s[0] == '{', skipping
// quoted names, or -1.
func closeBrace(s string) int {
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '}':
			return i
		case '\'', '"':
			if s[i-1] == '[' {
				q := strings.IndexByte(s[i+1:], s[i])
				if q < 0 {
					return -1
				}
				i += q + 1
			}
		}
	}
	return -1
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
