package chain

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// canonicalizer writes the canonical encoding of one JSON text in a single pass, without
// building Go values: the history is verified record by record, and this is its inner loop.
// It accepts exactly what encoding/json accepts and decodes strings the same way (invalid
// UTF-8 and lone surrogates become U+FFFD); chain_test.go checks it against encoding/json.
//
// It appends to out and keeps its buffers between records, so that verifying a history
// allocates next to nothing per record.
type canonicalizer struct {
	in  []byte
	i   int
	out []byte
	// scratch holds an object's members while they are written in key order.
	scratch []byte
	// members is a stack: each object's members sit above those of the objects around it.
	members []member
	// keys holds the object keys that had escapes, decoded; other keys are read from in.
	keys []byte
	// orders remembers in which order recent object shapes (their key sequences) are
	// written: records of a history have a handful of shapes (a record, a step, a check...),
	// so sorting is mostly a lookup.
	orders    []order
	nextOrder int
	sig       []byte
	// fields, when not nil, receives where the top-level members are in the input.
	fields *Fields
	// scan: the input is only read (Objects), its members are not written in key order.
	scan bool
}

// order is how the members of objects with one key sequence are written: the indices of
// the members to write, in key order, duplicates left out.
type order struct {
	keys    []byte // the key sequence, each key length-prefixed
	indices []int32
}

var errSyntax = errors.New("invalid JSON")

// maxDepth bounds nesting, as a guard against stack exhaustion.
const maxDepth = 10000

// member is one member of an object being written. It holds no pointers, so that sorting
// members is plain copying.
type member struct {
	k0, k1     int32 // the decoded key: in[k0:k1], or keys[k0:k1] when escaped
	escaped    bool
	start, end int32 // the member's canonical "key":value in out
}

func (c *canonicalizer) key(m member) []byte {
	if m.escaped {
		return c.keys[m.k0:m.k1]
	}
	return c.in[m.k0:m.k1]
}

func (c *canonicalizer) skipSpace() {
	for c.i < len(c.in) {
		switch c.in[c.i] {
		case ' ', '\t', '\n', '\r':
			c.i++
		default:
			return
		}
	}
}

func (c *canonicalizer) fail(what string) error {
	return fmt.Errorf("%w: %s at offset %d", errSyntax, what, c.i)
}

// value writes the canonical form of the value at c.i.
func (c *canonicalizer) value(depth int) error {
	if depth > maxDepth {
		return c.fail("nested too deep")
	}
	c.skipSpace()
	if c.i >= len(c.in) {
		return c.fail("unexpected end")
	}
	switch ch := c.in[c.i]; {
	case ch == '{':
		return c.object(depth, false)
	case ch == '[':
		return c.array(depth)
	case ch == '"':
		s, verbatim, err := c.str()
		if err != nil {
			return err
		}
		c.writeString(s, verbatim)
		return nil
	case ch == '-' || (ch >= '0' && ch <= '9'):
		return c.number()
	case ch == 't':
		return c.literal("true")
	case ch == 'f':
		return c.literal("false")
	case ch == 'n':
		return c.literal("null")
	}
	return c.fail("unexpected character")
}

func (c *canonicalizer) literal(lit string) error {
	if !bytes.HasPrefix(c.in[c.i:], []byte(lit)) {
		return c.fail("unexpected character")
	}
	c.i += len(lit)
	c.out = append(c.out, lit...)
	return nil
}

func (c *canonicalizer) array(depth int) error {
	c.i++ // [
	c.out = append(c.out, '[')
	c.skipSpace()
	if c.i < len(c.in) && c.in[c.i] == ']' {
		c.i++
		c.out = append(c.out, ']')
		return nil
	}
	for {
		if err := c.value(depth + 1); err != nil {
			return err
		}
		c.skipSpace()
		if c.i >= len(c.in) {
			return c.fail("unterminated array")
		}
		switch c.in[c.i] {
		case ']':
			c.i++
			c.out = append(c.out, ']')
			return nil
		case ',':
			c.i++
			c.out = append(c.out, ',')
		default:
			return c.fail("want , or ] in array")
		}
	}
}

