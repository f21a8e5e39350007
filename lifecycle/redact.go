package lifecycle

import (
	"cmp"
	"encoding"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Redacted replaces the value of a secret field in /configz and /statusz.
const Redacted = "[REDACTED]"

// secretName matches field and map key names that hold secrets.
var secretName = regexp.MustCompile(`(?i)(password|passwd|secret|token|credential|apikey|api_key|private_?key|auth)`)

// Redact returns a JSON-ready copy of v with secrets replaced by Redacted. A struct field is a secret
// when it is tagged `podblocks:"secret"` or when its name (or JSON name) looks like one (password,
// secret, token, credential, api key, private key, auth); a map entry when its key looks like one.
// Field names follow encoding/json tags; unexported fields and fields tagged json:"-" are left out,
// and the fields of untagged embedded structs are promoted by encoding/json's rules (of the fields
// sharing a name the shallowest wins, then the tagged one; a tie leaves the name out); map keys are
// written as encoding/json writes them (strings, TextMarshalers, integers). One difference: an
// embedded TextMarshaler is written under its type name as its text, not opened up field by field.
//
// Redaction goes by name: a secret under a name that does not look like one (a DSN such as
// "host=db password=x", a "KEY=value" environment string, an opaque blob) is shown as it is. The one
// exception is a string that parses as a URL with a password in its user info
// ("postgres://u:pw@db/x"), whose password is replaced by "xxxxx" (url.URL.Redacted). Give such
// fields a secret-looking name or the podblocks:"secret" tag.
func Redact(v any) any {
	return redact(reflect.ValueOf(v), 0)
}

var (
	textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()
	durationType  = reflect.TypeFor[time.Duration]()
)

func redact(v reflect.Value, depth int) any {
	if !v.IsValid() || depth > 32 {
		return nil
	}
	if v.Type().Implements(textMarshaler) && (v.Kind() != reflect.Pointer || !v.IsNil()) {
		if b, err := v.Interface().(encoding.TextMarshaler).MarshalText(); err == nil {
			return string(b)
		}
	}
	if v.Type() == durationType {
		return time.Duration(v.Int()).String()
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return redact(v.Elem(), depth+1)
	case reflect.Struct:
		return redactStruct(v, depth)
	case reflect.Map:
		out := make(map[string]any, v.Len())
		iter := v.MapRange()
		for iter.Next() {
			key, ok := mapKey(iter.Key())
			if !ok {
				continue
			}
			if secretName.MatchString(key) {
				out[key] = Redacted
				continue
			}
			out[key] = redact(iter.Value(), depth+1)
		}
		return out
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.IsNil() {
			return nil
		}
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return v.Interface() // []byte: encoding/json writes base64
		}
		out := make([]any, v.Len())
		for i := range out {
			out[i] = redact(v.Index(i), depth+1)
		}
		return out
	case reflect.Func, reflect.Chan, reflect.UnsafePointer:
		return nil
	case reflect.String:
		if u, err := url.Parse(v.String()); err == nil && u.User != nil {
			if _, ok := u.User.Password(); ok {
				return u.Redacted()
			}
		}
		return v.Interface()
	default:
		return v.Interface()
	}
}

// redactStruct is redact for a struct: its fields as encoding/json names and picks them (see
// jsonFields), a secret one (or one promoted from a secret embedded struct) replaced by Redacted, or
// by "" when it is empty.
func redactStruct(v reflect.Value, depth int) map[string]any {
	fields := jsonFields(v.Type())
	out := make(map[string]any, len(fields))
	for _, f := range fields {
		fv, ok := fieldByIndex(v, f.index)
		if !ok {
			continue // under a nil embedded pointer: encoding/json leaves it out
		}
		if f.secret {
			if !fv.IsZero() {
				out[f.name] = Redacted
			} else {
				out[f.name] = ""
			}
			continue
		}
		out[f.name] = redact(fv, depth+len(f.index))
	}
	return out
}

// jsonField is one field encoding/json writes for a struct type.
type jsonField struct {
	name   string
	tagged bool  // the name comes from a json tag
	index  []int // reflect.Value.FieldByIndex's, through embedded structs
	secret bool  // the field, or an embedded struct it is promoted from, is secret
}

