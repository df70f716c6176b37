package verify

import (
	"fmt"
	"time"
)

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

func orDuration(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
