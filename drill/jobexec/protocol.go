package jobexec

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/firedrill-dev/firedrill/drill"
)

// LinePrefix starts every line of a drill Job's log that carries its record; the rest of the
// log is the drill's progress, for people (kubectl logs).
const LinePrefix = "firedrill.dev/record "

// Kinds of record lines, as drill.Recorder's methods.
const (
	KindBegin  = "begin"
	KindUpdate = "update"
	KindFinish = "finish"
)

// Line is one record line: Seq counts the lines of a run from 1, so that serve, reading the
// log again after a dropped connection, skips what it has.
type Line struct {
	Seq    int           `json:"seq"`
	Kind   string        `json:"kind"`
	Record *drill.Record `json:"record"`
}

// ParseLine reads a record line; ok is false for any other line of the log (progress). A line
// with the prefix that does not parse is an error.
func ParseLine(s string) (l Line, ok bool, err error) {
	s = strings.TrimRight(s, "\r\n")
	i := strings.Index(s, LinePrefix)
	if i < 0 {
		return Line{}, false, nil
	}
	if err := json.Unmarshal([]byte(s[i+len(LinePrefix):]), &l); err != nil {
		return Line{}, true, fmt.Errorf("record line: %w", err)
	}
	switch {
	case l.Kind != KindBegin && l.Kind != KindUpdate && l.Kind != KindFinish:
		return Line{}, true, fmt.Errorf("record line %d: kind %q is not begin, update or finish", l.Seq, l.Kind)
	case l.Record == nil:
		return Line{}, true, fmt.Errorf("record line %d: no record", l.Seq)
	case l.Seq < 1:
		return Line{}, true, fmt.Errorf("record line: seq %d, want 1 or more", l.Seq)
	}
	return l, true, nil
}

// LineRecorder is the drill.Recorder of `firedrill run-job`: it writes each record as one line
// on w (the pod's stdout), which serve reads back through the Kubernetes API. It holds no
// credential and links nothing into the hash chain: serve does, as the chain's one writer.
type LineRecorder struct {
	mu  sync.Mutex
	w   io.Writer
	seq int
	// Amend, when set, may change the final record before it is written (run-job says why a
	// run was interrupted).
	Amend func(*drill.Record)
}

var _ drill.Recorder = (*LineRecorder)(nil)

// NewLineRecorder writes record lines to w.
func NewLineRecorder(w io.Writer) *LineRecorder { return &LineRecorder{w: w} }

func (r *LineRecorder) Begin(_ context.Context, rec *drill.Record) error {
	return r.write(KindBegin, rec)
}
func (r *LineRecorder) Update(_ context.Context, rec *drill.Record) error {
	return r.write(KindUpdate, rec)
}
func (r *LineRecorder) Finish(_ context.Context, rec *drill.Record) error {
	if r.Amend != nil {
		r.Amend(rec)
	}
	return r.write(KindFinish, rec)
}

func (r *LineRecorder) write(kind string, rec *drill.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	b, err := json.Marshal(Line{Seq: r.seq, Kind: kind, Record: rec})
	if err != nil {
		return fmt.Errorf("record line: %w", err)
	}
	var buf bytes.Buffer
	buf.Grow(len(LinePrefix) + len(b) + 1)
	buf.WriteString(LinePrefix)
	buf.Write(b)
	buf.WriteByte('\n')
	// One write per line: the container runtime never interleaves it with stderr's.
	if _, err := r.w.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("write record line: %w", err)
	}
	return nil
}
