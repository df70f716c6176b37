package verify

import (
	"context"
	"fmt"
	"maps"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"

	"github.com/firedrill-dev/firedrill/scenarios"
)

// How much of the detail goes into a result.
const (
	maxListed    = 10 // keys named in a message or evidence list
	topResources = 20 // entries of perResource
)

// ObjectsDecodeCheck decodes every value under a prefix of the restored data with Kubernetes'
// codecs, read from the snapshot file or else from the restored etcd: proof that what came back is
// Kubernetes data and not damaged bytes.
type ObjectsDecodeCheck struct {
	checkName
	prefix         string
	allowEncrypted bool
	workers        int
}

var _ EtcdCheck = (*ObjectsDecodeCheck)(nil)

// NewObjectsDecodeCheck builds an etcdObjectsDecode check; the prefix defaults to /registry/.
func NewObjectsDecodeCheck(name string, spec scenarios.EtcdObjectsDecodeCheck) *ObjectsDecodeCheck {
	prefix := spec.Prefix
	if prefix == "" {
		prefix = scenarios.DefaultDecodePrefix
	}
	return &ObjectsDecodeCheck{
		checkName: newCheckName(name, scenarios.CheckEtcdObjectsDecode),
		prefix:    prefix, allowEncrypted: spec.AllowEncrypted, workers: runtime.GOMAXPROCS(0),
	}
}

// Where etcdObjectsDecode read the data (evidence "source").
const (
	sourceSnapshotFile = "snapshot-file" // the snapshot file, with bbolt: no etcd serves the reads
	sourceEtcd         = "etcd"          // the restored etcd, through its API
)

// Run decodes the data of the snapshot file when the target names one, else the restored etcd's
// at the restored revision: both are what the restore serves. Values are decoded on as many
// goroutines as there are CPUs; memory stays flat in the size of the values.
func (c *ObjectsDecodeCheck) Run(ctx context.Context, t *EtcdTarget) Outcome {
	ev := map[string]any{"prefix": c.prefix}
	fromFile := t.Snapshot.Path != ""
	var rr readRevision
	switch {
	case fromFile:
		ev["source"] = sourceSnapshotFile
		if why := unreadableSnapshot(t.Snapshot); why != "" {
			return errorOutcome(ev, "the snapshot file %s is not read: %s; see etcdIntegrity", t.Snapshot.Path, why)
		}
	case t.Restored == nil:
		return noRestore(ev)
	default:
		ev["source"] = sourceEtcd
		var err error
		if rr, err = restoredRevision(ctx, t); err != nil {
			return errorOutcome(ev, "read the restored etcd: %v", err)
		}
		ev["revision"], ev["revisionFrom"] = rr.Rev, rr.From
	}
	cod, err := newCodec()
	if err != nil {
		return errorOutcome(ev, "%v", err)
	}
	if t.EncryptionConfig != "" {
		d, err := loadDecryption(ctx, t.EncryptionConfig)
		if err != nil {
			return errorOutcome(ev, "%v; give the source cluster's EncryptionConfiguration (restore.scratchEtcd.encryptionConfig)", err)
		}
		defer d.Close()
		cod.decryption = d
	}
	var skip string
	if t.Canary != nil {
		skip = t.Canary.Key
	}
	decode := func(ctx context.Context, key string, value []byte, buf decodeBuffer) decodedValue {
		if key == skip {
			return decodedValue{Class: classNotObject}
		}
		return cod.Decode(ctx, key, value, buf)
	}
	if fromFile {
		st, fs, err := decodeSnapshotFile(ctx, t.Snapshot.Path, c.prefix, c.workers, decode)
		switch {
		case ctx.Err() != nil:
			return errorOutcome(ev, "read the snapshot file %s: %v", t.Snapshot.Path, ctx.Err())
		case err != nil:
			return errorOutcome(ev, "the snapshot file %s cannot be read with bbolt: %v; see etcdIntegrity", t.Snapshot.Path, err)
		}
		ev["revision"], ev["revisionFrom"] = fs.Revision, revisionFromSnapshot
		if s := t.Snapshot; (s.Revision > 0 && fs.Revision != s.Revision) || (s.TotalKeys > 0 && fs.Keys != s.TotalKeys) {
			return errorOutcome(ev, "the snapshot file %s holds %d keys at revision %d, not the %d keys at revision %d it held when it was inspected: it was replaced or damaged since; see etcdIntegrity",
				s.Path, fs.Keys, fs.Revision, s.TotalKeys, s.Revision)
		}
		st.evidence(ev)
		return c.judge(ev, st, t.EncryptionConfig != "")
	}
	st, err := decodeAll(ctx, etcdSource(t.Restored, c.prefix, rr.Rev), c.workers, decode, nil)
	if err != nil {
		return errorOutcome(ev, "read keys under %s from the restored etcd: %v", c.prefix, err)
	}
	st.evidence(ev)
	return c.judge(ev, st, t.EncryptionConfig != "")
}

