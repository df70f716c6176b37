package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/chain"
)

// runReader reads what the summary needs of a record from the top-level members the
// verification located, instead of decoding the whole record: no steps, backup, target or
// runner, and no check evidence. Decoding every record with encoding/json was most of a
// 100,000-run report's time.
type runReader struct {
	// metas are the labels and annotations last seen per scenario, decoded: a scenario's runs
	// repeat them, so they are decoded once per scenario and value.
	metas   map[string]*runMeta
	objects chain.Objects
}

// runMeta is a scenario's labels and annotations as its newest record has them.
type runMeta struct {
	labelsRaw, annotationsRaw []byte
	labels, annotations       map[string]string
	// fresh: the record just read is the first of its scenario with these.
	fresh, seen bool
}

// head fills rec with what names a record and decides whether it is in scope: id, scenario,
// labels, annotations, trigger, scheduledFor, operator, result, message, times and the chain
// fields. Labels and annotations are shared with other records of the scenario: read them,
// never change them.
func (rr *runReader) head(raw []byte, f *chain.Fields, rec *drill.Record) (*runMeta, error) {
	if f.Len() == 0 {
		// The verification could not parse it; encoding/json says why, or reads it after all.
		if err := decodeRecord(raw, rec); err != nil {
			return nil, err
		}
		return &runMeta{labels: rec.Labels, annotations: rec.Annotations, fresh: true}, nil
	}
	var r strictReader
	rec.ID, rec.Scenario, rec.Trigger, rec.Operator = r.str(f, "id"), r.str(f, "scenario"), r.str(f, "trigger"), r.str(f, "operator")
	rec.Result, rec.Message = drill.Result(r.str(f, "result")), r.str(f, "message")
	rec.PrevHash, rec.Hash, rec.Signature = r.str(f, "prevHash"), r.str(f, "hash"), r.str(f, "signature")
	started, finished, scheduled := r.str(f, "startedAt"), r.str(f, "finishedAt"), r.str(f, "scheduledFor")
	if r.err != nil {
		return nil, r.err
	}
	var err error
	if rec.StartedAt, err = time.Parse(time.RFC3339Nano, started); err != nil {
		return nil, fmt.Errorf("startedAt: %w", err)
	}
	if rec.FinishedAt, err = optionalTime(finished); err != nil {
		return nil, fmt.Errorf("finishedAt: %w", err)
	}
	if rec.ScheduledFor, err = optionalTime(scheduled); err != nil {
		return nil, fmt.Errorf("scheduledFor: %w", err)
	}
	m := rr.metas[rec.Scenario]
	if m == nil {
		m = &runMeta{}
		rr.metas[rec.Scenario] = m
	}
	lbls, annotations := f.Raw("labels"), f.Raw("annotations")
	m.fresh = !m.seen || !bytes.Equal(lbls, m.labelsRaw) || !bytes.Equal(annotations, m.annotationsRaw)
	if m.fresh {
		m.seen, m.labels, m.annotations = true, nil, nil
		if lbls != nil {
			if err := json.Unmarshal(lbls, &m.labels); err != nil {
				return nil, fmt.Errorf("labels: %w", err)
			}
		}
		if annotations != nil {
			if err := json.Unmarshal(annotations, &m.annotations); err != nil {
				return nil, fmt.Errorf("annotations: %w", err)
			}
		}
		m.labelsRaw, m.annotationsRaw = append(m.labelsRaw[:0], lbls...), append(m.annotationsRaw[:0], annotations...)
	}
	rec.Labels, rec.Annotations = m.labels, m.annotations
	return m, nil
}

