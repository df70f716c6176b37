package scenarios

import (
	"fmt"
	"maps"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// maxBumpRevision leaves room above the bump for the restored revision itself: etcd revisions
// are signed 64-bit numbers.
const maxBumpRevision = uint64(1) << 62

// Validate reports every problem of the scenario at once, each as a *Problem naming its field
// path and, for a loaded scenario, its file and line (see Problems). Fields left at their zero
// value count as their default, so a scenario built in code may be validated before or after
// SetDefaults. Files the scenario reads (TLS, S3 credentials, encryption config) must exist.
func (s *Scenario) Validate() error {
	p := &problems{file: s.Path, lines: s.lines}
	s.validateHeader(p)
	s.Metadata.validate(p)
	s.Spec.validate(p, s.Metadata.Name)
	s.checkPaths(p)
	// In file order, as a compiler lists errors; problems without a line (in code) keep theirs.
	slices.SortStableFunc(p.list, func(a, b *Problem) int { return a.Line - b.Line })
	return p.err()
}

func (s *Scenario) validateHeader(p *problems) {
	switch s.APIVersion {
	case APIVersion:
	case "":
		p.add("apiVersion", "is missing: a scenario starts with apiVersion: %s and kind: %s", APIVersion, Kind)
	default:
		p.add("apiVersion", "%q is not supported by this firedrill: use %s", s.APIVersion, APIVersion)
	}
	switch s.Kind {
	case Kind:
	case "":
		p.add("kind", "is missing: write kind: %s", Kind)
	default:
		p.add("kind", "%q is not a kind firedrill knows: use %s", s.Kind, Kind)
	}
}

var (
	dns1123Label     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	dns1123Subdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	labelName        = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)
)

func (m *Metadata) validate(p *problems) {
	switch {
	case m.Name == "":
		p.add("metadata.name", "is missing: name the scenario, e.g. shop-etcd")
	case len(m.Name) > 63 || !dns1123Label.MatchString(m.Name):
		p.add("metadata.name", "%q is not a valid name: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit", m.Name)
	}
	validateLabels(p, "metadata.labels", m.Labels)
	for _, k := range sortedKeys(m.Annotations) {
		if msg := qualifiedNameProblem(k); msg != "" {
			p.add(keyField("metadata.annotations", k), "%s", msg)
		}
	}
}

// ValidateLabels checks labels as a scenario's metadata.labels are checked, naming each problem
// by field (e.g. spec.labels): what else puts labels on run records (a DrillRun) holds them to
// the same rule.
func ValidateLabels(field string, labels map[string]string) error {
	p := &problems{}
	validateLabels(p, field, labels)
	return p.err()
}

func validateLabels(p *problems, field string, labels map[string]string) {
	for _, k := range sortedKeys(labels) {
		f := keyField(field, k)
		if msg := qualifiedNameProblem(k); msg != "" {
			p.add(f, "%s", msg)
		}
		if v := labels[k]; v != "" && (len(v) > 63 || !labelName.MatchString(v)) {
			p.add(f, "value %q is not a valid label value: use at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit", v)
		}
	}
}

// qualifiedNameProblem checks a label or annotation key as Kubernetes does: an optional DNS
// subdomain prefix and "/", then a name of at most 63 characters.
func qualifiedNameProblem(key string) string {
	prefix, name, hasPrefix := strings.Cut(key, "/")
	if !hasPrefix {
		prefix, name = "", key
	}
	switch {
	case hasPrefix && (prefix == "" || len(prefix) > 253 || !dns1123Subdomain.MatchString(prefix)):
		return fmt.Sprintf("key %q: the prefix before '/' must be a lowercase DNS subdomain such as example.com", key)
	case name == "" || len(name) > 63 || !labelName.MatchString(name):
		return fmt.Sprintf("key %q is not a valid key: use at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit, optionally after a prefix such as example.com/", key)
	}
	return ""
}

