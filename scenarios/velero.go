package scenarios

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"

	"k8s.io/apimachinery/pkg/api/resource"
)

const maxNamespaceName = 63

func (v *VeleroBackup) validate(p *problems, field string, timeout Duration) {
	if v.Namespace != "" && !isNamespaceName(v.Namespace) {
		p.add(field+".namespace", "%q is not a namespace name: write the namespace Velero runs in (default %s)", v.Namespace, DefaultVeleroNamespace)
	}
	var set []string
	if v.LatestFrom != nil {
		set = append(set, "latestFrom")
	}
	if v.Name != "" {
		set = append(set, "name")
	}
	if v.Create != nil {
		set = append(set, "create")
	}
	switch len(set) {
	case 0:
		p.add(field, "set latestFrom (the newest backup of a Velero Schedule), name (one existing Backup) or create (a Backup made now)")
	case 1:
	default:
		p.add(field, "sets %s: set exactly one of latestFrom, name and create", strings.Join(set, " and "))
	}
	if l := v.LatestFrom; l != nil {
		f := field + ".latestFrom"
		switch {
		case l.Schedule == "" && l.Selector == nil:
			p.add(f+".schedule", "is missing: name the Velero Schedule whose backups are drilled, or set selector (the Backups' labels)")
		case l.Schedule != "" && l.Selector != nil:
			p.add(f, "sets schedule and selector: set exactly one")
		case l.Schedule != "" && !isObjectName(l.Schedule):
			p.add(f+".schedule", "%q is not a Schedule name: %s", l.Schedule, objectNameRule)
		}
		if s := l.Selector; s != nil {
			if len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0 {
				p.add(f+".selector", "selects every Backup in Velero's namespace, firedrill's own included: give matchLabels or matchExpressions, or name a schedule")
			}
			s.validate(p, f+".selector")
		}
		l.Sampling.validate(p, f)
	}
	if v.Name != "" && !isObjectName(v.Name) {
		p.add(field+".name", "%q is not a Backup name: %s", v.Name, objectNameRule)
	}
	if c := v.Create; c != nil {
		c.validate(p, field+".create", timeout)
	}
}

// objectNameRule is how Kubernetes names most objects (Backups, Schedules, Secrets): a DNS-1123
// subdomain.
const objectNameRule = "use at most 253 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"

func isObjectName(s string) bool { return len(s) <= 253 && dns1123Subdomain.MatchString(s) }

func isNamespaceName(s string) bool { return len(s) <= maxNamespaceName && dns1123Label.MatchString(s) }

func (c *VeleroCreate) validate(p *problems, field string, timeout Duration) {
	f := field + ".includedNamespaces"
	if len(c.IncludedNamespaces) == 0 {
		p.add(f, "list the namespaces to back up, e.g. [shop]")
	}
	included := map[string]string{}
	for i, ns := range c.IncludedNamespaces {
		nf := fmt.Sprintf("%s[%d]", f, i)
		switch {
		case ns == "*":
			p.add(nf, `"*" would back up the whole cluster: list the namespaces to drill; a scratch restore is per namespace and never restores cluster-scoped resources into the source cluster`)
		case !isNamespaceName(ns):
			p.add(nf, "%q is not a namespace name: Velero takes names here, not patterns", ns)
		default:
			if first, dup := included[ns]; dup {
				p.add(nf, "%q is also %s: list it once", ns, first)
			} else {
				included[ns] = nf
			}
		}
	}
	for i, ns := range c.ExcludedNamespaces {
		nf := fmt.Sprintf("%s.excludedNamespaces[%d]", field, i)
		switch {
		case !isNamespaceName(ns):
			p.add(nf, "%q is not a namespace name", ns)
		case included[ns] != "":
			p.add(nf, "%q is also included (%s): Velero would leave it out; remove it from one list", ns, included[ns])
		}
	}
	for i, r := range c.IncludedResources {
		if r != "*" {
			validateResource(p, fmt.Sprintf("%s.includedResources[%d]", field, i), r)
		}
	}
	for i, r := range c.ExcludedResources {
		rf := fmt.Sprintf("%s.excludedResources[%d]", field, i)
		if r == "*" {
			p.add(rf, `"*" excludes every resource: the backup would hold nothing`)
			continue
		}
		validateResource(p, rf, r)
	}
	if ls := c.LabelSelector; ls != nil {
		ls.validate(p, field+".labelSelector")
	}
	if c.StorageLocation != "" && !isObjectName(c.StorageLocation) {
		p.add(field+".storageLocation", "%q is not a BackupStorageLocation name: %s", c.StorageLocation, objectNameRule)
	}
	switch ttl := c.TTL.Duration; {
	case ttl < 0:
		p.add(field+".ttl", "must not be negative, got %s (leave it out for the default %s)", short(c.TTL), short(Duration{DefaultBackupTTL}))
	case ttl > 0 && ttl < orDefault(timeout, DefaultTimeout):
		// Velero's garbage collection could delete the backup while the drill restores it.
		p.add(field+".ttl", "%s is shorter than spec.timeout %s: the backup could expire during the drill", short(c.TTL), short(Duration{orDefault(timeout, DefaultTimeout)}))
	}
}

