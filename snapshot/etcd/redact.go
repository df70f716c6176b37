package etcd

import (
	"fmt"
	"regexp"
	"strings"
)

// quoted matches a Go-quoted string, as etcd's and bbolt's errors print keys and values (%q).
var quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

// bucketName is what may stay readable: the short names of etcd's buckets (key, meta, lease...).
var bucketName = regexp.MustCompile(`^"[A-Za-z_]{1,24}"$`)

// redactData removes key and value bytes from an error message of etcd's storage code, which
// quotes them: in a Kubernetes etcd they are Secrets, and messages end up in reports and the
// history, where Secret values must never appear. It also keeps the message to a few lines.
func redactData(msg string) string {
	msg = quoted.ReplaceAllStringFunc(msg, func(q string) string {
		if bucketName.MatchString(q) {
			return q
		}
		return `"…"`
	})
	lines := strings.Split(strings.TrimSpace(msg), "\n")
	const maxLines, maxLen = 5, 600
	if len(lines) > maxLines {
		lines = append(lines[:maxLines], fmt.Sprintf("… %d more lines", len(lines)-maxLines))
	}
	msg = strings.Join(lines, "; ")
	if len(msg) > maxLen {
		msg = msg[:maxLen] + "…"
	}
	return msg
}

// redacted is an error whose message went through redactData but which still unwraps to the
// original, so that errors.Is(err, syscall.ENOSPC) and the like keep working.
type redacted struct {
	msg string
	err error
}

func redactErr(err error, extra string) error {
	return &redacted{msg: redactData(err.Error() + extra), err: err}
}

func (e *redacted) Error() string { return e.msg }
func (e *redacted) Unwrap() error { return e.err }
