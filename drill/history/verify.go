package history

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/firedrill-dev/firedrill/drill/chain"
)

// Verification is what Verify found: the one statement of a history's integrity, which
// `history verify` prints, every report states and every evidence bundle carries.
type Verification struct {
	// Intact: the chain is unbroken, every signature required verifies, the columns that copy
	// a record's fields agree with it, and every head given in VerifyOptions.Contains is there.
	Intact bool `json:"intact"`
	chain.Result
	// Problem is Break in words; empty when intact.
	Problem string `json:"problem,omitempty"`
	// Message is the verdict in one line, as `history verify` prints it.
	Message string `json:"message"`
}

// VerifyOptions say what Verify demands besides an unbroken chain, and who reads along.
type VerifyOptions struct {
	// PublicKey, when set, makes a valid signature of this key required on every record.
	PublicKey ed25519.PublicKey
	// Contains are chain heads noted earlier (in a report, an earlier verify) that must still
	// be in the chain; one that is not means records were cut off its end or the history was
	// replaced.
	Contains []string
	// Each, when set, is called with every finished record in chain order, from the same read:
	// raw is the record as stored and f locates its top-level members (none when it is not a
	// JSON object); both are valid only during the call. Records after a break are passed on
	// too. An error from Each ends Verify and is returned.
	Each func(raw []byte, f *chain.Fields) error
}

// Verify reads every finished record once, in chain order, and checks the hash chain, the
// signatures (with o.PublicKey) and that the columns which copy a record's fields for
// queries still agree with the record (docs/history.md). The Verification names the first
// record that breaks any of them and how; an error means the history could not be read.
func (s *Store) Verify(ctx context.Context, o VerifyOptions) (Verification, error) {
	pub := o.PublicKey
	if len(pub) == 0 {
		pub = nil // an empty key is no key, not one that nothing verifies with
	}
	v := chain.NewVerifier(pub)
	var row columns
	v.Also(row.disagreement)
	missing := map[string]bool{}
	for _, h := range o.Contains {
		missing[strings.ToLower(h)] = true
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+copiedColumns+`, record FROM runs WHERE seq IS NOT NULL ORDER BY seq`)
	if err != nil {
		return Verification{}, fmt.Errorf("read the history: %w", s.d.describe(err))
	}
	copies := row.values()
	ra := startReadAhead(rows, len(copies)+1)
	defer ra.Close()
	for ra.Next() {
		if err := ctx.Err(); err != nil { // the rows read ahead would still come
			return Verification{}, fmt.Errorf("read the history: %w", err)
		}
		values := ra.Row()
		for i, c := range copies {
			*c = values[i]
		}
		raw := values[len(copies)]
		if v.Add(raw) == nil {
			delete(missing, v.Result().ChainHead)
		} else if o.Each == nil {
			break // nothing after the first broken record counts
		}
		if o.Each != nil {
			if err := o.Each(raw, v.Fields()); err != nil {
				return Verification{}, err
			}
		}
	}
	if err := ra.Err(); err != nil {
		return Verification{}, fmt.Errorf("read the history: %w", s.d.describe(err))
	}
	res := v.Result()
	if res.OK() && len(missing) > 0 {
		heads := make([]string, 0, len(missing))
		for h := range missing {
			heads = append(heads, h)
		}
		sort.Strings(heads)
		// A head noted earlier is gone: the chain was cut back, or replaced wholesale.
		detail := fmt.Sprintf("the chain no longer holds %s, a head given with --contains: records were removed from its end, or the history was replaced", strings.Join(heads, ", "))
		if c := res.Checkpoint; c != nil {
			detail += fmt.Sprintf(", or it was pruned: the chain starts at checkpoint %s, whose archive holds the %d runs before it", c.ID, c.Runs)
		}
		res.Break = &chain.Break{Position: res.Records, ID: "-", Scenario: "-", Problem: chain.Relinked, Detail: detail}
	}
	out := Verification{Intact: res.OK(), Result: res, Message: res.String()}
	if res.Break != nil {
		out.Problem = res.Break.Error()
	}
	return out, nil
}

// copiedColumns are the columns of runs that copy one of the record's top-level fields, in
// the order columns.dest scans them. runner_host, runner_pid and runner_start_ticks copy
// nested fields and are not compared; nothing reads them.
const copiedColumns = `id, scenario, trigger, operator, result, message, started_at, finished_at, scheduled_for,
	rto_seconds, rpo_seconds, prev_hash, hash, signature, kind`