// jsonFields lists the fields encoding/json writes for struct type t, by its rules: exported fields
// (json:"-" left out, renamed by their tag), and the fields of untagged embedded structs promoted,
// breadth first (each embedded type once, so an embedding cycle ends). Of the fields sharing a name,
// the shallowest wins, then the tagged one; a tie at that depth leaves the name out. Unlike
// encoding/json, an embedded TextMarshaler is not opened up: it is written under its type name as
// its text (or left out if unexported), so that fields its MarshalText hides stay hidden.
func jsonFields(t reflect.Type) []jsonField {
	type embedded struct {
		t      reflect.Type
		index  []int
		secret bool
	}
	var (
		fields  []jsonField
		next    = []embedded{{t: t}}
		count   map[reflect.Type]int
		visited = map[reflect.Type]bool{}
	)
	nextCount := map[reflect.Type]int{t: 1}
	for len(next) > 0 {
		current := next
		next, count, nextCount = nil, nextCount, map[reflect.Type]int{}
		for _, e := range current {
			if visited[e.t] {
				continue
			}
			visited[e.t] = true
			for i := range e.t.NumField() {
				sf := e.t.Field(i)
				tag := sf.Tag.Get("json")
				if tag == "-" {
					continue
				}
				ft := sf.Type
				if ft.Name() == "" && ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				textual := ft.Implements(textMarshaler) || reflect.PointerTo(ft).Implements(textMarshaler)
				if sf.Anonymous {
					if !sf.IsExported() && (ft.Kind() != reflect.Struct || textual) {
						continue
					}
				} else if !sf.IsExported() {
					continue
				}
				tagName, _, _ := strings.Cut(tag, ",")
				secret := e.secret || sf.Tag.Get("podblocks") == "secret" || secretName.MatchString(sf.Name)
				index := append(append(make([]int, 0, len(e.index)+1), e.index...), i)
				if sf.Anonymous && tagName == "" && ft.Kind() == reflect.Struct && !textual {
					if nextCount[ft]++; nextCount[ft] == 1 {
						next = append(next, embedded{t: ft, index: index, secret: secret})
					}
					continue
				}
				f := jsonField{name: tagName, tagged: tagName != "", index: index, secret: secret}
				if f.name == "" {
					f.name = sf.Name
				}
				f.secret = f.secret || secretName.MatchString(f.name)
				fields = append(fields, f)
				if count[e.t] > 1 { // the type is embedded more than once at this depth: its fields tie
					fields = append(fields, f)
				}
			}
		}
	}
	slices.SortStableFunc(fields, func(a, b jsonField) int {
		if c := cmp.Compare(a.name, b.name); c != 0 {
			return c
		}
		if c := cmp.Compare(len(a.index), len(b.index)); c != 0 {
			return c
		}
		switch {
		case a.tagged && !b.tagged:
			return -1
		case b.tagged && !a.tagged:
			return 1
		}
		return slices.Compare(a.index, b.index)
	})
	out := fields[:0]
	for i := 0; i < len(fields); {
		j := i + 1
		for j < len(fields) && fields[j].name == fields[i].name {
			j++
		}
		if j-i == 1 || len(fields[i].index) < len(fields[i+1].index) || fields[i].tagged != fields[i+1].tagged {
			out = append(out, fields[i])
		}
		i = j
	}
	return out
}

// fieldByIndex is v.FieldByIndex, with ok false when the path goes through a nil pointer.
func fieldByIndex(v reflect.Value, index []int) (_ reflect.Value, ok bool) {
	for i, x := range index {
		if i > 0 && v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return reflect.Value{}, false
			}
			v = v.Elem()
		}
		v = v.Field(x)
	}
	return v, true
}

// mapKey is the JSON object key encoding/json writes for a map key: a string as is, a TextMarshaler
// as its text, an integer in decimal. ok is false for keys encoding/json cannot write.
func mapKey(k reflect.Value) (_ string, ok bool) {
	if k.Kind() == reflect.String {
		return k.String(), true
	}
	if k.Type().Implements(textMarshaler) {
		if k.Kind() == reflect.Pointer && k.IsNil() {
			return "", true
		}
		b, err := k.Interface().(encoding.TextMarshaler).MarshalText()
		return string(b), err == nil
	}
	switch k.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(k.Int(), 10), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return strconv.FormatUint(k.Uint(), 10), true
	}
	return "", false
}