// object writes an object's members in key order. Members are written as they come, comma
// separated; only when their keys are out of order (encoding/json writes a struct's fields
// in declaration order) or repeated are they copied out and written again sorted.
func (c *canonicalizer) object(depth int, topLevel bool) error {
	c.i++ // {
	base := len(c.out)
	c.out = append(c.out, '{')
	c.skipSpace()
	if c.i < len(c.in) && c.in[c.i] == '}' {
		c.i++
		c.out = append(c.out, '}')
		return nil
	}
	mbase := len(c.members)
	defer func() { c.members = c.members[:mbase] }()
	sorted := true
	for {
		c.skipSpace()
		if c.i >= len(c.in) || c.in[c.i] != '"' {
			return c.fail("want a string key in object")
		}
		keyAt := c.i + 1
		key, verbatim, err := c.str()
		if err != nil {
			return err
		}
		m := member{k0: int32(keyAt), k1: int32(keyAt + len(key))}
		if !verbatim {
			m = member{k0: int32(len(c.keys)), escaped: true}
			c.keys = append(c.keys, key...)
			m.k1 = int32(len(c.keys))
		}
		c.skipSpace()
		if c.i >= len(c.in) || c.in[c.i] != ':' {
			return c.fail("want : after object key")
		}
		c.i++
		beforeComma := len(c.out)
		if len(c.members) > mbase {
			c.out = append(c.out, ',')
		}
		start := len(c.out)
		c.writeString(key, false)
		c.out = append(c.out, ':')
		c.skipSpace()
		valueAt := c.i
		if err := c.value(depth + 1); err != nil {
			return err
		}
		keep := true
		if topLevel {
			if c.fields != nil {
				if !verbatim {
					key = bytes.Clone(key) // c.keys is reused
				}
				c.fields.list = append(c.fields.list, field{key: key, start: valueAt, end: c.i})
			}
			if string(key) == hashField || string(key) == signatureField {
				c.out = c.out[:beforeComma] // left out of the encoding
				keep = false
			}
		}
		if keep {
			if n := len(c.members); n > mbase && bytes.Compare(c.key(c.members[n-1]), key) >= 0 {
				sorted = false
			}
			m.start, m.end = int32(start), int32(len(c.out))
			c.members = append(c.members, m)
		}
		c.skipSpace()
		if c.i >= len(c.in) {
			return c.fail("unterminated object")
		}
		if c.in[c.i] == '}' {
			c.i++
			break
		}
		if c.in[c.i] != ',' {
			return c.fail("want , or } in object")
		}
		c.i++
	}
	if !sorted && !c.scan {
		c.sortMembers(base, c.members[mbase:])
	}
	c.out = append(c.out, '}')
	return nil
}

// maxOrders bounds the orders a canonicalizer remembers.
const maxOrders = 32

// sortMembers rewrites the members written after out[base] (the '{') in key order; of
// duplicate keys the last wins, as in encoding/json.
func (c *canonicalizer) sortMembers(base int, ms []member) {
	c.sig = c.sig[:0]
	for _, m := range ms {
		k := c.key(m)
		c.sig = binary.AppendUvarint(c.sig, uint64(len(k)))
		c.sig = append(c.sig, k...)
	}
	var indices []int32
	for _, o := range c.orders {
		if bytes.Equal(o.keys, c.sig) {
			indices = o.indices
			break
		}
	}
	if indices == nil {
		all := make([]int32, len(ms))
		for i := range all {
			all[i] = int32(i)
		}
		slices.SortStableFunc(all, func(a, b int32) int { return bytes.Compare(c.key(ms[a]), c.key(ms[b])) })
		for i, x := range all {
			if i+1 < len(all) && bytes.Equal(c.key(ms[all[i+1]]), c.key(ms[x])) {
				continue
			}
			indices = append(indices, x)
		}
		o := order{keys: bytes.Clone(c.sig), indices: indices}
		if len(c.orders) < maxOrders {
			c.orders = append(c.orders, o)
		} else {
			c.orders[c.nextOrder%maxOrders] = o
			c.nextOrder++
		}
	}
	c.scratch = append(c.scratch[:0], c.out[base:]...)
	c.out = c.out[:base+1]
	for n, i := range indices {
		if n > 0 {
			c.out = append(c.out, ',')
		}
		m := ms[i]
		c.out = append(c.out, c.scratch[int(m.start)-base:int(m.end)-base]...)
	}
}

