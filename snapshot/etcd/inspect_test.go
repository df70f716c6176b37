package etcd_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/firedrill-dev/firedrill/snapshot/etcd"
)

// Damaged and foreign files: Inspect describes each in a Report (never an error), Report.Err and
// Restore name what is wrong with a sentinel, and Restore leaves no data directory behind.
func TestBadSnapshots(t *testing.T) {
	fx := takeFixture(t, 200)
	good, err := os.ReadFile(fx.path)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	flipped := append([]byte(nil), good...)
	flipped[len(flipped)/2] ^= 0x01
	// What a member with a damaged database streams: etcd hashes what it sends, so the hash
	// matches, but every page's type is wrong.
	broken := append([]byte(nil), good[:len(good)-32]...)
	for off := 2 * 4096; off < len(broken); off += 4096 {
		broken[off+8] ^= 0xF0
	}
	sum := sha256.Sum256(broken)
	broken = append(broken, sum[:]...)
	for _, tc := range []struct {
		name     string
		data     []byte
		hasHash  bool
		matches  bool
		readable bool
		want     error
		msg      string // in Report.Err and Restore's error
	}{
		{"flipped byte", flipped, true, false, false, etcd.ErrCorrupt, "does not match"},
		{"truncated", good[:len(good)/2+100], false, false, false, etcd.ErrCorrupt, "truncated"},
		{"truncated to one page", good[:4096], false, false, false, etcd.ErrCorrupt, "truncated"},
		{"cut in the hash", good[:len(good)-10], false, false, false, etcd.ErrCorrupt, "cut short"},
		{"empty", nil, false, false, false, etcd.ErrCorrupt, "empty"},
		{"text", []byte("not-a-snapshot\n"), false, false, false, etcd.ErrCorrupt, "not an etcd snapshot (no bbolt header)"},
		{"zeros with a hash-sized tail", make([]byte, 512+32), true, false, false, etcd.ErrCorrupt, "not an etcd snapshot"},
		{"raw db copy", good[:len(good)-32], false, false, true, etcd.ErrNoHash, "no SHA-256 appended"},
		{"damaged database, matching hash", broken, true, true, false, etcd.ErrCorrupt, "bbolt structure"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".db"), tc.data)
			r, err := etcd.Inspect(path)
			if err != nil {
				t.Fatalf("Inspect returned an error for a readable file: %v", err)
			}
			if r.HasHash != tc.hasHash || r.HashMatches != tc.matches || r.Readable != tc.readable {
				t.Errorf("HasHash %v HashMatches %v Readable %v, want %v %v %v (ReadError %q)",
					r.HasHash, r.HashMatches, r.Readable, tc.hasHash, tc.matches, tc.readable, r.ReadError)
			}
			if r.SizeBytes != int64(len(tc.data)) || r.SHA256 != sha256File(t, path) {
				t.Errorf("size %d sha %s for a %d-byte file", r.SizeBytes, r.SHA256, len(tc.data))
			}
			if !r.Readable && r.ReadError == "" {
				t.Error("unreadable without a ReadError")
			}
			// Verify, the restore's quick form, judges the file the same way.
			v, err := etcd.Verify(context.Background(), path)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if v.HasHash != r.HasHash || v.HashMatches != r.HashMatches || v.Readable != r.Readable || v.SHA256 != r.SHA256 || v.TotalKeys != 0 {
				t.Errorf("Verify %+v disagrees with Inspect %+v", v, r)
			}
			if err := r.Err(); !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) || !strings.Contains(err.Error(), path) {
				t.Errorf("Report.Err() = %v, want %v naming the file and %q", err, tc.want, tc.msg)
			}

			dataDir := filepath.Join(t.TempDir(), "restored")
			err = etcd.Restore(context.Background(), etcd.RestoreOptions{SnapshotPath: path, DataDir: dataDir})
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("Restore: %v, want %v saying %q", err, tc.want, tc.msg)
			}
			if _, serr := os.Stat(dataDir); !errors.Is(serr, os.ErrNotExist) {
				t.Errorf("failed restore left %s behind", dataDir)
			}
			t.Log(err)
		})
	}
}

