package etcd_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
	"github.com/firedrill-dev/firedrill/snapshot/etcd"
)

// ListDir lists the matching files with their mtimes; files being written, hidden files,
// directories and names the pattern rejects are never listed. FromDir hashes the one chosen.
func TestListDirAndFromDir(t *testing.T) {
	dir := t.TempDir()
	base := time.Now().Add(-24 * time.Hour).Truncate(time.Second)
	put := func(name string, age time.Duration, content string) {
		p := writeFile(t, filepath.Join(dir, name), []byte(content))
		mt := base.Add(-age)
		if err := os.Chtimes(p, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	put("etcd-a.db", 3*time.Hour, "a")
	put("etcd-c.db", 1*time.Hour, "the newest")
	put("etcd-d.db", 2*time.Hour, "d")
	put("etcd-z.db.part", -time.Hour, "still being written")
	put(".etcd-y.db", -time.Hour, "hidden")
	put("etcd-x.tmp", -time.Hour, "temporary")
	put("notes.txt", -time.Hour, "not a snapshot")
	if err := os.Mkdir(filepath.Join(dir, "etcd-w.db"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "etcd-a.db"), filepath.Join(dir, "link.db")); err != nil {
		t.Fatal(err)
	}

	list, err := etcd.ListDir(dir, "*.db")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range list {
		got = append(got, fmt.Sprintf("%s@%s/%d", l.Name, base.Sub(l.ModTime), l.Size))
	}
	if want := "etcd-a.db@3h0m0s/1 etcd-c.db@1h0m0s/10 etcd-d.db@2h0m0s/1 link.db@3h0m0s/1"; strings.Join(got, " ") != want {
		t.Errorf("listed %s, want %s", strings.Join(got, " "), want)
	}
	if list, err := etcd.ListDir(dir, "etcd-*.db"); err != nil || len(list) != 3 {
		t.Errorf("pattern etcd-*.db: %+v, %v", list, err)
	}

	snap, err := etcd.FromDir(dir, list[1])
	if err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(dir, "etcd-c.db")
	if snap.Path != want || snap.Name != "etcd-c.db" || snap.Source != "dir" || snap.Location != dir || snap.SelectedBy != "mtime" {
		t.Errorf("fetched %+v, want %s", snap, want)
	}
	if !snap.CreatedAt.Equal(base.Add(-time.Hour)) {
		t.Errorf("CreatedAt %v, want the file's mtime %v", snap.CreatedAt, base.Add(-time.Hour))
	}
	if snap.SHA256 != sha256File(t, want) || snap.SizeBytes != int64(len("the newest")) {
		t.Errorf("SHA256 %s size %d", snap.SHA256, snap.SizeBytes)
	}
}

func TestListDirErrors(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.db.part"), []byte("x"))
	for _, tc := range []struct{ dir, pattern, want string }{
		{filepath.Join(dir, "missing"), "*.db", "does not exist"},
		{dir, "*.db", `no file in ` + dir + ` matches "*.db"`},
		{dir, "[", "bad pattern"},
	} {
		if _, err := etcd.ListDir(tc.dir, tc.pattern); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ListDir(%s, %q) = %v, want %q", tc.dir, tc.pattern, err, tc.want)
		}
	}
	if _, err := etcd.ListDir(dir, "*.db"); !errors.Is(err, etcd.ErrNoneMatch) {
		t.Errorf("nothing matches: %v, want ErrNoneMatch", err)
	}
}

// names lists the keys of what ListS3 found, in its order, with the prefix cut.
func names(prefix string, list []etcd.Listed) string {
	var out []string
	for _, l := range list {
		out = append(out, strings.TrimPrefix(l.Name, prefix))
	}
	return strings.Join(out, " ")
}

// Three snapshots uploaded a second apart under a prefix: ListS3 lists those matching with their
// LastModified, FromS3 downloads the one chosen whole into the destination, with its hash, key and
// LastModified; nothing else is left there.
func TestListS3AndFromS3(t *testing.T) {
	sb := sandboxtest.Shared(t, sandboxOpts)
	s3 := sb.S3()
	fx := takeFixture(t, 20)
	data, err := os.ReadFile(fx.path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	mc, err := minio.New(strings.TrimPrefix(s3.URL, "http://"), &minio.Options{
		Creds: credentials.NewStaticV4(s3.AccessKey, s3.SecretKey, ""), Region: s3.Region, BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		t.Fatal(err)
	}
	prefix := "etcd-test/" + filepath.Base(t.TempDir()) + "/"
	upload := func(key string, content []byte) {
		t.Helper()
		if _, err := mc.PutObject(ctx, s3.Bucket, prefix+key, bytes.NewReader(content), int64(len(content)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// LastModified has one-second resolution: a gap makes the order certain.
	upload("snap-3.db", []byte("oldest, though its name sorts last"))
	time.Sleep(1100 * time.Millisecond)
	upload("snap-1.db", []byte("older"))
	time.Sleep(1100 * time.Millisecond)
	upload("nested/snap-2.db", data) // the newest match, in a "subdirectory"
	time.Sleep(1100 * time.Millisecond)
	upload("snap-9.db.part", []byte("an upload tool's temporary object"))
	upload("readme.txt", []byte("not a snapshot"))

	opts := etcd.S3Options{
		Endpoint: s3.URL, Region: s3.Region, Bucket: s3.Bucket, Prefix: prefix, Pattern: "*.db",
		ForcePathStyle: true, AccessKey: s3.AccessKey, SecretKey: s3.SecretKey,
	}
	// "*.db" does not cross "/": nested/snap-2.db is not a match.
	list, err := etcd.ListS3(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(prefix, list); got != "snap-1.db snap-3.db" || !list[1].ModTime.Before(list[0].ModTime) {
		t.Errorf("with *.db listed %s (%v, %v), want snap-1.db snap-3.db, snap-3.db older", got, list[0].ModTime, list[1].ModTime)
	}

	opts.Pattern, opts.DestDir = "*/*.db", t.TempDir()
	var progress int64
	opts.Progress = func(n int64) { progress = n }
	list, err = etcd.ListS3(ctx, opts)
	if err != nil || len(list) != 1 {
		t.Fatalf("with */*.db: %+v, %v", list, err)
	}
	snap, err := etcd.FromS3(ctx, opts, list[0])
	if err != nil {
		t.Fatal(err)
	}
	if snap.Name != prefix+"nested/snap-2.db" || snap.Source != "s3" || snap.SelectedBy != "s3-last-modified" ||
		snap.Location != "s3://"+s3.Bucket+"/"+prefix {
		t.Errorf("fetched %+v", snap)
	}
	if snap.Path != filepath.Join(opts.DestDir, "snap-2.db") || snap.SizeBytes != int64(len(data)) || progress != snap.SizeBytes {
		t.Errorf("downloaded to %s, %d bytes (progress %d), want %d", snap.Path, snap.SizeBytes, progress, len(data))
	}
	if snap.SHA256 != sha256File(t, fx.path) || snap.SHA256 != sha256File(t, snap.Path) {
		t.Errorf("SHA256 %s does not match the uploaded snapshot", snap.SHA256)
	}
	if age := time.Since(snap.CreatedAt); age < 0 || age > time.Minute {
		t.Errorf("CreatedAt %v is not the upload time", snap.CreatedAt)
	}
	if names := dirNames(t, opts.DestDir); len(names) != 1 {
		t.Errorf("destination holds %v", names)
	}
	if r, err := etcd.Inspect(snap.Path); err != nil || r.Err() != nil || r.TotalKeys != 20 {
		t.Errorf("downloaded snapshot: %+v %v %v", r, err, r.Err())
	}

	// Pattern "" matches every name at the top, except temporary objects.
	opts.Pattern = ""
	if list, err := etcd.ListS3(ctx, opts); err != nil || names(prefix, list) != "readme.txt snap-1.db snap-3.db" {
		t.Errorf("empty pattern: %s, %v", names(prefix, list), err)
	}
	opts.Pattern = "*/*.db"

	// The object listed is the object downloaded: one replaced since is refused.
	upload("nested/snap-2.db", []byte("replaced by the backup job"))
	if _, err := etcd.FromS3(ctx, opts, list[0]); err == nil || !strings.Contains(err.Error(), "changed") {
		t.Errorf("replaced object: %v", err)
	}

	for _, tc := range []struct {
		name   string
		mutate func(*etcd.S3Options)
		want   string
	}{
		{"missing bucket", func(o *etcd.S3Options) { o.Bucket = "no-such-bucket" }, `bucket "no-such-bucket" does not exist`},
		{"wrong secret", func(o *etcd.S3Options) { o.SecretKey = "wrong" }, "rejected the credentials"},
		{"unknown access key", func(o *etcd.S3Options) { o.AccessKey = "nobody" }, "rejected the credentials"},
		{"nothing matches", func(o *etcd.S3Options) { o.Pattern = "*.snapshot" }, `matches "*.snapshot"`},
		{"server down", func(o *etcd.S3Options) { o.Endpoint = deadEndpoint(t) }, "unreachable"},
		{"missing destination", func(o *etcd.S3Options) { o.DestDir = filepath.Join(o.DestDir, "missing") }, "does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := opts
			o.DestDir = t.TempDir()
			tc.mutate(&o)
			_, err := fetchFirst(ctx, o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if names, _ := os.ReadDir(o.DestDir); len(names) != 0 {
				t.Errorf("failed download left %v", names)
			}
			t.Log(err)
		})
	}

	// Credentials from a shared credentials file.
	credFile := writeFile(t, filepath.Join(t.TempDir(), "credentials"),
		[]byte(fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n", s3.AccessKey, s3.SecretKey)))
	o := opts
	o.AccessKey, o.SecretKey, o.CredentialsFile, o.Pattern, o.DestDir = "", "", credFile, "*/*.db", t.TempDir()
	if _, err := fetchFirst(ctx, o); err != nil {
		t.Errorf("with a credentials file: %v", err)
	}
	if _, err := fetchFirst(ctx, etcd.S3Options{Bucket: s3.Bucket, DestDir: t.TempDir(), CredentialsFile: "/nonexistent"}); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing credentials file: %v", err)
	}
}

// fetchFirst lists and downloads the first object listed, as a drill does with the one it chose.
func fetchFirst(ctx context.Context, o etcd.S3Options) (*etcd.Snapshot, error) {
	list, err := etcd.ListS3(ctx, o)
	if err != nil {
		return nil, err
	}
	return etcd.FromS3(ctx, o, list[0])
}