// number copies a JSON number verbatim after checking its grammar.
func (c *canonicalizer) number() error {
	start := c.i
	if c.in[c.i] == '-' {
		c.i++
	}
	digits := func() int {
		n := 0
		for c.i < len(c.in) && c.in[c.i] >= '0' && c.in[c.i] <= '9' {
			c.i++
			n++
		}
		return n
	}
	if c.i < len(c.in) && c.in[c.i] == '0' {
		c.i++
	} else if digits() == 0 {
		return c.fail("invalid number")
	}
	if c.i < len(c.in) && c.in[c.i] == '.' {
		c.i++
		if digits() == 0 {
			return c.fail("invalid number")
		}
	}
	if c.i < len(c.in) && (c.in[c.i] == 'e' || c.in[c.i] == 'E') {
		c.i++
		if c.i < len(c.in) && (c.in[c.i] == '+' || c.in[c.i] == '-') {
			c.i++
		}
		if digits() == 0 {
			return c.fail("invalid number")
		}
	}
	c.out = append(c.out, c.in[start:c.i]...)
	return nil
}

// str decodes the JSON string at c.i as encoding/json does. verbatim says that the string
// is a slice of the input that needs no escaping in the canonical encoding: it has no
// escapes, quotes, backslashes or control characters, and is valid UTF-8 — the common case,
// which costs neither an allocation nor a copy.
func (c *canonicalizer) str() (s []byte, verbatim bool, err error) {
	c.i++ // "
	start := c.i
	if end := bytes.IndexByte(c.in[start:], '"'); end >= 0 {
		span := c.in[start : start+end]
		clean, ascii := true, true
		for _, ch := range span {
			if ch < 0x20 || ch == '\\' {
				clean = false
				break
			}
			if ch >= utf8.RuneSelf {
				ascii = false
			}
		}
		if clean && (ascii || utf8.Valid(span)) {
			c.i = start + end + 1
			return span, true, nil
		}
	}
	var b []byte
	for {
		if c.i >= len(c.in) {
			return nil, false, c.fail("unterminated string")
		}
		ch := c.in[c.i]
		switch {
		case ch == '"':
			c.i++
			return b, false, nil
		case ch < 0x20:
			return nil, false, c.fail("control character in string")
		case ch == '\\':
			if c.i+1 >= len(c.in) {
				return nil, false, c.fail("unterminated string")
			}
			e := c.in[c.i+1]
			c.i += 2
			switch e {
			case '"', '\\', '/':
				b = append(b, e)
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				r, ok := c.hex4()
				if !ok {
					return nil, false, c.fail("invalid \\u escape")
				}
				if utf16.IsSurrogate(r) {
					// A pair decodes to one rune; anything else is U+FFFD (the second
					// escape, if any, is then read on its own).
					save := c.i
					if c.i+1 < len(c.in) && c.in[c.i] == '\\' && c.in[c.i+1] == 'u' {
						c.i += 2
						if r2, ok := c.hex4(); ok {
							if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
								b = utf8.AppendRune(b, dec)
								continue
							}
						}
					}
					c.i = save
					r = utf8.RuneError
				}
				b = utf8.AppendRune(b, r)
			default:
				return nil, false, c.fail("invalid escape")
			}
		case ch < utf8.RuneSelf:
			b = append(b, ch)
			c.i++
		default:
			r, size := utf8.DecodeRune(c.in[c.i:])
			if r == utf8.RuneError && size == 1 {
				b = append(b, "\uFFFD"...)
			} else {
				b = append(b, c.in[c.i:c.i+size]...)
			}
			c.i += size
		}
	}
}

