package scenarios

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxNodes bounds the values one document may expand to. Aliases can make a few hundred bytes
// stand for billions of values; no real scenario comes near this.
const maxNodes = 100_000

// checker walks a YAML node tree alongside the Go types it will be decoded into, before yaml.v3
// decodes it. yaml.v3 alone reports a line and a Go type name ("field endpionts not found in
// type scenarios.EtcdTake") and stops at the first bad duration; the checker reports every
// unknown field, wrong type and unparsable value with its field path, and records the line of
// every field for the problems validation finds later.
type checker struct {
	p      *problems
	lines  map[string]int
	active map[*yaml.Node]bool // anchors being expanded, to refuse an alias inside its own anchor
	nodes  int
}

func newChecker(p *problems) *checker {
	return &checker{p: p, lines: map[string]int{}, active: map[*yaml.Node]bool{}}
}

var durationType = reflect.TypeFor[Duration]()

// value checks n against t; path names n's field.
func (c *checker) value(n *yaml.Node, t reflect.Type, path string) {
	n, ok := c.deref(n, path)
	if !ok {
		return
	}
	if n.Anchor != "" {
		c.active[n] = true
		defer delete(c.active, n)
	}
	if isNull(n) {
		if t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct && t.Elem() != durationType {
			// yaml.v3 leaves a nil pointer for `etcdIntegrity:` with nothing after it, and the
			// check or section would silently vanish.
			c.p.at(n.Line, path, "%s: is empty: write {} to use it with its defaults, or remove it", orTop(path))
		}
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if !c.spend(n, path) {
		return
	}
	if tag := n.ShortTag(); strings.HasPrefix(tag, "!!") && tag != ownTag(n.Kind, tag) {
		// yaml.v3 refuses some of these (!!null {}) and reads others as if untagged; either way
		// the tag says something the value is not.
		c.p.at(n.Line, path, "%s: the tag %s does not fit %s: remove it", orTop(path), tag, describe(n))
		return
	}

	switch {
	case t == durationType:
		if n.Kind != yaml.ScalarNode {
			c.wrongKind(n, path, "a duration such as 45m")
			return
		}
		if _, err := ParseDuration(n.Value); err != nil {
			c.p.at(n.Line, path, "%s: %v", path, err)
		}
	case t.Kind() == reflect.Struct:
		c.structure(n, t, path)
	case t.Kind() == reflect.Map:
		c.mapping(n, t, path)
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			c.wrongKind(n, path, "a list")
			return
		}
		for i, item := range n.Content {
			ip := fmt.Sprintf("%s[%d]", path, i)
			c.lines[ip] = item.Line
			c.value(item, t.Elem(), ip)
		}
	default:
		c.scalar(n, t, path)
	}
}

// ownTag is the core tag a node of kind may carry: !!map on a mapping, !!seq on a list; a
// scalar's tag is checked by decoding it.
func ownTag(kind yaml.Kind, tag string) string {
	switch kind {
	case yaml.MappingNode:
		return "!!map"
	case yaml.SequenceNode:
		return "!!seq"
	}
	return tag
}

// spend counts a value visited and says whether the budget allows it; the first time it does
// not, that is a problem.
func (c *checker) spend(n *yaml.Node, path string) bool {
	c.nodes++
	if c.nodes == maxNodes+1 {
		c.p.at(n.Line, path, "the document expands to more than %d values (through aliases and merges): write it out plainly", maxNodes)
	}
	return c.nodes <= maxNodes
}

// deref follows an alias to its anchor, refusing one that contains itself.
func (c *checker) deref(n *yaml.Node, path string) (*yaml.Node, bool) {
	for n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			c.p.at(n.Line, path, "%s: alias *%s has no anchor", orTop(path), n.Value)
			return nil, false
		}
		if c.active[n.Alias] {
			c.p.at(n.Line, path, "%s: alias *%s is used inside its own anchor: write the value out", orTop(path), n.Value)
			return nil, false
		}
		n = n.Alias
	}
	return n, true
}

// structure checks a mapping against the fields of struct type t.
func (c *checker) structure(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind != yaml.MappingNode {
		c.wrongKind(n, path, "a mapping (field: value)")
		return
	}
	fields := yamlFields(t)
	seen := map[string]int{}
	c.pairs(n, path, false, func(k, v *yaml.Node, merged bool) {
		name := k.Value
		f, ok := fields[name]
		if !ok {
			c.p.at(k.Line, joinField(path, name), "%s", unknownField(name, path, fields))
			return
		}
		fp := joinField(path, name)
		if first, dup := seen[name]; dup && !merged {
			c.p.at(k.Line, fp, "%s: written twice (first on line %d): keep one", fp, first)
			return
		}
		if _, dup := seen[name]; dup {
			return // a merged value that an explicit one overrides
		}
		seen[name] = k.Line
		c.lines[fp] = k.Line
		c.value(v, f.Type, fp)
	})
}

