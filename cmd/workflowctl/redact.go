package main

import (
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// mask replaces a password wherever one would be printed.
const mask = "xxxxx"

// Passwords in any URL's user info, and password= in key/value or query
// form: masked in every message even when the DSN they came from is unknown.
var (
	urlPassword      = regexp.MustCompile(`(://[^:/@\s]*:)([^@\s]+)(@)`)
	keyValuePassword = regexp.MustCompile(`(?i)(password=)([^\s&'"]+)`)
)

// redactor masks the passwords of known DSNs, and any URL password, in text.
type redactor struct {
	secrets []string
}

// add learns the password of dsn, in each spelling an error may echo it.
func (r *redactor) add(dsn string) {
	if dsn == "" {
		return
	}
	var found []string
	if u, err := url.Parse(dsn); err == nil {
		if p, ok := u.User.Password(); ok {
			found = append(found, p)
		}
		for k, vs := range u.Query() {
			if strings.EqualFold(k, "password") {
				found = append(found, vs...)
			}
		}
	}
	// A DSN url.Parse rejects (say a bad escape in the password) still has
	// its password between "user:" and "@".
	if m := urlPassword.FindStringSubmatch(dsn); m != nil {
		found = append(found, m[2])
	}
	for _, m := range keyValuePassword.FindAllStringSubmatch(dsn, -1) {
		found = append(found, m[2])
	}
	for _, p := range found {
		if p == "" {
			continue
		}
		r.secrets = append(r.secrets, p, url.QueryEscape(p), url.PathEscape(p), url.UserPassword("u", p).String()[2:])
	}
}

// redact returns text with every known password and any URL password masked.
func (r *redactor) redact(text string) string {
	// The known ones first, longest first: a password holding "@" would
	// otherwise be cut in two by the patterns.
	secrets := slices.Clone(r.secrets)
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	for _, s := range secrets {
		text = strings.ReplaceAll(text, s, mask)
	}
	text = urlPassword.ReplaceAllString(text, "${1}"+mask+"${3}")
	return keyValuePassword.ReplaceAllString(text, "${1}"+mask)
}
