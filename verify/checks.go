package verify

import (
	"errors"
	"fmt"

	"github.com/firedrill-dev/firedrill/scenarios"
)

// Defaults of the etcd checks, the same the scenario loader applies; the constructors apply them
// too so that a Check built in code with zero values behaves like one loaded from a file.
const (
	DefaultDecodePrefix = "/registry/"
	DefaultMaxDrift     = 0.05
	// DefaultCanaryPrefix + scenario name is the canary key when none is set.
	DefaultCanaryPrefix = "/firedrill/canary/"
)

// NewEtcdChecks builds the checks of a scenario whose backup is an etcd snapshot, in order.
// Every problem of every check is reported, not only the first.
func NewEtcdChecks(scenarioName string, checks []scenarios.Check) ([]EtcdCheck, error) {
	out := make([]EtcdCheck, 0, len(checks))
	var errs []error
	for i, c := range checks {
		ck, err := newEtcdCheck(scenarioName, c)
		if err != nil {
			label := fmt.Sprintf("check %d", i+1)
			if c.Name != "" {
				label += fmt.Sprintf(" (%s)", c.Name)
			}
			errs = append(errs, fmt.Errorf("%s: %w", label, err))
			continue
		}
		out = append(out, ck)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

func newEtcdCheck(scenarioName string, c scenarios.Check) (EtcdCheck, error) {
	var set []string
	var ck EtcdCheck
	var err error
	if c.EtcdIntegrity != nil {
		set = append(set, scenarios.CheckEtcdIntegrity)
		ck = NewIntegrityCheck(c.Name, *c.EtcdIntegrity)
	}
	if c.EtcdObjectsDecode != nil {
		set = append(set, scenarios.CheckEtcdObjectsDecode)
		ck = NewObjectsDecodeCheck(c.Name, *c.EtcdObjectsDecode)
	}
	if c.EtcdKeys != nil {
		set = append(set, scenarios.CheckEtcdKeys)
		ck, err = NewKeysCheck(c.Name, *c.EtcdKeys)
	}
	if c.EtcdMatchesLive != nil {
		set = append(set, scenarios.CheckEtcdMatchesLive)
		ck, err = NewMatchesLiveCheck(c.Name, *c.EtcdMatchesLive)
	}
	if c.ObjectsServed != nil {
		set = append(set, scenarios.CheckObjectsServed)
		ck = NewObjectsServedCheck(c.Name, *c.ObjectsServed)
	}
	if c.Canary != nil {
		set = append(set, scenarios.CheckCanary)
		ck = NewCanaryCheck(c.Name, scenarioName, *c.Canary)
	}
	switch {
	case len(set) == 0:
		return nil, errors.New("no check type set: give one of etcdIntegrity, etcdObjectsDecode, etcdKeys, etcdMatchesLive, objectsServed, canary")
	case len(set) > 1:
		return nil, fmt.Errorf("several check types set (%v): give one per check", set)
	case err != nil:
		return nil, err
	}
	return ck, nil
}

// checkName is the name shown in results: the scenario's, else the check's type.
type checkName struct{ name, typ string }

func (n checkName) Name() string { return n.name }
func (n checkName) Type() string { return n.typ }

func newCheckName(name, typ string) checkName {
	if name == "" {
		name = typ
	}
	return checkName{name: name, typ: typ}
}

func errorOutcome(ev map[string]any, format string, args ...any) Outcome {
	return Outcome{Status: StatusError, Message: fmt.Sprintf(format, args...), Evidence: ev}
}

func failedOutcome(ev map[string]any, format string, args ...any) Outcome {
	return Outcome{Status: StatusFailed, Message: fmt.Sprintf(format, args...), Evidence: ev}
}

func passedOutcome(ev map[string]any, format string, args ...any) Outcome {
	return Outcome{Status: StatusPassed, Message: fmt.Sprintf(format, args...), Evidence: ev}
}

// noRestore is the outcome of a check that needs the restored etcd when there is none.
func noRestore(ev map[string]any) Outcome {
	return errorOutcome(ev, "no restored etcd to check: the restore step did not complete")
}
