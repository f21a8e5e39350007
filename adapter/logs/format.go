package logs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/podblocks/podblocks/internal/jsondoc"
)

// Field is one parsed key/value. Values are strings, except where a format knows better (JSON
// keeps numbers, booleans, nulls, arrays and objects; the common log format's status and bytes
// are int64).
type Field struct {
	Key   string
	Value any
}

// Format parses one log line (without its newline) into fields, in a stable order.
type Format interface {
	Parse(line []byte) ([]Field, error)
}

// Errors of the formats.
var (
	ErrNoMatch      = errors.New("logs: line does not match the format")
	ErrNotObject    = errors.New("logs: line is not a JSON object")
	ErrUnterminated = errors.New("logs: unterminated quoted value")
	ErrEmptyKey     = errors.New("logs: empty key")
	// ErrWrite wraps an error writing the output (as opposed to a line that did not parse, which
	// is still written).
	ErrWrite = errors.New("logs: write")
)

// Regex is a format given by a regular expression with named groups: each named group that
// took part in the match becomes a field.
type Regex struct {
	re    *regexp.Regexp
	names []string
}

// NewRegex compiles expr; it must have at least one named group.
func NewRegex(expr string) (*Regex, error) {
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, fmt.Errorf("logs: regex: %w", err)
	}
	names := re.SubexpNames()
	if !slices.ContainsFunc(names, func(s string) bool { return s != "" }) {
		return nil, fmt.Errorf("logs: regex %q has no named group", expr)
	}
	return &Regex{re: re, names: names}, nil
}

// Parse implements Format.
func (r *Regex) Parse(line []byte) ([]Field, error) {
	m := r.re.FindSubmatchIndex(line)
	if m == nil {
		return nil, ErrNoMatch
	}
	var out []Field
	for i, n := range r.names {
		if n == "" || m[2*i] < 0 {
			continue
		}
		out = append(out, Field{n, string(line[m[2*i]:m[2*i+1]])})
	}
	return out, nil
}

// Logfmt parses key=value pairs separated by spaces; values may be double-quoted with Go/JSON
// escapes; a bare key gets the value true.
type Logfmt struct{}

// Parse implements Format.
func (Logfmt) Parse(line []byte) ([]Field, error) {
	var out []Field
	i := 0
	for {
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
		if i >= len(line) {
			break
		}
		start := i
		for i < len(line) && line[i] != '=' && line[i] != ' ' && line[i] != '\t' {
			if line[i] == '"' {
				return nil, fmt.Errorf("logs: logfmt: quote in key at byte %d: %w", i, ErrNoMatch)
			}
			i++
		}
		key := string(line[start:i])
		if key == "" {
			return nil, fmt.Errorf("logs: logfmt: byte %d: %w", i, ErrEmptyKey)
		}
		if i >= len(line) || line[i] != '=' {
			out = append(out, Field{key, true})
			continue
		}
		i++ // '='
		if i < len(line) && line[i] == '"' {
			j := i + 1
			for ; j < len(line); j++ {
				if line[j] == '\\' {
					j++
					continue
				}
				if line[j] == '"' {
					break
				}
			}
			if j >= len(line) {
				return nil, fmt.Errorf("logs: logfmt: key %q: %w", key, ErrUnterminated)
			}
			v, err := strconv.Unquote(string(line[i : j+1]))
			if err != nil {
				// Not a Go string literal (e.g. a lone \x): keep the raw text between the quotes.
				v = string(line[i+1 : j])
			}
			out = append(out, Field{key, v})
			i = j + 1
			continue
		}
		start = i
		for i < len(line) && line[i] != ' ' && line[i] != '\t' {
			i++
		}
		out = append(out, Field{key, string(line[start:i])})
	}
	if len(out) == 0 {
		return nil, ErrNoMatch
	}
	return out, nil
}

// JSON parses a JSON object; fields come out sorted by key. Numbers stay numbers (json.Number).
// A key that appears twice gives two fields, in the line's order (as a logfmt line's would): the
// normalizer renames the second of a reserved key to orig_<key> rather than losing it. Anything
// but white space after the object is an error.
type JSON struct{}

