package server

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/history"
)

const (
	defaultLimit = 50
	maxLimit     = 500
)

// runQuery is a parsed runs filter (GET /api/v1/runs and /runs share it).
type runQuery struct {
	history.Filter // Limit is the page size (without the look-ahead row)
	// SinceText is the since parameter as given, for the form on /runs.
	SinceText string
}

// results are the values the result parameter accepts.
var results = []drill.Result{drill.Passed, drill.Failed, drill.Error, drill.Aborted, drill.Running, drill.Skipped, drill.Missed}

// parseRunQuery reads scenario, result, since, limit, offset and cursor.
func parseRunQuery(v url.Values, now time.Time) (runQuery, error) {
	q := runQuery{Filter: history.Filter{Scenario: v.Get("scenario"), Limit: defaultLimit}}
	if res := v.Get("result"); res != "" {
		ok := false
		for _, known := range results {
			ok = ok || drill.Result(res) == known
		}
		if !ok {
			return q, fmt.Errorf("result %q: want one of passed, failed, error, aborted, running, skipped, missed", res)
		}
		q.Result = drill.Result(res)
	}
	if since := strings.TrimSpace(v.Get("since")); since != "" {
		t, err := parseSince(since, now)
		if err != nil {
			return q, err
		}
		q.Since, q.SinceText = t, since
	}
	if l := v.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > maxLimit {
			return q, fmt.Errorf("limit %q: want a number from 1 to %d", l, maxLimit)
		}
		q.Limit = n
	}
	off, cur := v.Get("offset"), v.Get("cursor")
	switch {
	case off != "" && cur != "":
		return q, fmt.Errorf("give offset or cursor, not both")
	case off != "":
		n, err := strconv.Atoi(off)
		if err != nil || n < 0 {
			return q, fmt.Errorf("offset %q: want a number of runs to skip, 0 or more", off)
		}
		q.Offset = n
	case cur != "":
		n, err := decodeCursor(cur)
		if err != nil {
			return q, err
		}
		q.Offset = n
	}
	return q, nil
}

// parseSince reads an RFC 3339 time or an age such as 30d, 12h or 90m (before now).
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := parseAge(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("since %q: want an RFC 3339 time (2026-11-27T10:00:00Z) or an age such as 30d, 12h or 90m", s)
	}
	return now.Add(-d), nil
}

// parseAge is time.ParseDuration plus a leading number of days ("30d", "1d12h").
func parseAge(s string) (time.Duration, error) {
	var days float64
	if i := strings.IndexByte(s, 'd'); i > 0 {
		n, err := strconv.ParseFloat(s[:i], 64)
		if err != nil {
			return 0, err
		}
		days, s = n, s[i+1:]
	}
	var rest time.Duration
	if s != "" {
		var err error
		if rest, err = time.ParseDuration(s); err != nil {
			return 0, err
		}
	}
	d := time.Duration(days*24*float64(time.Hour)) + rest
	if d <= 0 || days < 0 || rest < 0 {
		return 0, fmt.Errorf("age %q is not positive", s)
	}
	return d, nil
}

// The cursor is opaque to clients so that paging can change (to keyset) without breaking
// them; today it is the offset of the next page. Runs that start while a client pages shift
// the pages by that many rows.
const cursorPrefix = "o:"

func encodeCursor(offset int) string {
	return base64.RawURLEncoding.EncodeToString([]byte(cursorPrefix + strconv.Itoa(offset)))
}

func decodeCursor(c string) (int, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err == nil {
		if rest, ok := strings.CutPrefix(string(b), cursorPrefix); ok {
			if n, err := strconv.Atoi(rest); err == nil && n >= 0 {
				return n, nil
			}
		}
	}
	return 0, fmt.Errorf("cursor %q is not one this server gave out: pass the \"next\" value of the previous page unchanged", c)
}
