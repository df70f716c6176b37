package sandbox

import (
	"context"
	"fmt"
	"net/url"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Objects lists the keys under prefix in the sandbox's bucket: what Velero stored, for tests
// that check it is gone again.
func (s *S3) Objects(ctx context.Context, prefix string) ([]string, error) {
	u, err := url.Parse(s.URL)
	if err != nil {
		return nil, err
	}
	cli, err := minio.New(u.Host, &minio.Options{Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Secure: u.Scheme == "https", Region: s.Region, BucketLookup: minio.BucketLookupPath})
	if err != nil {
		return nil, err
	}
	var keys []string
	for obj := range cli.ListObjects(ctx, s.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if obj.Err != nil {
			return nil, fmt.Errorf("list s3://%s/%s: %w", s.Bucket, prefix, obj.Err)
		}
		keys = append(keys, obj.Key)
	}
	return keys, nil
}
