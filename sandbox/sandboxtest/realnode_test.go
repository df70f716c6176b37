package sandboxtest

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestRealNodeLockIsExclusiveAndReleased(t *testing.T) {
	unlock, err := lockRealNode(context.Background(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := lockRealNode(ctx, t.Logf); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock while held: %v", err)
	}
	unlock()
	again, err := lockRealNode(context.Background(), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	again()
}
