package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// knownMissing are example paths that do not exist yet, each with where it gets fixed. The test
// fails when one of them no longer appears, so the list cannot outlive its reason.
var knownMissing = map[string]string{
	"firedrill serve: ./drills": "cmd/firedrill/serve.go is being reshaped into a service (issue 10); its example names scenarios/examples there",
}

// TestHelpExamplesNameFilesThatExist walks the command tree and reads every example that --help
// prints: each relative path an example reads must exist in this repository, so that the
// example runs as written in a checkout. Absolute paths stand for the operator's machine
// (/etc/kubernetes/pki/...), and what an example writes (--out, --bundle, > FILE) need not exist.
func TestHelpExamplesNameFilesThatExist(t *testing.T) {
	t.Parallel()
	repo, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(repo, "go.mod")); err != nil {
		t.Fatalf("repository root: %v", err)
	}
	root := newApp(strings.NewReader(""), &strings.Builder{}, &strings.Builder{}, func(string) string { return "" }).rootCmd()
	checked, seen := 0, map[string]bool{}
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		for _, p := range examplePaths(c.Example) {
			key := c.CommandPath() + ": " + p
			seen[key] = true
			if _, err := os.Stat(filepath.Join(repo, p)); err != nil {
				if _, ok := knownMissing[key]; !ok {
					t.Errorf("%s --help: the example names %s, which is not in the repository: name a file that is (scenarios/examples/...)", c.CommandPath(), p)
				}
				continue
			}
			checked++
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	for key, why := range knownMissing {
		if !seen[key] {
			t.Errorf("knownMissing %q (%s) no longer appears in an example: remove it from the list", key, why)
		}
	}
	// The examples that name repository files (run, plan, scenario validate) are still there.
	if checked < 4 {
		t.Errorf("only %d example paths found in the repository; the extraction or the examples broke", checked)
	}
}

func TestExamplePaths(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		example string
		want    []string
	}{
		{"  firedrill run scenarios/examples/minimal.yaml", []string{"scenarios/examples/minimal.yaml"}},
		{"  firedrill run ./drills -o json > results.json", []string{"./drills"}},
		{"  firedrill plan drill.yaml --offline    # no connections at all", []string{"drill.yaml"}},
		{"  firedrill report --since 90d --bundle q4.tar.gz --out q4.html --public-key=keys/fd.pub", []string{"keys/fd.pub"}},
		{"  firedrill snapshot etcd --cacert /etc/pki/ca.crt --out /var/backups/$(date +%F).db", nil},
		{"  FIREDRILL_SCENARIOS=/etc/firedrill/scenarios firedrill run control-plane-etcd", nil},
		{"  firedrill history verify --history postgres://auditor@db/firedrill -o json", nil},
		{"  firedrill scenario validate -o json d/ | jq '.[] | select(.valid == false)'", []string{"d/"}},
		{"  firedrill run a.yaml \\\n    b/c.yaml  # and c/d.yaml", []string{"a.yaml", "b/c.yaml"}},
		{`  eval "$(firedrill sandbox env --dir /tmp/fd)"`, nil},
		{"  firedrill restore velero shop-20261127 --namespace-mapping shop:shop-check", nil},
	} {
		if got := examplePaths(tc.example); !slices.Equal(got, tc.want) {
			t.Errorf("examplePaths(%q) = %q, want %q", tc.example, got, tc.want)
		}
	}
}

// writtenBy are the flags and shell operators whose argument an example writes.
var writtenBy = []string{"--out", "--bundle", ">", ">>"}

// fileName looks like a file an example reads: a known extension.
var fileName = regexp.MustCompile(`\.(ya?ml|json|db|key|pub|crt|pem|html|xml|csv|md|tar\.gz)$`)

// examplePaths returns the relative paths an example reads, in order: arguments with a slash or
// a file extension that are not URLs, absolute paths, shell expansions or outputs.
func examplePaths(example string) []string {
	var paths []string
	for _, words := range exampleCommands(example) {
		for i, w := range words {
			if i > 0 && slices.Contains(writtenBy, words[i-1]) {
				continue
			}
			if strings.HasPrefix(w, "-") {
				flag, value, ok := strings.Cut(w, "=")
				if !ok || slices.Contains(writtenBy, flag) {
					continue
				}
				w = value
			}
			switch {
			case w == "", strings.HasPrefix(w, "/"), strings.HasPrefix(w, "~"), strings.Contains(w, "$"),
				strings.Contains(w, "://"), strings.Contains(w, "="):
				continue
			case strings.Contains(w, "/"), fileName.MatchString(w):
				paths = append(paths, w)
			}
		}
	}
	return paths
}

