package scratch

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The Manager in these tests has no client: reaching the API would panic, which proves that bad
// input is refused before anything is read or written.
func TestPrepareRefusesBadInputBeforeAnyCall(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	iso := Isolation{DenyNetwork: true, Quota: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("5")}}
	later := now.Add(time.Hour)
	tests := []struct {
		name    string
		runID   string
		names   []string
		iso     Isolation
		expires time.Time
		is      error  // errors.Is target, or nil
		want    string // part of the message
	}{
		{"uppercase", "r1", []string{"Shop"}, iso, later, ErrInvalidName, `namespace "Shop" is not a valid name`},
		{"underscore", "r1", []string{"drill_shop"}, iso, later, ErrInvalidName, "fix namespaceMapping"},
		{"empty name", "r1", []string{""}, iso, later, ErrInvalidName, `namespace "" is not a valid name`},
		{"too long", "r1", []string{strings.Repeat("a", 64)}, iso, later, ErrInvalidName, "at most 63"},
		{"second invalid", "r1", []string{"ok", "not ok"}, iso, later, ErrInvalidName, `"not ok"`},
		{"twice", "r1", []string{"a", "a"}, iso, later, ErrInvalidName, `namespace "a" is named twice`},
		{"no names", "r1", nil, iso, later, nil, "no namespaces named"},
		{"no quota", "r1", []string{"a"}, Isolation{DenyNetwork: true}, later, nil, "isolation has no quota"},
		{"no expiry", "r1", []string{"a"}, iso, time.Time{}, nil, "no expiry given"},
		{"expiry past", "r1", []string{"a"}, iso, now.Add(-time.Second), nil, "is not in the future"},
		{"no run id", "", []string{"a"}, iso, later, nil, "no run id given"},
		{"bad run id", "run 1", []string{"a"}, iso, later, nil, `run id "run 1" is not a label value`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := New(nil)
			m.now = func() time.Time { return now }
			err := m.Prepare(context.Background(), tt.runID, "shop", tt.names, tt.iso, tt.expires)
			if err == nil {
				t.Fatal("Prepare accepted it")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error is not %v: %v", tt.is, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
		})
	}
}

func TestNoRunIDRefusedBeforeAnyCall(t *testing.T) {
	t.Parallel()
	m := New(nil)
	ctx := context.Background()
	if err := m.Delete(ctx, "", []string{"a"}); err == nil {
		t.Error("Delete without a run id accepted")
	}
	if err := m.Confirm(ctx, "", []string{"a"}); err == nil {
		t.Error("Confirm without a run id accepted")
	}
	if err := m.Extend(ctx, "", []string{"a"}, time.Now()); err == nil {
		t.Error("Extend without a run id accepted")
	}
}

func TestExistsErrorSaysWhatToDo(t *testing.T) {
	t.Parallel()
	err := existsError("shop", "exists")
	want := "namespace shop exists: a drill only restores into namespaces it creates; choose another namespaceMapping"
	if err.Error() != want {
		t.Errorf("got  %q\nwant %q", err, want)
	}
	if !errors.Is(err, ErrExists) {
		t.Error("not ErrExists")
	}
}

func TestNotScratch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		labels map[string]string
		runID  string
		want   string // "" = is scratch of runID
	}{
		{"both labels, this run", map[string]string{LabelManagedBy: ManagedBy, LabelRun: "r1"}, "r1", ""},
		{"both labels, any run", map[string]string{LabelManagedBy: ManagedBy, LabelRun: "r1"}, "", ""},
		{"other run", map[string]string{LabelManagedBy: ManagedBy, LabelRun: "r2"}, "r1", "belongs to run r2, not r1"},
		{"no labels", nil, "", "has neither label"},
		{"only run", map[string]string{LabelRun: "r1"}, "r1", "has no label app.kubernetes.io/managed-by=firedrill"},
		{"only managed-by", map[string]string{LabelManagedBy: ManagedBy}, "", "has no label firedrill.dev/run"},
		{"empty run", map[string]string{LabelManagedBy: ManagedBy, LabelRun: ""}, "", "has no label firedrill.dev/run"},
		{"managed by helm", map[string]string{LabelManagedBy: "Helm", LabelRun: "r1"}, "r1", `is managed by "Helm"`},
	}
	for _, tt := range tests {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "x", Labels: tt.labels}}
		got := notScratch(ns, tt.runID)
		if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
			t.Errorf("%s: notScratch = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestDue(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	j := Judge{Now: now, Grace: 24 * time.Hour, RunnerGone: func(run string) bool { return run == "crashed" }}
	tests := []struct {
		name string
		n    Namespace
		want string
	}{
		{"expired", Namespace{Run: "r", Created: now.Add(-time.Hour), Expires: now.Add(-time.Minute)}, DueExpired},
		{"expires now", Namespace{Run: "r", Created: now.Add(-time.Hour), Expires: now}, DueExpired},
		{"not yet expired, though old", Namespace{Run: "r", Created: now.Add(-90 * 24 * time.Hour), Expires: now.Add(time.Minute)}, ""},
		{"no expiry, young", Namespace{Run: "r", Created: now.Add(-time.Hour)}, ""},
		{"no expiry, older than grace", Namespace{Run: "r", Created: now.Add(-25 * time.Hour)}, DueNoExpiry},
		{"runner gone, not yet expired", Namespace{Run: "crashed", Created: now.Add(-time.Minute), Expires: now.Add(time.Hour)}, DueRunnerGone},
		{"runner gone, no expiry, young", Namespace{Run: "crashed", Created: now}, DueRunnerGone},
	}
	for _, tt := range tests {
		if got := j.namespace(tt.n); got != tt.want {
			t.Errorf("%s: due = %q, want %q", tt.name, got, tt.want)
		}
	}
	if got := (Judge{Now: now}).Due("r", now.Add(-DefaultGrace), time.Time{}); got != DueNoExpiry {
		t.Errorf("zero grace is DefaultGrace: due = %q", got)
	}
}

