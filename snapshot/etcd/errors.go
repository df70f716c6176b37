package etcd

import (
	"errors"
	"strings"
)

var (
	// ErrCorrupt is wrapped by errors about a file that is not a usable etcd snapshot: not one at
	// all, empty, truncated, or with an appended hash that does not match.
	ErrCorrupt = errors.New("corrupt etcd snapshot")
	// ErrNoHash is wrapped when a file has no appended SHA-256 (a raw copy of member/snap/db), so
	// nothing proves it is intact; RestoreOptions.SkipHashCheck accepts such files.
	ErrNoHash = errors.New("etcd snapshot has no integrity hash")
	// ErrUnreachable is wrapped by *EndpointsError when no endpoint could deliver a snapshot.
	ErrUnreachable = errors.New("etcd unreachable")
)

// EndpointsError says why each endpoint failed, in the order they were given.
//
// It unwraps to ErrUnreachable only: the endpoints' own errors (often dial deadlines) are in Errs
// and in the message, so that errors.Is(err, context.DeadlineExceeded) stays reserved for the
// caller's own deadline.
type EndpointsError struct {
	Op        string // what was tried: "take a snapshot", "connect"
	Endpoints []string
	Errs      []error
}

func (e *EndpointsError) Error() string {
	var b strings.Builder
	b.WriteString("no etcd endpoint could ")
	b.WriteString(e.Op)
	b.WriteString(": ")
	for i, ep := range e.Endpoints {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(ep)
		b.WriteString(": ")
		if i < len(e.Errs) && e.Errs[i] != nil {
			b.WriteString(e.Errs[i].Error())
		} else {
			b.WriteString("not tried")
		}
	}
	// Endpoints that were reached, or whose errors carry a TLS hint already, need no general one.
	if msg := b.String(); !strings.Contains(msg, "(TLS") && !strings.Contains(msg, "snapshot stream") {
		b.WriteString(" (check that the endpoints are etcd client URLs reachable from here)")
	}
	return b.String()
}

func (e *EndpointsError) Unwrap() error { return ErrUnreachable }