// A raw copy of member/snap/db has no appended hash: it is refused unless SkipHashCheck, and with
// it restores and serves every key.
func TestRestoreRawDBCopy(t *testing.T) {
	fx := takeFixture(t, 100)
	good, err := os.ReadFile(fx.path)
	if err != nil {
		t.Fatal(err)
	}
	raw := writeFile(t, filepath.Join(t.TempDir(), "db"), good[:len(good)-32])
	r, err := etcd.Inspect(raw)
	if err != nil {
		t.Fatal(err)
	}
	if r.HasHash || !r.Readable || r.TotalKeys != 100 {
		t.Fatalf("raw copy reported as %+v", r)
	}
	dataDir := filepath.Join(t.TempDir(), "data")
	err = etcd.Restore(context.Background(), etcd.RestoreOptions{SnapshotPath: raw, DataDir: dataDir})
	if !errors.Is(err, etcd.ErrNoHash) {
		t.Fatalf("Restore without SkipHashCheck: %v, want ErrNoHash", err)
	}
	if err := etcd.Restore(context.Background(), etcd.RestoreOptions{SnapshotPath: raw, DataDir: dataDir, SkipHashCheck: true}); err != nil {
		t.Fatal(err)
	}
	s, err := etcd.StartScratch(context.Background(), dataDir, "default")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	assertKeys(t, s, "/fixture/", fx.keys)
}

// A missing file or a directory is an I/O error, not a Report.
func TestInspectIOErrors(t *testing.T) {
	dir := t.TempDir()
	for _, path := range []string{filepath.Join(dir, "missing.db"), dir} {
		if r, err := etcd.Inspect(path); err == nil {
			t.Errorf("Inspect(%s) = %+v, want an error", path, r)
		}
	}
}

// bbolt reports damage in a raw db copy by panicking on goroutines of its own, which would kill
// the process running the drill. Flipping bytes in every page's header and element table (where
// damage derails bbolt) must give a Report or ErrCorrupt, never a crash; a flip that leaves the
// structure sound restores.
func TestDamagedRawCopyNeverCrashes(t *testing.T) {
	fx := takeFixture(t, 400)
	good, err := os.ReadFile(fx.path)
	if err != nil {
		t.Fatal(err)
	}
	raw := good[:len(good)-32]
	dir := t.TempDir()
	path, dataDir := filepath.Join(dir, "damaged.db"), filepath.Join(dir, "data")
	unreadable := 0
	for page := 2; page < len(raw)/4096; page++ {
		for _, off := range []int{0, 8, 10, 12, 16, 20, 24, 28, 40, 300} {
			b := append([]byte(nil), raw...)
			b[page*4096+off] ^= 0xA5
			writeFile(t, path, b)
			r, err := etcd.Inspect(path)
			if err != nil {
				t.Fatal(err)
			}
			os.RemoveAll(dataDir)
			rerr := etcd.Restore(context.Background(), etcd.RestoreOptions{SnapshotPath: path, DataDir: dataDir, SkipHashCheck: true})
			if r.Readable {
				continue
			}
			unreadable++
			if !errors.Is(r.Err(), etcd.ErrCorrupt) {
				t.Errorf("page %d offset %d: unreadable (%s) but Report.Err %v", page, off, r.ReadError, r.Err())
			}
			// Restore checks the structure only (as etcdutl, it never decodes values).
			if strings.HasPrefix(r.ReadError, "bbolt structure") && !errors.Is(rerr, etcd.ErrCorrupt) {
				t.Errorf("page %d offset %d: %s, but Restore: %v", page, off, r.ReadError, rerr)
			}
			for _, msg := range []string{r.ReadError, fmt.Sprint(rerr)} {
				for _, v := range fx.keys {
					if strings.Contains(msg, v[:12]) {
						t.Fatalf("a value stored in etcd shows in an error: %s", msg)
					}
				}
			}
		}
	}
	if unreadable == 0 {
		t.Error("no flip made the database unreadable: the test damages nothing")
	}
	t.Logf("%d pages, %d flips found unreadable", len(raw)/4096-2, unreadable)
}

// The database of a running etcd is locked; Inspect says so instead of waiting for the lock
// forever, as bbolt's read-only open would.
func TestInspectLiveDatabase(t *testing.T) {
	src := startTestEtcd(t, nil)
	db := filepath.Join(src.e.Config().Dir, "member", "snap", "db")
	r, err := etcd.Inspect(db)
	if err != nil {
		t.Fatal(err)
	}
	if r.Readable || !strings.Contains(r.ReadError, "holds the database's lock") {
		t.Errorf("live database reported as %+v", r)
	}
}
