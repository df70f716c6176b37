package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
)

func TestSeedStatsCount(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "orders.db")
	db, err := open(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := add(ctx, db, 41); err != nil {
		t.Fatal(err)
	}
	a, err := stats(ctx, db)
	if err != nil || a.Count != 41 || len(a.Checksum) != 64 {
		t.Fatalf("stats %+v %v", a, err)
	}
	// The same orders give the same checksum; one more changes it.
	if b, _ := stats(ctx, db); b != a {
		t.Errorf("stats changed without an order: %+v, was %+v", b, a)
	}
	db.Close()
	var out, errb bytes.Buffer
	if code := run([]string{"add", "--db", path}, &out, &errb); code != 0 {
		t.Fatalf("add: exit %d %s", code, errb.String())
	}
	db, _ = open(path)
	if c, _ := stats(ctx, db); c.Count != 42 || c.Checksum == a.Checksum {
		t.Errorf("after one more order: %+v", c)
	}
	db.Close()
	out.Reset()
	if code := run([]string{"count", "--db", path}, &out, &errb); code != 0 || strings.TrimSpace(out.String()) != "42" {
		t.Errorf("count: exit %d, %q %q", code, out.String(), errb.String())
	}
}
