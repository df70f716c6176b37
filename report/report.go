package report

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/firedrill-dev/firedrill/drill"
	"github.com/firedrill-dev/firedrill/drill/history"
)

// Formats are the report formats, as --format takes them.
var Formats = []string{"html", "json", "junit", "markdown", "csv"}

// Source is the history a report reads; *history.Store is one. A report reads it once to
// verify and summarise it, and once more for each listing of every run in scope (JSON,
// Markdown, CSV, JUnit), one record at a time.
type Source interface {
	// Verify is drill/history's: it verifies the whole history — the same check as
	// `firedrill history verify` — and passes every record to o.Each in the same read.
	Verify(ctx context.Context, o history.VerifyOptions) (history.Verification, error)
	// WalkRaw calls fn with every finished record in chain order, as stored.
	WalkRaw(ctx context.Context, fn func(raw []byte) error) error
}

// Report is a summarised period of the history, ready to be rendered in any format. Memory
// does not grow with the number of runs: the HTML lists a bounded set of them (kept from the
// summary pass), and the formats that list every run stream them from the Source again.
type Report struct {
	src     Source
	opts    Options
	Summary *Summary
	// inScope marks the chain positions of the runs in scope, so that listings need not
	// decode a record to know whether it belongs.
	inScope bitset
	// listed are the runs the HTML shows in full, by scenario.
	listed map[string]*kept
}

// New reads the history once: it verifies it (the integrity statement), summarises the runs in
// scope and keeps the few that the HTML lists in full.
func New(ctx context.Context, src Source, o Options) (*Report, error) {
	r := &Report{src: src, opts: o}
	if err := r.summarize(ctx); err != nil {
		return nil, fmt.Errorf("summarise the history: %w", err)
	}
	return r, nil
}

// Write renders the report in format, one of Formats.
func (r *Report) Write(ctx context.Context, format string, w io.Writer) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	var err error
	switch format {
	case "html":
		err = r.HTML(ctx, bw)
	case "json":
		err = r.JSON(ctx, bw)
	case "junit":
		err = r.JUnit(ctx, bw)
	case "markdown", "md":
		err = r.Markdown(ctx, bw)
	case "csv":
		err = r.CSV(ctx, bw)
	default:
		return fmt.Errorf("unknown report format %q", format)
	}
	if err != nil {
		return err
	}
	return bw.Flush()
}

// JSONSchema identifies the JSON report's shape (docs/reports.md).
const JSONSchema = "firedrill.dev/report/v1"

// JSON writes {"schema", "summary", "records"}: the summary, then every record in scope as the
// history stores it (hash and signature included, so each can be re-verified on its own).
func (r *Report) JSON(ctx context.Context, w io.Writer) error {
	sum, err := json.MarshalIndent(r.Summary, "  ", "  ")
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "{\n  \"schema\": %q,\n  \"summary\": %s,\n  \"records\": [", JSONSchema, sum)
	n := 0
	err = r.eachRawInScope(ctx, func(raw []byte) error {
		if n > 0 {
			io.WriteString(w, ",")
		}
		n++
		io.WriteString(w, "\n    ")
		_, err := w.Write(raw)
		return err
	})
	if err != nil {
		return err
	}
	if n > 0 {
		io.WriteString(w, "\n  ")
	}
	_, err = io.WriteString(w, "]\n}\n")
	return err
}

// Records writes the chain segment that holds the runs in scope (Summary.Segment) as JSON
// lines, exactly as stored, in chain order: the input docs/history.md's script verifies. It
// includes the runs out of scope that finished in between, since the chain links through them.
func (r *Report) Records(ctx context.Context, w io.Writer) error {
	seg := r.Summary.Segment
	if seg.First == 0 {
		return nil
	}
	pos := 0
	err := r.src.WalkRaw(ctx, func(raw []byte) error {
		pos++
		if pos < seg.First {
			return nil
		}
		if pos > seg.Last {
			return errDone
		}
		if _, err := w.Write(raw); err != nil {
			return err
		}
		_, err := io.WriteString(w, "\n")
		return err
	})
	if errors.Is(err, errDone) {
		return nil
	}
	return err
}

// errDone ends a walk early.
var errDone = errors.New("done")

// eachRawInScope calls fn with every record in scope, in chain order, as stored.
func (r *Report) eachRawInScope(ctx context.Context, fn func(raw []byte) error) error {
	pos := 0
	err := r.src.WalkRaw(ctx, func(raw []byte) error {
		pos++
		if pos > r.Summary.Segment.Last {
			return errDone // finished after the summary was made
		}
		if !r.inScope.has(pos) {
			return nil
		}
		return fn(raw)
	})
	if errors.Is(err, errDone) {
		return nil
	}
	return err
}

// eachInScope is eachRawInScope with each record decoded.
func (r *Report) eachInScope(ctx context.Context, fn func(rec *drill.Record) error) error {
	return r.eachRawInScope(ctx, func(raw []byte) error {
		var rec drill.Record
		if err := decodeRecord(raw, &rec); err != nil {
			return fmt.Errorf("stored record: %w", err)
		}
		return fn(&rec)
	})
}

// bitset is a set of chain positions.
type bitset []uint64

func (b *bitset) add(i int) {
	for i/64 >= len(*b) {
		*b = append(*b, 0)
	}
	(*b)[i/64] |= 1 << (i % 64)
}

func (b bitset) has(i int) bool { return i/64 < len(b) && b[i/64]&(1<<(i%64)) != 0 }