// rest fills in the rest of what the summary reads of a record in scope: RTO, RPO,
// objectives, and the checks without their evidence.
func (rr *runReader) rest(f *chain.Fields, rec *drill.Record) error {
	if f.Len() == 0 {
		return nil // head decoded all of it
	}
	var err error
	if rec.RTOSeconds, err = optionalNumber(f.Raw("rtoSeconds")); err != nil {
		return fmt.Errorf("rtoSeconds: %w", err)
	}
	if rec.RPOSeconds, err = optionalNumber(f.Raw("rpoSeconds")); err != nil {
		return fmt.Errorf("rpoSeconds: %w", err)
	}
	var r strictReader
	if v := f.Raw("objectives"); v != nil && string(v) != "null" {
		err := rr.objects.Each(v, func(o *chain.Fields) error {
			ob := drill.ObjectiveRecord{Name: r.str(o, "name"), Met: string(o.Raw("met")) == "true"}
			target, err := optionalNumber(o.Raw("target"))
			if target != nil {
				ob.TargetSeconds = *target
			}
			if err == nil {
				ob.ActualSeconds, err = optionalNumber(o.Raw("actual"))
			}
			rec.Objectives = append(rec.Objectives, ob)
			return err
		})
		if err != nil {
			return fmt.Errorf("objectives: %w", err)
		}
	}
	if v := f.Raw("checks"); v != nil && string(v) != "null" {
		err := rr.objects.Each(v, func(c *chain.Fields) error {
			rec.Checks = append(rec.Checks, drill.CheckRecord{Name: r.str(c, "name"), Result: drill.Result(r.str(c, "result")), Message: r.str(c, "message")})
			return nil
		})
		if err != nil {
			return fmt.Errorf("checks: %w", err)
		}
	}
	return r.err
}

// strictReader reads string members and remembers the first that is there but no string,
// as encoding/json would refuse it.
type strictReader struct{ err error }

func (r *strictReader) str(f *chain.Fields, name string) string {
	s, ok := f.String(name)
	if !ok && r.err == nil {
		if v := f.Raw(name); v != nil && string(v) != "null" {
			r.err = fmt.Errorf("%s is %.40s, not a string", name, v)
		}
	}
	return s
}

func optionalTime(s string) (*time.Time, error) {
	if s == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return nil, err
	}
	return &t, nil
}

func optionalNumber(v []byte) (*float64, error) {
	if v == nil || string(v) == "null" {
		return nil, nil
	}
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil {
		return nil, err
	}
	return &f, nil
}

// ListedPerScenario is how many of a scenario's runs the HTML lists in full, the last ones to
// finish; besides them it lists the scenario's runs in Summary.Failures and its last success.
// Every run, with all its evidence, is in the JSON report and a bundle's records.jsonl.
const ListedPerScenario = 20

// kept are a scenario's runs that the HTML lists in full, as stored.
type kept struct {
	last     []keptRun // a ring of its last ListedPerScenario runs
	next     int
	failures []keptRun // its runs in Summary.Failures
	success  keptRun   // its newest passed run: the one that last evidenced its controls
}

type keptRun struct {
	pos int // in the chain
	raw []byte
}

// keep offers the scenario's next run; failure and success say whether it became one of the
// summary's failures or the scenario's last success.
func (k *kept) keep(pos int, raw []byte, failure, success bool) {
	if len(k.last) < ListedPerScenario {
		k.last = append(k.last, keptRun{pos: pos, raw: bytes.Clone(raw)})
	} else {
		e := &k.last[k.next]
		e.pos, e.raw = pos, append(e.raw[:0], raw...)
		k.next = (k.next + 1) % ListedPerScenario
	}
	if failure {
		k.failures = append(k.failures, keptRun{pos: pos, raw: bytes.Clone(raw)})
	}
	if success {
		k.success.pos, k.success.raw = pos, append(k.success.raw[:0], raw...)
	}
}

// runs returns the kept runs in chain order, each once.
func (k *kept) runs() []keptRun {
	all := append(append([]keptRun(nil), k.last...), k.failures...)
	if k.success.raw != nil {
		all = append(all, k.success)
	}
	slices.SortFunc(all, func(a, b keptRun) int { return a.pos - b.pos })
	return slices.CompactFunc(all, func(a, b keptRun) bool { return a.pos == b.pos })
}
