package verify

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firedrill-dev/firedrill/sandbox"
	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
	"github.com/firedrill-dev/firedrill/scenarios"
	etcdsnap "github.com/firedrill-dev/firedrill/snapshot/etcd"
)

// writeEncryptionConfig writes an EncryptionConfiguration that encrypts Secrets with AES-CBC
// (reading plain ones too), as a cluster that turned encryption on would have.
func writeEncryptionConfig(t testing.TB, dir string) string {
	t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "encryption.yaml")
	cfg := `apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - aescbc:
          keys:
            - name: key1
              secret: ` + base64.StdEncoding.EncodeToString(key) + `
      - identity: {}
`
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Secrets encrypted at rest by a real kube-apiserver: counted as encrypted (and failing, unless
// allowEncrypted) without the config; decrypted with apiserver's own transformers and decoded with
// it. No outcome shows the secret's value.
func TestObjectsDecodeEncryptedAtRest(t *testing.T) {
	dir := t.TempDir()
	encCfg := writeEncryptionConfig(t, dir)
	sb := sandboxtest.Start(t, sandbox.Options{EncryptionConfig: encCfg})
	f := makeObjects(t, sb.RESTConfig(), "verify-encrypted")
	r := restoreCopy(t, sb.EtcdEndpoints())
	ctx := context.Background()

	raw, err := r.Client.Get(ctx, "/registry/secrets/"+f.Namespace+"/"+f.Secret)
	must(t, err)
	if len(raw.Kvs) != 1 || !strings.HasPrefix(string(raw.Kvs[0].Value), "k8s:enc:aescbc:v1:key1:") {
		t.Fatalf("the sandbox did not encrypt the secret at rest")
	}

	target := func(cfg string) *EtcdTarget {
		return &EtcdTarget{Restored: r.Client, Snapshot: etcdsnap.Report{Revision: r.Status.Revision}, EncryptionConfig: cfg}
	}
	check := func(allow bool) *ObjectsDecodeCheck {
		return NewObjectsDecodeCheck("", scenarios.EtcdObjectsDecodeCheck{AllowEncrypted: allow})
	}

	t.Run("without config", func(t *testing.T) {
		o := check(false).Run(ctx, target(""))
		assertNoSecret(t, o, f.SecretValue)
		if o.Status != StatusFailed || !strings.Contains(o.Message, "encrypted at rest (aescbc: ") || !strings.Contains(o.Message, "encryptionConfig") {
			t.Fatalf("want failed for encrypted values, got %s: %s", o.Status, o.Message)
		}
		if n := o.Evidence["encrypted"].(map[string]int64)["aescbc"]; n < 1 || o.Evidence["notDecrypted"] != n {
			t.Errorf("want the encrypted secrets counted under aescbc, got %v", o.Evidence)
		}
	})
	t.Run("allowEncrypted", func(t *testing.T) {
		o := check(true).Run(ctx, target(""))
		assertNoSecret(t, o, f.SecretValue)
		if o.Status != StatusPassed || !strings.Contains(o.Message, "accepted unread") {
			t.Fatalf("want passed with encrypted values accepted, got %s: %s", o.Status, o.Message)
		}
	})
	t.Run("with config", func(t *testing.T) {
		o := check(false).Run(ctx, target(encCfg))
		assertNoSecret(t, o, f.SecretValue)
		if o.Status != StatusPassed {
			t.Fatalf("want passed, got %s: %s", o.Status, o.Message)
		}
		enc := o.Evidence["encrypted"].(map[string]int64)["aescbc"]
		if enc < 1 || o.Evidence["decrypted"] != enc || o.Evidence["notDecrypted"] != int64(0) || o.Evidence["undecodable"] != int64(0) {
			t.Errorf("want every encrypted value decrypted and decoded, got %v", o.Evidence)
		}
		t.Log(o.Message)
	})
	t.Run("wrong key", func(t *testing.T) {
		other := writeEncryptionConfig(t, t.TempDir())
		o := check(true).Run(ctx, target(other))
		assertNoSecret(t, o, f.SecretValue)
		if o.Status != StatusFailed || !strings.Contains(o.Message, "cannot be decrypted with the given encryption config") ||
			!strings.Contains(o.Message, "/registry/secrets/"+f.Namespace+"/"+f.Secret) {
			t.Fatalf("want failed naming the secret that does not decrypt, got %s: %s", o.Status, o.Message)
		}
	})
	t.Run("missing config file", func(t *testing.T) {
		o := check(false).Run(ctx, target(filepath.Join(dir, "nope.yaml")))
		if o.Status != StatusError || !strings.Contains(o.Message, "nope.yaml") {
			t.Fatalf("want error naming the file, got %s: %s", o.Status, o.Message)
		}
	})
	// The snapshot file is decrypted and decoded just the same.
	t.Run("snapshot file", func(t *testing.T) {
		for _, cfg := range []string{"", encCfg, writeEncryptionConfig(t, t.TempDir())} {
			for _, allow := range []bool{false, true} {
				ft := fileTarget(r)
				ft.EncryptionConfig = cfg
				fromFile := check(allow).Run(ctx, ft)
				assertSameOutcome(t, check(allow).Run(ctx, target(cfg)), fromFile, r.Status.Revision)
				assertNoSecret(t, fromFile, f.SecretValue)
			}
		}
	})
}
