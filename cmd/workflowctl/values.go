package main

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/plexspaces/workflow/models"
)

// The flag values with a syntax of their own. A value that does not parse is
// a flag error, which is bad usage (exit 2).

// statusList is --status S[,S], repeatable.
type statusList []models.ExecutionStatus

// String implements pflag.Value.
func (l *statusList) String() string {
	parts := make([]string, len(*l))
	for i, s := range *l {
		parts[i] = string(s)
	}
	return strings.Join(parts, ",")
}

// Set implements pflag.Value.
func (l *statusList) Set(v string) error {
	for _, part := range strings.Split(v, ",") {
		s, err := models.ParseExecutionStatus(part)
		if err != nil {
			return errors.New("want PENDING, RUNNING, COMPLETED, FAILED, CANCELLED or TIMED_OUT")
		}
		if !slices.Contains(*l, s) {
			*l = append(*l, s)
		}
	}
	return nil
}

// Type implements pflag.Value.
func (l *statusList) Type() string { return "status" }

// labelMap is --label k=v, repeatable.
type labelMap map[string]string

// String implements pflag.Value.
func (m *labelMap) String() string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(*m)) {
		parts = append(parts, k+"="+(*m)[k])
	}
	return strings.Join(parts, ",")
}

// Set implements pflag.Value.
func (m *labelMap) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || strings.TrimSpace(k) == "" {
		return errors.New("want key=value")
	}
	if *m == nil {
		*m = labelMap{}
	}
	(*m)[k] = val
	return nil
}

// Type implements pflag.Value.
func (m *labelMap) Type() string { return "key=value" }

// duration is a positive Go duration ("90s", "1h30m"), or days ("7d",
// "1d12h"), which operators think of history in.
type duration time.Duration

// String implements pflag.Value.
func (d *duration) String() string {
	if *d == 0 {
		return ""
	}
	return time.Duration(*d).String()
}

// Set implements pflag.Value.
func (d *duration) Set(v string) error {
	parsed, err := parseDuration(v)
	if err != nil {
		return err
	}
	*d = duration(parsed)
	return nil
}

// Type implements pflag.Value.
func (d *duration) Type() string { return "duration" }

func parseDuration(v string) (time.Duration, error) {
	bad := fmt.Errorf("want a positive duration such as 90s, 12h or 7d")
	var days time.Duration
	rest := strings.TrimSpace(v)
	if i := strings.IndexByte(rest, 'd'); i > 0 {
		n, err := strconv.Atoi(rest[:i])
		if err != nil || n < 0 || n > 100_000 {
			return 0, bad
		}
		days, rest = time.Duration(n)*24*time.Hour, rest[i+1:]
	}
	var d time.Duration
	if rest != "" {
		parsed, err := time.ParseDuration(rest)
		if err != nil || parsed < 0 {
			return 0, bad
		}
		d = parsed
	}
	if d+days <= 0 {
		return 0, bad
	}
	return d + days, nil
}
