package leader

import (
	"context"
	"errors"
	"log/slog"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// quietCancel passes client-go's log on, except that its complaints about a cancelled context
// or a conflict go to debug: every release and hand-over cancels requests on purpose, replicas
// racing for a free Lease conflict by design, and an error line at each clean shutdown would
// teach operators to ignore the log.
type quietCancel struct{ slog.Handler }

func (h quietCancel) Handle(ctx context.Context, r slog.Record) error {
	if r.Level > slog.LevelDebug && expected(r) {
		r.Level = slog.LevelDebug
		if !h.Handler.Enabled(ctx, r.Level) {
			return nil
		}
	}
	return h.Handler.Handle(ctx, r)
}

func expected(r slog.Record) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		if a.Key != "err" {
			return true
		}
		v := a.Value.Any()
		if err, ok := v.(error); ok {
			found = errors.Is(err, context.Canceled) || apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) ||
				strings.HasSuffix(err.Error(), context.Canceled.Error())
		} else {
			found = strings.HasSuffix(a.Value.String(), context.Canceled.Error())
		}
		return false
	})
	return found
}

func (h quietCancel) WithAttrs(attrs []slog.Attr) slog.Handler {
	return quietCancel{h.Handler.WithAttrs(attrs)}
}

func (h quietCancel) WithGroup(name string) slog.Handler {
	return quietCancel{h.Handler.WithGroup(name)}
}
