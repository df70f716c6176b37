package verify

import (
	"errors"
	"fmt"
	"strings"

	"github.com/firedrill-dev/firedrill/scenarios"
)

// checkKind is one check type: what it proves, and how it is built for each kind of backup it
// applies to (nil: it does not apply). This table is the one place a check's spec meets its
// implementation; a new check type is a row here plus its spec in scenarios.
type checkKind struct {
	describe func(c scenarios.Check, backup string) string
	etcd     func(scenario string, c scenarios.Check) (EtcdCheck, error)
	velero   func(c scenarios.Check) (VeleroCheck, error)
}

var checkKinds = map[string]checkKind{
	scenarios.CheckEtcdIntegrity: {
		describe: func(scenarios.Check, string) string {
			return "the snapshot's appended SHA-256 matches and etcd can read it"
		},
		etcd: func(_ string, c scenarios.Check) (EtcdCheck, error) {
			return NewIntegrityCheck(c.Name, *c.EtcdIntegrity), nil
		},
	},
	scenarios.CheckEtcdObjectsDecode: {
		describe: func(c scenarios.Check, _ string) string {
			prefix := c.EtcdObjectsDecode.Prefix
			if prefix == "" {
				prefix = scenarios.DefaultDecodePrefix
			}
			return fmt.Sprintf("every value under %s decodes with Kubernetes' codecs", prefix)
		},
		etcd: func(_ string, c scenarios.Check) (EtcdCheck, error) {
			return NewObjectsDecodeCheck(c.Name, *c.EtcdObjectsDecode), nil
		},
	},
	scenarios.CheckEtcdKeys: {
		describe: func(c scenarios.Check, _ string) string {
			k := c.EtcdKeys
			var b []string
			if k.Min != nil {
				b = append(b, fmt.Sprintf("≥ %d", *k.Min))
			}
			if k.Max != nil {
				b = append(b, fmt.Sprintf("≤ %d", *k.Max))
			}
			if k.Equals != nil {
				b = append(b, fmt.Sprintf("= %d", *k.Equals))
			}
			return fmt.Sprintf("keys under %s: %s", k.Prefix, strings.Join(b, ", "))
		},
		etcd: func(_ string, c scenarios.Check) (EtcdCheck, error) { return NewKeysCheck(c.Name, *c.EtcdKeys) },
	},
	scenarios.CheckEtcdMatchesLive: {
		describe: func(c scenarios.Check, _ string) string {
			return fmt.Sprintf("keys and value digests under %s equal the live etcd's at the snapshot revision (or drift within limit)", strings.Join(c.EtcdMatchesLive.Prefixes, ", "))
		},
		etcd: func(_ string, c scenarios.Check) (EtcdCheck, error) {
			return NewMatchesLiveCheck(c.Name, *c.EtcdMatchesLive)
		},
	},
	scenarios.CheckObjectsServed: {
		describe: func(c scenarios.Check, _ string) string {
			ns := "all namespaces"
			if len(c.ObjectsServed.Namespaces) > 0 {
				ns = "namespaces " + strings.Join(c.ObjectsServed.Namespaces, ", ")
			}
			return "the scratch kube-apiserver is ready and serves every object of the snapshot in " + ns
		},
		etcd: func(_ string, c scenarios.Check) (EtcdCheck, error) {
			return NewObjectsServedCheck(c.Name, *c.ObjectsServed), nil
		},
	},
	scenarios.CheckCanary: {
		describe: func(_ scenarios.Check, backup string) string {
			if backup == "velero" {
				return "the ConfigMap " + scenarios.CanaryConfigMap + " written just before the backup comes back with its nonce"
			}
			return "the canary key written just before the snapshot is in the restored data"
		},
		etcd: func(scenario string, c scenarios.Check) (EtcdCheck, error) {
			return NewCanaryCheck(c.Name, scenario, *c.Canary), nil
		},
		velero: func(c scenarios.Check) (VeleroCheck, error) { return NewVeleroCanaryCheck(c.Name, *c.Canary) },
	},
	scenarios.CheckObjectsRestored: {
		describe: func(scenarios.Check, string) string {
			return "every item of the backup exists in its scratch namespace (excluded resources aside)"
		},
		velero: func(c scenarios.Check) (VeleroCheck, error) {
			return NewObjectsRestoredCheck(c.Name, *c.ObjectsRestored), nil
		},
	},
	scenarios.CheckObjectsMatch: {
		describe: func(c scenarios.Check, _ string) string {
			resources := c.ObjectsMatch.Resources
			if len(resources) == 0 {
				resources = scenarios.DefaultObjectsMatchResources()
			}
			return "restored " + strings.Join(resources, ", ") + " equal the backed-up ones (Secrets by digest)"
		},
		velero: func(c scenarios.Check) (VeleroCheck, error) { return NewObjectsMatchCheck(c.Name, *c.ObjectsMatch) },
	},
	scenarios.CheckWorkloadsReady: {
		describe: func(c scenarios.Check, _ string) string {
			return "Deployments, StatefulSets and DaemonSets ready, Pods healthy, PVCs Bound, Jobs complete within " + orDuration(c.WorkloadsReady.Timeout.Duration, scenarios.DefaultWorkloadsTimeout).String()
		},
		velero: func(c scenarios.Check) (VeleroCheck, error) {
			return NewWorkloadsReadyCheck(c.Name, *c.WorkloadsReady), nil
		},
	},
	scenarios.CheckJob: {
		describe: func(c scenarios.Check, _ string) string {
			return fmt.Sprintf("Job with image %s succeeds within %s in the scratch copy", c.Job.Image, orDuration(c.Job.Timeout.Duration, scenarios.DefaultJobTimeout))
		},
		velero: func(c scenarios.Check) (VeleroCheck, error) { return NewJobCheck(c.Name, *c.Job) },
	},
	scenarios.CheckVolumeData: {
		describe: func(c scenarios.Check, _ string) string {
			what := "every persistent volume of the backed-up pods"
			if n := len(c.VolumeData.Volumes); n > 0 {
				what = fmt.Sprintf("%d selected pod volume(s)", n)
			}
			return what + ": the restored files equal the backed-up ones (path, size and SHA-256 against a manifest taken before a backup firedrill makes; else bytes against Velero's PodVolumeBackup)"
		},
		velero: func(c scenarios.Check) (VeleroCheck, error) { return NewVolumeDataCheck(c.Name, *c.VolumeData) },
	},
	scenarios.CheckHTTP: {
		describe: func(c scenarios.Check, _ string) string {
			h := c.HTTP
			want := fmt.Sprintf("status %d", orInt(h.Expect.Status, scenarios.DefaultHTTPStatus))
			if h.Expect.BodyPattern != "" {
				want += fmt.Sprintf(" and a body matching %q", h.Expect.BodyPattern)
			}
			return fmt.Sprintf("GET %s%s of the restored Service %s, from a probe pod inside the scratch namespace, answers %s within %s", orString(h.Scheme, "http")+"://", h.Service+orString(h.Path, "/"), h.Service, want, orDuration(h.Timeout.Duration, scenarios.DefaultProbeTimeout))
		},
		velero: func(c scenarios.Check) (VeleroCheck, error) { return NewHTTPCheck(c.Name, *c.HTTP) },
	},
	scenarios.CheckTCP: {
		describe: func(c scenarios.Check, _ string) string {
			return fmt.Sprintf("a probe pod inside the scratch namespace connects to the restored Service %s within %s", c.TCP.Service, orDuration(c.TCP.Timeout.Duration, scenarios.DefaultProbeTimeout))
		},
		velero: func(c scenarios.Check) (VeleroCheck, error) { return NewTCPCheck(c.Name, *c.TCP) },
	},
	scenarios.CheckExec: {
		describe: func(c scenarios.Check, _ string) string {
			e := c.Exec
			pod := e.Pod
			if pod == "" {
				pod = "a pod with labels " + fmt.Sprint(e.Selector)
			}
			code := 0
			if e.Expect.ExitCode != nil {
				code = *e.Expect.ExitCode
			}
			want := fmt.Sprintf("exits %d", code)
			if e.Expect.OutputPattern != "" {
				want += fmt.Sprintf(" with output matching %q", e.Expect.OutputPattern)
			}
			return fmt.Sprintf("%q run in restored %s %s", strings.Join(e.Command, " "), pod, want)
		},
		velero: func(c scenarios.Check) (VeleroCheck, error) { return NewExecCheck(c.Name, *c.Exec) },
	},
	scenarios.CheckIsolation: {
		describe: func(c scenarios.Check, _ string) string {
			svc := "the first Service of the backup"
			if c.Isolation.Service != "" {
				svc = "Service " + c.Isolation.Service
			}
			return "from a probe pod in the scratch namespace, the restored copy of " + svc + " answers and the live one does not (NetworkPolicy enforced)"
		},
		velero: func(c scenarios.Check) (VeleroCheck, error) { return NewIsolationCheck(c.Name, *c.Isolation), nil },
	},
}

