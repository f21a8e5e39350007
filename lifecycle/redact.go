package lifecycle

import (
	"encoding"
	"reflect"
	"regexp"
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
// Field names follow encoding/json tags; unexported fields and fields tagged json:"-" are left out.
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
		out := make(map[string]any, v.NumField())
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name := f.Name
			if tag, ok := f.Tag.Lookup("json"); ok {
				n, _, _ := strings.Cut(tag, ",")
				if n == "-" {
					continue
				}
				if n != "" {
					name = n
				}
			}
			if f.Tag.Get("podblocks") == "secret" || secretName.MatchString(f.Name) || secretName.MatchString(name) {
				if !v.Field(i).IsZero() {
					out[name] = Redacted
				} else {
					out[name] = ""
				}
				continue
			}
			out[name] = redact(v.Field(i), depth+1)
		}
		return out
	case reflect.Map:
		out := make(map[string]any, v.Len())
		iter := v.MapRange()
		for iter.Next() {
			k := iter.Key()
			var key string
			if k.Kind() == reflect.String {
				key = k.String()
			} else if s, ok := redact(k, depth+1).(string); ok {
				key = s
			} else {
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
	default:
		return v.Interface()
	}
}
