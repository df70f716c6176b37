package leader

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/firedrill-dev/firedrill/internal/testkit"
)

func TestQuietCancelDemotesExpectedErrors(t *testing.T) {
	buf := &testkit.Buffer{}
	log := logr.FromSlogHandler(quietCancel{slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelInfo})}).WithValues("lock", "ns/firedrill")
	lease := schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}

	log.Error(fmt.Errorf("client rate limiter Wait returned an error: %w", context.Canceled), "Error retrieving lease lock")
	log.Error(apierrors.NewConflict(lease, "firedrill", errors.New("the object has been modified")), "Failed to release lease")
	log.Info("Failed to renew lease", "err", context.Canceled)
	log.Error(errors.New("dial tcp 127.0.0.1:6443: connect: connection refused"), "Error retrieving lease lock")

	out := buf.String()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "level=ERROR") || !strings.Contains(lines[0], "connection refused") || !strings.Contains(lines[0], "lock=ns/firedrill") {
		t.Fatalf("want only the connection error, at error level with its attributes; got:\n%s", out)
	}
}
