package scenarios

import (
	"fmt"
	"strings"
	"text/template"
	"text/template/parse"
)

// SampleRunID has the shape of every run id (date, time, 6 hex digits): validation renders
// namespaceMapping templates with it, so a name that fits with it fits at run time.
const SampleRunID = "20261127-101530-7f3a9c"

// NamespaceData are the values a namespaceMapping template may use, and the only ones.
type NamespaceData struct {
	RunID     string // the run's id, e.g. 20261127-101530-7f3a9c
	Namespace string // the backed-up namespace
	Scenario  string // the scenario's metadata.name
}

// namespaceFields are NamespaceData's fields, the actions a template may hold.
var namespaceFields = map[string]bool{"RunID": true, "Namespace": true, "Scenario": true}

// RenderNamespace renders a namespaceMapping template, e.g. "drill-{{.RunID}}-{{.Namespace}}".
// A template holds text and the actions {{.RunID}}, {{.Namespace}} and {{.Scenario}}, nothing
// else: no functions, conditions or variables, so that what validation rendered is what a run
// renders. It does not check that the result is a valid namespace name.
func RenderNamespace(tmpl string, d NamespaceData) (string, error) {
	t, _, err := parseNamespaceTemplate(tmpl)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := t.Execute(&b, d); err != nil {
		return "", err
	}
	return b.String(), nil
}

// parseNamespaceTemplate parses tmpl and returns the fields it uses.
func parseNamespaceTemplate(tmpl string) (*template.Template, map[string]bool, error) {
	const name = "namespace"
	if tmpl == "" {
		return nil, nil, fmt.Errorf("the template is empty")
	}
	t, err := template.New(name).Option("missingkey=error").Parse(tmpl)
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), "template: "+name+":")
		if i := strings.Index(msg, ": "); i >= 0 && strings.Trim(msg[:i], "0123456789:") == "" {
			msg = msg[i+2:] // the line and column within the one-line template say nothing
		}
		return nil, nil, fmt.Errorf("not a valid template: %s", msg)
	}
	used := map[string]bool{}
	if t.Tree == nil || t.Tree.Root == nil {
		return t, used, nil
	}
	for _, n := range t.Tree.Root.Nodes {
		switch n := n.(type) {
		case *parse.TextNode:
		case *parse.ActionNode:
			field, ok := plainField(n)
			if !ok {
				return nil, nil, fmt.Errorf("%s: a template may only use {{.RunID}}, {{.Namespace}} and {{.Scenario}}", n)
			}
			used[field] = true
		default:
			return nil, nil, fmt.Errorf("%s: a template may only use {{.RunID}}, {{.Namespace}} and {{.Scenario}}", n)
		}
	}
	if len(t.Templates()) > 1 {
		return nil, nil, fmt.Errorf("defines templates: a template may only use {{.RunID}}, {{.Namespace}} and {{.Scenario}}")
	}
	return t, used, nil
}

// plainField says whether an action is {{.Field}} of NamespaceData and nothing more.
func plainField(n *parse.ActionNode) (string, bool) {
	pipe := n.Pipe
	if pipe == nil || len(pipe.Decl) > 0 || len(pipe.Cmds) != 1 || len(pipe.Cmds[0].Args) != 1 {
		return "", false
	}
	f, ok := pipe.Cmds[0].Args[0].(*parse.FieldNode)
	if !ok || len(f.Ident) != 1 || !namespaceFields[f.Ident[0]] {
		return "", false
	}
	return f.Ident[0], true
}
