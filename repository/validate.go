package repository

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/plexspaces/workflow/models"
)

// MaxIDLength bounds every id and name the repository stores.
const MaxIDLength = 255

// checkText rejects what no dialect can store verbatim: invalid UTF-8 and NUL
// (PostgreSQL's text type refuses both).
func checkText(what, s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s is not valid UTF-8: %w", what, ErrInvalidArgument)
	}
	if strings.ContainsRune(s, 0) {
		return fmt.Errorf("%s contains a NUL byte: %w", what, ErrInvalidArgument)
	}
	return nil
}

// checkID rejects an empty, blank or overlong id.
func checkID(what, id string) error {
	if strings.TrimSpace(id) == "" {
		return fmt.Errorf("%s is empty: %w", what, ErrInvalidArgument)
	}
	if len(id) > MaxIDLength {
		return fmt.Errorf("%s is longer than %d bytes: %w", what, MaxIDLength, ErrInvalidArgument)
	}
	return checkText(what, id)
}

func checkExecutionStatus(st models.ExecutionStatus) error {
	if !st.Valid() {
		return fmt.Errorf("execution status %q: %w", st, ErrInvalidArgument)
	}
	return nil
}

func checkExecutionStatuses(statuses []models.ExecutionStatus) error {
	for _, st := range statuses {
		if err := checkExecutionStatus(st); err != nil {
			return err
		}
	}
	return nil
}

func checkExpectedVersion(v int64) error {
	if v < 1 {
		return fmt.Errorf("expected version %d (versions start at 1): %w", v, ErrInvalidArgument)
	}
	return nil
}

func checkThreshold(d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("negative stale threshold %s: %w", d, ErrInvalidArgument)
	}
	return nil
}

func checkLabels(labels map[string]string) error {
	for k, v := range labels {
		if err := checkID("label key", k); err != nil {
			return err
		}
		if err := checkText(fmt.Sprintf("label %q value", k), v); err != nil {
			return err
		}
	}
	return nil
}

// EncodeJSON turns a value into the document the repository would store for
// it (see encodeJSON); the engine compares inputs with it.
func EncodeJSON(what string, v any) (models.JSON, error) { return encodeJSON(what, v) }

// encodeJSON turns a caller's value into a stored document. Encoded JSON
// ([]byte, json.RawMessage, models.JSON) is stored as is once checked valid;
// anything else goes through encoding/json; nil is NULL.
func encodeJSON(what string, v any) (models.JSON, error) {
	var raw []byte
	switch x := v.(type) {
	case nil:
		return nil, nil
	case models.JSON:
		raw = x
	case json.RawMessage:
		raw = x
	case []byte:
		raw = x
	default:
		return MarshalJSON(what, v)
	}
	if len(raw) == 0 {
		return nil, nil
	}
	if !json.Valid(raw) {
		return nil, fmt.Errorf("%s is not valid JSON: %w", what, ErrInvalidArgument)
	}
	if err := CheckJSON(what, raw); err != nil {
		return nil, err
	}
	return models.JSON(raw), nil
}

// MarshalJSON encodes a Go value with encoding/json, as a stored document
// must be: it refuses what JSON cannot hold (NaN, channels) and what
// CheckJSON refuses, and also a string with invalid UTF-8, which
// encoding/json would silently store as U+FFFD, another value than the
// caller's. Errors match ErrInvalidArgument. Unlike EncodeJSON, a []byte is
// encoded as a value (base64), not taken as encoded JSON.
func MarshalJSON(what string, v any) (models.JSON, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w: %w", what, ErrInvalidArgument, err)
	}
	// encoding/json writes \ufffd for each invalid byte (a real U+FFFD goes
	// out as itself), so only a document holding that escape needs the walk.
	if bytes.Contains(b, []byte(`\ufffd`)) && hasInvalidUTF8(reflect.ValueOf(v), 0) {
		return nil, fmt.Errorf("encoding %s: a string is not valid UTF-8: %w", what, ErrInvalidArgument)
	}
	if err := CheckJSON(what, b); err != nil {
		return nil, err
	}
	return b, nil
}

// maxWalkDepth bounds hasInvalidUTF8 on deeply nested (or cyclic) values.
const maxWalkDepth = 100

// hasInvalidUTF8 reports whether a string encoding/json would encode from v
// is not valid UTF-8.
func hasInvalidUTF8(v reflect.Value, depth int) bool {
	if !v.IsValid() || depth > maxWalkDepth {
		return false
	}
	switch v.Kind() {
	case reflect.String:
		return !utf8.ValidString(v.String())
	case reflect.Pointer, reflect.Interface:
		return !v.IsNil() && hasInvalidUTF8(v.Elem(), depth+1)
	case reflect.Struct:
		t := v.Type()
		for i := range v.NumField() {
			if f := t.Field(i); (f.IsExported() || f.Anonymous) && hasInvalidUTF8(v.Field(i), depth+1) {
				return true
			}
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			if hasInvalidUTF8(it.Key(), depth+1) || hasInvalidUTF8(it.Value(), depth+1) {
				return true
			}
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return false // bytes go out as base64
		}
		for i := range v.Len() {
			if hasInvalidUTF8(v.Index(i), depth+1) {
				return true
			}
		}
	}
	return false
}

// CheckJSON rejects encoded JSON that one of the databases refuses to store:
// invalid UTF-8, and the escape \u0000, which PostgreSQL's jsonb cannot hold.
// Both dialects refuse the same documents, so a workflow tested on SQLite
// does not start failing on PostgreSQL. The error matches ErrInvalidArgument.
func CheckJSON(what string, raw []byte) error {
	if !utf8.Valid(raw) {
		return fmt.Errorf("%s is not valid UTF-8: %w", what, ErrInvalidArgument)
	}
	for i := 0; ; {
		j := bytes.Index(raw[i:], []byte(`\u0000`))
		if j < 0 {
			return nil
		}
		at := i + j
		// The escape is real when the backslashes ending at it are odd in
		// number ("\\u0000" is a backslash followed by the text u0000).
		n := 0
		for k := at; k >= 0 && raw[k] == '\\'; k-- {
			n++
		}
		if n%2 == 1 {
			return fmt.Errorf("%s holds a NUL character (\\u0000), which PostgreSQL cannot store: %w", what, ErrInvalidArgument)
		}
		i = at + 1
	}
}

// CheckText rejects text that one of the databases refuses to store: invalid
// UTF-8 and NUL bytes. The error matches ErrInvalidArgument.
func CheckText(what, s string) error { return checkText(what, s) }
