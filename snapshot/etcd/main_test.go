package etcd_test

import (
	"testing"

	"github.com/firedrill-dev/firedrill/sandbox/sandboxtest"
)

func TestMain(m *testing.M) { sandboxtest.Main(m) }
