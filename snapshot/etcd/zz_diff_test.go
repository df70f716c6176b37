package etcd

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
)

func newCheck(t *testing.T, b []byte, chunk func() int) error {
	lay, err := readLayout(bytes.NewReader(b), int64(len(b)), "x")
	if err != nil {
		return err
	}
	c := newBoltCheck(lay)
	for off := 0; off < len(b); {
		n := min(chunk(), len(b)-off)
		c.Write(b[off : off+n])
		off += n
	}
	return c.finish()
}

func oldCheck(b []byte) error {
	lay, err := readLayout(bytes.NewReader(b), int64(len(b)), "x")
	if err != nil {
		return err
	}
	return oldCheckBolt(context.Background(), bytes.NewReader(b), lay)
}

func boltFixture(t *testing.T) []byte {
	path := filepath.Join(t.TempDir(), "b.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 6))
	val := func() []byte {
		n := 1 + r.IntN(200)
		if r.IntN(15) == 0 {
			n = 3000 + r.IntN(20000)
		}
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		return b
	}
	for round := range 20 {
		err := db.Update(func(tx *bolt.Tx) error {
			for bi := range 6 {
				b, err := tx.CreateBucketIfNotExists([]byte(fmt.Sprintf("b%d", bi)))
				if err != nil {
					return err
				}
				for range 150 {
					k := make([]byte, 1+r.IntN(40))
					for i := range k {
						k[i] = byte('a' + r.IntN(26))
					}
					if r.IntN(30) == 0 {
						sub, err := b.CreateBucketIfNotExists(k)
						if err != nil {
							continue
						}
						for j := range r.IntN(60) {
							sub.Put([]byte(fmt.Sprintf("s%03d", j)), val())
						}
						if r.IntN(3) == 0 {
							if ss, err := sub.CreateBucketIfNotExists([]byte("deeper")); err == nil {
								ss.Put([]byte("x"), val())
							}
						}
						continue
					}
					if b.Bucket(k) == nil {
						b.Put(k, val())
					}
				}
				if round%3 == 2 {
					c := b.Cursor()
					for k, v := c.First(); k != nil; k, v = c.Next() {
						if v != nil && r.IntN(3) == 0 {
							c.Delete()
						}
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func diffFixture(t *testing.T) []byte {
	if os.Getenv("ZZ_DIFF_BOLT") != "" {
		return boltFixture(t)
	}
	if p := os.Getenv("ZZ_DIFF_DB"); p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	dir := t.TempDir()
	cfg := embed.NewConfig()
	cfg.Dir = filepath.Join(dir, "etcd")
	cfg.LogLevel = "error"
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	<-e.Server.ReadyNotify()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"http://127.0.0.1:2379"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		size := 10 + r.IntN(300)
		if i%10 == 0 {
			size = 5000 + r.IntN(30000)
		}
		v := make([]byte, size)
		for j := range v {
			v[j] = byte(r.IntN(256))
		}
		k := fmt.Sprintf("/k/%x/%d", r.IntN(500), i)
		if _, err := cli.Put(ctx, k, string(v)); err != nil {
			t.Fatal(err)
		}
		if i%7 == 0 {
			cli.Delete(ctx, fmt.Sprintf("/k/%x/", r.IntN(500)), clientv3.WithPrefix())
		}
		if i == 2000 {
			resp, _ := cli.Get(ctx, "x")
			cli.Compact(ctx, resp.Header.Revision)
		}
	}
	snap, err := cli.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	buf.ReadFrom(snap)
	cli.Close()
	e.Close()
	b := buf.Bytes()
	os.WriteFile("/tmp/fdperf/diff.db", b[:len(b)-32], 0o600)
	return b[:len(b)-32]
}

func TestZZDiff(t *testing.T) {
	if os.Getenv("ZZ_DIFF") == "" {
		t.Skip()
	}
	good := diffFixture(t)
	t.Logf("%d bytes, %d pages", len(good), len(good)/4096)
	r := rand.New(rand.NewPCG(3, 4))
	chunk := func() int {
		switch r.IntN(3) {
		case 0:
			return 1 + r.IntN(3*4096)
		case 1:
			return 256 << 10
		}
		return 1 + r.IntN(64)
	}
	if err := newCheck(t, good, chunk); err != nil {
		t.Fatalf("good: %v", err)
	}
	if err := oldCheck(good); err != nil {
		t.Fatalf("old good: %v", err)
	}
	pages := len(good) / 4096
	bad, disagree, tries := 0, 0, 0
	check := func(b []byte, what string) {
		tries++
		n, o := newCheck(t, b, chunk), oldCheck(b)
		if (n == nil) != (o == nil) {
			disagree++
			if disagree < 20 {
				t.Errorf("%s: new %v, old %v", what, n, o)
			}
		}
		if n != nil {
			bad++
		}
	}
	for page := 2; page < pages; page++ {
		if r.IntN(4) != 0 {
			continue
		}
		offs := []int{0, 8, 9, 10, 11, 12, 13, 16, 17, 20, 24, 28, 32, 40, 48, 300}
		for range 6 {
			offs = append(offs, r.IntN(4096))
		}
		for _, off := range offs {
			b := bytes.Clone(good)
			b[page*4096+off] ^= byte(1 + r.IntN(255))
			check(b, fmt.Sprintf("page %d off %d", page, off))
		}
		if r.IntN(4) == 0 {
			b := bytes.Clone(good)
			for range 1 + r.IntN(8) {
				b[page*4096+r.IntN(4096)] = byte(r.IntN(256))
			}
			check(b, fmt.Sprintf("page %d multi", page))
		}
	}
	t.Logf("%d tries, %d bad, %d disagreements", tries, bad, disagree)
}
