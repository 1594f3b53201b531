package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// storableText turns an error's text into text every database stores:
// invalid UTF-8 bytes and NUL become \xNN escapes, so the message stays
// readable and the write cannot be refused.
func storableText(s string) string {
	if utf8.ValidString(s) && !strings.ContainsRune(s, 0) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1, r == 0:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// WithErrors declares errors whose identity a failed step keeps through the
// journal. When the step fails with an error that matches one of them
// (errors.Is), its code (the declared error's text) is journaled with the
// failure, and the step's *StepError matches that declared error with
// errors.Is, on the first run and on every replay alike. Give declared errors
// distinct texts.
func WithErrors(errs ...error) StepOption {
	return func(o *stepOptions) { o.declared = append(o.declared, errs...) }
}

// failureRecord is what the journal keeps of a failed step beside its text,
// in the FAILED row's output: the codes of the declared errors it matched.
type failureRecord struct {
	ErrorCodes []string `json:"error_codes"`
}

// journaledError is a step failure as the journal holds it: its text, and the
// declared errors it matched. The first run returns the same value a replay
// rebuilds, so a workflow branches the same way on both.
type journaledError struct {
	msg     string
	matched []error
}

func (e *journaledError) Error() string { return e.msg }

// Unwrap returns the declared errors the failure matched.
func (e *journaledError) Unwrap() []error { return e.matched }

// journal returns the failure as stored, and the record of its codes (nil
// when it matched no declared error).
func journal(failure error, declared []error) (*journaledError, *failureRecord) {
	je := &journaledError{msg: storableText(failure.Error())}
	var rec *failureRecord
	for _, d := range declared {
		if d != nil && errors.Is(failure, d) {
			je.matched = append(je.matched, d)
			if rec == nil {
				rec = &failureRecord{}
			}
			rec.ErrorCodes = append(rec.ErrorCodes, storableText(d.Error()))
		}
	}
	return je, rec
}

// replayed rebuilds a failure from the journal: its text and stored codes.
func replayed(msg string, output []byte, declared []error) *journaledError {
	je := &journaledError{msg: msg}
	var rec failureRecord
	if len(output) > 0 && json.Unmarshal(output, &rec) == nil {
		for _, d := range declared {
			if d != nil && slices.Contains(rec.ErrorCodes, storableText(d.Error())) {
				je.matched = append(je.matched, d)
			}
		}
	}
	return je
}