func orDefault(d Duration, def time.Duration) time.Duration {
	if d.Duration == 0 {
		return def
	}
	return d.Duration
}

func (ls *LabelSelector) validate(p *problems, field string) {
	for _, k := range sortedKeys(ls.MatchLabels) {
		kf := keyField(field+".matchLabels", k)
		if msg := qualifiedNameProblem(k); msg != "" {
			p.add(kf, "%s", msg)
		}
		if v := ls.MatchLabels[k]; !isLabelValue(v) {
			p.add(kf, "value %q is not a valid label value: %s", v, labelValueRule)
		}
	}
	for i, e := range ls.MatchExpressions {
		ef := fmt.Sprintf("%s.matchExpressions[%d]", field, i)
		if e.Key == "" {
			p.add(ef+".key", "is missing: name the label, e.g. app.kubernetes.io/name")
		} else if msg := qualifiedNameProblem(e.Key); msg != "" {
			p.add(ef+".key", "%s", msg)
		}
		switch e.Operator {
		case "In", "NotIn":
			if len(e.Values) == 0 {
				p.add(ef+".values", "%s needs at least one value", e.Operator)
			}
		case "Exists", "DoesNotExist":
			if len(e.Values) > 0 {
				p.add(ef+".values", "%s takes no values: remove them, or use In or NotIn", e.Operator)
			}
		case "":
			p.add(ef+".operator", "is missing: use In, NotIn, Exists or DoesNotExist")
		default:
			p.add(ef+".operator", "%q is not an operator: use In, NotIn, Exists or DoesNotExist", e.Operator)
		}
		for j, v := range e.Values {
			if !isLabelValue(v) {
				p.add(fmt.Sprintf("%s.values[%d]", ef, j), "%q is not a valid label value: %s", v, labelValueRule)
			}
		}
	}
}

const labelValueRule = "use at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit"

func isLabelValue(v string) bool { return v == "" || (len(v) <= 63 && labelName.MatchString(v)) }

// validateResource accepts what Velero accepts in its resource lists, written the one way that
// cannot be mistaken: the lowercase plural, then the API group after a dot outside the core
// group (configmaps, deployments.apps, ingresses.networking.k8s.io).
func validateResource(p *problems, field, r string) {
	switch {
	case r == "":
		p.add(field, "is empty: write a resource such as configmaps or deployments.apps")
	case r == "*":
		p.add(field, `"*" is not a resource here: list the resources`)
	case len(r) > 253 || !dns1123Subdomain.MatchString(r):
		hint := ""
		if strings.ToLower(r) != r {
			hint = " (Kinds such as Ingress are not resource names)"
		}
		p.add(field, "%q is not a resource name%s: write the lowercase plural and, outside the core group, the API group after a dot, e.g. configmaps, deployments.apps, ingresses.networking.k8s.io", r, hint)
	}
}

// resourceSet answers whether a list of resources names r, comparing names as Velero resolves
// them ("deployments" and "deployments.apps" name the same resource), in constant time: lists
// may be long, and each entry of one is looked up in another.
type resourceSet struct {
	all    bool            // the list holds "*", and it counts
	exact  map[string]bool // every entry
	plural map[string]bool // the plural part of every entry
	bare   map[string]bool // entries without a group
}

// newResourceSet makes the set of list; "*" names everything when star is true.
func newResourceSet(list []string, star bool) resourceSet {
	s := resourceSet{exact: map[string]bool{}, plural: map[string]bool{}, bare: map[string]bool{}}
	for _, r := range list {
		if r == "*" {
			s.all = s.all || star
			continue
		}
		plural, group, _ := strings.Cut(r, ".")
		s.exact[r], s.plural[plural] = true, true
		if group == "" {
			s.bare[plural] = true
		}
	}
	return s
}

