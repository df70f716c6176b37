package history

import (
	"bytes"
	"encoding/json"
	"time"

	"github.com/firedrill-dev/firedrill/drill"
)

// timeLayout is how times are stored in columns: UTC, fixed width, so text order is time order.
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

func dbTime(t time.Time) string {
	return t.UTC().Format(timeLayout)
}

func parseDBTime(s string) (time.Time, error) {
	return time.Parse(timeLayout, s)
}

// runRow is a record turned into column values, in runColumns order.
type runRow struct {
	id   string
	vals []any
}

func (r runRow) insertArgs() []any { return append([]any{r.id}, r.vals...) }
func (r runRow) updateArgs() []any {
	return append(append(make([]any, 0, len(r.vals)+1), r.vals...), r.id)
}

// encode turns r into column values; seq is nil while the run is running. It does not
// change r: the stored copy has its times in UTC and no monotonic clock readings.
func (s *Store) encode(r *drill.Record, seq *int64) (runRow, error) {
	u := inUTC(r)
	js, err := marshal(&u)
	if err != nil {
		return runRow{}, err
	}
	var seqV, finished, scheduled any // NULL unless set
	if seq != nil {
		seqV = *seq
	}
	if u.FinishedAt != nil {
		finished = dbTime(*u.FinishedAt)
	}
	if u.ScheduledFor != nil {
		scheduled = dbTime(*u.ScheduledFor)
	}
	return runRow{id: u.ID, vals: []any{
		seqV, u.Scenario, u.Trigger, u.Operator, string(u.Result), u.Message,
		dbTime(u.StartedAt), finished, nullFloat(u.RTOSeconds), nullFloat(u.RPOSeconds),
		dbTime(s.now()), u.Runner.Host, int64(u.Runner.PID), int64(u.Runner.StartTicks),
		u.PrevHash, u.Hash, u.Signature, string(js), scheduled,
	}}, nil
}

func nullFloat(f *float64) any {
	if f == nil {
		return nil
	}
	return *f
}

// inUTC returns a copy of r with every time in UTC, sharing nothing that it changes.
func inUTC(r *drill.Record) drill.Record {
	u := *r
	u.StartedAt = r.StartedAt.UTC()
	u.FinishedAt = utcPtr(r.FinishedAt)
	u.ScheduledFor = utcPtr(r.ScheduledFor)
	u.Backup.CreatedAt = utcPtr(r.Backup.CreatedAt)
	if r.Steps != nil {
		u.Steps = make([]drill.StepRecord, len(r.Steps))
		for i, st := range r.Steps {
			st.StartedAt = st.StartedAt.UTC()
			st.FinishedAt = utcPtr(st.FinishedAt)
			u.Steps[i] = st
		}
	}
	return u
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

func marshal(v any) ([]byte, error) {
	return json.Marshal(v)
}

// decode reads a stored record. Numbers in evidence come back as json.Number, not float64,
// so that an int64 such as a revision keeps every digit and the record re-encodes to the
// same bytes it was stored as (which the hash chain will depend on).
func decode(b []byte, r *drill.Record) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return dec.Decode(r)
}
