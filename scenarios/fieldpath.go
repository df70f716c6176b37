package scenarios

import (
	"errors"
	"strings"
	"unicode"
)

// SplitFieldPath splits a path of objectsMatch.ignoreFields into the keys it names, from the
// object's root. Names are separated by dots; a key that holds dots or '/' (an annotation, a
// label) is written in brackets, and a number in brackets indexes a list:
//
//	metadata.annotations[kubectl.kubernetes.io/last-applied-configuration]
//	  → metadata, annotations, kubectl.kubernetes.io/last-applied-configuration
//	spec.template.spec.containers[0].image → spec, template, spec, containers, 0, image
//
// The check and validation both use it, so that a path that validates means what it says.
func SplitFieldPath(path string) ([]string, error) {
	if path == "" {
		return nil, errors.New("it is empty")
	}
	if strings.IndexFunc(path, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0 {
		return nil, errors.New("it holds spaces or control characters")
	}
	var out []string
	rest := path
	if rest[0] == '[' || rest[0] == '.' {
		return nil, errors.New("it must start with a field name")
	}
	for rest != "" {
		// A name, up to the next '.' or '['.
		end := strings.IndexAny(rest, ".[]")
		if end < 0 {
			end = len(rest)
		}
		if end == 0 {
			return nil, errors.New("a name is empty")
		}
		out = append(out, rest[:end])
		rest = rest[end:]
		// Any bracketed keys after it.
		for strings.HasPrefix(rest, "[") {
			close := strings.IndexByte(rest, ']')
			switch {
			case close < 0:
				return nil, errors.New("a '[' is not closed")
			case close == 1:
				return nil, errors.New("a key in brackets is empty")
			case strings.IndexByte(rest[1:close], '[') >= 0:
				return nil, errors.New("brackets do not nest")
			}
			out = append(out, rest[1:close])
			rest = rest[close+1:]
		}
		switch {
		case rest == "":
		case rest[0] == ']':
			return nil, errors.New("a ']' has no '['")
		case rest[0] == '.':
			rest = rest[1:]
			if rest == "" {
				return nil, errors.New("it ends with a dot")
			}
		default:
			return nil, errors.New("a ']' must be followed by '.', '[' or the end")
		}
	}
	return out, nil
}
