package velero

import (
	"fmt"
	"slices"
	"sort"

	"sigs.k8s.io/yaml"

	"github.com/firedrill-dev/firedrill/scenarios"
)

// AlwaysExcluded are resources a firedrill restore never brings back, whatever the scenario
// says: they route outside traffic to the copy or scale it (docs/architecture.md, safety rule 2).
// Gateways are in because a gateway controller provisions load balancers for them outside Velero's
// reach.
var alwaysExcluded = []string{
	"ingresses.networking.k8s.io",
	"ingresses.extensions",
	"gateways.gateway.networking.k8s.io",
	"httproutes.gateway.networking.k8s.io",
	"grpcroutes.gateway.networking.k8s.io",
	"tlsroutes.gateway.networking.k8s.io",
	"tcproutes.gateway.networking.k8s.io",
	"udproutes.gateway.networking.k8s.io",
	"horizontalpodautoscalers.autoscaling",
	// NetworkPolicies add up: a restored allow rule (egress to the production database) would open
	// the scratch copy beside firedrill's deny policy.
	"networkpolicies.networking.k8s.io",
}

// veleroNonRestorable are what Velero v1.18 adds to every restore's exclusions itself
// (pkg/controller/restore_controller.go nonRestorableResources); listed so that a plan shows them
// and checks do not count their items as missing.
var veleroNonRestorable = []string{
	"nodes",
	"events",
	"events.events.k8s.io",
	"backups.velero.io",
	"restores.velero.io",
	"resticrepositories.velero.io",
	"csinodes.storage.k8s.io",
	"volumeattachments.storage.k8s.io",
	"backuprepositories.velero.io",
}

// ExcludedResources is the restore's full exclusion list for iso: firedrill's own, the scenario's
// extra ones and Velero's, deduplicated and sorted.
func ExcludedResources(iso scenarios.Isolation) []string {
	all := slices.Concat(alwaysExcluded, iso.ExcludeResources, veleroNonRestorable)
	sort.Strings(all)
	return slices.Compact(all)
}

// servicePortRules is how many ports per Service the nodePort-stripping rules cover. A Service
// with an explicit nodePort beyond them cannot become ClusterIP, and the API server refuses it:
// the restore ends PartiallyFailed rather than with an open port.
const servicePortRules = 16

// The resource modifier document Velero reads from a ConfigMap (Velero's
// internal/resourcemodifiers, format version v1), written here because that package is internal.
type resourceModifiers struct {
	Version string         `json:"version"`
	Rules   []modifierRule `json:"resourceModifierRules"`
}

type modifierRule struct {
	Conditions   conditions       `json:"conditions"`
	Patches      []jsonPatch      `json:"patches,omitempty"`
	MergePatches []jsonMergePatch `json:"mergePatches,omitempty"`
}

type conditions struct {
	GroupResource string      `json:"groupResource"`
	Matches       []matchRule `json:"matches,omitempty"`
}

// matchRule is a JSON-patch "test": the rule applies only when Path holds Value. A path that does
// not exist makes the rule not apply (no error), which is what lets a rule per port index exist.
type matchRule struct {
	Path  string `json:"path"`
	Value string `json:"value"`
}

// jsonPatch.Value is a string Velero turns into JSON: numbers, booleans, objects stay unquoted.
type jsonPatch struct {
	Operation string `json:"operation"`
	Path      string `json:"path"`
	Value     string `json:"value,omitempty"`
}

type jsonMergePatch struct {
	PatchData string `json:"patchData"`
}

// toClusterIP makes an externally reachable Service a ClusterIP one: every field the API server
// allows only on NodePort or LoadBalancer Services goes, so the result validates.
const toClusterIP = `{"spec":{"type":"ClusterIP","externalTrafficPolicy":null,"healthCheckNodePort":null,` +
	`"loadBalancerIP":null,"loadBalancerSourceRanges":null,"loadBalancerClass":null,"allocateLoadBalancerNodePorts":null}}`

// isolationRules are applied by Velero to each object after its restore item actions and before
// it creates the object, so no LoadBalancer, NodePort, external IP or running CronJob ever exists
// in the target. Velero matches every rule's conditions against the object as it was before any
// rule, and applies the patches of matching rules in order.
//
// Merge patches cannot fail on any object; each JSON patch only touches a port whose existence its
// conditions proved. That matters: Velero still creates an object whose modifier failed.
func isolationRules(iso scenarios.Isolation) resourceModifiers {
	rm := resourceModifiers{Version: "v1"}
	for _, typ := range []string{"LoadBalancer", "NodePort"} {
		rm.Rules = append(rm.Rules, modifierRule{
			Conditions:   conditions{GroupResource: "services", Matches: []matchRule{{Path: "/spec/type", Value: typ}}},
			MergePatches: []jsonMergePatch{{PatchData: toClusterIP}},
		})
	}
	// External IPs capture traffic for those addresses on every node, whatever the Service's type.
	// The API server gives a ClusterIP Service with external IPs an externalTrafficPolicy, which is
	// invalid once they are gone; after the rules above no Service is external, so it goes too.
	rm.Rules = append(rm.Rules, modifierRule{
		Conditions:   conditions{GroupResource: "services"},
		MergePatches: []jsonMergePatch{{PatchData: `{"spec":{"externalIPs":null,"externalTrafficPolicy":null}}`}},
	})
	// Velero's own service action keeps only nodePorts someone set explicitly; those would collide
	// with the source's and are invalid on a ClusterIP Service. A JSON merge patch cannot reach into
	// a list, so there is a rule per port index, guarded by the protocol every port has (the API
	// server defaults it): "add" then "remove" works whether or not the nodePort is there.
	for i := range servicePortRules {
		for _, proto := range []string{"TCP", "UDP", "SCTP"} {
			p := fmt.Sprintf("/spec/ports/%d", i)
			rm.Rules = append(rm.Rules, modifierRule{
				Conditions: conditions{GroupResource: "services", Matches: []matchRule{{Path: p + "/protocol", Value: proto}}},
				Patches: []jsonPatch{
					{Operation: "add", Path: p + "/nodePort", Value: "0"},
					{Operation: "remove", Path: p + "/nodePort"},
				},
			})
		}
	}
	// PersistentVolumes are cluster-scoped and not restored, so a claim still naming the source's
	// volume would stay Pending for ever: unbound, it gets a new volume from its StorageClass.
	rm.Rules = append(rm.Rules, modifierRule{
		Conditions:   conditions{GroupResource: "persistentvolumeclaims"},
		MergePatches: []jsonMergePatch{{PatchData: `{"spec":{"volumeName":null}}`}},
	})
	if iso.SuspendCronJobs == nil || *iso.SuspendCronJobs {
		rm.Rules = append(rm.Rules, modifierRule{
			Conditions:   conditions{GroupResource: "cronjobs.batch"},
			MergePatches: []jsonMergePatch{{PatchData: `{"spec":{"suspend":true}}`}},
		})
	}
	return rm
}

// IsolationModifiers is the resource-modifier document (YAML, Velero's format v1) firedrill gives
// Velero for a restore with iso: for plans and for operators who want to see exactly what changes.
func IsolationModifiers(iso scenarios.Isolation) (string, error) {
	b, err := yaml.Marshal(isolationRules(iso))
	if err != nil {
		return "", err
	}
	return string(b), nil
}
