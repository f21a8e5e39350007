package lifecycle

import (
	"encoding"
	"net/url"
	"reflect"
	"regexp"
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
// and the fields of untagged embedded structs are promoted, as encoding/json does; map keys are
// written as encoding/json writes them (strings, TextMarshalers, integers).
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

// redactStruct is redact for a struct: its fields as encoding/json names them, with the fields of
// untagged embedded structs (exported or not) promoted into it; a field of the struct itself wins
// over a promoted one of the same name.
func redactStruct(v reflect.Value, depth int) map[string]any {
	out := make(map[string]any, v.NumField())
	promoted := map[string]any{}
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		tagName, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if tagName == "-" {
			continue
		}
		if f.Anonymous && tagName == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				fv := v.Field(i)
				if fv.Kind() == reflect.Pointer {
					if fv.IsNil() {
						continue
					}
					fv = fv.Elem()
				}
				// An embedded secret (type Config struct{ Credentials }) keeps every field secret.
				secret := f.Tag.Get("podblocks") == "secret" || secretName.MatchString(f.Name)
				for k, x := range redactStruct(fv, depth+1) {
					if _, taken := promoted[k]; !taken {
						if secret {
							x = Redacted
						}
						promoted[k] = x
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		name := f.Name
		if tagName != "" {
			name = tagName
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
	for k, x := range promoted {
		if _, taken := out[k]; !taken {
			out[k] = x
		}
	}
	return out
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
