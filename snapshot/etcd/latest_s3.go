package etcd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Options names an S3 (or S3-compatible) bucket and prefix holding snapshots, and where to put
// the one fetched.
type S3Options struct {
	// Endpoint is the server's URL (http://127.0.0.1:9000); empty: AWS (s3.amazonaws.com). Without
	// a scheme, https is used.
	Endpoint string
	Region   string // empty: us-east-1
	Bucket   string
	// Prefix limits the listing; object names are matched relative to it (a leading "/" dropped).
	Prefix string
	// Pattern is a path.Match glob over object names relative to Prefix; "" matches every name.
	Pattern string
	// ForcePathStyle addresses the bucket in the URL path, as most S3-compatible servers need.
	ForcePathStyle bool
	// AccessKey and SecretKey; when empty: CredentialsFile, then AWS_ACCESS_KEY_ID /
	// AWS_SECRET_ACCESS_KEY, then the shared credentials file (AWS_SHARED_CREDENTIALS_FILE or
	// ~/.aws/credentials, profile AWS_PROFILE or default).
	AccessKey, SecretKey string
	CredentialsFile      string
	// DestDir receives the object fetched, under its base name, written to a temporary file and
	// renamed once every byte arrived. It must exist.
	DestDir string
	// Progress, when set, is called with the bytes downloaded so far; it must return quickly.
	Progress func(written int64)
}

// Location is where the options point: s3://bucket/prefix.
func (o S3Options) Location() string { return "s3://" + o.Bucket + "/" + o.Prefix }

// ListS3 lists the objects under Prefix that match Pattern, in key order. Objects ending in .part
// or .tmp, hidden names and "directory" keys are never listed. None is ErrNoneMatch, saying what
// to check.
func ListS3(ctx context.Context, opts S3Options) ([]Listed, error) {
	if opts.Bucket == "" {
		return nil, errors.New("etcd snapshots in S3: no bucket given")
	}
	if opts.Pattern == "" {
		opts.Pattern = "*"
	}
	if _, err := path.Match(opts.Pattern, ""); err != nil {
		return nil, fmt.Errorf("etcd snapshots in S3: bad pattern %q: %w", opts.Pattern, err)
	}
	cli, where, err := newS3Client(opts)
	if err != nil {
		return nil, fmt.Errorf("etcd snapshots in S3: %w", err)
	}
	var out []Listed
	listed := 0
	for obj := range cli.ListObjects(ctx, opts.Bucket, minio.ListObjectsOptions{Prefix: opts.Prefix, Recursive: true}) {
		if obj.Err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("etcd snapshots in %s: %w", opts.Location(), ctx.Err())
			}
			return nil, fmt.Errorf("etcd snapshots: list %s at %s: %w", opts.Location(), where, s3Hint(obj.Err, opts))
		}
		listed++
		rel := strings.TrimPrefix(strings.TrimPrefix(obj.Key, opts.Prefix), "/")
		if rel == "" || strings.HasSuffix(rel, "/") || isPartial(path.Base(rel)) {
			continue
		}
		if ok, _ := path.Match(opts.Pattern, rel); !ok {
			continue
		}
		out = append(out, Listed{Name: obj.Key, ModTime: obj.LastModified, Size: obj.Size, etag: obj.ETag})
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("etcd snapshots in %s: %w", opts.Location(), ctx.Err())
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no object under %s at %s matches %q (%d listed): check the prefix, the pattern and that the backup job uploads there", ErrNoneMatch, opts.Location(), where, opts.Pattern, listed)
	}
	return out, nil
}

// FromS3 downloads the object l that ListS3 listed atomically into DestDir (SelectedBy
// "s3-last-modified": its time is the object's LastModified). The download must be the object as
// listed (same ETag and size), or it fails.
//
// It does not judge the contents: that is the integrity check's job.
func FromS3(ctx context.Context, opts S3Options, l Listed) (*Snapshot, error) {
	if st, err := os.Stat(opts.DestDir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("etcd snapshot in S3: destination directory %q does not exist (create it first)", opts.DestDir)
	}
	cli, _, err := newS3Client(opts)
	if err != nil {
		return nil, fmt.Errorf("etcd snapshot in S3: %w", err)
	}
	dest := filepath.Join(opts.DestDir, path.Base(l.Name))
	written, sum, err := downloadS3(ctx, cli, opts, minio.ObjectInfo{Key: l.Name, ETag: l.etag, Size: l.Size}, dest)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("etcd snapshot: download s3://%s/%s: interrupted: %w", opts.Bucket, l.Name, ctx.Err())
		}
		return nil, fmt.Errorf("etcd snapshot: download s3://%s/%s: %w", opts.Bucket, l.Name, err)
	}
	abs, err := filepath.Abs(dest)
	if err != nil {
		abs = dest
	}
	return &Snapshot{
		Path:       abs,
		SHA256:     sum,
		SizeBytes:  written,
		Source:     SourceS3,
		Location:   opts.Location(),
		Name:       l.Name,
		CreatedAt:  l.ModTime,
		SelectedBy: "s3-last-modified",
	}, nil
}

