package verify

import (
	"context"
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/server/options/encryptionconfig"
	storagevalue "k8s.io/apiserver/pkg/storage/value"
)

// decryption decrypts values encrypted at rest with kube-apiserver's own transformers, built from
// the source cluster's EncryptionConfiguration (aescbc, aesgcm, secretbox, and KMS through the
// configured plugin socket).
type decryption struct {
	byResource encryptionconfig.StaticTransformers
	stop       context.CancelFunc
}

// loadDecryption reads an EncryptionConfiguration. Close stops what KMS providers started.
func loadDecryption(ctx context.Context, path string) (*decryption, error) {
	ctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	cfg, err := encryptionconfig.LoadEncryptionConfig(ctx, path, false, "firedrill")
	if err != nil {
		stop()
		return nil, fmt.Errorf("load encryption config %s: %w", path, err)
	}
	return &decryption{byResource: cfg.Transformers, stop: stop}, nil
}

func (d *decryption) Close() { d.stop() }

// Decrypt decrypts value stored at key, which belongs to gr. The key is the authenticated data,
// as kube-apiserver uses it (AES-GCM and KMS v2 bind a value to its key). When the transformer
// for gr cannot decrypt it, the other configured ones are tried: the group of a built-in resource
// is inferred from its key and may be wrong for an unusual storage layout.
func (d *decryption) Decrypt(ctx context.Context, key string, value []byte, gr schema.GroupResource) ([]byte, error) {
	aad := storagevalue.DefaultContext(key)
	out, _, err := d.byResource.TransformerForResource(gr).TransformFromStorage(ctx, value, aad)
	if err == nil {
		return out, nil
	}
	for other, t := range d.byResource {
		if other == gr {
			continue
		}
		if out, _, err2 := t.TransformFromStorage(ctx, value, aad); err2 == nil {
			return out, nil
		}
	}
	return nil, fmt.Errorf("the encryption config cannot decrypt it: %s", decryptReason(err))
}

func decryptReason(err error) string {
	msg := err.Error()
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return "interrupted"
	}
	if len(msg) > 160 {
		msg = msg[:160] + "…"
	}
	return msg
}
