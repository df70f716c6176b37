package scenarios

import "time"

// Defaults, applied by SetDefaults. Each field's doc comment in types.go states its default too.
const (
	DefaultTimeZone        = "UTC"
	DefaultTimeout         = 30 * time.Minute
	DefaultDialTimeout     = 5 * time.Second
	DefaultPattern         = "*.db"
	DefaultSelect          = SelectLatest // latestFrom.select; no window by default
	DefaultBumpRevision    = uint64(1_000_000_000)
	DefaultAPIServerBinary = "kube-apiserver"
	DefaultDecodePrefix    = "/registry/"
	DefaultMaxDrift        = 0.05
	CanaryKeyPrefix        = "/firedrill/canary/" // the default canary key is this plus the scenario's name
	DefaultCleanupPolicy   = CleanupAlways
	DefaultKeepFor         = 24 * time.Hour

	// Velero drills.
	DefaultVeleroNamespace   = "velero" // backup.velero.namespace, cluster.veleroNamespace
	DefaultBackupTTL         = 24 * time.Hour
	DefaultSnapshotVolumes   = false
	DefaultKindVeleroImage   = "velero/velero:v1.18.3"
	DefaultKindVeleroPlugin  = "velero/velero-plugin-for-aws:v1.14.3" // the one default plugin
	DefaultDenyNetwork       = true
	DefaultSuspendCronJobs   = true
	DefaultQuotaCPU          = "4"
	DefaultQuotaMemory       = "8Gi"
	DefaultQuotaPods         = "50"
	DefaultWorkloadsTimeout  = 10 * time.Minute
	DefaultJobTimeout        = 5 * time.Minute
	DefaultVolumeDataTimeout = 10 * time.Minute
	DefaultProbeTimeout      = 2 * time.Minute // http, tcp, exec
	DefaultIsolationTimeout  = time.Minute
	DefaultHTTPStatus        = 200
	KindClusterNamePrefix    = "firedrill-"       // an empty kind.name means this plus the run id
	CanaryConfigMap          = "firedrill-canary" // the ConfigMap a Velero canary writes

	// DefaultNamespaceTemplate names the scratch copy of every backed-up namespace that
	// namespaceMapping leaves out. Which namespaces a backup holds is known only at run time, so
	// the driver applies it then (shortening the result to 63 characters); SetDefaults does not.
	DefaultNamespaceTemplate = "drill-{{.RunID}}-{{.Namespace}}"
)

// SetDefaults fills every field the scenario left unset with its default; it is the one place
// defaults live. It does not validate and may be called more than once. Load calls it.
func (s *Scenario) SetDefaults() {
	sp := &s.Spec
	if sp.TimeZone == "" {
		sp.TimeZone = DefaultTimeZone
	}
	if sp.Timeout.Duration == 0 {
		sp.Timeout.Duration = DefaultTimeout
	}
	if e := sp.Backup.Etcd; e != nil {
		if t := e.Take; t != nil && t.DialTimeout.Duration == 0 {
			t.DialTimeout.Duration = DefaultDialTimeout
		}
		if l := e.LatestFrom; l != nil {
			if l.Pattern == "" {
				l.Pattern = DefaultPattern
			}
			l.Sampling.setDefaults()
		}
	}
	if v := sp.Backup.Velero; v != nil {
		if v.Namespace == "" {
			v.Namespace = DefaultVeleroNamespace
		}
		if l := v.LatestFrom; l != nil {
			l.Sampling.setDefaults()
		}
		if c := v.Create; c != nil {
			if c.TTL.Duration == 0 {
				c.TTL.Duration = DefaultBackupTTL
			}
			if c.SnapshotVolumes == nil {
				c.SnapshotVolumes = ptr(DefaultSnapshotVolumes)
			}
		}
	}
	if r := sp.Restore.ScratchNamespace; r != nil {
		r.Isolation.setDefaults()
	}
	if r := sp.Restore.Cluster; r != nil {
		if r.VeleroNamespace == "" {
			r.VeleroNamespace = DefaultVeleroNamespace
		}
		r.Isolation.setDefaults()
	}
	if r := sp.Restore.Kind; r != nil {
		if r.Velero.Image == "" {
			r.Velero.Image = DefaultKindVeleroImage
		}
		if len(r.Velero.Plugins) == 0 {
			r.Velero.Plugins = []string{DefaultKindVeleroPlugin}
		}
		r.Isolation.setDefaults()
	}
	if r := sp.Restore.ScratchEtcd; r != nil {
		if r.BumpRevision == nil {
			v := DefaultBumpRevision
			r.BumpRevision = &v
		}
		if a := r.APIServer; a != nil && a.Binary == "" {
			a.Binary = DefaultAPIServerBinary
		}
	}
	velero := sp.Backup.Velero != nil
	for i := range sp.Checks {
		setCheckDefaults(&sp.Checks[i], s.Metadata.Name, velero)
	}
	for g := range sp.Restore.Order {
		for i := range sp.Restore.Order[g].Checks {
			setCheckDefaults(&sp.Restore.Order[g].Checks[i], s.Metadata.Name, velero)
		}
	}
	if sp.Cleanup.Policy == "" {
		sp.Cleanup.Policy = DefaultCleanupPolicy
	}
	if sp.Cleanup.KeepFor.Duration == 0 {
		sp.Cleanup.KeepFor.Duration = DefaultKeepFor
	}
}