func (c *ObjectsDecodeCheck) judge(ev map[string]any, st *decodeStats, haveConfig bool) Outcome {
	if st.keys == 0 {
		return failedOutcome(ev, "no keys under %s in the restored etcd: the snapshot holds no Kubernetes data there (empty cluster, or another --etcd-prefix?)", c.prefix)
	}
	var problems []string
	if st.undecodable > 0 {
		problems = append(problems, fmt.Sprintf("%d of %d values under %s do not decode as Kubernetes objects: %s", st.undecodable, st.keys, c.prefix, listBad(st.firstBad)))
	}
	switch {
	case st.encrypted > 0 && haveConfig:
		problems = append(problems, fmt.Sprintf("%d values encrypted at rest (%s) cannot be decrypted with the given encryption config: %s; give the source cluster's current EncryptionConfiguration, with every key still in use",
			st.encrypted, providerList(st.providers), listBad(st.firstEncrypted)))
	case st.encrypted > 0 && !c.allowEncrypted:
		problems = append(problems, fmt.Sprintf("%d values are encrypted at rest (%s) and nothing proves they decode: set restore.scratchEtcd.encryptionConfig to the source cluster's EncryptionConfiguration, or allowEncrypted to accept them unread",
			st.encrypted, providerList(st.providers)))
	}
	if len(problems) > 0 {
		return failedOutcome(ev, "%s", strings.Join(problems, "; "))
	}
	msg := fmt.Sprintf("all %d values under %s decode (%d objects", st.keys, c.prefix, st.decoded)
	if st.decrypted > 0 {
		msg += fmt.Sprintf(", %d of them decrypted", st.decrypted)
	}
	msg += ")"
	if st.encrypted > 0 {
		msg += fmt.Sprintf("; %d encrypted values (%s) accepted unread (allowEncrypted)", st.encrypted, providerList(st.providers))
	}
	if st.unknownKind > 0 {
		msg += fmt.Sprintf("; %d values of kinds this firedrill does not know (%s) were only checked for a well-formed envelope", st.unknownKind, strings.Join(slices.Sorted(maps.Keys(st.unknownKinds)), ", "))
	}
	return passedOutcome(ev, "%s", msg)
}

// badKey is a key whose value could not be read, and why (never the value).
type badKey struct {
	Key    string `json:"key"`
	Reason string `json:"reason"`
}

func listBad(bad []badKey) string {
	var b strings.Builder
	for i, k := range bad {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s (%s)", k.Key, k.Reason)
	}
	if len(bad) == maxListed {
		b.WriteString("; …")
	}
	return b.String()
}

func providerList(p map[string]int64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(p)) {
		parts = append(parts, fmt.Sprintf("%s: %d", k, p[k]))
	}
	return strings.Join(parts, ", ")
}

// decodeStats counts what decoding found. Each worker keeps its own; they are merged at the end.
type decodeStats struct {
	keys, decoded, unknownKind, encrypted, decrypted, notObject, undecodable, bytes int64

	perResource  map[string]int64 // by storage directory
	providers    map[string]int64 // every encrypted value, decrypted or not, by provider
	unknownKinds map[string]int64
	// The first keys in key order (keepFirst): sources do not all read in key order.
	firstBad, firstEncrypted []badKey
}

func newDecodeStats() *decodeStats {
	return &decodeStats{perResource: map[string]int64{}, providers: map[string]int64{}, unknownKinds: map[string]int64{}}
}

func (s *decodeStats) add(key string, size int, d decodedValue) {
	s.keys++
	s.bytes += int64(size)
	s.perResource[storageDir(key)]++
	if d.Provider != "" {
		s.providers[d.Provider]++
	}
	switch d.Class {
	case classObject:
		s.decoded++
	case classUnknownKind:
		s.unknownKind++
		s.unknownKinds[d.GVK.GroupKind().String()]++
	case classNotObject:
		s.notObject++
	case classEncrypted:
		s.encrypted++
		reason := "encrypted with " + d.Provider
		if d.Reason != "" {
			reason = d.Reason
		}
		s.firstEncrypted = keepFirst(s.firstEncrypted, badKey{key, reason})
	case classUndecodable:
		s.undecodable++
		s.firstBad = keepFirst(s.firstBad, badKey{key, d.Reason})
	}
	if d.Decrypted {
		s.decrypted++
	}
}

func (s *decodeStats) merge(o *decodeStats) {
	s.keys += o.keys
	s.decoded += o.decoded
	s.unknownKind += o.unknownKind
	s.encrypted += o.encrypted
	s.decrypted += o.decrypted
	s.notObject += o.notObject
	s.undecodable += o.undecodable
	s.bytes += o.bytes
	for _, m := range [][2]map[string]int64{{s.perResource, o.perResource}, {s.providers, o.providers}, {s.unknownKinds, o.unknownKinds}} {
		for k, v := range m[1] {
			m[0][k] += v
		}
	}
	s.firstBad = firstKeys(append(s.firstBad, o.firstBad...))
	s.firstEncrypted = firstKeys(append(s.firstEncrypted, o.firstEncrypted...))
}

