package verify

import (
	"context"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Page sizes. etcd counts every key from a range request's start to its end, however small
// the limit, so paging through n keys with open-ended requests costs O(n²) on the server (and
// holds its index lock as long). A scan therefore lists a window of keys with one keys-only
// request, then reads their values in pages bounded by the window's own keys, so that each page
// request counts only its own keys. The page limit adapts to the size of the values seen so far so
// that a page stays near pageBytes: memory stays flat whether the store holds a thousand keys or
// millions, small or large (a window of keys is a few MiB).
const (
	windowKeys    = 50_000
	firstPageKeys = 256
	minPageKeys   = 16
	maxPageKeys   = 1000
	pageBytes     = 4 << 20
)

// rangeScan reads every key under a prefix, page by page, all pages at one revision so that the
// scan is a consistent view even while others write.
type rangeScan struct {
	kv       clientv3.KV
	end      string
	next     string // first key of the next window
	rev      int64  // 0 until the first request pins it, unless given
	keysOnly bool
	// serializable reads pages from the member asked, without a quorum round trip; only for a
	// single-member store (the restored one), where no member can lag behind the pinned revision.
	serializable bool
	limit        int64 // keys of a page
	windowKeys   int64
	done         bool

	window    []*mvccpb.KeyValue // keys of the current window (no values)
	pos       int                // first key of window not read yet
	windowEnd string             // end of the current window's range
}

// newRestoredScan scans the restored etcd.
func newRestoredScan(kv clientv3.KV, prefix string, rev int64) *rangeScan {
	s := newRangeScan(kv, prefix, rev, false)
	s.serializable = true
	return s
}

// newRangeScan scans prefix at rev (0: the current revision).
func newRangeScan(kv clientv3.KV, prefix string, rev int64, keysOnly bool) *rangeScan {
	start, end := prefix, clientv3.GetPrefixRangeEnd(prefix)
	if prefix == "" {
		// The whole keyspace: etcd spells it as key "\x00" with range end "\x00".
		start, end = "\x00", "\x00"
	}
	return &rangeScan{kv: kv, next: start, end: end, rev: rev, keysOnly: keysOnly, limit: firstPageKeys, windowKeys: windowKeys}
}

// Page returns the next page of keys in key order; an empty page and nil error at the end.
func (s *rangeScan) Page(ctx context.Context) ([]*mvccpb.KeyValue, error) {
	for s.pos >= len(s.window) {
		if s.done {
			return nil, nil
		}
		if err := s.nextWindow(ctx); err != nil {
			return nil, err
		}
		if s.keysOnly {
			s.pos = len(s.window)
			return s.window, nil
		}
	}
	from := string(s.window[s.pos].Key)
	to := s.windowEnd
	if i := s.pos + int(s.limit); i < len(s.window) {
		to = string(s.window[i].Key)
	}
	opts := []clientv3.OpOption{clientv3.WithRange(to), clientv3.WithLimit(s.limit), clientv3.WithRev(s.rev)}
	if s.serializable {
		opts = append(opts, clientv3.WithSerializable())
	}
	resp, err := s.kv.Get(ctx, from, opts...)
	if err != nil {
		return nil, err
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("etcd returned no values for keys it listed at revision %d (from %q)", s.rev, from)
	}
	s.pos += len(resp.Kvs)
	s.adapt(resp.Kvs)
	return resp.Kvs, nil
}

// nextWindow lists the keys of the next window (and pins the revision on the first call).
func (s *rangeScan) nextWindow(ctx context.Context) error {
	opts := []clientv3.OpOption{clientv3.WithRange(s.end), clientv3.WithLimit(s.windowKeys), clientv3.WithKeysOnly()}
	if s.rev > 0 {
		opts = append(opts, clientv3.WithRev(s.rev))
		if s.serializable {
			opts = append(opts, clientv3.WithSerializable())
		}
	}
	resp, err := s.kv.Get(ctx, s.next, opts...)
	if err != nil {
		return err
	}
	if s.rev == 0 {
		s.rev = resp.Header.Revision
	}
	s.window, s.pos = resp.Kvs, 0
	n := len(resp.Kvs)
	if n == 0 || !resp.More {
		s.done, s.windowEnd = true, s.end
		return nil
	}
	s.next = string(resp.Kvs[n-1].Key) + "\x00"
	s.windowEnd = s.next
	return nil
}

// Revision is the revision the scan reads at, known after the first page.
func (s *rangeScan) Revision() int64 { return s.rev }

func (s *rangeScan) adapt(kvs []*mvccpb.KeyValue) {
	var size int
	for _, kv := range kvs {
		size += len(kv.Key) + len(kv.Value)
	}
	per := max(size/len(kvs), 1)
	s.limit = int64(min(max(pageBytes/per, minPageKeys), maxPageKeys))
}

// rangeIter walks a rangeScan key by key, for merging two stores in key order.
type rangeIter struct {
	scan *rangeScan
	buf  []*mvccpb.KeyValue
	end  bool
}

// Next returns the next key-value, or nil at the end.
func (it *rangeIter) Next(ctx context.Context) (*mvccpb.KeyValue, error) {
	for len(it.buf) == 0 {
		if it.end {
			return nil, nil
		}
		page, err := it.scan.Page(ctx)
		if err != nil {
			return nil, err
		}
		it.buf, it.end = page, len(page) == 0
	}
	kv := it.buf[0]
	it.buf = it.buf[1:]
	return kv, nil
}

// countKeys counts the keys under prefix at rev (0: current) without reading them.
func countKeys(ctx context.Context, kv clientv3.KV, prefix string, rev int64) (int64, error) {
	opts := []clientv3.OpOption{clientv3.WithCountOnly()}
	key := prefix
	if prefix == "" {
		key = "\x00"
		opts = append(opts, clientv3.WithFromKey())
	} else {
		opts = append(opts, clientv3.WithPrefix())
	}
	if rev > 0 {
		opts = append(opts, clientv3.WithRev(rev))
	}
	resp, err := kv.Get(ctx, key, opts...)
	if err != nil {
		return 0, err
	}
	return resp.Count, nil
}

// readRevision is where the checks read the restored etcd, and how it was chosen.
type readRevision struct {
	Rev int64
	// From: "restore" (EtcdTarget.RestoredRevision, told by the drill that restored it),
	// "compaction" (the revision etcdutl's --mark-compacted restore marked; nothing written
	// since is read), "snapshot" (a restore without bump keeps the snapshot's revision) or
	// "current" (none of these is known).
	From string
}

// restoredRevision is the revision of the restored etcd as the restore left it, so that what a
// scratch kube-apiserver writes after starting on it (leases, endpoints, its own configmaps) is not
// taken for restored data. The drill that restored it tells it (t.RestoredRevision); else it is
// found out: a restore with --bump-revision --mark-compacted compacts at exactly that revision;
// without a bump the snapshot's revision is the restored one. The scratch apiserver's own
// compaction moves the compacted revision on, but not before two of its 5-minute cycles.
func restoredRevision(ctx context.Context, t *EtcdTarget) (readRevision, error) {
	if t.RestoredRevision > 0 {
		return readRevision{Rev: t.RestoredRevision, From: "restore"}, nil
	}
	cli, snapshotRev := t.Restored, t.Snapshot.Revision
	compacted, err := compactedRevision(ctx, cli)
	if err != nil {
		return readRevision{}, err
	}
	switch {
	case compacted > 0 && compacted >= snapshotRev:
		return readRevision{Rev: compacted, From: "compaction"}, nil
	case snapshotRev > 0:
		return readRevision{Rev: snapshotRev, From: revisionFromSnapshot}, nil
	}
	resp, err := cli.Get(ctx, "\x00", clientv3.WithCountOnly())
	if err != nil {
		return readRevision{}, err
	}
	return readRevision{Rev: resp.Header.Revision, From: "current"}, nil
}

// compactedRevision is the store's compacted revision, 0 when nothing was compacted. etcd only
// tells it in the answer to a watch that starts before it.
func compactedRevision(ctx context.Context, cli *clientv3.Client) (int64, error) {
	_, err := cli.Get(ctx, "\x00", clientv3.WithRev(1), clientv3.WithCountOnly())
	if err == nil {
		return 0, nil
	}
	if !isCompacted(err) {
		return 0, err
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for resp := range cli.Watch(wctx, "\x00firedrill-compaction-probe", clientv3.WithRev(1)) {
		if resp.CompactRevision > 0 {
			return resp.CompactRevision, nil
		}
		if err := resp.Err(); err != nil {
			return 0, err
		}
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("etcd closed the watch without telling its compacted revision")
}