// Parse implements Format.
func (JSON) Parse(line []byte) ([]Field, error) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 || line[0] != '{' {
		return nil, ErrNotObject
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("logs: json: %w", err)
	}
	if err := jsondoc.End(dec); err != nil {
		return nil, fmt.Errorf("logs: json: after the object: %w: %w", err, ErrNotObject)
	}
	if objectMembers(line) != len(m) { // a repeated key, which the map kept once
		return jsonMembers(line)
	}
	out := make([]Field, 0, len(m))
	for k, v := range m {
		out = append(out, Field{k, v})
	}
	slices.SortFunc(out, func(a, b Field) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// objectMembers counts the members of the valid JSON object line: its colons outside strings
// and nested values.
func objectMembers(line []byte) int {
	n, depth, inString := 0, 0, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		if inString {
			switch c {
			case '\\':
				i++ // the escaped byte; a \uXXXX's digits are not special
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			depth++
		case '}', ']':
			depth--
		case ':':
			if depth == 1 {
				n++
			}
		}
	}
	return n
}

// jsonMembers is JSON.Parse of the valid JSON object line read member by member, so that a
// repeated key gives a field per member, in the line's order (slower than a map decode).
func jsonMembers(line []byte) ([]Field, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil { // '{'
		return nil, fmt.Errorf("logs: json: %w", err)
	}
	var out []Field
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("logs: json: %w", err)
		}
		key, _ := tok.(string) // the decoder allows only a string here
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("logs: json: key %q: %w", key, err)
		}
		out = append(out, Field{key, v})
	}
	slices.SortStableFunc(out, func(a, b Field) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// CommonLog parses the common log format (NCSA; Apache's and nginx's default access log) and,
// with Combined set, the combined log format (referer and user agent appended). Fields:
// remote_addr, ident, user, time, request, method, path, protocol, status, bytes, and referer,
// user_agent. "-" fields are left out; status and bytes are int64.
type CommonLog struct {
	Combined bool
}

// Parse implements Format.
func (c CommonLog) Parse(line []byte) ([]Field, error) {
	s := string(line)
	var out []Field
	add := func(k, v string) {
		if v != "-" && v != "" {
			out = append(out, Field{k, v})
		}
	}
	var host, ident, user string
	var ok bool
	if host, s, ok = strings.Cut(s, " "); !ok {
		return nil, ErrNoMatch
	}
	if ident, s, ok = strings.Cut(s, " "); !ok {
		return nil, ErrNoMatch
	}
	if user, s, ok = strings.Cut(s, " "); !ok {
		return nil, ErrNoMatch
	}
	if !strings.HasPrefix(s, "[") {
		return nil, ErrNoMatch
	}
	ts, s, ok := strings.Cut(s[1:], "] ")
	if !ok {
		return nil, ErrNoMatch
	}
	req, s, err := quoted(s)
	if err != nil {
		return nil, err
	}
	s = strings.TrimPrefix(s, " ")
	status, s, _ := strings.Cut(s, " ")
	size, s, _ := strings.Cut(s, " ")
	add("remote_addr", host)
	add("ident", ident)
	add("user", user)
	add("time", ts)
	add("request", req)
	if parts := strings.SplitN(req, " ", 3); len(parts) == 3 {
		add("method", parts[0])
		add("path", parts[1])
		add("protocol", parts[2])
	}
	if status != "-" {
		n, err := strconv.ParseInt(status, 10, 64)
		if err != nil || n < 100 || n > 999 {
			return nil, ErrNoMatch
		}
		out = append(out, Field{"status", n})
	}
	if size != "-" {
		n, err := strconv.ParseInt(size, 10, 64)
		if err != nil || n < 0 {
			return nil, ErrNoMatch
		}
		out = append(out, Field{"bytes", n})
	}
	if c.Combined {
		ref, rest, err := quoted(s)
		if err != nil {
			return nil, err
		}
		ua, _, err := quoted(strings.TrimPrefix(rest, " "))
		if err != nil {
			return nil, err
		}
		add("referer", ref)
		add("user_agent", ua)
	}
	return out, nil
}

// quoted reads a double-quoted string with backslash escapes at the start of s (nginx and
// Apache escape '"' and '\' as \" and \\, and other bytes as \xHH).
func quoted(s string) (string, string, error) {
	if !strings.HasPrefix(s, `"`) {
		return "", s, ErrNoMatch
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			return b.String(), s[i+1:], nil
		case '\\':
			if i+1 < len(s) {
				i++
				if s[i] == 'x' && i+2 < len(s) {
					if n, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
						b.WriteByte(byte(n))
						i += 2
						continue
					}
				}
				b.WriteByte(s[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", s, ErrUnterminated
}

// validUTF8 replaces invalid UTF-8 so that output stays valid JSON text.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