// exampleCommands splits an example into the words of its shell commands, as sh would: lines
// joined at a trailing backslash, comments dropped, quotes keeping a word together.
func exampleCommands(example string) [][]string {
	var cmds [][]string
	for _, line := range strings.Split(strings.ReplaceAll(example, "\\\n", " "), "\n") {
		var words []string
		var word strings.Builder
		inWord, quote, subst := false, rune(0), 0 // subst: depth of $( ) the word is in
		end := func() {
			if inWord {
				words = append(words, word.String())
			}
			word.Reset()
			inWord = false
		}
		prev := rune(0)
	scan:
		for _, r := range line {
			switch {
			case r == '(' && prev == '$':
				subst++
				word.WriteRune(r)
			case r == ')' && subst > 0:
				subst--
				word.WriteRune(r)
			case subst > 0:
				word.WriteRune(r)
			case quote != 0 && r == quote:
				quote = 0
			case quote != 0:
				word.WriteRune(r)
			case r == '\'' || r == '"':
				quote, inWord = r, true
			case r == '#' && !inWord:
				break scan
			case r == ' ' || r == '\t':
				end()
			default:
				word.WriteRune(r)
				inWord = true
			}
			prev = r
		}
		end()
		if len(words) > 0 {
			cmds = append(cmds, words)
		}
	}
	return cmds
}

// TestKubectlPlugin: installed as kubectl-firedrill, the binary's help, examples and hints name
// `kubectl firedrill …`, the command the user types; as firedrill, nothing changes.
func TestKubectlPlugin(t *testing.T) {
	t.Parallel()
	for arg0, want := range map[string]string{
		"/usr/local/bin/kubectl-firedrill": pluginName, "kubectl-firedrill.exe": pluginName,
		"/usr/bin/firedrill": "firedrill", "./firedrill": "firedrill",
	} {
		if got := programName(arg0); got != want {
			t.Errorf("programName(%q) = %q, want %q", arg0, got, want)
		}
	}
	run := func(prog string, args ...string) (stdout, stderr string, code int) {
		var out, errOut strings.Builder
		a := newApp(strings.NewReader(""), &out, &errOut, func(string) string { return "" })
		a.prog = prog
		code = execute(t.Context(), a, args)
		return out.String(), errOut.String(), code
	}
	help, _, _ := run(pluginName, "--help")
	for _, want := range []string{"Usage:\n  kubectl firedrill [command]", "\n  kubectl firedrill sandbox up --velero", `eval "$(kubectl firedrill sandbox env)"`} {
		if !strings.Contains(help, want) {
			t.Errorf("kubectl firedrill --help lacks %q:\n%s", want, help)
		}
	}
	serveHelp, _, _ := run(pluginName, "serve", "--help")
	if !strings.Contains(serveHelp, "Usage:\n  kubectl firedrill serve --scenarios DIR") || !strings.Contains(serveHelp, "\n  kubectl firedrill serve --scenarios /etc/firedrill/scenarios") {
		t.Errorf("kubectl firedrill serve --help:\n%s", serveHelp)
	}
	if _, errOut, code := run(pluginName, "serve", "--scenarios-from", "bogus"); code != exitUsage || !strings.Contains(errOut, "Run 'kubectl firedrill serve --help' for usage.") {
		t.Errorf("a usage error of the plugin: exit %d\n%s", code, errOut)
	}
	if _, errOut, _ := run(pluginName, "history", "extra"); !strings.Contains(errOut, "kubectl firedrill history takes no arguments") {
		t.Errorf("an argument error of the plugin:\n%s", errOut)
	}
	plain, _, _ := run("firedrill", "--help")
	if strings.Contains(plain, "kubectl") || !strings.Contains(plain, "Usage:\n  firedrill [command]") {
		t.Errorf("firedrill --help mentions kubectl or lost its name:\n%s", plain)
	}
}
