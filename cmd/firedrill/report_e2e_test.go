package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/firedrill-dev/firedrill/drill/chain"
	"github.com/firedrill-dev/firedrill/report"
	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
)

// TestNoSecretValuesInHistoryOrReports runs a signed Velero drill over a namespace holding
// Secrets, then looks for the Secrets' values — as written and base64-encoded — in the raw
// bytes of the history's database files and in every report format and the bundle. The drill
// compares the Secrets (objectsMatch), so their values were read; only digests may be kept.
func TestNoSecretValuesInHistoryOrReports(t *testing.T) {
	t.Parallel()
	needSandbox(t)
	sb := sandboxtest.Shared(t, sandbox.Options{Velero: true})
	env, _ := drillEnv(t, sb)
	dir := t.TempDir()
	histDir := filepath.Join(dir, "history")
	hist := filepath.Join(histDir, "history.db")
	priv, pub, err := chain.WriteKeyPair(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	env = append(env, "KUBECONFIG="+sb.Kubeconfig(), "FIREDRILL_HISTORY="+hist, "FIREDRILL_SIGNING_KEY="+priv)

	ns, cs := veleroNamespace(t, sb, "secrets")
	var secrets []string
	random := func(prefix string) string {
		b := make([]byte, 12)
		_, _ = rand.Read(b)
		v := prefix + hex.EncodeToString(b)
		secrets = append(secrets, v)
		return v
	}
	ctx := context.Background()
	for _, s := range []*corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Name: "db"}, StringData: map[string]string{"password": random("pw-"), "user": random("user-")}},
		{ObjectMeta: metav1.ObjectMeta{Name: "api"}, Data: map[string][]byte{"token": []byte(random("tok-"))}},
		{ObjectMeta: metav1.ObjectMeta{Name: "tls"}, Type: corev1.SecretTypeOpaque, StringData: map[string]string{"key.pem": "-----BEGIN KEY-----\n" + random("pem-") + "\n-----END KEY-----\n"}},
	} {
		if _, err := cs.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	file := writeFile(t, dir, "secrets.yaml", fmt.Sprintf(`apiVersion: firedrill.dev/v1alpha1
kind: Scenario
metadata:
  name: secrets-%s
  labels: {team: vault}
  annotations: {firedrill.dev/controls: "SOC2-A1.3,ISO27001-A.5.30"}
spec:
  backup: {velero: {create: {includedNamespaces: [%s], deleteAfter: true}}}
  restore: {scratchNamespace: {}}
  checks:
    - {name: every object restored, objectsRestored: {}}
    - {name: secrets identical, objectsMatch: {resources: [configmaps, secrets]}}
`, ns, ns))
	run := firedrill(t, env, "run", file, "-o", "json")
	if run.code != 0 {
		t.Fatalf("run: exit %d\n%s\n%s", run.code, run.stdout, run.stderr)
	}
	if !strings.Contains(run.stdout, `"signature": "`) {
		t.Errorf("the record was not signed:\n%s", run.stdout)
	}
	if res := firedrill(t, env, "history", "verify", "--public-key", pub); res.code != 0 || !strings.Contains(res.stdout, "intact: 1 records") || !strings.Contains(res.stdout, "signatures ok") {
		t.Errorf("verify: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}

	// Everything the drill and the reports wrote, by name.
	written := map[string][]byte{"run stdout": []byte(run.stdout), "run stderr": []byte(run.stderr)}
	entries, err := os.ReadDir(histDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries { // history.db and its -wal and -shm files
		b, err := os.ReadFile(filepath.Join(histDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		written["history file "+e.Name()] = b
	}
	if len(written) < 3 {
		t.Fatalf("no history files in %s", histDir)
	}
	for _, format := range report.Formats {
		out := filepath.Join(dir, "report."+format)
		res := firedrill(t, env, "report", "--format", format, "--out", out, "--public-key", pub)
		if res.code != 0 {
			t.Fatalf("report %s: exit %d\n%s", format, res.code, res.stderr)
		}
		b, _ := os.ReadFile(out)
		if !bytes.Contains(b, []byte("secrets-"+ns)) {
			t.Errorf("the %s report does not show the drill", format)
		}
		written["report "+format] = b
	}
	if !bytes.Contains(written["report html"], []byte("ISO27001-A.5.30")) {
		t.Error("the HTML report does not show the drill's controls")
	}
	bundle := filepath.Join(dir, "bundle.tar.gz")
	if res := firedrill(t, env, "report", "--bundle", bundle, "--public-key", pub); res.code != 0 {
		t.Fatalf("bundle: exit %d\n%s", res.code, res.stderr)
	}
	for name, b := range untar(t, bundle) {
		written["bundle "+name] = b
	}

	for _, s := range secrets {
		forms := map[string]string{"value": s, "base64": base64.StdEncoding.EncodeToString([]byte(s)), "base64url": base64.RawURLEncoding.EncodeToString([]byte(s))}
		for what, b := range written {
			for form, needle := range forms {
				if bytes.Contains(b, []byte(needle)) {
					t.Errorf("a Secret's %s (%s…) is in the %s", form, s[:6], what)
				}
			}
		}
	}
	// The check did look at the Secrets: its evidence names them with digests.
	if !bytes.Contains(written["report json"], []byte("secrets identical")) {
		t.Error("the secrets check is not in the report")
	}
	t.Logf("scanned %d outputs for %d secret values", len(written), len(secrets))
}