// keepFirst adds k to b, keeping b to the maxListed first keys in key order (and a few more, until
// firstKeys trims it) whatever order keys come in.
func keepFirst(b []badKey, k badKey) []badKey {
	b = append(b, k)
	if len(b) == 2*maxListed {
		b = firstKeys(b)
	}
	return b
}

func firstKeys(b []badKey) []badKey {
	slices.SortFunc(b, func(x, y badKey) int { return strings.Compare(x.Key, y.Key) })
	return b[:min(len(b), maxListed)]
}

func (s *decodeStats) evidence(ev map[string]any) {
	ev["keys"] = s.keys
	ev["decoded"] = s.decoded
	ev["undecodable"] = s.undecodable
	ev["bytes"] = s.bytes
	ev["perResource"] = topN(s.perResource, topResources)
	ev["resources"] = len(s.perResource)
	ev["encrypted"] = s.providers
	ev["decrypted"] = s.decrypted
	ev["notDecrypted"] = s.encrypted
	ev["unknownKinds"] = s.unknownKinds
	ev["notObjects"] = s.notObject
	if len(s.firstBad) > 0 {
		ev["firstUndecodable"] = s.firstBad
	}
	if len(s.firstEncrypted) > 0 {
		ev["firstNotDecrypted"] = s.firstEncrypted
	}
}

// topN keeps the n largest counts (ties by name), so evidence stays small on big clusters.
func topN(m map[string]int64, n int) map[string]int64 {
	if len(m) <= n {
		return maps.Clone(m)
	}
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int {
		if m[a] != m[b] {
			if m[a] > m[b] {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	out := make(map[string]int64, n)
	for _, k := range keys[:n] {
		out[k] = m[k]
	}
	return out
}

// decodeFunc decodes the value stored at key; buf belongs to the calling goroutine.
type decodeFunc func(ctx context.Context, key string, value []byte, buf decodeBuffer) decodedValue

// storedValue is a key and the value a restore serves for it. Value may point into a memory map
// that is valid only until the source returns.
type storedValue struct {
	Key   string
	Value []byte
}

// valueSource sends batches of key-values to emit until it has sent all, and returns. It must not
// reuse a batch or anything a batch points to before it returns.
type valueSource func(ctx context.Context, emit func([]storedValue) error) error

// etcdSource reads the keys under prefix of an etcd at rev, page by page.
func etcdSource(cli *clientv3.Client, prefix string, rev int64) valueSource {
	return func(ctx context.Context, emit func([]storedValue) error) error {
		scan := newRestoredScan(cli, prefix, rev)
		for {
			page, err := scan.Page(ctx)
			if err != nil {
				return err
			}
			if len(page) == 0 {
				return nil
			}
			batch := make([]storedValue, len(page))
			for i, kv := range page {
				batch[i] = storedValue{Key: string(kv.Key), Value: kv.Value}
			}
			if err := emit(batch); err != nil {
				return err
			}
		}
	}
}

// decodeAll decodes every value src sends on workers goroutines while src reads on. visit, when
// set, sees every result on the worker that decoded it (it must be safe for concurrent use).
// It returns only when every worker is done with the values src sent.
func decodeAll(ctx context.Context, src valueSource, workers int, decode decodeFunc, visit func(key string, d decodedValue)) (*decodeStats, error) {
	workers = max(workers, 1)
	g, ctx := errgroup.WithContext(ctx)
	batches := make(chan []storedValue, 2*workers)
	g.Go(recovering(func() error {
		defer close(batches)
		return src(ctx, func(b []storedValue) error {
			select {
			case batches <- b:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}))
	stats := make([]*decodeStats, workers)
	for i := range stats {
		st := newDecodeStats()
		stats[i] = st
		g.Go(recovering(func() error {
			buf := decodeBuffer{}
			for batch := range batches {
				for _, kv := range batch {
					d := decode(ctx, kv.Key, kv.Value, buf)
					st.add(kv.Key, len(kv.Value), d)
					if visit != nil {
						visit(kv.Key, d)
					}
				}
			}
			return ctx.Err()
		}))
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	total := newDecodeStats()
	for _, st := range stats {
		total.merge(st)
	}
	return total, nil
}

// recovering runs fn with faults in memory-mapped files turned into panics, and any panic into an
// error: a damaged snapshot file, or a value that trips a decoder, must not bring firedrill down.
func recovering(fn func() error) func() error {
	return func() (err error) {
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("%v", p)
			}
		}()
		return fn()
	}
}