func (sp *Spec) validate(p *problems, name string) {
	if sp.Schedule != "" {
		validateSchedule(p, sp.Schedule)
	}
	switch sp.TimeZone {
	case "":
	case "Local":
		p.add("spec.timeZone", `"Local" depends on the machine that runs the drill: use an IANA name such as Europe/Berlin, or UTC`)
	default:
		if _, err := time.LoadLocation(sp.TimeZone); err != nil {
			p.add("spec.timeZone", "unknown time zone %q: use an IANA name such as Europe/Berlin, or UTC", sp.TimeZone)
		}
	}
	if sp.Timeout.Duration < 0 {
		p.add("spec.timeout", "must be more than 0, got %s (leave it out for the default %s)", short(sp.Timeout), short(Duration{DefaultTimeout}))
	}
	notNegative(p, "spec.objectives.rto", sp.Objectives.RTO)
	notNegative(p, "spec.objectives.rpo", sp.Objectives.RPO)

	backup := sp.Backup.kinds()
	switch len(backup) {
	case 0:
		p.add("spec.backup", "say which backup to drill: set one of %s", strings.Join(backupKinds(), ", "))
	case 1:
	default:
		p.add("spec.backup", "sets %s: set exactly one kind of backup", strings.Join(backup, " and "))
	}
	restore := sp.Restore.targets()
	switch len(restore) {
	case 0:
		p.add("spec.restore", "say where to restore: set one of %s", strings.Join(restoreTargets(), ", "))
	case 1:
	default:
		p.add("spec.restore", "sets %s: set exactly one restore target", strings.Join(restore, " and "))
	}
	if len(backup) == 1 && len(restore) == 1 {
		if want := restoresFor(backup[0]); !slices.Contains(want, restore[0]) {
			article := "a"
			if backup[0] == "etcd" {
				article = "an"
			}
			p.add("spec.restore", "%s %s backup is restored into %s, not %s", article, backup[0], orList(want), restore[0])
		}
	}
	if e := sp.Backup.Etcd; e != nil {
		e.validate(p, "spec.backup.etcd")
	}
	if v := sp.Backup.Velero; v != nil {
		v.validate(p, "spec.backup.velero", sp.Timeout)
	}
	sp.validateVeleroTargets(p, name)
	if r := sp.Restore.ScratchEtcd; r != nil {
		r.validate(p, "spec.restore.scratchEtcd")
	}
	sp.validateChecks(p, name)
	sp.validateOrder(p)

	switch sp.Cleanup.Policy {
	case "", CleanupAlways, CleanupOnSuccess, CleanupNever:
	default:
		p.add("spec.cleanup.policy", "%q is not a policy: use %s, %s or %s", sp.Cleanup.Policy, CleanupAlways, CleanupOnSuccess, CleanupNever)
	}
	if sp.Cleanup.KeepFor.Duration < 0 {
		p.add("spec.cleanup.keepFor", "must be more than 0, got %s", short(sp.Cleanup.KeepFor))
	}
	if u := sp.Notify.HeartbeatURL; u != "" {
		validateHeartbeatURL(p, "spec.notify.heartbeatURL", u)
	}
	if sp.Runner != nil {
		sp.Runner.validate(p, "spec.runner")
	}
}

// validateHeartbeatURL accepts an http or https URL with a host. Its problems never quote the
// URL: the path is the secret that lets anyone ping the switch, and problems are shown by serve's
// API and dashboard.
func validateHeartbeatURL(p *problems, field, s string) {
	u, err := url.Parse(s)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		p.add(field, "is not an http or https URL: write it as e.g. https://hc-ping.com/UUID")
	case u.User != nil:
		p.add(field, "holds credentials before the host: put them in the path or query, as heartbeat services do")
	}
}

