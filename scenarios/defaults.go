package scenarios

import "time"

// Defaults, applied by SetDefaults. Each field's doc comment in types.go states its default too.
const (
	DefaultTimeZone        = "UTC"
	DefaultTimeout         = 30 * time.Minute
	DefaultDialTimeout     = 5 * time.Second
	DefaultPattern         = "*.db"
	DefaultBumpRevision    = uint64(1_000_000_000)
	DefaultAPIServerBinary = "kube-apiserver"
	DefaultDecodePrefix    = "/registry/"
	DefaultMaxDrift        = 0.05
	CanaryKeyPrefix        = "/firedrill/canary/" // the default canary key is this plus the scenario's name
	DefaultCleanupPolicy   = CleanupAlways
	DefaultKeepFor         = 24 * time.Hour

	// Velero drills.
	DefaultVeleroNamespace  = "velero" // backup.velero.namespace, cluster.veleroNamespace
	DefaultBackupTTL        = 24 * time.Hour
	DefaultSnapshotVolumes  = false
	DefaultKindVeleroImage  = "velero/velero:v1.18.3"
	DefaultKindVeleroPlugin = "velero/velero-plugin-for-aws:v1.14.3" // the one default plugin
	DefaultDenyNetwork      = true
	DefaultSuspendCronJobs  = true
	DefaultQuotaCPU         = "4"
	DefaultQuotaMemory      = "8Gi"
	DefaultQuotaPods        = "50"
	DefaultWorkloadsTimeout = 10 * time.Minute
	DefaultJobTimeout       = 5 * time.Minute
	KindClusterNamePrefix   = "firedrill-"       // an empty kind.name means this plus the run id
	CanaryConfigMap         = "firedrill-canary" // the ConfigMap a Velero canary writes

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
		if l := e.LatestFrom; l != nil && l.Pattern == "" {
			l.Pattern = DefaultPattern
		}
	}
	if v := sp.Backup.Velero; v != nil {
		if v.Namespace == "" {
			v.Namespace = DefaultVeleroNamespace
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
	for i := range sp.Checks {
		c := &sp.Checks[i]
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
		if k := c.Canary; k != nil && k.Key == "" && s.Metadata.Name != "" && sp.Backup.Velero == nil {
			k.Key = CanaryKeyPrefix + s.Metadata.Name
		}
		if m := c.ObjectsMatch; m != nil && len(m.Resources) == 0 {
			m.Resources = DefaultObjectsMatchResources()
		}
		if w := c.WorkloadsReady; w != nil && w.Timeout.Duration == 0 {
			w.Timeout.Duration = DefaultWorkloadsTimeout
		}
		if j := c.Job; j != nil && j.Timeout.Duration == 0 {
			j.Timeout.Duration = DefaultJobTimeout
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
	if t := c.types(); len(t) == 1 {
		return t[0]
	}
	return ""
}

// types lists the type fields set, in the order of CheckTypes.
func (c Check) types() []string {
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
		CheckObjectsRestored, CheckObjectsMatch, CheckWorkloadsReady, CheckJob}
}
