package chain

import (
	"bytes"
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
type canonicalizer struct {
	in  []byte
	i   int
	out *bytes.Buffer
	// scratch holds a member's value while an object's members are sorted.
	scratch []byte
	// top receives the top-level string members the verifier needs (id, hash, ...).
	top map[string]string
}

var errSyntax = errors.New("invalid JSON")

type member struct {
	key        string
	start, end int // the member's canonical "key":value in out
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

// value writes the canonical form of the value at c.i; depth guards against stack exhaustion.
func (c *canonicalizer) value(depth int, topLevel bool) error {
	if depth > 10000 {
		return c.fail("nested too deep")
	}
	c.skipSpace()
	if c.i >= len(c.in) {
		return c.fail("unexpected end")
	}
	switch ch := c.in[c.i]; {
	case ch == '{':
		return c.object(depth, topLevel)
	case ch == '[':
		c.i++
		c.out.WriteByte('[')
		c.skipSpace()
		if c.i < len(c.in) && c.in[c.i] == ']' {
			c.i++
			c.out.WriteByte(']')
			return nil
		}
		for first := true; ; first = false {
			if !first {
				c.out.WriteByte(',')
			}
			if err := c.value(depth+1, false); err != nil {
				return err
			}
			c.skipSpace()
			if c.i >= len(c.in) {
				return c.fail("unterminated array")
			}
			if c.in[c.i] == ']' {
				c.i++
				c.out.WriteByte(']')
				return nil
			}
			if c.in[c.i] != ',' {
				return c.fail("want , or ] in array")
			}
			c.i++
		}
	case ch == '"':
		s, err := c.str()
		if err != nil {
			return err
		}
		writeString(c.out, s)
		return nil
	case ch == '-' || (ch >= '0' && ch <= '9'):
		return c.number()
	default:
		for _, lit := range []string{"true", "false", "null"} {
			if bytes.HasPrefix(c.in[c.i:], []byte(lit)) {
				c.i += len(lit)
				c.out.WriteString(lit)
				return nil
			}
		}
		return c.fail("unexpected character")
	}
}

func (c *canonicalizer) object(depth int, topLevel bool) error {
	c.i++ // {
	c.skipSpace()
	var members []member
	base := c.out.Len()
	if c.i < len(c.in) && c.in[c.i] == '}' {
		c.i++
		c.out.WriteString("{}")
		return nil
	}
	for {
		c.skipSpace()
		if c.i >= len(c.in) || c.in[c.i] != '"' {
			return c.fail("want a string key in object")
		}
		key, err := c.str()
		if err != nil {
			return err
		}
		c.skipSpace()
		if c.i >= len(c.in) || c.in[c.i] != ':' {
			return c.fail("want : after object key")
		}
		c.i++
		start := c.out.Len()
		writeString(c.out, key)
		c.out.WriteByte(':')
		c.skipSpace()
		if _, want := c.top[key]; want && topLevel && c.i < len(c.in) && c.in[c.i] == '"' {
			s, err := c.str()
			if err != nil {
				return err
			}
			writeString(c.out, s)
			c.top[key] = s
		} else if err := c.value(depth+1, false); err != nil {
			return err
		}
		if topLevel && (key == hashField || key == signatureField) {
			c.out.Truncate(start) // left out of the encoding
		} else {
			members = append(members, member{key: key, start: start, end: c.out.Len()})
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
	// Sort the members by key; of duplicate keys the last wins, as in encoding/json.
	slices.SortStableFunc(members, func(a, b member) int { return cmpString(a.key, b.key) })
	c.scratch = append(c.scratch[:0], c.out.Bytes()[base:]...)
	c.out.Truncate(base)
	c.out.WriteByte('{')
	n := 0
	for i, m := range members {
		if i+1 < len(members) && members[i+1].key == m.key {
			continue
		}
		if n > 0 {
			c.out.WriteByte(',')
		}
		n++
		c.out.Write(c.scratch[m.start-base : m.end-base])
	}
	c.out.WriteByte('}')
	return nil
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
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
	c.out.Write(c.in[start:c.i])
	return nil
}

// str decodes the JSON string at c.i as encoding/json does.
func (c *canonicalizer) str() (string, error) {
	c.i++ // "
	start := c.i
	// Fast path: no escapes and plain ASCII or valid UTF-8.
	for c.i < len(c.in) {
		ch := c.in[c.i]
		if ch == '"' {
			if s := c.in[start:c.i]; utf8.Valid(s) {
				c.i++
				return string(s), nil
			}
			break // invalid UTF-8: each bad byte becomes U+FFFD, below
		}
		if ch == '\\' || ch < 0x20 {
			break
		}
		c.i++
	}
	c.i = start
	var b []byte
	for {
		if c.i >= len(c.in) {
			return "", c.fail("unterminated string")
		}
		ch := c.in[c.i]
		switch {
		case ch == '"':
			c.i++
			return string(b), nil
		case ch < 0x20:
			return "", c.fail("control character in string")
		case ch == '\\':
			if c.i+1 >= len(c.in) {
				return "", c.fail("unterminated string")
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
					return "", c.fail("invalid \\u escape")
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
				return "", c.fail("invalid escape")
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

// canonicalRecord returns the canonical encoding of a record's JSON and, in top, the values of
// the top-level string members named by top's keys.
func canonicalRecord(raw []byte, top map[string]string) ([]byte, error) {
	var out bytes.Buffer
	out.Grow(len(raw))
	c := canonicalizer{in: raw, out: &out, top: top}
	c.skipSpace()
	if c.i >= len(raw) || raw[c.i] != '{' {
		if c.i < len(raw) && (raw[c.i] == '[' || raw[c.i] == '"') {
			return nil, errors.New("record is not a JSON object")
		}
		return nil, fmt.Errorf("record is not valid JSON: %w", c.fail("want an object"))
	}
	if err := c.value(0, true); err != nil {
		return nil, fmt.Errorf("record is not valid JSON: %w", err)
	}
	c.skipSpace()
	if c.i != len(raw) {
		return nil, errors.New("record is not valid JSON: data after the object")
	}
	return out.Bytes(), nil
}