// columns is one row's copies as text (numbers as strconv formats them; NULL: nil).
type columns struct {
	id, scenario, trigger, operator, result, message []byte
	startedAt, finishedAt, scheduledFor              []byte
	rto, rpo                                         []byte
	prevHash, hash, signature                        []byte
	kind                                             []byte
}

// values are the fields in copiedColumns order.
func (c *columns) values() []*[]byte {
	return []*[]byte{&c.id, &c.scenario, &c.trigger, &c.operator, &c.result, &c.message, &c.startedAt, &c.finishedAt,
		&c.scheduledFor, &c.rto, &c.rpo, &c.prevHash, &c.hash, &c.signature, &c.kind}
}

// disagreement says which of the row's copies differ from the record they copy, or "" when
// none does. A changed copy misleads the queries that filter and sort on it (history
// --result, --scenario, the API's pages) while the record itself is intact.
func (c *columns) disagreement(f *chain.Fields) string {
	var diffs []string
	differs := func(column string, got []byte, want string) {
		diffs = append(diffs, fmt.Sprintf("column %s is %s, the record says %s", column, quoted(got), quoted([]byte(want))))
	}
	for _, t := range []struct {
		column, field string
		value         []byte
	}{
		{"id", "id", c.id}, {"scenario", "scenario", c.scenario}, {"trigger", "trigger", c.trigger},
		{"operator", "operator", c.operator}, {"result", "result", c.result}, {"message", "message", c.message},
		{"prev_hash", "prevHash", c.prevHash}, {"hash", "hash", c.hash}, {"signature", "signature", c.signature},
	} {
		if want, _ := f.Text(t.field); string(t.value) != string(want) {
			differs(t.column, t.value, string(want))
		}
	}
	// A run's record has no kind; the column says "run". Listings of runs go by this copy.
	want, ok := f.Text("kind")
	if !ok {
		want = []byte(kindRun)
	}
	if string(c.kind) != string(want) {
		differs("kind", c.kind, string(want))
	}
	for _, t := range []struct {
		column, field string
		value         []byte
	}{{"started_at", "startedAt", c.startedAt}, {"finished_at", "finishedAt", c.finishedAt}, {"scheduled_for", "scheduledFor", c.scheduledFor}} {
		want, _ := f.Text(t.field)
		if !sameTime(t.value, want) {
			differs(t.column, t.value, string(want))
		}
	}
	for _, t := range []struct {
		column, field string
		value         []byte
	}{{"rto_seconds", "rtoSeconds", c.rto}, {"rpo_seconds", "rpoSeconds", c.rpo}} {
		if want := f.Raw(t.field); !sameNumber(t.value, want) {
			diffs = append(diffs, fmt.Sprintf("column %s is %s, the record says %s", t.column, orNull(t.value), orNull(want)))
		}
	}
	if len(diffs) == 0 {
		return ""
	}
	return strings.Join(diffs, "; ") + ": the runs table was edited around the record, which misleads the queries that filter and sort on these copies, such as 'firedrill history --result' (the record itself is intact)"
}

// sameTime compares a time column (NULL: nil) with the record's RFC 3339 text (nil: absent).
func sameTime(column, record []byte) bool {
	if column == nil || len(record) == 0 {
		return column == nil && len(record) == 0
	}
	a, err1 := time.Parse(time.RFC3339Nano, string(column))
	b, err2 := time.Parse(time.RFC3339Nano, string(record))
	return err1 == nil && err2 == nil && a.Equal(b)
}

// sameNumber compares a REAL column (NULL: nil) with the record's JSON number (null or
// absent: NULL). The column holds the float64 the record's number was written from.
func sameNumber(column, record []byte) bool {
	if len(record) == 0 || string(record) == "null" {
		return column == nil
	}
	a, err1 := strconv.ParseFloat(string(column), 64)
	b, err2 := strconv.ParseFloat(string(record), 64)
	return column != nil && err1 == nil && err2 == nil && a == b
}

func quoted(b []byte) string {
	if b == nil {
		return "NULL"
	}
	return strconv.Quote(string(b))
}

func orNull(b []byte) string {
	if b == nil {
		return "NULL"
	}
	return string(b)
}
