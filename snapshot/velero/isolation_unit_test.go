package velero

import (
	"encoding/json"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"k8s.io/utils/ptr"

	"github.com/firedrill-dev/firedrill/scenarios"
)

// applyRules applies modifier rules to an object as Velero does: every rule's conditions are
// matched against the object as it was before any rule, then the patches of the matching rules
// are applied in order. A JSON patch that fails leaves the object as it was (Velero logs it).
func applyRules(t *testing.T, rm resourceModifiers, groupResource, object string) map[string]any {
	t.Helper()
	doc := []byte(object)
	for _, r := range rm.Rules {
		if r.Conditions.GroupResource != groupResource {
			continue
		}
		matched := true
		for _, m := range r.Conditions.Matches {
			test, _ := json.Marshal([]map[string]any{{"op": "test", "path": m.Path, "value": m.Value}})
			p, err := jsonpatch.DecodePatch(test)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.Apply([]byte(object)); err != nil {
				matched = false
			}
		}
		if !matched {
			continue
		}
		for _, mp := range r.MergePatches {
			out, err := jsonpatch.MergePatch(doc, []byte(mp.PatchData))
			if err != nil {
				t.Fatalf("merge patch %s: %v", mp.PatchData, err)
			}
			doc = out
		}
		if len(r.Patches) > 0 {
			var ops []map[string]any
			for _, p := range r.Patches {
				op := map[string]any{"op": p.Operation, "path": p.Path}
				if p.Value != "" {
					var v any
					if err := json.Unmarshal([]byte(p.Value), &v); err != nil {
						v = p.Value
					}
					op["value"] = v
				}
				ops = append(ops, op)
			}
			b, _ := json.Marshal(ops)
			p, err := jsonpatch.DecodePatch(b)
			if err != nil {
				t.Fatal(err)
			}
			if out, err := p.Apply(doc); err == nil {
				doc = out
			}
		}
	}
	var m map[string]any
	if err := json.Unmarshal(doc, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// What the isolation rules do to each kind of object, applied as Velero applies them: pure
// logic, no cluster. TestRestoreIsolatesTheCopy proves the same with a real Velero.
func TestIsolationRulesApplied(t *testing.T) {
	t.Parallel()
	rules := isolationRules(scenarios.Isolation{})
	for _, tc := range []struct {
		name, groupResource, object string
		want, lacks                 []string // in the patched object's JSON
	}{
		{name: "LoadBalancer becomes ClusterIP", groupResource: "services",
			object: `{"spec":{"type":"LoadBalancer","loadBalancerIP":"1.2.3.4","externalTrafficPolicy":"Local","healthCheckNodePort":30099,
				"externalIPs":["5.6.7.8"],"ports":[{"port":80,"protocol":"TCP","nodePort":30080},{"port":53,"protocol":"UDP","nodePort":30053}]}}`,
			want:  []string{`"type":"ClusterIP"`, `{"port":80,"protocol":"TCP"}`, `{"port":53,"protocol":"UDP"}`},
			lacks: []string{"nodePort", "loadBalancerIP", "externalIPs", "externalTrafficPolicy", "healthCheckNodePort"}},
		{name: "NodePort becomes ClusterIP", groupResource: "services",
			object: `{"spec":{"type":"NodePort","ports":[{"port":80,"protocol":"TCP","nodePort":31000}]}}`,
			want:   []string{`"type":"ClusterIP"`}, lacks: []string{"nodePort", "NodePort"}},
		{name: "ClusterIP loses external IPs", groupResource: "services",
			object: `{"spec":{"type":"ClusterIP","clusterIP":"10.0.0.9","externalIPs":["5.6.7.8"],"externalTrafficPolicy":"Cluster","ports":[{"port":80,"protocol":"TCP"}]}}`,
			want:   []string{`"type":"ClusterIP"`, `"clusterIP":"10.0.0.9"`}, lacks: []string{"externalIPs", "externalTrafficPolicy"}},
		{name: "claim gets a new volume", groupResource: "persistentvolumeclaims",
			object: `{"spec":{"volumeName":"pv-source","storageClassName":"standard"}}`,
			want:   []string{`"storageClassName":"standard"`}, lacks: []string{"volumeName"}},
		{name: "cronjob suspended", groupResource: "cronjobs.batch",
			object: `{"spec":{"schedule":"0 2 * * *","suspend":false}}`, want: []string{`"suspend":true`}},
		{name: "deployment untouched", groupResource: "deployments.apps",
			object: `{"spec":{"replicas":2}}`, want: []string{`{"spec":{"replicas":2}}`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, _ := json.Marshal(applyRules(t, rules, tc.groupResource, tc.object))
			got := string(b)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("lacks %s: %s", w, got)
				}
			}
			for _, l := range tc.lacks {
				if strings.Contains(got, l) {
					t.Errorf("still has %s: %s", l, got)
				}
			}
		})
	}
	kept := applyRules(t, isolationRules(scenarios.Isolation{SuspendCronJobs: ptr.To(false)}), "cronjobs.batch", `{"spec":{"suspend":false}}`)
	if kept["spec"].(map[string]any)["suspend"] != false {
		t.Errorf("suspendCronJobs: false still suspended the CronJob: %v", kept)
	}
}
