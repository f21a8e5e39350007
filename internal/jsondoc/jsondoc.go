// Package jsondoc checks that a JSON text holds one value and nothing after it.
//
// json.Decoder.More reports false before a ']' or '}', so a check with More after Decode lets
// `{"a":1}}`, `[1]]` and `1]` through as one document. End asks the decoder for the next token
// instead, which is io.EOF only when nothing but white space follows.
package jsondoc

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// ErrTrailing is data after the value.
var ErrTrailing = errors.New("trailing data after the value")

// End returns nil when dec has nothing left but white space, and an error wrapping ErrTrailing
// otherwise (a read error of dec's reader is returned as it is).
func End(dec *json.Decoder) error {
	tok, err := dec.Token()
	switch {
	case errors.Is(err, io.EOF):
		return nil
	case err == nil:
		return fmt.Errorf("%w: %v", ErrTrailing, tok)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("%w: %v", ErrTrailing, err)
	}
	return err
}
