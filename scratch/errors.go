package scratch

import (
	"errors"
	"fmt"
)

// Sentinels the drill engine tells apart with errors.Is; each comes wrapped in a *NamespaceError.
var (
	// ErrExists: a namespace Prepare was asked to create already exists. Nothing was written;
	// the scenario's namespaceMapping must change (exit 2).
	ErrExists = errors.New("namespace exists")
	// ErrInvalidName: a name is not a valid namespace name (a DNS label). Nothing was written.
	ErrInvalidName = errors.New("invalid namespace name")
	// ErrNotScratch: a namespace is not a scratch namespace of the run (or of firedrill at all),
	// so it was not deleted, changed, or confirmed as a restore target.
	ErrNotScratch = errors.New("not a firedrill scratch namespace")
)

// NamespaceError says which namespace was refused, why, and what to do.
type NamespaceError struct {
	Namespace string
	Err       error  // one of the sentinels
	Reason    string // what was found, e.g. "has no label firedrill.dev/run"
	Hint      string // what to do
}

func (e *NamespaceError) Error() string {
	name := e.Namespace
	if errors.Is(e.Err, ErrInvalidName) {
		name = fmt.Sprintf("%q", name) // shows an empty name or stray spaces
	}
	msg := fmt.Sprintf("namespace %s %s", name, e.Reason)
	if e.Hint != "" {
		msg += ": " + e.Hint
	}
	return msg
}

func (e *NamespaceError) Unwrap() error { return e.Err }
