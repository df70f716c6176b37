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
		if k := c.Canary; k != nil && k.Key == "" && s.Metadata.Name != "" {
			k.Key = CanaryKeyPrefix + s.Metadata.Name
		}
	}
	if sp.Cleanup.Policy == "" {
		sp.Cleanup.Policy = DefaultCleanupPolicy
	}
	if sp.Cleanup.KeepFor.Duration == 0 {
		sp.Cleanup.KeepFor.Duration = DefaultKeepFor
	}
}

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
	} {
		if t.set {
			out = append(out, t.name)
		}
	}
	return out
}

// CheckTypes are the check types this version knows, in the order the reference lists them.
func CheckTypes() []string {
	return []string{CheckEtcdIntegrity, CheckEtcdObjectsDecode, CheckEtcdKeys, CheckEtcdMatchesLive, CheckObjectsServed, CheckCanary}
}
