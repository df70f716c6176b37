package drill

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/firedrill-dev/firedrill/scenarios"
)

// Registry holds the drivers a program knows, one per backup kind.
type Registry struct {
	drivers map[string]Driver
}

// NewRegistry registers drivers; a second driver for a kind replaces the first.
func NewRegistry(drivers ...Driver) *Registry {
	r := &Registry{drivers: map[string]Driver{}}
	for _, d := range drivers {
		r.drivers[d.Kind()] = d
	}
	return r
}

// For returns the driver of sc's backup kind. For a kind no driver knows it returns one that
// refuses every run, so that the attempt is still recorded with the reason.
func (r *Registry) For(sc *scenarios.Scenario) Driver {
	kind := sc.Spec.Backup.Kind()
	if d, ok := r.drivers[kind]; ok {
		return d
	}
	if kind == "" {
		return unknown{kind: kind, err: errors.New("spec.backup names no backup kind")}
	}
	return unknown{kind: kind, err: fmt.Errorf("no driver for %s backups in this firedrill (it knows %s)",
		kind, strings.Join(slices.Sorted(maps.Keys(r.drivers)), ", "))}
}

// Check says whether sc can be drilled as written: a driver exists for it and accepts its checks.
// It touches nothing.
func (r *Registry) Check(sc *scenarios.Scenario) error {
	// A run that is never started has nothing to clean up.
	if _, err := r.For(sc).NewRun(sc, &RunContext{ID: "check", Scenario: sc, Progress: NopProgress{}}); err != nil {
		return fmt.Errorf("scenario %s: %w", sc.Metadata.Name, err)
	}
	return nil
}

// unknown is the driver of a backup kind the registry does not know.
type unknown struct {
	kind string
	err  error
}

func (u unknown) Kind() string                                         { return u.kind }
func (u unknown) NewRun(*scenarios.Scenario, *RunContext) (Run, error) { return nil, u.err }
