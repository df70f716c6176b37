package report

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	_ "embed" // verify-chain.py
	"fmt"
	"io"
	"os"
	"time"
)

// verifyScript is docs/history.md's script that verifies records.jsonl without firedrill
// (TestBundleScriptIsTheDocumented keeps the two the same).
//
//go:embed verify-chain.py
var verifyScript []byte

// BundleFile is one extra file of a bundle, such as the public key.
type BundleFile struct {
	Name string
	Data []byte
}

// Bundle writes a tar.gz for handing to an auditor: report.html (which links the next two),
// report.json, records.jsonl (the chain segment of the period, as stored), verify.txt (the
// integrity check's result — the same Verify as `history verify` — and how to repeat it),
// verify-chain.py (which checks records.jsonl without firedrill) and extra files (the
// public key). Each report is rendered to a temporary
// file first, so that a bundle of any size needs no more memory than one report.
func (r *Report) Bundle(ctx context.Context, w io.Writer, extra ...BundleFile) error {
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	now := r.Summary.GeneratedAt
	add := func(name string, render func(io.Writer) error) error {
		tmp, err := os.CreateTemp("", "firedrill-bundle-*")
		if err != nil {
			return err
		}
		defer os.Remove(tmp.Name())
		defer tmp.Close()
		if err := render(tmp); err != nil {
			return fmt.Errorf("bundle %s: %w", name, err)
		}
		size, err := tmp.Seek(0, io.SeekCurrent)
		if err != nil {
			return err
		}
		if _, err := tmp.Seek(0, io.SeekStart); err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: size, ModTime: now, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err = io.Copy(tw, tmp)
		return err
	}
	files := []struct {
		name   string
		render func(io.Writer) error
	}{
		{"report.html", func(w io.Writer) error {
			bw := bufio.NewWriterSize(w, 64<<10)
			if err := r.html(bw, true); err != nil {
				return err
			}
			return bw.Flush()
		}},
		{"report.json", func(w io.Writer) error { return r.Write(ctx, "json", w) }},
		{"records.jsonl", func(w io.Writer) error { return r.Records(ctx, w) }},
		{"verify.txt", func(w io.Writer) error { _, err := io.WriteString(w, r.VerifyText()); return err }},
		{"verify-chain.py", func(w io.Writer) error { _, err := w.Write(verifyScript); return err }},
	}
	for _, f := range files {
		if err := add(f.name, f.render); err != nil {
			return err
		}
	}
	for _, f := range extra {
		if err := add(f.Name, func(w io.Writer) error { _, err := io.Copy(w, bytes.NewReader(f.Data)); return err }); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

// VerifyText is verify.txt of a bundle: what the integrity check found and how to repeat it.
func (r *Report) VerifyText() string {
	s := r.Summary
	in := s.Integrity
	verdict := "INTACT"
	if !in.Intact {
		verdict = "TAMPERED"
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "firedrill history verification, %s\n\n", s.GeneratedAt.Format(time.RFC3339))
	fmt.Fprintf(&b, "result:       %s\n%s\n\n", verdict, in.Statement)
	fmt.Fprintf(&b, "checked:      every record's hash and link to the one before, signatures when a key was\n"+
		"              given, and the history's columns that copy record fields for queries: what\n"+
		"              'firedrill history verify' checks\n")
	fmt.Fprintf(&b, "records:      %d in the history\nchain head:   %s\n", in.Records, orDash(in.ChainHead))
	if in.SignaturesChecked {
		fmt.Fprintf(&b, "signatures:   verified, key %s\n", in.KeyFingerprint)
	} else {
		fmt.Fprintf(&b, "signatures:   not checked (%d signed)\n", in.Signed)
	}
	fmt.Fprintf(&b, "\nreport scope: %s (%d runs)\n", s.Scope, s.Runs)
	if seg := s.Segment; seg.First > 0 {
		after := seg.AfterHash
		if after == "" {
			after = "(genesis)"
		}
		fmt.Fprintf(&b, "records.jsonl: chain records %d to %d, starting after %s and ending at %s\n", seg.First, seg.Last, after, seg.LastHash)
	}
	fmt.Fprintf(&b, "\nre-verify the whole history:  %s\n", in.VerifyCommand)
	fmt.Fprintf(&b, "re-verify records.jsonl without firedrill (hashes, links and signatures; Python 3, the key needs the\n"+
		"cryptography package):\n  python3 verify-chain.py records.jsonl [firedrill-signing.pub]\n")
	return b.String()
}
