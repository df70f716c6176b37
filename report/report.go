package report

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/firedrill-dev/firedrill/drill"
)

// Formats are the report formats, as --format takes them.
var Formats = []string{"html", "json", "junit", "markdown", "csv"}

// Report is a summarised period of the history, ready to be rendered in any format. Each
// renderer streams the runs from the Source again, so memory does not grow with their number.
type Report struct {
	src     Source
	opts    Options
	Summary *Summary
}

// New reads the history once to verify its chain and summarise the runs in scope.
func New(ctx context.Context, src Source, o Options) (*Report, error) {
	s, err := Summarize(ctx, src, o)
	if err != nil {
		return nil, fmt.Errorf("summarise the history: %w", err)
	}
	return &Report{src: src, opts: o, Summary: s}, nil
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
	err = eachInScope(ctx, r.src, r.opts.Scope, func(_ *drill.Record, raw []byte) error {
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
	err := r.src(ctx, func(raw []byte) error {
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
