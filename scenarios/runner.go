package scenarios

import (
	"regexp"
	"slices"
	"strings"
)

// Runner is the Job a drill runs in under `firedrill serve --executor job`: under which
// ServiceAccount, with which resources, on which work volume. Every field is optional; serve's
// flags give the defaults.
type Runner struct {
	// ServiceAccountName is the ServiceAccount the Job's pod runs as, in serve's Job namespace.
	// Default: serve's --job-service-account.
	ServiceAccountName string `json:"serviceAccountName,omitempty" yaml:"serviceAccountName,omitempty"`
	// Resources are the drill container's requests and limits, as a container's: an etcd
	// restore wants memory about twice its snapshot's size.
	Resources *RunnerResources `json:"resources,omitempty" yaml:"resources,omitempty"`
	// WorkVolume, when set, is a generic ephemeral volume (a PersistentVolumeClaim made with the
	// pod and deleted with it) that holds the run's work directory: snapshots and the scratch
	// etcd's data. Default: an emptyDir on the node's disk.
	WorkVolume *WorkVolume `json:"workVolume,omitempty" yaml:"workVolume,omitempty"`
}

// RunnerResources are a container's requests and limits by resource name (cpu, memory,
// ephemeral-storage) as Kubernetes quantities ("500m", "2Gi").
type RunnerResources struct {
	Requests map[string]string `json:"requests,omitempty" yaml:"requests,omitempty"`
	Limits   map[string]string `json:"limits,omitempty" yaml:"limits,omitempty"`
}

// WorkVolume is the claim a generic ephemeral volume is made from.
type WorkVolume struct {
	// StorageClassName of the claim; default: the cluster's default StorageClass.
	StorageClassName string `json:"storageClassName,omitempty" yaml:"storageClassName,omitempty"`
	// Size the claim requests, a quantity such as "20Gi". Required.
	Size string `json:"size" yaml:"size"`
}

// RunnerResourceNames are the resources spec.runner.resources may name.
func RunnerResourceNames() []string { return []string{"cpu", "memory", "ephemeral-storage"} }

// quantity is Kubernetes' quantity syntax (resource.ParseQuantity) in its common forms: a
// decimal number with an optional SI or binary suffix or exponent. This package imports nothing
// of Kubernetes'; the Job executor parses the value again with Kubernetes' own parser.
var quantity = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$`)

func (r *Runner) validate(p *problems, field string) {
	if sa := r.ServiceAccountName; sa != "" && (len(sa) > 253 || !dns1123Subdomain.MatchString(sa)) {
		p.add(field+".serviceAccountName", "%q is not a ServiceAccount name: lowercase letters, digits, '-' and '.'", sa)
	}
	if res := r.Resources; res != nil {
		for _, kind := range []struct {
			name string
			m    map[string]string
		}{{"requests", res.Requests}, {"limits", res.Limits}} {
			for _, k := range sortedKeys(kind.m) {
				f := keyField(field+".resources."+kind.name, k)
				switch v := kind.m[k]; {
				case !slices.Contains(RunnerResourceNames(), k):
					p.add(f, "%q is not a resource a drill's container takes: use %s", k, orList(RunnerResourceNames()))
				case !quantity.MatchString(v):
					p.add(f, "%q is not a quantity: write e.g. 500m for CPU, 512Mi or 2Gi for memory and storage", v)
				}
			}
		}
	}
	if v := r.WorkVolume; v != nil {
		if v.StorageClassName != "" && !isObjectName(v.StorageClassName) {
			p.add(field+".workVolume.storageClassName", "%q is not a StorageClass name", v.StorageClassName)
		}
		switch {
		case v.Size == "":
			p.add(field+".workVolume.size", "say how large the work volume is, e.g. 20Gi: twice the largest snapshot is a good start")
		case !quantity.MatchString(v.Size) || strings.HasSuffix(v.Size, "m"):
			p.add(field+".workVolume.size", "%q is not a size: write e.g. 20Gi", v.Size)
		}
	}
}
