package etcd

import (
	"context"
	"io"
	"os"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestZZHeader(t *testing.T) {
	ep := os.Getenv("ZZ_EP")
	if ep == "" {
		t.Skip()
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	resp, err := cli.SnapshotWithVersion(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("header %+v version %q", resp.Header, resp.Version)
	n, _ := io.Copy(io.Discard, resp.Snapshot)
	t.Log(n)
}