func downloadS3(ctx context.Context, cli *minio.Client, opts S3Options, obj minio.ObjectInfo, dest string) (int64, string, error) {
	get := minio.GetObjectOptions{}
	if obj.ETag != "" {
		// The object listed is the object downloaded, even if the backup job overwrites it now.
		if err := get.SetMatchETag(obj.ETag); err != nil {
			return 0, "", err
		}
	}
	body, err := cli.GetObject(ctx, opts.Bucket, obj.Key, get)
	if err != nil {
		return 0, "", s3Hint(err, opts)
	}
	defer body.Close()
	out, err := createAtomic(dest)
	if err != nil {
		return 0, "", err
	}
	defer out.abort()

	d := newDigester()
	buf := make([]byte, copyBufSize)
	var written int64
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, err := out.Write(buf[:n]); err != nil {
				return 0, "", fmt.Errorf("write %s: %w", dest, err)
			}
			d.Write(buf[:n])
			written += int64(n)
			if opts.Progress != nil {
				opts.Progress(written)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return 0, "", fmt.Errorf("after %d of %d bytes: %w", written, obj.Size, s3Hint(rerr, opts))
		}
	}
	if written != obj.Size {
		return 0, "", fmt.Errorf("got %d bytes, the listing said %d: the object changed or the connection was cut; try again", written, obj.Size)
	}
	if err := out.commit(); err != nil {
		return 0, "", err
	}
	return written, d.sum().sha256, nil
}

// newS3Client returns a client and a description of the server for messages.
func newS3Client(opts S3Options) (*minio.Client, string, error) {
	host, secure := "s3.amazonaws.com", true
	if opts.Endpoint != "" {
		ep := opts.Endpoint
		if !strings.Contains(ep, "://") {
			ep = "https://" + ep
		}
		u, err := url.Parse(ep)
		if err != nil || u.Host == "" {
			return nil, "", fmt.Errorf("S3 endpoint %q is not a URL (http://host:port)", opts.Endpoint)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return nil, "", fmt.Errorf("S3 endpoint %q: scheme must be http or https", opts.Endpoint)
		}
		host, secure = u.Host, u.Scheme == "https"
	}
	region := opts.Region
	if region == "" {
		region = "us-east-1"
	}
	creds, err := s3Credentials(opts)
	if err != nil {
		return nil, "", err
	}
	lookup := minio.BucketLookupAuto
	if opts.ForcePathStyle {
		lookup = minio.BucketLookupPath
	}
	cli, err := minio.New(host, &minio.Options{Creds: creds, Secure: secure, Region: region, BucketLookup: lookup})
	if err != nil {
		return nil, "", fmt.Errorf("S3 client for %s: %w", host, err)
	}
	scheme := "http"
	if secure {
		scheme = "https"
	}
	return cli, scheme + "://" + host, nil
}

func s3Credentials(opts S3Options) (*credentials.Credentials, error) {
	if opts.AccessKey != "" || opts.SecretKey != "" {
		if opts.AccessKey == "" || opts.SecretKey == "" {
			return nil, errors.New("S3 credentials: access key and secret key must be given together")
		}
		return credentials.NewStaticV4(opts.AccessKey, opts.SecretKey, ""), nil
	}
	var chain []credentials.Provider
	if opts.CredentialsFile != "" {
		if _, err := os.Stat(opts.CredentialsFile); err != nil {
			return nil, fmt.Errorf("S3 credentials file: %w", err)
		}
		chain = append(chain, &credentials.FileAWSCredentials{Filename: opts.CredentialsFile})
	}
	chain = append(chain, &credentials.EnvAWS{}, &credentials.FileAWSCredentials{})
	return credentials.NewChainCredentials(chain), nil
}

// s3Hint adds what to check to the S3 errors operators meet.
func s3Hint(err error, opts S3Options) error {
	resp := minio.ToErrorResponse(err)
	switch {
	case resp.Code == "NoSuchBucket":
		return fmt.Errorf("bucket %q does not exist: check the bucket name and the endpoint: %w", opts.Bucket, err)
	case resp.Code == "AccessDenied", resp.Code == "InvalidAccessKeyId", resp.Code == "SignatureDoesNotMatch",
		resp.Code == "InvalidToken", resp.Code == "ExpiredToken",
		resp.Code == "XAdminUserNotFound", // versitygw's word for an unknown access key
		resp.StatusCode == 401, resp.StatusCode == 403:
		return fmt.Errorf("the server rejected the credentials (%s): check the access and secret key (options, credentials file, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws/credentials) and that the region (%q) is the server's: %w", resp.Code, regionOrDefault(opts.Region), err)
	case resp.Code == "PreconditionFailed":
		return fmt.Errorf("the object changed since it was listed (a backup job replaced it): try again: %w", err)
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		return fmt.Errorf("S3 endpoint unreachable: check the endpoint URL and that the server runs: %w", err)
	}
	return err
}

func regionOrDefault(r string) string {
	if r == "" {
		return "us-east-1"
	}
	return r
}