func (c *canonicalizer) hex4() (rune, bool) {
	if c.i+4 > len(c.in) {
		return 0, false
	}
	v, err := strconv.ParseUint(string(c.in[c.i:c.i+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	c.i += 4
	return rune(v), true
}

// writeString writes a decoded string in canonical form; verbatim strings (see str) need no
// escaping.
func (c *canonicalizer) writeString(s []byte, verbatim bool) {
	if verbatim {
		c.out = append(c.out, '"')
		c.out = append(c.out, s...)
		c.out = append(c.out, '"')
		return
	}
	c.out = appendString(c.out, s)
}

// appendString escapes as Python's json.dumps(s, ensure_ascii=False) and RFC 8785 do: ", \
// and control characters, nothing else.
func appendString(out, s []byte) []byte {
	out = append(out, '"')
	from := 0
	for i, ch := range s {
		if ch >= 0x20 && ch != '"' && ch != '\\' {
			continue
		}
		out = append(out, s[from:i]...)
		from = i + 1
		switch ch {
		case '"':
			out = append(out, `\"`...)
		case '\\':
			out = append(out, `\\`...)
		case '\b':
			out = append(out, `\b`...)
		case '\f':
			out = append(out, `\f`...)
		case '\n':
			out = append(out, `\n`...)
		case '\r':
			out = append(out, `\r`...)
		case '\t':
			out = append(out, `\t`...)
		default:
			out = fmt.Appendf(out, `\u%04x`, ch)
		}
	}
	out = append(out, s[from:]...)
	return append(out, '"')
}

// record appends the canonical encoding of a record's JSON to c.out (which it resets) and,
// when c.fields is set, locates its top-level members there.
func (c *canonicalizer) record(raw []byte) error {
	c.in, c.i, c.out, c.keys = raw, 0, c.out[:0], c.keys[:0]
	if c.fields != nil {
		c.fields.raw, c.fields.list = raw, c.fields.list[:0]
	}
	c.skipSpace()
	if c.i >= len(raw) || raw[c.i] != '{' {
		if c.i < len(raw) && (raw[c.i] == '[' || raw[c.i] == '"') {
			return errors.New("record is not a JSON object")
		}
		return fmt.Errorf("record is not valid JSON: %w", c.fail("want an object"))
	}
	if err := c.object(0, true); err != nil {
		return fmt.Errorf("record is not valid JSON: %w", err)
	}
	c.skipSpace()
	if c.i != len(raw) {
		return errors.New("record is not valid JSON: data after the object")
	}
	return nil
}

// Fields locate the top-level members of a record's JSON, as the parse that hashes it found
// them, so that a reader can take what it needs from the record without parsing it again.
// They point into the record's bytes and are valid as long as those are.
type Fields struct {
	raw  []byte
	list []field
}

type field struct {
	key        []byte // decoded
	start, end int    // the value's JSON text in raw
}

// Raw returns the JSON text of the top-level member name exactly as stored, or nil when the
// record has no such member. Of duplicate members the last counts, as in encoding/json.
func (f *Fields) Raw(name string) []byte {
	for i := len(f.list) - 1; i >= 0; i-- {
		if string(f.list[i].key) == name {
			return f.raw[f.list[i].start:f.list[i].end]
		}
	}
	return nil
}

// String returns the top-level member name decoded as a JSON string, and false when the
// record has no such member or it is not a string.
func (f *Fields) String(name string) (string, bool) {
	b, ok := f.Text(name)
	return string(b), ok
}

// Text is String without a copy: the decoded string points into the record when it needed no
// decoding (no escapes, valid UTF-8), which is nearly always.
func (f *Fields) Text(name string) ([]byte, bool) {
	v := f.Raw(name)
	if len(v) == 0 || v[0] != '"' {
		return nil, false
	}
	c := canonicalizer{in: v}
	s, _, err := c.str()
	if err != nil {
		return nil, false
	}
	return s, true
}

// Len is the number of top-level members found; 0 when the record could not be parsed.
func (f *Fields) Len() int { return len(f.list) }

// Objects reads JSON arrays of objects (a record's checks, say), keeping its buffers from one
// array to the next.
type Objects struct {
	c canonicalizer
	f Fields
}

// Each reads raw, a JSON array of objects, and calls fn with the members of each object in
// turn, located as Verifier.Fields locates a record's; f is valid during the call. It returns
// fn's first error, or what makes raw no such array.
func (o *Objects) Each(raw []byte, fn func(f *Fields) error) error {
	c, f := &o.c, &o.f
	c.in, c.i, c.scan, c.fields = raw, 0, true, f
	c.skipSpace()
	if c.i >= len(raw) || raw[c.i] != '[' {
		return c.fail("want an array")
	}
	c.i++
	c.skipSpace()
	if c.i < len(raw) && raw[c.i] == ']' {
		c.i++
	} else {
		for {
			c.skipSpace()
			if c.i >= len(raw) || raw[c.i] != '{' {
				return c.fail("want an object in the array")
			}
			f.raw, f.list, c.out, c.keys = raw, f.list[:0], c.out[:0], c.keys[:0]
			if err := c.object(1, true); err != nil {
				return err
			}
			if err := fn(f); err != nil {
				return err
			}
			c.skipSpace()
			if c.i >= len(raw) {
				return c.fail("unterminated array")
			}
			if raw[c.i] == ']' {
				c.i++
				break
			}
			if raw[c.i] != ',' {
				return c.fail("want , or ] in array")
			}
			c.i++
		}
	}
	c.skipSpace()
	if c.i != len(raw) {
		return c.fail("data after the array")
	}
	return nil
}
