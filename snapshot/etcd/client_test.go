package etcd_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/snapshot/etcd"
)

// NewClient returns once any endpoint answers, and names every endpoint's reason when none does.
func TestNewClient(t *testing.T) {
	live := startTestEtcd(t, nil)
	dead := deadEndpoint(t)
	cli, err := etcd.NewClient([]string{dead, live.endpoint}, nil, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(context.Background(), "/k", "v"); err != nil {
		t.Errorf("client of a half-dead cluster: %v", err)
	}
	cli.Close()

	_, err = etcd.NewClient([]string{dead}, nil, time.Second)
	var eerr *etcd.EndpointsError
	if !errors.As(err, &eerr) || !errors.Is(err, etcd.ErrUnreachable) || eerr.Op != "connect" ||
		!strings.Contains(err.Error(), dead) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("err = %v", err)
	}
	if _, err := etcd.NewClient(nil, nil, time.Second); err == nil {
		t.Error("no endpoints accepted")
	}
}