func validateSchedule(p *problems, schedule string) {
	if strings.HasPrefix(schedule, "TZ=") || strings.HasPrefix(schedule, "CRON_TZ=") {
		p.add("spec.schedule", "%q: set the time zone in spec.timeZone, not in the schedule", schedule)
		return
	}
	if _, err := cron.ParseStandard(schedule); err != nil {
		p.add("spec.schedule", "%q is not a schedule (%v): use 5 cron fields (minute hour day-of-month month day-of-week) or a descriptor such as @daily or @every 6h", schedule, err)
	}
}

// short writes a duration as people write it in a scenario: 5m rather than Go's 5m0s.
func short(d Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func notNegative(p *problems, field string, d Duration) {
	if d.Duration < 0 {
		p.add(field, "must not be negative, got %s", short(d))
	}
}

// The kinds of backup and restore target, and which restores which.
func backupKinds() []string    { return []string{"etcd", "velero"} }
func restoreTargets() []string { return []string{"scratchEtcd", "scratchNamespace", "cluster", "kind"} }

func restoresFor(backup string) []string {
	switch backup {
	case "etcd":
		return []string{"scratchEtcd"}
	case "velero":
		return []string{"scratchNamespace", "cluster", "kind"}
	}
	return nil
}

// orList writes a, b or c.
func orList(s []string) string {
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

// Kind is the backup kind set: "etcd" or "velero"; "" unless exactly one is set (Validate says so).
func (b *Backup) Kind() string {
	if k := b.kinds(); len(k) == 1 {
		return k[0]
	}
	return ""
}

func (b *Backup) kinds() []string {
	var out []string
	if b.Etcd != nil {
		out = append(out, "etcd")
	}
	if b.Velero != nil {
		out = append(out, "velero")
	}
	return out
}

func (r *Restore) targets() []string {
	var out []string
	if r.ScratchEtcd != nil {
		out = append(out, "scratchEtcd")
	}
	for _, t := range r.veleroTargets() {
		out = append(out, t.name)
	}
	return out
}

func (e *EtcdBackup) validate(p *problems, field string) {
	switch {
	case e.Take == nil && e.LatestFrom == nil:
		p.add(field, "set take (snapshot the live etcd now) or latestFrom (the newest snapshot you already have)")
	case e.Take != nil && e.LatestFrom != nil:
		p.add(field, "set take or latestFrom, not both")
	}
	if t := e.Take; t != nil {
		f := field + ".take"
		if len(t.Endpoints) == 0 {
			p.add(f+".endpoints", "list at least one etcd client URL, e.g. https://10.0.0.10:2379")
		}
		for i, ep := range t.Endpoints {
			validateURL(p, fmt.Sprintf("%s.endpoints[%d]", f, i), ep, "https://10.0.0.10:2379")
		}
		if tls := t.TLS; tls != nil {
			switch {
			case tls.CAFile == "" && tls.CertFile == "" && tls.KeyFile == "":
				p.add(f+".tls", "is empty: set caFile, certFile and keyFile, or remove it")
			case (tls.CertFile == "") != (tls.KeyFile == ""):
				p.add(f+".tls", "certFile and keyFile go together: set both or neither")
			}
		}
		if t.DialTimeout.Duration < 0 {
			p.add(f+".dialTimeout", "must be more than 0, got %s", short(t.DialTimeout))
		}
	}
	if l := e.LatestFrom; l != nil {
		f := field + ".latestFrom"
		switch {
		case l.Dir == "" && l.S3 == nil:
			p.add(f, "set dir (a directory of snapshots) or s3 (a bucket and prefix)")
		case l.Dir != "" && l.S3 != nil:
			p.add(f, "set dir or s3, not both")
		}
		if _, err := path.Match(l.Pattern, ""); err != nil {
			p.add(f+".pattern", "%q is not a valid glob: use e.g. *.db or etcd-*.db", l.Pattern)
		}
		l.Sampling.validate(p, f)
		if s3 := l.S3; s3 != nil {
			sf := f + ".s3"
			switch {
			case s3.Bucket == "":
				p.add(sf+".bucket", "is missing: name the bucket the snapshots are in")
			case strings.Contains(s3.Bucket, "/"):
				p.add(sf+".bucket", "%q: a bucket name has no '/': put the part after it in prefix", s3.Bucket)
			}
			if s3.Endpoint != "" {
				validateURL(p, sf+".endpoint", s3.Endpoint, "http://minio.example:9000")
			}
		}
	}
}

func (s Sampling) validate(p *problems, field string) {
	switch s.Select {
	case "", SelectLatest, SelectRandom:
	default:
		p.add(field+".select", "%q is not a selection: use %s (the newest backup) or %s (one at random, within window if set)", s.Select, SelectLatest, SelectRandom)
	}
	if w := s.Window; w != nil && w.Duration <= 0 {
		p.add(field+".window", "must be more than 0, got %s: leave it out for no window", short(*w))
	}
}

// validateURL accepts http and https URLs of a server: scheme and host, nothing after.
func validateURL(p *problems, field, s, example string) {
	u, err := url.Parse(s)
	switch {
	case s == "":
		p.add(field, "is empty: write a URL such as %s", example)
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		p.add(field, "%q is not an http or https URL: write it as e.g. %s", s, example)
	case u.User != nil:
		// Redacted: a password must not end up in output (docs/architecture.md, safety rule 4).
		p.add(field, "%q holds credentials: remove them from the URL", u.Redacted())
	case (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "":
		p.add(field, "%q: write the server only, scheme://host:port", s)
	}
}

func (r *ScratchEtcd) validate(p *problems, field string) {
	if r.BumpRevision != nil && *r.BumpRevision > maxBumpRevision {
		p.add(field+".bumpRevision", "%d is too large: use at most %d, leaving room for the restored revision", *r.BumpRevision, maxBumpRevision)
	}
}

// fieldCheck is a check and where it is written: spec.checks[i], or a restore group's.
type fieldCheck struct {
	field string
	c     *Check
}

// allChecks lists the checks of the whole drill and those of its restore groups.
func (sp *Spec) allChecks() []fieldCheck {
	var out []fieldCheck
	for i := range sp.Checks {
		out = append(out, fieldCheck{fmt.Sprintf("spec.checks[%d]", i), &sp.Checks[i]})
	}
	for g := range sp.Restore.Order {
		for i := range sp.Restore.Order[g].Checks {
			out = append(out, fieldCheck{fmt.Sprintf("spec.restore.order[%d].checks[%d]", g, i), &sp.Restore.Order[g].Checks[i]})
		}
	}
	return out
}

func (sp *Spec) validateChecks(p *problems, scenarioName string) {
	all := sp.allChecks()
	if len(all) == 0 {
		p.add("spec.checks", "list at least one check: a drill without checks proves nothing")
	}
	known := len(sp.Backup.kinds()) > 0
	take := sp.Backup.Etcd != nil && sp.Backup.Etcd.Take != nil
	etcd := sp.Backup.Etcd != nil
	velero := sp.Backup.Velero != nil
	var create *VeleroCreate
	if velero {
		create = sp.Backup.Velero.Create
	}
	backup := newBackupFilter(create)
	apiServer := sp.Restore.ScratchEtcd != nil && sp.Restore.ScratchEtcd.APIServer != nil
	var target *veleroTarget
	var restoreExcludes resourceSet
	if ts := sp.Restore.veleroTargets(); len(ts) > 0 {
		target = ts[0]
		restoreExcludes = newResourceSet(target.isolation.ExcludeResources, false)
	}
	names := map[string]string{}
	for _, fc := range all {
		c, field := fc.c, fc.field
		types := c.Types()
		switch len(types) {
		case 0:
			p.add(field, "set one check type: %s", strings.Join(CheckTypes(), ", "))
			continue
		case 1:
		default:
			p.add(field, "sets %s: a check has one type; make them separate checks", strings.Join(types, " and "))
			continue
		}
		typ := types[0]
		name := c.Name
		if name == "" {
			name = typ
		}
		if first, dup := names[name]; dup {
			p.add(field+".name", "%q is also the name of %s: give every check its own name", name, first)
		} else {
			names[name] = field
		}
		tf := field + "." + typ

		// Each check needs what it inspects; say so here rather than fail mid-drill.
		switch typ {
		case CheckEtcdIntegrity, CheckEtcdObjectsDecode, CheckEtcdKeys:
			if !etcd && known {
				p.add(tf, "needs an etcd backup (spec.backup.etcd)")
			}
		case CheckEtcdMatchesLive:
			switch {
			case !etcd && known:
				p.add(tf, "needs an etcd backup taken now (spec.backup.etcd.take): it compares with the live etcd")
			case etcd && !take:
				p.add(tf, "needs spec.backup.etcd.take: it compares with the live etcd, whose endpoints only take names")
			}
		case CheckCanary:
			switch {
			case etcd && !take:
				p.add(tf, "needs spec.backup.etcd.take: the canary is written to the live etcd just before the snapshot is taken")
			case velero && create == nil:
				p.add(tf, "needs spec.backup.velero.create: the canary ConfigMap is written just before firedrill makes the backup, and a backup that already exists cannot hold it")
			}
		case CheckObjectsServed:
			switch {
			case velero:
				p.add(tf, "needs an etcd backup served by spec.restore.scratchEtcd.apiServer; for a Velero backup use objectsRestored")
			case !apiServer:
				p.add(tf, "needs spec.restore.scratchEtcd.apiServer: the objects are served by a scratch kube-apiserver")
			}
		case CheckObjectsRestored, CheckObjectsMatch, CheckWorkloadsReady, CheckJob, CheckVolumeData, CheckHTTP, CheckTCP, CheckExec:
			if !velero && known {
				p.add(tf, "needs a Velero backup (spec.backup.velero)")
			}
		case CheckIsolation:
			switch {
			case !velero && known:
				p.add(tf, "needs a Velero backup (spec.backup.velero)")
			case sp.Restore.ScratchNamespace == nil && velero:
				p.add(tf, "needs spec.restore.scratchNamespace: it proves the copy cannot reach the live application in the same cluster")
			case sp.Restore.ScratchNamespace != nil && sp.Restore.ScratchNamespace.Isolation.DenyNetwork != nil && !*sp.Restore.ScratchNamespace.Isolation.DenyNetwork:
				p.add(tf, "proves the deny-all NetworkPolicy, which spec.restore.scratchNamespace.isolation.denyNetwork: false turns off: set it true or remove the check")
			}
		}

		switch {
		case c.EtcdKeys != nil:
			validateEtcdKeys(p, tf, c.EtcdKeys)
		case c.EtcdMatchesLive != nil:
			m := c.EtcdMatchesLive
			if len(m.Prefixes) == 0 {
				p.add(tf+".prefixes", "list at least one key prefix, e.g. /registry/configmaps/")
			}
			for j, pre := range m.Prefixes {
				if pre == "" {
					p.add(fmt.Sprintf("%s.prefixes[%d]", tf, j), "is empty: write a key prefix such as /registry/configmaps/")
				}
			}
			if d := m.MaxDrift; d != nil && !(*d >= 0 && *d <= 1) {
				p.add(tf+".maxDrift", "must be between 0 and 1 (a share of keys: 0.05 is 5%%), got %v", *d)
			}
		case c.ObjectsServed != nil:
			for j, ns := range c.ObjectsServed.Namespaces {
				if !isNamespaceName(ns) {
					p.add(fmt.Sprintf("%s.namespaces[%d]", tf, j), "%q is not a namespace name", ns)
				}
			}
		case c.Canary != nil && velero:
			if c.Canary.Key != "" {
				p.add(tf+".key", "is for etcd canaries: a Velero canary is the ConfigMap %s in each included namespace; remove it", CanaryConfigMap)
			}
			if backup != nil && !backup.holds("configmaps") {
				p.add(tf, "the backup leaves out configmaps (spec.backup.velero.create): the canary ConfigMap would not be in it")
			}
			if target != nil && restoreExcludes.has("configmaps") {
				p.add(tf, "%s.isolation.excludeResources leaves out configmaps: the canary ConfigMap would not be restored", target.field)
			}
		case c.Canary != nil:
			if c.Canary.Key == "" && scenarioName == "" {
				p.add(tf+".key", "is empty and the scenario has no name to derive it from: set metadata.name")
			}
		case c.ObjectsMatch != nil:
			validateObjectsMatch(p, tf, c.ObjectsMatch, backup, target, restoreExcludes)
		case c.WorkloadsReady != nil:
			validateCheckTimeout(p, tf+".timeout", c.WorkloadsReady.Timeout, DefaultWorkloadsTimeout, sp.Timeout)
		case c.Job != nil:
			validateJob(p, tf, c.Job, backup, sp.Timeout)
		case c.VolumeData != nil:
			validateVolumeData(p, tf, c.VolumeData, backup, sp.Timeout)
		case c.HTTP != nil:
			h := c.HTTP
			validateTarget(p, tf, h.Namespace, h.Service, h.Port, true, backup)
			validateCheckTimeout(p, tf+".timeout", h.Timeout, DefaultProbeTimeout, sp.Timeout)
			if h.Path != "" && !strings.HasPrefix(h.Path, "/") {
				p.add(tf+".path", "%q must start with /", h.Path)
			}
			if h.Scheme != "" && h.Scheme != "http" && h.Scheme != "https" {
				p.add(tf+".scheme", "%q: use http or https", h.Scheme)
			}
			if st := h.Expect.Status; st != 0 && (st < 100 || st > 599) {
				p.add(tf+".expect.status", "%d is not an HTTP status code", st)
			}
			validatePattern(p, tf+".expect.bodyPattern", h.Expect.BodyPattern)
		case c.TCP != nil:
			validateTarget(p, tf, c.TCP.Namespace, c.TCP.Service, c.TCP.Port, true, backup)
			validateCheckTimeout(p, tf+".timeout", c.TCP.Timeout, DefaultProbeTimeout, sp.Timeout)
		case c.Exec != nil:
			validateExec(p, tf, c.Exec, backup, sp.Timeout)
		case c.Isolation != nil:
			i := c.Isolation
			validateTarget(p, tf, i.Namespace, i.Service, i.Port, false, backup)
			validateCheckTimeout(p, tf+".timeout", i.Timeout, DefaultIsolationTimeout, sp.Timeout)
		}
	}
}

func validateObjectsMatch(p *problems, field string, m *ObjectsMatchCheck, backup *backupFilter, target *veleroTarget, restoreExcludes resourceSet) {
	resources := m.Resources
	if len(resources) == 0 {
		resources = DefaultObjectsMatchResources()
	}
	for j, r := range resources {
		rf := fmt.Sprintf("%s.resources[%d]", field, j)
		validateResource(p, rf, r)
		if r == "" || r == "*" {
			continue
		}
		// A resource that is not there to compare would pass the check vacuously.
		if backup != nil && !backup.holds(r) {
			p.add(rf, "%s: the backup leaves it out (spec.backup.velero.create), so there is nothing to compare", r)
		}
		if target != nil && restoreExcludes.has(r) {
			p.add(rf, "%s: %s.isolation.excludeResources leaves it out of the restore, so there is nothing to compare", r, target.field)
		}
	}
	for j, f := range m.IgnoreFields {
		if _, err := SplitFieldPath(f); err != nil {
			p.add(fmt.Sprintf("%s.ignoreFields[%d]", field, j), "%q is not a field path (%v): write dotted names, a key with dots or '/' in brackets, e.g. metadata.annotations[example.com/checksum]", f, err)
		}
	}
}

// validateCheckTimeout refuses a negative timeout, and one the run's own timeout would cut short.
func validateCheckTimeout(p *problems, field string, d Duration, def time.Duration, runTimeout Duration) {
	switch {
	case d.Duration < 0:
		p.add(field, "must be more than 0, got %s (leave it out for the default %s)", short(d), short(Duration{def}))
	case d.Duration > 0 && d.Duration >= orDefault(runTimeout, DefaultTimeout):
		p.add(field, "%s is not shorter than spec.timeout %s: the run would be stopped before the check could time out", short(d), short(Duration{orDefault(runTimeout, DefaultTimeout)}))
	}
}

var (
	envVarName = regexp.MustCompile(`^[-._a-zA-Z][-._a-zA-Z0-9]*$`)
	secretKey  = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)
)

func validateJob(p *problems, field string, j *JobCheck, backup *backupFilter, runTimeout Duration) {
	if j.Image == "" {
		p.add(field+".image", "is missing: name the image the Job runs, e.g. postgres:16")
	} else {
		validateImage(p, field+".image", j.Image)
	}
	validateCheckTimeout(p, field+".timeout", j.Timeout, DefaultJobTimeout, runTimeout)
	if ns := j.Namespace; ns != "" {
		switch {
		case !isNamespaceName(ns):
			p.add(field+".namespace", "%q is not a namespace name: name the backed-up namespace whose scratch copy the Job runs in", ns)
		case backup != nil && !backup.namespaces[ns]:
			p.add(field+".namespace", "%q is not backed up (spec.backup.velero.create.includedNamespaces): the Job runs in the scratch copy of a backed-up namespace", ns)
		}
	}
	seen := map[string]int{}
	for i, e := range j.Env {
		ef := fmt.Sprintf("%s.env[%d]", field, i)
		switch {
		case e.Name == "":
			p.add(ef+".name", "is missing")
		case !envVarName.MatchString(e.Name):
			p.add(ef+".name", "%q is not a variable name: use letters, digits, '_', '-' and '.', not starting with a digit", e.Name)
		default:
			if first, dup := seen[e.Name]; dup {
				p.add(ef+".name", "%q is also the name of env[%d]: set each variable once", e.Name, first)
			} else {
				seen[e.Name] = i
			}
		}
		if e.ValueFrom == nil {
			continue
		}
		if e.Value != "" {
			p.add(ef, "sets value and valueFrom: use one")
		}
		ref := e.ValueFrom.SecretKeyRef
		if ref == nil {
			p.add(ef+".valueFrom", "set secretKeyRef: {name: SECRET, key: KEY}, a Secret restored into the Job's namespace")
			continue
		}
		rf := ef + ".valueFrom.secretKeyRef"
		switch {
		case ref.Name == "":
			p.add(rf+".name", "is missing: name the Secret, as in the backup")
		case !isObjectName(ref.Name):
			p.add(rf+".name", "%q is not a Secret name: %s", ref.Name, objectNameRule)
		}
		switch {
		case ref.Key == "":
			p.add(rf+".key", "is missing: name the key in the Secret's data")
		case len(ref.Key) > 253 || !secretKey.MatchString(ref.Key):
			p.add(rf+".key", "%q is not a Secret key: use letters, digits, '-', '_' and '.'", ref.Key)
		}
	}
}

// validateNamespaceOf checks a check's namespace: a backed-up namespace, whose scratch copy it
// looks at.
func validateNamespaceOf(p *problems, field, ns string, backup *backupFilter) {
	switch {
	case ns == "":
	case !isNamespaceName(ns):
		p.add(field, "%q is not a namespace name: name the backed-up namespace whose scratch copy the check looks at", ns)
	case backup != nil && !backup.namespaces[ns]:
		p.add(field, "%q is not backed up (spec.backup.velero.create.includedNamespaces): the check looks at the scratch copy of a backed-up namespace", ns)
	}
}

// validateTarget checks the Service (and namespace and port) an http, tcp or isolation check
// connects to.
func validateTarget(p *problems, field, ns, service string, port int32, serviceRequired bool, backup *backupFilter) {
	validateNamespaceOf(p, field+".namespace", ns, backup)
	switch {
	case service == "" && serviceRequired:
		p.add(field+".service", "is missing: name the restored Service to connect to")
	case service != "" && !dns1035Label.MatchString(service):
		p.add(field+".service", "%q is not a Service name: at most 63 lowercase letters, digits and '-', starting with a letter", service)
	}
	if port < 0 || port > 65535 {
		p.add(field+".port", "%d is not a port: use 1 to 65535, or leave it out for the Service's first port", port)
	}
}

var dns1035Label = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`)

func validatePattern(p *problems, field, pattern string) {
	if pattern == "" {
		return
	}
	if _, err := regexp.Compile(pattern); err != nil {
		p.add(field, "is not a regular expression: %v", err)
	}
}

func validateGlob(p *problems, field, glob string) {
	if _, err := filepath.Match(glob, ""); err != nil {
		p.add(field, "%q is not a glob pattern: %v", glob, err)
	}
}

func validateVolumeData(p *problems, field string, v *VolumeDataCheck, backup *backupFilter, runTimeout Duration) {
	validateCheckTimeout(p, field+".timeout", v.Timeout, DefaultVolumeDataTimeout, runTimeout)
	for i, r := range v.Volumes {
		rf := fmt.Sprintf("%s.volumes[%d]", field, i)
		validateNamespaceOf(p, rf+".namespace", r.Namespace, backup)
		if r.Volume == "" {
			p.add(rf+".volume", "is missing: name the volume as the pod spec does")
		}
		if r.Pod != "" {
			validateGlob(p, rf+".pod", r.Pod)
		}
	}
	for i, g := range v.Ignore {
		validateGlob(p, fmt.Sprintf("%s.ignore[%d]", field, i), g)
	}
}

func validateExec(p *problems, field string, e *ExecCheck, backup *backupFilter, runTimeout Duration) {
	validateNamespaceOf(p, field+".namespace", e.Namespace, backup)
	validateCheckTimeout(p, field+".timeout", e.Timeout, DefaultProbeTimeout, runTimeout)
	switch {
	case e.Pod == "" && len(e.Selector) == 0:
		p.add(field, "name the pod to run the command in: pod (a name or a glob) or selector (labels)")
	case e.Pod != "" && len(e.Selector) > 0:
		p.add(field+".selector", "goes without pod: use one")
	case e.Pod != "":
		validateGlob(p, field+".pod", e.Pod)
	}
	if len(e.Command) == 0 {
		p.add(field+".command", "is missing: the command and its arguments, e.g. [sqlite3, /data/orders.db, \"select count(*) from orders\"]")
	}
	validatePattern(p, field+".expect.outputPattern", e.Expect.OutputPattern)
	if c := e.Expect.ExitCode; c != nil && (*c < 0 || *c > 255) {
		p.add(field+".expect.exitCode", "%d is not an exit code: use 0 to 255", *c)
	}
}

func validateEtcdKeys(p *problems, field string, k *EtcdKeysCheck) {
	if k.Prefix == "" {
		p.add(field+".prefix", "is missing: name the keys to count, e.g. /registry/deployments/")
	}
	if k.Min == nil && k.Max == nil && k.Equals == nil {
		p.add(field, "set min, max or equals: how many keys are expected")
	}
	for _, b := range []struct {
		name string
		v    *int
	}{{"min", k.Min}, {"max", k.Max}, {"equals", k.Equals}} {
		if b.v != nil && *b.v < 0 {
			p.add(field+"."+b.name, "must not be negative, got %d", *b.v)
		}
	}
	if k.Equals != nil && (k.Min != nil || k.Max != nil) {
		p.add(field+".equals", "goes without min and max: use equals alone, or min and max")
	}
	if k.Min != nil && k.Max != nil && *k.Min > *k.Max {
		p.add(field, "min %d is more than max %d: no key count can pass", *k.Min, *k.Max)
	}
}

// sortedKeys makes problems come out in the same order every time.
func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }
