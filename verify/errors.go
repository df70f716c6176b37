package verify

import (
	"errors"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

func isCompacted(err error) bool { return errors.Is(err, rpctypes.ErrCompacted) }

func isFutureRev(err error) bool { return errors.Is(err, rpctypes.ErrFutureRev) }