func TestDescribeReadsExpiry(t *testing.T) {
	t.Parallel()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "x",
		Annotations: map[string]string{AnnotationExpires: "2026-11-28T12:00:00Z", AnnotationScenario: "shop"}}}
	if got := describe(ns); !got.Expires.Equal(time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)) || got.Scenario != "shop" {
		t.Errorf("describe = %+v", got)
	}
	ns.Annotations[AnnotationExpires] = "tomorrow"
	if got := describe(ns); !got.Expires.IsZero() {
		t.Errorf("unreadable expiry read as %v; want zero (the grace decides)", got.Expires)
	}
}

func TestNetworkPolicyDeniesAll(t *testing.T) {
	t.Parallel()
	np := networkPolicy("ns", "r1", false)
	assertDenyAll(t, np, false)
	np = networkPolicy("ns", "r1", true)
	assertDenyAll(t, np, true)
}

// assertDenyAll checks that np selects every pod and allows ingress only from, and egress only
// to, namespaces of the same run (both labels), plus DNS egress to anywhere when dns is set.
func assertDenyAll(t *testing.T, np *networkingv1.NetworkPolicy, dns bool) {
	t.Helper()
	sel := np.Spec.PodSelector
	if len(sel.MatchLabels) != 0 || len(sel.MatchExpressions) != 0 {
		t.Errorf("podSelector %v does not select every pod", sel)
	}
	types := np.Spec.PolicyTypes
	if len(types) != 2 || types[0] != networkingv1.PolicyTypeIngress || types[1] != networkingv1.PolicyTypeEgress {
		t.Errorf("policyTypes = %v, want [Ingress Egress]", types)
	}
	sameRun := func(what string, peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort) {
		t.Helper()
		if len(peers) != 1 || peers[0].NamespaceSelector == nil || peers[0].PodSelector != nil || peers[0].IPBlock != nil || len(ports) != 0 {
			t.Fatalf("%s rule %v: want exactly the run's namespaces, all ports", what, peers)
		}
		want := map[string]string{LabelRun: np.Labels[LabelRun], LabelManagedBy: ManagedBy}
		if got := peers[0].NamespaceSelector.MatchLabels; len(got) != 2 || got[LabelRun] != want[LabelRun] || got[LabelManagedBy] != ManagedBy || len(peers[0].NamespaceSelector.MatchExpressions) != 0 {
			t.Errorf("%s peers select %v, want %v", what, got, want)
		}
	}
	if len(np.Spec.Ingress) != 1 {
		t.Fatalf("ingress rules %v: want one, from the run's namespaces", np.Spec.Ingress)
	}
	sameRun("ingress", np.Spec.Ingress[0].From, np.Spec.Ingress[0].Ports)
	wantEgress := 1
	if dns {
		wantEgress = 2
	}
	if len(np.Spec.Egress) != wantEgress {
		t.Fatalf("egress rules %v: want %d", np.Spec.Egress, wantEgress)
	}
	sameRun("egress", np.Spec.Egress[0].To, np.Spec.Egress[0].Ports)
	if !dns {
		return
	}
	rule := np.Spec.Egress[1]
	if len(rule.To) != 0 {
		t.Errorf("DNS rule limited to %v: want any destination", rule.To)
	}
	var got []string
	for _, p := range rule.Ports {
		if p.Protocol == nil || p.Port == nil || p.EndPort != nil {
			t.Fatalf("DNS port %+v: want a protocol and the single port 53", p)
		}
		got = append(got, string(*p.Protocol)+"/"+p.Port.String())
	}
	if strings.Join(got, " ") != "UDP/53 TCP/53" {
		t.Errorf("DNS rule ports = %v, want UDP/53 TCP/53", got)
	}
}
