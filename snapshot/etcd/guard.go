package etcd

import (
	"fmt"
	"runtime/debug"
)

// errCrashed marks a panic or memory fault inside etcd's storage code. bbolt memory-maps the file
// and trusts its page headers, so a damaged database shows up as a panic (or, without
// SetPanicOnFault, as a crash of the whole process) rather than as an error.
type errCrashed struct{ v any }

func (e *errCrashed) Error() string {
	return fmt.Sprintf("etcd's storage code crashed reading the database: %v", e.v)
}

// guard runs fn on a goroutine of its own that turns panics and memory faults into an
// *errCrashed. Goroutines that fn's callees start are not covered.
func guard(fn func() error) error {
	done := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- &errCrashed{v: r}
			}
		}()
		debug.SetPanicOnFault(true)
		done <- fn()
	}()
	return <-done
}