func (s resourceSet) has(r string) bool {
	if s.all || s.exact[r] {
		return true
	}
	plural, group, _ := strings.Cut(r, ".")
	if group == "" {
		return s.plural[plural]
	}
	return s.bare[plural]
}

// backupFilter says which resources and namespaces a backup made with create holds. Nil when
// firedrill does not make the backup: then they are known only at run time.
type backupFilter struct {
	included, excluded resourceSet
	anyResource        bool
	namespaces         map[string]bool // includedNamespaces; a namespace also excluded is reported on its own
}

func newBackupFilter(c *VeleroCreate) *backupFilter {
	if c == nil {
		return nil
	}
	f := &backupFilter{
		included:    newResourceSet(c.IncludedResources, true),
		excluded:    newResourceSet(c.ExcludedResources, false),
		anyResource: len(c.IncludedResources) == 0,
		namespaces:  map[string]bool{},
	}
	for _, ns := range c.IncludedNamespaces {
		f.namespaces[ns] = true
	}
	return f
}

// holds says whether the backup holds objects of resource r.
func (f *backupFilter) holds(r string) bool {
	return (f.anyResource || f.included.has(r)) && !f.excluded.has(r)
}

// veleroTarget is the parts all three Velero restore targets share.
type veleroTarget struct {
	name      string // scratchNamespace, cluster or kind
	field     string // spec.restore.<name>
	mapping   map[string]string
	isolation *Isolation
	// fixedNames allows mapping templates without {{.RunID}}: the target is not the source cluster.
	fixedNames bool
}

// VeleroTarget is what every Velero restore target has: which one it is ("scratchNamespace",
// "cluster" or "kind"), its namespace mapping and its isolation. Nil when none is set.
type VeleroTarget struct {
	Kind             string
	NamespaceMapping map[string]string
	Isolation        Isolation
}

// VeleroTarget is the scenario's Velero restore target; nil unless exactly one is set.
func (r *Restore) VeleroTarget() *VeleroTarget {
	ts := r.veleroTargets()
	if len(ts) != 1 {
		return nil
	}
	return &VeleroTarget{Kind: ts[0].name, NamespaceMapping: ts[0].mapping, Isolation: *ts[0].isolation}
}

// veleroTargets lists the Velero restore targets set: one in a valid scenario.
func (r *Restore) veleroTargets() []*veleroTarget {
	var out []*veleroTarget
	if t := r.ScratchNamespace; t != nil {
		out = append(out, &veleroTarget{"scratchNamespace", "spec.restore.scratchNamespace", t.NamespaceMapping, &t.Isolation, false})
	}
	if t := r.Cluster; t != nil {
		out = append(out, &veleroTarget{"cluster", "spec.restore.cluster", t.NamespaceMapping, &t.Isolation, true})
	}
	if t := r.Kind; t != nil {
		out = append(out, &veleroTarget{"kind", "spec.restore.kind", t.NamespaceMapping, &t.Isolation, true})
	}
	return out
}

// validateOrder checks the restore groups: named, each namespace in one group, and with a backup
// firedrill makes, every namespace it includes restored by one.
func (sp *Spec) validateOrder(p *problems) {
	if len(sp.Restore.Order) == 0 {
		return
	}
	if sp.Backup.Velero == nil {
		if len(sp.Backup.kinds()) > 0 {
			p.add("spec.restore.order", "orders the restore of a Velero backup's namespaces: remove it, or drill a Velero backup")
		}
		return
	}
	create := sp.Backup.Velero.Create
	names := map[string]int{}
	where := map[string]string{}
	for g, grp := range sp.Restore.Order {
		field := fmt.Sprintf("spec.restore.order[%d]", g)
		switch {
		case grp.Name == "":
			p.add(field+".name", "is missing: name the group, e.g. database")
		case !dns1035Label.MatchString(grp.Name) || len(grp.Name) > 20:
			p.add(field+".name", "%q: use at most 20 lowercase letters, digits and '-', starting with a letter (it names the group's Velero Restore)", grp.Name)
		default:
			if first, dup := names[grp.Name]; dup {
				p.add(field+".name", "%q is also the name of spec.restore.order[%d]", grp.Name, first)
			}
			names[grp.Name] = g
		}
		if len(grp.Namespaces) == 0 {
			p.add(field+".namespaces", "list the backed-up namespaces this group restores")
		}
		for i, ns := range grp.Namespaces {
			nf := fmt.Sprintf("%s.namespaces[%d]", field, i)
			switch {
			case !isNamespaceName(ns):
				p.add(nf, "%q is not a namespace name", ns)
			case where[ns] != "":
				p.add(nf, "%s is also in %s: a namespace is restored once, by one group", ns, where[ns])
			case create != nil && !slices.Contains(create.IncludedNamespaces, ns):
				p.add(nf, "%s is not backed up (spec.backup.velero.create.includedNamespaces)", ns)
			default:
				where[ns] = field
			}
		}
	}
	if create != nil {
		for _, ns := range create.IncludedNamespaces {
			if where[ns] == "" {
				p.add("spec.restore.order", "backs up %s but no group restores it: add it to a group", ns)
			}
		}
	}
}