// mapping checks a mapping against map type t (string keys).
func (c *checker) mapping(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind != yaml.MappingNode {
		c.wrongKind(n, path, "a mapping (key: value)")
		return
	}
	seen := map[string]int{}
	c.pairs(n, path, false, func(k, v *yaml.Node, merged bool) {
		kp := keyField(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			if !merged {
				c.p.at(k.Line, kp, "%s: written twice (first on line %d): keep one", kp, first)
			}
			return
		}
		seen[k.Value] = k.Line
		c.lines[kp] = k.Line
		c.value(v, t.Elem(), kp)
	})
}

// pairs calls fn for every key and value of mapping n, explicit ones first, then those merged in
// with `<<: *anchor` (YAML's merge key), which explicit keys override.
func (c *checker) pairs(n *yaml.Node, path string, merged bool, fn func(k, v *yaml.Node, merged bool)) {
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merges = append(merges, v)
			continue
		}
		if k.Kind != yaml.ScalarNode || isNull(k) {
			c.p.at(k.Line, path, "%s: keys must be plain names", orTop(path))
			continue
		}
		fn(k, v, merged)
	}
	for _, m := range merges {
		c.merge(m, path, fn)
	}
}

func (c *checker) merge(m *yaml.Node, path string, fn func(k, v *yaml.Node, merged bool)) {
	m, ok := c.deref(m, path)
	if !ok {
		return
	}
	if !c.spend(m, path) {
		return
	}
	if m.Anchor != "" {
		c.active[m] = true
		defer delete(c.active, m)
	}
	switch m.Kind {
	case yaml.MappingNode:
		c.pairs(m, path, true, fn)
	case yaml.SequenceNode:
		for _, item := range m.Content {
			if item, ok := c.deref(item, path); ok && item.Kind == yaml.MappingNode {
				c.pairs(item, path, true, fn)
			} else if ok {
				c.p.at(item.Line, path, "%s: a merge (<<) takes mappings only", orTop(path))
			}
		}
	default:
		c.p.at(m.Line, path, "%s: a merge (<<) takes a mapping or a list of mappings", orTop(path))
	}
}

// scalar decodes n into a new value of type t, with yaml.v3's own rules, to find values it would
// refuse.
func (c *checker) scalar(n *yaml.Node, t reflect.Type, path string) {
	want := map[reflect.Kind]string{
		reflect.String: "a string", reflect.Bool: "true or false",
		reflect.Int: "a whole number", reflect.Int64: "a whole number",
		reflect.Uint64: "a whole number, 0 or more", reflect.Float64: "a number",
	}[t.Kind()]
	if want == "" {
		want = "a " + t.Kind().String()
	}
	if n.Kind != yaml.ScalarNode {
		c.wrongKind(n, path, want)
		return
	}
	if err := n.Decode(reflect.New(t).Interface()); err != nil {
		c.p.at(n.Line, path, "%s: want %s, got %q", path, want, n.Value)
	}
}

func (c *checker) wrongKind(n *yaml.Node, path, want string) {
	c.p.at(n.Line, path, "%s: want %s, got %s", orTop(path), want, describe(n))
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

func orTop(path string) string {
	if path == "" {
		return "the scenario"
	}
	return path
}

// yamlFields maps the YAML names of t's fields to the fields; `yaml:"-"` ones are not part of
// the document, and those of a struct embedded `yaml:",inline"` are t's own.
func yamlFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && opts == "inline" {
			maps.Copy(out, yamlFields(f.Type))
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out[name] = f
	}
	return out
}

// unknownField says what is wrong and, when a known field is close, what was probably meant.
func unknownField(name, path string, fields map[string]reflect.StructField) string {
	msg := fmt.Sprintf("unknown field %q", name)
	if path != "" {
		msg += " in " + path
	}
	known := make([]string, 0, len(fields))
	for k := range fields {
		known = append(known, k)
	}
	slices.Sort(known)
	best, bestDist := "", 3 // farther than 2 edits is a guess, not a typo
	for _, k := range known {
		d := editDistance(strings.ToLower(name), strings.ToLower(k))
		if d < bestDist {
			best, bestDist = k, d
		}
	}
	if best != "" {
		return msg + fmt.Sprintf(": did you mean %q?", best)
	}
	return msg + ": known fields are " + strings.Join(known, ", ")
}

// editDistance is the Damerau–Levenshtein distance (optimal string alignment): a swap of two
// neighbouring letters, the commonest typo, counts as one edit.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	if len(ra) > 64 || len(rb) > 64 {
		return 64 // no field name is that long; spare the quadratic table
	}
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}
