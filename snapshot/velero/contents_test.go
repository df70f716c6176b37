package velero

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
)

// tarball builds a gzip-compressed tar of path → JSON object, in the given order.
func tarball(t testing.TB, files [][2]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f[0], Size: int64(len(f[1])), Mode: 0o644, Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, f[1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func obj(apiVersion, kind, ns, name, marker string) string {
	meta := fmt.Sprintf(`"name":%q`, name)
	if ns != "" {
		meta += fmt.Sprintf(`,"namespace":%q`, ns)
	}
	return fmt.Sprintf(`{"apiVersion":%q,"kind":%q,"metadata":{%s},"data":{"marker":%q}}`, apiVersion, kind, meta, marker)
}

func readAll(t *testing.T, data []byte) []Item {
	t.Helper()
	var items []Item
	if err := ReadContents(bytes.NewReader(data), func(it Item) error { items = append(items, it); return nil }); err != nil {
		t.Fatal(err)
	}
	sortItems(items)
	return items
}

func keys(items []Item) []string {
	var out []string
	for _, it := range items {
		m, _, _ := unstructuredString(it.Object.Object, "data", "marker")
		out = append(out, fmt.Sprintf("%s %s/%s=%s", it.Resource, it.Namespace, it.Name, m))
	}
	return out
}

func TestReadContentsLayouts(t *testing.T) {
	t.Parallel()
	// As Velero ≥ 1.4 writes it: each object twice, unversioned and under the preferred version,
	// plus (EnableAPIGroupVersions) another version; cluster-scoped objects under cluster/.
	modern := tarball(t, [][2]string{
		{"metadata/version", "1.1.0"},
		{"resources/configmaps/namespaces/shop/settings.json", obj("v1", "ConfigMap", "shop", "settings", "unversioned")},
		{"resources/configmaps/v1-preferredversion/namespaces/shop/settings.json", obj("v1", "ConfigMap", "shop", "settings", "preferred")},
		{"resources/horizontalpodautoscalers.autoscaling/v1/namespaces/shop/web.json", obj("autoscaling/v1", "HorizontalPodAutoscaler", "shop", "web", "other version")},
		{"resources/horizontalpodautoscalers.autoscaling/namespaces/shop/web.json", obj("autoscaling/v2", "HorizontalPodAutoscaler", "shop", "web", "unversioned")},
		{"resources/horizontalpodautoscalers.autoscaling/v2-preferredversion/namespaces/shop/web.json", obj("autoscaling/v2", "HorizontalPodAutoscaler", "shop", "web", "preferred")},
		{"resources/widgets.example.com/v1beta1/namespaces/shop/only-old.json", obj("example.com/v1beta1", "Widget", "shop", "only-old", "other version")},
		{"resources/namespaces/cluster/shop.json", obj("v1", "Namespace", "", "shop", "unversioned")},
		{"resources/namespaces/v1-preferredversion/cluster/shop.json", obj("v1", "Namespace", "", "shop", "preferred")},
		{"resources/clusterroles.rbac.authorization.k8s.io/v1-preferredversion/cluster/reader.json", obj("rbac.authorization.k8s.io/v1", "ClusterRole", "", "reader", "preferred")},
		{"./resources/deployments.apps/namespaces/shop/web.json", obj("apps/v1", "Deployment", "shop", "web", "unversioned")},
		{"resources/deployments.apps/namespaces/shop/notes.txt", "not an object"},
	})
	want := []string{
		"clusterroles.rbac.authorization.k8s.io /reader=preferred",
		"configmaps shop/settings=unversioned",
		"deployments.apps shop/web=unversioned",
		"horizontalpodautoscalers.autoscaling shop/web=unversioned",
		"namespaces /shop=unversioned",
		"widgets.example.com shop/only-old=other version",
	}
	if got := keys(readAll(t, modern)); !slices.Equal(got, want) {
		t.Errorf("modern layout:\n got %q\nwant %q", got, want)
	}
	// Velero before 1.4: no version directories at all.
	old := tarball(t, [][2]string{
		{"resources/configmaps/namespaces/shop/settings.json", obj("v1", "ConfigMap", "shop", "settings", "old")},
		{"resources/persistentvolumes/cluster/pv-1.json", obj("v1", "PersistentVolume", "", "pv-1", "old")},
	})
	if got := keys(readAll(t, old)); !slices.Equal(got, []string{"configmaps shop/settings=old", "persistentvolumes /pv-1=old"}) {
		t.Errorf("old layout: %q", got)
	}
	items := readAll(t, old)
	if items[0].Object.GetKind() != "ConfigMap" || items[0].Object.GetNamespace() != "shop" {
		t.Errorf("object %v", items[0].Object)
	}
}

func TestReadContentsErrors(t *testing.T) {
	t.Parallel()
	if err := ReadContents(strings.NewReader("plain text"), func(Item) error { return nil }); err == nil || !strings.Contains(err.Error(), "gzip") {
		t.Errorf("not gzip: %v", err)
	}
	bad := tarball(t, [][2]string{{"resources/configmaps/namespaces/shop/x.json", "{not json"}})
	if err := ReadContents(bytes.NewReader(bad), func(Item) error { return nil }); err == nil || !strings.Contains(err.Error(), "resources/configmaps/namespaces/shop/x.json") {
		t.Errorf("bad json: %v", err)
	}
	good := tarball(t, [][2]string{{"resources/configmaps/namespaces/shop/x.json", obj("v1", "ConfigMap", "shop", "x", "")}})
	stop := fmt.Errorf("stop here")
	if err := ReadContents(bytes.NewReader(good), func(Item) error { return stop }); err != stop {
		t.Errorf("callback error not returned: %v", err)
	}
	truncated := good[:len(good)/2]
	if err := ReadContents(bytes.NewReader(truncated), func(Item) error { return nil }); err == nil {
		t.Error("truncated tarball accepted")
	}
}

func TestParseItemPath(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"resources/pods/namespaces/a/b.json":                         "pods a b false",
		"resources/pods/v1-preferredversion/namespaces/a/b.json":     "pods a b false",
		"resources/pods/v1/namespaces/a/b.json":                      "pods a b true",
		"resources/nodes/cluster/n1.json":                            "nodes  n1 false",
		"resources/nodes/v1-preferredversion/cluster/n1.json":        "nodes  n1 false",
		"resources/crds.apiextensions.k8s.io/v1beta1/cluster/x.json": "crds.apiextensions.k8s.io  x true",
		"metadata/version":                                           "-",
		"resources/pods/namespaces/a.json":                           "-",
		"resources/pods/namespaces/a/b.txt":                          "-",
		"resources/pods/x/y/namespaces/a/b.json":                     "-",
	} {
		p, ok := parseItemPath(in)
		got := "-"
		if ok {
			got = fmt.Sprintf("%s %s %s %v", p.resource, p.namespace, p.name, p.otherVersion)
		}
		if got != want {
			t.Errorf("%s: %q, want %q", in, got, want)
		}
	}
}

func TestParseResourceList(t *testing.T) {
	t.Parallel()
	got := parseResourceList(map[string][]string{
		"v1/ConfigMap":       {"drill-1/b(created)", "drill-1/a(skipped)"},
		"v1/Namespace":       {"drill-1(created)"},
		"apps/v1/Deployment": {"shop/web"},
	})
	want := []ListedItem{
		{"apps/v1/Deployment", "shop", "web", ""},
		{"v1/ConfigMap", "drill-1", "a", "skipped"},
		{"v1/ConfigMap", "drill-1", "b", "created"},
		{"v1/Namespace", "", "drill-1", "created"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %+v", got)
	}
	if ns := Namespaces(got); !slices.Equal(ns, []string{"drill-1", "shop"}) {
		t.Errorf("namespaces %v", ns)
	}
}

func TestMessages(t *testing.T) {
	t.Parallel()
	m := Messages{
		Velero:     []string{" name: /db message: /Error backing up item error: /daemonset pod not found"},
		Cluster:    []string{"plain cluster message"},
		Namespaces: map[string][]string{"b": {"b1"}, "a": {" resource: /pods name: /db message: /Skip pod volume data error: /no node agent", "a2"}},
	}
	if m.Count() != 5 {
		t.Errorf("count %d", m.Count())
	}
	want := []string{"velero: db: Error backing up item: daemonset pod not found", "cluster: plain cluster message",
		"namespace a: pods db: Skip pod volume data: no node agent", "namespace a: a2"}
	if got := m.First(4); !slices.Equal(got, want) {
		t.Errorf("first:\n got %q\nwant %q", got, want)
	}
}

// BenchmarkReadContents reads a 2,000-object backup tarball in Velero's layout.
func BenchmarkReadContents(b *testing.B) {
	var files [][2]string
	for i := range 2000 {
		o := obj("v1", "ConfigMap", "shop", fmt.Sprintf("cm-%d", i), strings.Repeat("x", 200))
		files = append(files, [2]string{fmt.Sprintf("resources/configmaps/namespaces/shop/cm-%d.json", i), o},
			[2]string{fmt.Sprintf("resources/configmaps/v1-preferredversion/namespaces/shop/cm-%d.json", i), o})
	}
	data := tarball(b, files)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		if err := ReadContents(bytes.NewReader(data), func(Item) error { n++; return nil }); err != nil || n != 2000 {
			b.Fatal(n, err)
		}
	}
}