func orString(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func orInt(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// Describe says what a check proves, for plans; backup is the scenario's backup kind ("etcd",
// "velero"), which some checks prove differently.
func Describe(c scenarios.Check, backup string) string {
	if k, ok := checkKinds[c.Type()]; ok {
		return k.describe(c, backup)
	}
	return ""
}

// NewEtcdChecks builds the checks of a scenario whose backup is an etcd snapshot, in order.
// Every problem of every check is reported, not only the first.
func NewEtcdChecks(scenario string, checks []scenarios.Check) ([]EtcdCheck, error) {
	return newChecks(checks, "etcd", func(k checkKind) bool { return k.etcd != nil },
		func(k checkKind, c scenarios.Check) (EtcdCheck, error) { return k.etcd(scenario, c) })
}

// NewVeleroChecks builds the checks of a scenario whose backup is a Velero backup, in order.
// Every problem of every check is reported, not only the first.
func NewVeleroChecks(checks []scenarios.Check) ([]VeleroCheck, error) {
	return newChecks(checks, "velero", func(k checkKind) bool { return k.velero != nil },
		func(k checkKind, c scenarios.Check) (VeleroCheck, error) { return k.velero(c) })
}

var backupNames = map[string]string{"etcd": "an etcd snapshot", "velero": "a Velero backup"}

func newChecks[T any](checks []scenarios.Check, backup string, applies func(checkKind) bool, build func(checkKind, scenarios.Check) (T, error)) ([]T, error) {
	var fit []string
	for _, typ := range scenarios.CheckTypes() {
		if applies(checkKinds[typ]) {
			fit = append(fit, typ)
		}
	}
	out := make([]T, 0, len(checks))
	var errs []error
	for i, c := range checks {
		ck, err := func() (T, error) {
			var zero T
			typ := c.Type()
			k, ok := checkKinds[typ]
			switch {
			case typ == "" && len(c.Types()) > 1:
				return zero, fmt.Errorf("several check types set (%s): give one per check", strings.Join(c.Types(), ", "))
			case typ == "":
				return zero, fmt.Errorf("no check type set: give one of %s", strings.Join(fit, ", "))
			case !ok || !applies(k):
				return zero, fmt.Errorf("%s does not check %s: give one of %s", typ, backupNames[backup], strings.Join(fit, ", "))
			}
			return build(k, c)
		}()
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