func (sp *Spec) validateVeleroTargets(p *problems, scenario string) {
	var backup *backupFilter
	if v := sp.Backup.Velero; v != nil {
		backup = newBackupFilter(v.Create)
	}
	for _, t := range sp.Restore.veleroTargets() {
		validateMapping(p, t, scenario, backup)
		t.isolation.validate(p, t.field+".isolation")
	}
	if c := sp.Restore.Cluster; c != nil {
		if c.Kubeconfig == "" {
			p.add("spec.restore.cluster.kubeconfig", "is missing: name the kubeconfig of the second cluster (relative to this file)")
		}
		if c.VeleroNamespace != "" && !isNamespaceName(c.VeleroNamespace) {
			p.add("spec.restore.cluster.veleroNamespace", "%q is not a namespace name", c.VeleroNamespace)
		}
	}
	if k := sp.Restore.Kind; k != nil {
		k.validate(p, "spec.restore.kind")
	}
}

// validateMapping checks every entry of a namespaceMapping: keys are namespaces of the backup,
// values templates that render to distinct namespace names.
func validateMapping(p *problems, t *veleroTarget, scenario string, backup *backupFilter) {
	field := t.field + ".namespaceMapping"
	rendered := map[string]string{} // name → the key that renders to it
	for _, ns := range sortedKeys(t.mapping) {
		kf := keyField(field, ns)
		tmpl := t.mapping[ns]
		validKey := isNamespaceName(ns)
		switch {
		case !validKey:
			p.add(kf, "%q is not a namespace name: the keys are the backed-up namespaces", ns)
		case backup != nil && !backup.namespaces[ns]:
			p.add(kf, "%q is not in spec.backup.velero.create.includedNamespaces: the backup will not hold it", ns)
		}
		if tmpl == "" {
			p.add(kf, "is empty: write the scratch namespace's name as a template, e.g. %s", DefaultNamespaceTemplate)
			continue
		}
		_, used, err := parseNamespaceTemplate(tmpl)
		if err != nil {
			p.add(kf, "%q: %v", tmpl, err)
			continue
		}
		if !used["RunID"] && !t.fixedNames {
			p.add(kf, "%q has no {{.RunID}}: in the source cluster a fixed name would collide between runs and could name a real namespace; write e.g. %s", tmpl, DefaultNamespaceTemplate)
			continue
		}
		if !validKey || (used["Scenario"] && !isNamespaceName(scenario)) {
			continue // rendering needs a valid namespace and scenario name, already reported
		}
		name, err := RenderNamespace(tmpl, NamespaceData{RunID: SampleRunID, Namespace: ns, Scenario: scenario})
		switch {
		case err != nil:
			p.add(kf, "%q: %v", tmpl, err)
			continue
		case len(name) > maxNamespaceName:
			p.add(kf, "%q renders to %q (with run id %s), %d characters: a namespace name has at most %d; shorten the fixed text", tmpl, name, SampleRunID, len(name), maxNamespaceName)
			continue
		case !dns1123Label.MatchString(name):
			p.add(kf, "%q renders to %q (with run id %s), which is not a namespace name: use lowercase letters, digits and '-', starting and ending with a letter or digit", tmpl, name, SampleRunID)
			continue
		}
		if first, dup := rendered[name]; dup {
			p.add(kf, "%q renders to %q, as the template of %q does: every namespace needs a scratch namespace of its own; use {{.Namespace}}", tmpl, name, first)
			continue
		}
		rendered[name] = ns
	}
}

