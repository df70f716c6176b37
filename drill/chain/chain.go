// Package chain makes the run history tamper-evident: every finished record carries the
// SHA-256 hash of its canonical encoding and the hash of the record finished before it
// (prevHash), and optionally an ed25519 signature of its hash. Verify walks the records in
// chain order and names the first one that was modified, deleted, inserted, reordered or
// badly signed. docs/history.md describes the encoding so that an auditor can recompute it
// without firedrill.
//
// The hash is computed over the record's JSON as the history stores it, not over Go values,
// so that a record written by a newer firedrill (with fields this one does not know) still
// verifies.
package chain

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"

	"github.com/firedrill-dev/firedrill/drill"
)

// Genesis is the prevHash of the first record of a chain.
const Genesis = ""

// Fields left out of the canonical encoding: the hash cannot cover itself, and the signature
// signs the hash.
const (
	hashField      = "hash"
	signatureField = "signature"
)

// Canonical returns the canonical encoding of a stored record's JSON: the top-level "hash" and
// "signature" members removed, object keys sorted by code point, no insignificant whitespace,
// numbers exactly as written, strings escaped only where JSON requires it (", \, and control
// characters: \b \f \n \r \t, others as \u00xx) and otherwise kept as UTF-8.
func Canonical(raw []byte) ([]byte, error) {
	var c canonicalizer
	if err := c.record(raw); err != nil {
		return nil, err
	}
	return c.out, nil
}

// canonicalSlow is Canonical through encoding/json: the reference the fast one is tested
// against.
func canonicalSlow(raw []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("record is not valid JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("record is not valid JSON: data after the object")
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("record is not a JSON object")
	}
	delete(obj, hashField)
	delete(obj, signatureField)
	var b bytes.Buffer
	writeCanonical(&b, obj)
	return b.Bytes(), nil
}

func writeCanonical(b *bytes.Buffer, v any) {
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys) // bytewise UTF-8 order is code point order
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			b.Write(appendString(nil, []byte(k)))
			b.WriteByte(':')
			writeCanonical(b, v[k])
		}
		b.WriteByte('}')
	case []any:
		b.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			writeCanonical(b, e)
		}
		b.WriteByte(']')
	case string:
		b.Write(appendString(nil, []byte(v)))
	case json.Number:
		b.WriteString(string(v))
	case bool:
		b.WriteString(strconv.FormatBool(v))
	case nil:
		b.WriteString("null")
	}
}

// HashJSON returns the hex SHA-256 of the canonical encoding of a stored record's JSON.
func HashJSON(raw []byte) (string, error) {
	c, err := Canonical(raw)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(c)
	return hex.EncodeToString(sum[:]), nil
}

// Hash returns the hash of r as the history stores it: its JSON encoding (encoding/json, the
// way the store writes it) in canonical form. r's times must already be what is stored (UTC).
func Hash(r *drill.Record) (string, error) {
	raw, err := json.Marshal(r)
	if err != nil {
		return "", fmt.Errorf("hash run %s: %w", r.ID, err)
	}
	return HashJSON(raw)
}

// Seal links r to the chain: it sets r.PrevHash to prev (the hash of the record finished just
// before, or Genesis), r.Hash to the hash of the result and, when signer is not nil,
// r.Signature. Seal r exactly as it will be stored: any later change breaks the chain.
func Seal(r *drill.Record, prev string, signer *Signer) error {
	r.PrevHash, r.Hash, r.Signature = prev, "", ""
	h, err := Hash(r)
	if err != nil {
		return err
	}
	r.Hash = h
	r.Signature, err = sign(signer, h, "run "+r.ID)
	return err
}