// DefaultObjectsMatchResources is objectsMatch.resources when none are listed; a new slice each call.
func DefaultObjectsMatchResources() []string { return []string{"configmaps", "secrets"} }

// setDefaults fills the isolation a scenario left unset. Quota fields are filled one by one: a
// scenario that raises the memory limit keeps the default cpu and pods limits.
func (i *Isolation) setDefaults() {
	if i.DenyNetwork == nil {
		i.DenyNetwork = ptr(DefaultDenyNetwork)
	}
	if i.SuspendCronJobs == nil {
		i.SuspendCronJobs = ptr(DefaultSuspendCronJobs)
	}
	if i.Quota == nil {
		i.Quota = &Quota{}
	}
	q := i.Quota
	if q.CPU == "" {
		q.CPU = DefaultQuotaCPU
	}
	if q.Memory == "" {
		q.Memory = DefaultQuotaMemory
	}
	if q.Pods == "" {
		q.Pods = DefaultQuotaPods
	}
}

func ptr[T any](v T) *T { return &v }

// Type is the check's type name (CheckEtcdKeys, ...), or "" unless exactly one type is set.
func (c Check) Type() string {
	if t := c.Types(); len(t) == 1 {
		return t[0]
	}
	return ""
}

// Types lists the type fields set, in the order of CheckTypes.
func (c Check) Types() []string {
	var out []string
	for _, t := range []struct {
		name string
		set  bool
	}{
		{CheckEtcdIntegrity, c.EtcdIntegrity != nil},
		{CheckEtcdObjectsDecode, c.EtcdObjectsDecode != nil},
		{CheckEtcdKeys, c.EtcdKeys != nil},
		{CheckEtcdMatchesLive, c.EtcdMatchesLive != nil},
		{CheckObjectsServed, c.ObjectsServed != nil},
		{CheckCanary, c.Canary != nil},
		{CheckObjectsRestored, c.ObjectsRestored != nil},
		{CheckObjectsMatch, c.ObjectsMatch != nil},
		{CheckWorkloadsReady, c.WorkloadsReady != nil},
		{CheckJob, c.Job != nil},
		{CheckVolumeData, c.VolumeData != nil},
		{CheckHTTP, c.HTTP != nil},
		{CheckTCP, c.TCP != nil},
		{CheckExec, c.Exec != nil},
		{CheckIsolation, c.Isolation != nil},
	} {
		if t.set {
			out = append(out, t.name)
		}
	}
	return out
}

// CheckTypes are the check types this version knows, in the order the reference lists them.
func CheckTypes() []string {
	return []string{CheckEtcdIntegrity, CheckEtcdObjectsDecode, CheckEtcdKeys, CheckEtcdMatchesLive, CheckObjectsServed, CheckCanary,
		CheckObjectsRestored, CheckObjectsMatch, CheckWorkloadsReady, CheckJob, CheckVolumeData, CheckHTTP, CheckTCP, CheckExec, CheckIsolation}
}

// setCheckDefaults fills one check's unset fields; velero says the scenario drills a Velero
// backup (a Velero canary has no key).
func setCheckDefaults(c *Check, scenario string, velero bool) {
	if c.Name == "" {
		c.Name = c.Type() // stays empty while the check has no single type; Validate says so
	}
	if d := c.EtcdObjectsDecode; d != nil && d.Prefix == "" {
		d.Prefix = DefaultDecodePrefix
	}
	if m := c.EtcdMatchesLive; m != nil && m.MaxDrift == nil {
		v := DefaultMaxDrift
		m.MaxDrift = &v
	}
	// The key is the etcd canary's; a Velero canary is a ConfigMap and has none.
	if k := c.Canary; k != nil && k.Key == "" && scenario != "" && !velero {
		k.Key = CanaryKeyPrefix + scenario
	}
	// objectsMatch.resources stays empty when unset: the check then compares the default
	// resources leniently (an application without Secrets passes on its ConfigMaps), while
	// each resource listed must have something to compare.
	if w := c.WorkloadsReady; w != nil && w.Timeout.Duration == 0 {
		w.Timeout.Duration = DefaultWorkloadsTimeout
	}
	if j := c.Job; j != nil && j.Timeout.Duration == 0 {
		j.Timeout.Duration = DefaultJobTimeout
	}
	if v := c.VolumeData; v != nil && v.Timeout.Duration == 0 {
		v.Timeout.Duration = DefaultVolumeDataTimeout
	}
	if h := c.HTTP; h != nil {
		if h.Timeout.Duration == 0 {
			h.Timeout.Duration = DefaultProbeTimeout
		}
		if h.Path == "" {
			h.Path = "/"
		}
		if h.Scheme == "" {
			h.Scheme = "http"
		}
		if h.Expect.Status == 0 {
			h.Expect.Status = DefaultHTTPStatus
		}
	}
	if t := c.TCP; t != nil && t.Timeout.Duration == 0 {
		t.Timeout.Duration = DefaultProbeTimeout
	}
	if e := c.Exec; e != nil {
		if e.Timeout.Duration == 0 {
			e.Timeout.Duration = DefaultProbeTimeout
		}
		if e.Expect.ExitCode == nil {
			e.Expect.ExitCode = ptr(0)
		}
	}
	if i := c.Isolation; i != nil && i.Timeout.Duration == 0 {
		i.Timeout.Duration = DefaultIsolationTimeout
	}
}

func (s *Sampling) setDefaults() {
	if s.Select == "" {
		s.Select = DefaultSelect
	}
}