func (i *Isolation) validate(p *problems, field string) {
	if i.AllowDNS && i.DenyNetwork != nil && !*i.DenyNetwork {
		p.add(field+".allowDNS", "has no effect with denyNetwork: false (nothing is denied): remove one of them")
	}
	if q := i.Quota; q != nil {
		for _, r := range []struct{ name, v string }{{"cpu", q.CPU}, {"memory", q.Memory}, {"pods", q.Pods}} {
			if r.v == "" {
				continue // the default
			}
			rf := field + ".quota." + r.name
			qty, err := parseQuantity(r.v)
			switch {
			case err != nil:
				p.add(rf, "%q is not a quantity: write it as Kubernetes does, e.g. cpu \"4\" or \"500m\", memory \"8Gi\", pods \"50\"", r.v)
			case qty.Sign() < 0:
				p.add(rf, "must not be negative, got %s", r.v)
			case r.name == "pods":
				if _, whole := qty.AsInt64(); !whole {
					p.add(rf, "%q: pods is a count; write a whole number", r.v)
				}
			}
		}
	}
	for j, r := range i.ExcludeResources {
		rf := fmt.Sprintf("%s.excludeResources[%d]", field, j)
		if r == "*" {
			p.add(rf, `"*" would exclude everything: list the resources to leave out of the restore`)
			continue
		}
		validateResource(p, rf, r)
	}
}

// parseQuantity is resource.ParseQuantity for quantities a person writes: at most 64 characters
// and an exponent of at most two digits. ParseQuantity's time grows with the exponent
// ("1e-999999999" takes minutes), and validation must stay fast on any input.
func parseQuantity(s string) (resource.Quantity, error) {
	if len(s) > 64 {
		return resource.Quantity{}, errors.New("too long")
	}
	if i := strings.LastIndexAny(s, "eE"); i >= 0 && len(strings.TrimLeft(s[i+1:], "+-")) > 2 {
		return resource.Quantity{}, errors.New("exponent too large")
	}
	return resource.ParseQuantity(s)
}

func (k *KindTarget) validate(p *problems, field string) {
	if k.Name != "" && !isNamespaceName(k.Name) {
		p.add(field+".name", "%q is not a cluster name: use at most 63 lowercase letters, digits and '-' (or leave it out for %s<run id>)", k.Name, KindClusterNamePrefix)
	}
	if k.Image != "" {
		validateImage(p, field+".image", k.Image)
	}
	vf := field + ".velero"
	v := &k.Velero
	if v.Image != "" {
		validateImage(p, vf+".image", v.Image)
	}
	for i, img := range v.Plugins {
		validateImage(p, fmt.Sprintf("%s.plugins[%d]", vf, i), img)
	}
	switch {
	case v.Provider == "":
		p.add(vf+".provider", "is missing: name the object storage provider of the backups' location, e.g. aws (also for S3-compatible servers)")
	case strings.IndexFunc(v.Provider, unicode.IsSpace) >= 0:
		p.add(vf+".provider", "%q is not a provider name, e.g. aws or velero.io/aws", v.Provider)
	}
	switch {
	case v.Bucket == "":
		p.add(vf+".bucket", "is missing: name the bucket the backups are in")
	case strings.Contains(v.Bucket, "/"):
		p.add(vf+".bucket", "%q: a bucket name has no '/': put the part after it in prefix", v.Bucket)
	}
	for _, key := range sortedKeys(v.Config) {
		kf := keyField(vf+".config", key)
		if key == "" {
			p.add(kf, "an empty key: write the BackupStorageLocation setting's name, e.g. region")
		}
		if v.Config[key] == "" {
			p.add(kf, "is empty: give it a value or remove it")
		}
	}
	if v.CredentialsFile == "" {
		p.add(vf+".credentialsFile", "is missing: name the cloud credentials file Velero gets (as velero install --secret-file)")
	}
}

// validateImage refuses what cannot be an image reference; the registry has the last word.
func validateImage(p *problems, field, img string) {
	switch {
	case img == "":
		p.add(field, "is empty: write an image such as postgres:16")
	case strings.IndexFunc(img, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0:
		p.add(field, "%q is not an image reference: no spaces", img)
	}
}
