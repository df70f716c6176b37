package scenarios

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite testdata's .json and .errors golden files from what the code does now")

// placeholders keeps golden files free of this machine's directories: absolute paths come out
// of Load, since relative ones are resolved against the scenario file.
func placeholders(t *testing.T) *strings.Replacer {
	t.Helper()
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	// Longest first: Replacer tries its pairs in order at each position.
	return strings.NewReplacer(abs("testdata"), "$TESTDATA", abs("."), "$PKG", abs(".."), "$MODULE")
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./scenarios -run %s -update to write it, then review it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("%s differs from what the code does now:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// Every valid-*.yaml loads, and the scenario it yields (defaults applied, paths resolved) is
// the one in valid-*.json.
func TestLoadValidFiles(t *testing.T) {
	t.Parallel()
	files, _ := filepath.Glob("testdata/valid-*.yaml")
	if len(files) < 5 {
		t.Fatalf("only %d valid-*.yaml files", len(files))
	}
	repl := placeholders(t)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			t.Parallel()
			s, err := Load(f)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if s.Path != f {
				t.Errorf("Path = %q, want %q", s.Path, f)
			}
			if err := s.Validate(); err != nil {
				t.Errorf("Validate after Load: %v", err)
			}
			got, _ := json.MarshalIndent(s, "", "  ")
			again := *s
			again.SetDefaults()
			if b, _ := json.MarshalIndent(&again, "", "  "); string(b) != string(got) {
				t.Errorf("SetDefaults is not idempotent:\n%s\n%s", got, b)
			}
			golden(t, strings.TrimSuffix(f, ".yaml")+".json", repl.Replace(string(got))+"\n")
		})
	}
}

// Every invalid-*.yaml fails with exactly the problems in invalid-*.errors, lines included.
func TestLoadInvalidFiles(t *testing.T) {
	t.Parallel()
	files, _ := filepath.Glob("testdata/invalid-*.yaml")
	if len(files) < 10 {
		t.Fatalf("only %d invalid-*.yaml files", len(files))
	}
	repl := placeholders(t)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			t.Parallel()
			s, err := Load(f)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			if s != nil {
				t.Error("Load returned a scenario along with problems")
			}
			for _, p := range Problems(err) {
				if p.File != f || !strings.HasPrefix(p.Error(), f+":") {
					t.Errorf("problem without the file: %+v", p)
				}
			}
			golden(t, strings.TrimSuffix(f, ".yaml")+".errors", repl.Replace(err.Error())+"\n")
		})
	}
}

// The many-mistakes file is the test of "collect every problem": each rule it breaks is reported.
func TestValidateReportsEveryProblem(t *testing.T) {
	t.Parallel()
	_, err := Load("testdata/invalid-many.yaml")
	fields := map[string]bool{}
	for _, p := range Problems(err) {
		fields[p.Field] = true
	}
	for _, want := range []string{
		"metadata.name", "metadata.labels[team]", "metadata.labels[-bad-key]",
		"metadata.annotations[Example.COM/owner]", "spec.schedule", "spec.timeZone", "spec.timeout",
		"spec.objectives.rto", "spec.backup.etcd", "spec.backup.etcd.take.endpoints[0]",
		"spec.backup.etcd.take.endpoints[1]", "spec.backup.etcd.take.endpoints[2]",
		"spec.backup.etcd.take.endpoints[3]", "spec.backup.etcd.take.endpoints[4]",
		"spec.backup.etcd.take.tls", "spec.backup.etcd.take.tls.caFile",
		"spec.backup.etcd.take.dialTimeout", "spec.backup.etcd.take.dir", "spec.backup.etcd.latestFrom",
		"spec.backup.etcd.latestFrom.pattern", "spec.restore.scratchEtcd.bumpRevision",
		"spec.restore.scratchEtcd.encryptionConfig", "spec.checks[1].name", "spec.checks[2]",
		"spec.checks[3]", "spec.checks[4].etcdKeys", "spec.checks[5].etcdKeys.min",
		"spec.checks[5].etcdKeys.equals", "spec.checks[6].etcdMatchesLive.prefixes[0]",
		"spec.checks[6].etcdMatchesLive.maxDrift", "spec.checks[7].etcdMatchesLive.prefixes",
		"spec.checks[7].etcdMatchesLive.maxDrift", "spec.checks[8].objectsServed",
		"spec.checks[8].objectsServed.namespaces[0]", "spec.cleanup.policy", "spec.cleanup.keepFor",
	} {
		if !fields[want] {
			t.Errorf("no problem reported for %s", want)
		}
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("a password in an endpoint URL reached the output:\n%v", err)
	}
}

func TestValidateInCode(t *testing.T) {
	t.Parallel()
	one := 1
	s := &Scenario{
		APIVersion: APIVersion, Kind: Kind,
		Metadata: Metadata{Name: "in-code"},
		Spec: Spec{
			Backup:  Backup{Etcd: &EtcdBackup{Take: &EtcdTake{Endpoints: []string{"http://127.0.0.1:2379"}}}},
			Restore: Restore{ScratchEtcd: &ScratchEtcd{}},
			Checks: []Check{
				{EtcdKeys: &EtcdKeysCheck{Prefix: "/registry/", Min: &one}},
				{Name: "second", EtcdKeys: &EtcdKeysCheck{Prefix: "/registry/pods/", Min: &one}},
			},
		},
	}
	// Zero values count as defaults: valid before SetDefaults as after.
	if err := s.Validate(); err != nil {
		t.Fatalf("before SetDefaults: %v", err)
	}
	s.SetDefaults()
	if err := s.Validate(); err != nil {
		t.Fatalf("after SetDefaults: %v", err)
	}

	s.Spec.Checks[1].Name = "etcdKeys" // the first one's default name
	s.Spec.Timeout.Duration = -time.Second
	err := s.Validate()
	want := "spec.timeout: must be more than 0, got -1s (leave it out for the default 30m)\n" +
		`spec.checks[1].name: "etcdKeys" is also the name of spec.checks[0]: give every check its own name`
	if err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}
	for _, p := range Problems(err) {
		if p.File != "" || p.Line != 0 {
			t.Errorf("a scenario built in code has no file or lines: %+v", p)
		}
	}
}

// A heartbeat URL is a secret (its path lets anyone ping the switch): accepted with a path and
// query, refused without scheme or host or with user:password@, and never quoted in a problem.
func TestValidateHeartbeatURL(t *testing.T) {
	t.Parallel()
	for url, want := range map[string]string{
		"https://hc-ping.com/0b7e2c1a-secret?rid=1": "",
		"http://127.0.0.1:8080/ping/secret":         "",
		"hc-ping.com/0b7e2c1a-secret":               "is not an http or https URL",
		"ftp://hc-ping.com/0b7e2c1a-secret":         "is not an http or https URL",
		"https:///0b7e2c1a-secret":                  "is not an http or https URL",
		"https://user:secret@hc-ping.com/ping":      "holds credentials",
	} {
		s, err := LoadBytes([]byte(`apiVersion: firedrill.dev/v1alpha1
kind: Scenario
metadata: {name: beat}
spec:
  backup: {etcd: {take: {endpoints: ["http://127.0.0.1:2379"]}}}
  restore: {scratchEtcd: {}}
  checks: [{etcdIntegrity: {}}]
  notify: {heartbeatURL: "`+url+`"}
`), "")
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: %v", url, err)
		case want == "" && s.Spec.Notify.HeartbeatURL != url:
			t.Errorf("%s: loaded as %q", url, s.Spec.Notify.HeartbeatURL)
		case want != "" && (err == nil || !strings.Contains(err.Error(), "spec.notify.heartbeatURL: "+want)):
			t.Errorf("%s: got %v, want %q", url, err, want)
		case want != "" && strings.Contains(err.Error(), "secret"):
			t.Errorf("%s: the problem quotes the URL: %v", url, err)
		}
	}
}

func TestSetDefaults(t *testing.T) {
	t.Parallel()
	s := &Scenario{
		Metadata: Metadata{Name: "shop"},
		Spec: Spec{
			Backup:  Backup{Etcd: &EtcdBackup{Take: &EtcdTake{}, LatestFrom: &EtcdLatestFrom{}}},
			Restore: Restore{ScratchEtcd: &ScratchEtcd{APIServer: &ScratchAPIServer{}}},
			Checks: []Check{
				{EtcdObjectsDecode: &EtcdObjectsDecodeCheck{}},
				{EtcdMatchesLive: &EtcdMatchesLiveCheck{}},
				{Name: "fresh", Canary: &CanaryCheck{}},
				{}, // no type: no name to default to
			},
		},
	}
	s.SetDefaults()
	sp := s.Spec
	for _, c := range []struct {
		what      string
		got, want any
	}{
		{"timeZone", sp.TimeZone, "UTC"},
		{"timeout", sp.Timeout.Duration, 30 * time.Minute},
		{"take.dialTimeout", sp.Backup.Etcd.Take.DialTimeout.Duration, 5 * time.Second},
		{"latestFrom.pattern", sp.Backup.Etcd.LatestFrom.Pattern, "*.db"},
		{"bumpRevision", *sp.Restore.ScratchEtcd.BumpRevision, uint64(1000000000)},
		{"apiServer.binary", sp.Restore.ScratchEtcd.APIServer.Binary, "kube-apiserver"},
		{"check name", sp.Checks[0].Name, "etcdObjectsDecode"},
		{"etcdObjectsDecode.prefix", sp.Checks[0].EtcdObjectsDecode.Prefix, "/registry/"},
		{"etcdMatchesLive.maxDrift", *sp.Checks[1].EtcdMatchesLive.MaxDrift, 0.05},
		{"named check", sp.Checks[2].Name, "fresh"},
		{"canary.key", sp.Checks[2].Canary.Key, "/firedrill/canary/shop"},
		{"typeless check name", sp.Checks[3].Name, ""},
		{"cleanup.policy", sp.Cleanup.Policy, CleanupAlways},
		{"cleanup.keepFor", sp.Cleanup.KeepFor.Duration, 24 * time.Hour},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
}

func TestCheckType(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		check Check
		want  string
	}{
		{Check{}, ""},
		{Check{EtcdIntegrity: &EtcdIntegrityCheck{}}, CheckEtcdIntegrity},
		{Check{Canary: &CanaryCheck{}}, CheckCanary},
		{Check{Canary: &CanaryCheck{}, EtcdKeys: &EtcdKeysCheck{}}, ""},
	} {
		if got := c.check.Type(); got != c.want {
			t.Errorf("%+v.Type() = %q, want %q", c.check, got, c.want)
		}
	}
	// Every type field of Check is in CheckTypes, so a new one cannot be forgotten by Type.
	fields := yamlFields(reflect.TypeFor[Check]())
	delete(fields, "name")
	if len(fields) != len(CheckTypes()) {
		t.Errorf("Check has %d type fields, CheckTypes lists %d", len(fields), len(CheckTypes()))
	}
	for _, typ := range CheckTypes() {
		if _, ok := fields[typ]; !ok {
			t.Errorf("CheckTypes lists %q, which is not a field of Check", typ)
		}
	}
}

// Relative paths mean the same whatever the working directory: Load resolves them against the
// file, given by a relative or an absolute path alike.
func TestRelativePathsResolveAgainstTheFile(t *testing.T) {
	t.Parallel()
	rel, err := Load("testdata/valid-take-tls.yaml")
	if err != nil {
		t.Fatal(err)
	}
	absPath, _ := filepath.Abs("testdata/valid-take-tls.yaml")
	abs, err := Load(absPath)
	if err != nil {
		t.Fatal(err)
	}
	wantCA, _ := filepath.Abs("testdata/pki/ca.crt")
	for _, s := range []*Scenario{rel, abs} {
		if got := s.Spec.Backup.Etcd.Take.TLS.CAFile; got != wantCA {
			t.Errorf("caFile = %q, want %q", got, wantCA)
		}
	}

	// The same document elsewhere: its TLS files are looked for next to it, and are not there.
	data, _ := os.ReadFile("testdata/valid-take-tls.yaml")
	other := filepath.Join(t.TempDir(), "copy.yaml")
	_, err = LoadBytes(data, other)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(filepath.Dir(other), "pki", "ca.crt")+" does not exist") {
		t.Errorf("TLS files not resolved against the copy's directory: %v", err)
	}

	// Without a file, against the working directory.
	s, err := LoadBytes([]byte(strings.ReplaceAll(string(data), "pki/", "testdata/pki/")), "")
	if err != nil {
		t.Fatalf("LoadBytes without a path: %v", err)
	}
	if got := s.Spec.Backup.Etcd.Take.TLS.CAFile; got != wantCA {
		t.Errorf("caFile = %q, want %q", got, wantCA)
	}
}

func TestLoadFileErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, make([]byte, 2<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		filepath.Join(dir, "nope.yaml"): filepath.Join(dir, "nope.yaml") + ": does not exist",
		dir:                             dir + ": is a directory: name a file, or load a directory with LoadAll",
		big:                             big + ": is larger than 1024 KiB: a scenario is a short YAML file; is this the right file?",
	} {
		if _, err := Load(path); err == nil || err.Error() != want {
			t.Errorf("Load(%s) = %v, want %s", path, err, want)
		}
	}
}

func TestLoadAll(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	valid, _ := os.ReadFile("testdata/valid-minimal.yaml")
	write := func(name string, data []byte) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rename := func(name string) []byte {
		return []byte(strings.Replace(string(valid), "name: minimal", "name: "+name, 1))
	}
	write("b.yaml", rename("b"))
	write("a.yml", rename("a"))
	write("c.yaml", rename("a"))              // same name as a.yml
	write("d.yaml", []byte("kind: Scenario")) // broken
	write(".hidden.yaml", rename("hidden"))   // editor files and the like
	write("notes.txt", []byte("not a scenario"))
	write("sub/e.yaml", rename("e")) // not recursive
	empty := filepath.Join(dir, "sub", "empty")
	if err := os.MkdirAll(empty, 0o755); err != nil {
		t.Fatal(err)
	}

	// The directory, one of its files again, a missing path and an empty directory.
	got, err := LoadAll(dir, filepath.Join(dir, "b.yaml"), filepath.Join(dir, "missing.yaml"), empty)
	var names []string
	for _, s := range got {
		names = append(names, s.Metadata.Name)
	}
	if want := []string{"a", "b"}; !slices.Equal(names, want) {
		t.Errorf("loaded %v, want %v", names, want)
	}
	want := strings.Join([]string{
		filepath.Join(dir, "missing.yaml") + ": does not exist",
		empty + ": no *.yaml or *.yml files in this directory",
		filepath.Join(dir, "c.yaml") + `:3: metadata.name: "a" is also the name of ` + filepath.Join(dir, "a.yml") + ": give every scenario its own name",
		filepath.Join(dir, "d.yaml") + ":1: apiVersion: is missing: a scenario starts with apiVersion: firedrill.dev/v1alpha1 and kind: Scenario",
	}, "\n")
	if err == nil || err.Error() != want {
		t.Errorf("LoadAll problems:\n%v\nwant\n%s", err, want)
	}

	files, err := Expand(dir)
	if err != nil {
		t.Fatal(err)
	}
	var base []string
	for _, f := range files {
		base = append(base, filepath.Base(f))
	}
	if want := []string{"a.yml", "b.yaml", "c.yaml", "d.yaml"}; !slices.Equal(base, want) {
		t.Errorf("Expand = %v, want %v", base, want)
	}
}

func TestProblem(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		p    Problem
		want string
	}{
		{Problem{File: "a.yaml", Line: 3, Message: "m"}, "a.yaml:3: m"},
		{Problem{File: "a.yaml", Message: "m"}, "a.yaml: m"},
		{Problem{Line: 3, Message: "m"}, "line 3: m"},
		{Problem{Message: "m"}, "m"},
	} {
		if got := c.p.Error(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.p, got, c.want)
		}
	}
	if Problems(nil) != nil {
		t.Error("Problems(nil) is not nil")
	}
	if ps := Problems(errors.New("plain")); len(ps) != 1 || ps[0].Message != "plain" {
		t.Errorf("Problems(plain error) = %+v", ps)
	}
	// A caller may wrap the joined problems; they still come out one by one, in order, and print
	// one a line with the wrapper's prefix on the first only.
	a, b := &Problem{File: "a.yaml", Line: 1, Message: "x"}, &Problem{File: "b.yaml", Line: 2, Message: "y"}
	wrapped := fmt.Errorf("load: %w", (&problems{list: []*Problem{a, b}}).err())
	if ps := Problems(wrapped); len(ps) != 2 || ps[0] != a || ps[1] != b {
		t.Errorf("Problems(wrapped) = %+v", ps)
	}
	if got, want := wrapped.Error(), "load: a.yaml:1: x\nb.yaml:2: y"; got != want {
		t.Errorf("wrapped problems print %q, want %q", got, want)
	}
	if got := parentField(`metadata.labels[app.kubernetes.io/name]`); got != "metadata.labels" {
		t.Errorf("parentField = %q", got)
	}
	if got := keyField("metadata.labels", "a\nb"); got != `metadata.labels["a\nb"]` {
		t.Errorf("keyField = %q", got)
	}
}

// The examples are documentation a reader copies: each must load and validate, and together
// they show every check type.
func TestExamples(t *testing.T) {
	t.Parallel()
	files, _ := filepath.Glob("examples/*.yaml")
	if len(files) < 4 {
		t.Fatalf("only %d examples", len(files))
	}
	scenarios, err := LoadAll("examples")
	if err != nil {
		t.Fatalf("examples do not validate:\n%v", err)
	}
	types := map[string]bool{}
	for _, s := range scenarios {
		for _, c := range s.Spec.Checks {
			types[c.Type()] = true
		}
	}
	for _, typ := range CheckTypes() {
		if !types[typ] {
			t.Errorf("no example uses a %s check", typ)
		}
	}
	for _, f := range files {
		data, _ := os.ReadFile(f)
		if n := strings.Count(string(data), "#"); n < 5 {
			t.Errorf("%s has %d comments: examples explain themselves to a reader", f, n)
		}
	}
}

// README.md is the field reference: every field of the document appears in it.
func TestReadmeNamesEveryField(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[reflect.Type]bool{}
	var walk func(t reflect.Type, path string)
	walk = func(typ reflect.Type, path string) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || typ == durationType || seen[typ] {
			return
		}
		seen[typ] = true
		for name, f := range yamlFields(typ) {
			p := joinField(path, name)
			if !strings.Contains(string(readme), "`"+name+"`") {
				t.Errorf("README.md does not describe %s", p)
			}
			walk(f.Type, p)
		}
	}
	walk(reflect.TypeFor[Scenario](), "")
}

// FuzzLoad feeds the loader arbitrary bytes: it never panics, every problem names the file, and
// a document it accepts survives a round trip through YAML unchanged.
func FuzzLoad(f *testing.F) {
	for _, glob := range []string{"testdata/valid-*.yaml", "testdata/invalid-*.yaml", "examples/*.yaml"} {
		files, _ := filepath.Glob(glob)
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const name = "fuzz.yaml"
		s, err := LoadBytes(data, name)
		if err != nil {
			if s != nil {
				t.Fatal("a scenario along with problems")
			}
			ps := Problems(err)
			if len(ps) == 0 {
				t.Fatalf("an error without problems: %v", err)
			}
			for _, p := range ps {
				if p.File != name || p.Message == "" {
					t.Errorf("problem without file or message: %+v", p)
				}
				// yaml.v3's own decoding errors mean the checker let something through.
				if strings.Contains(p.Message, "not found in type") || strings.Contains(p.Message, "cannot unmarshal") {
					t.Errorf("the checker missed what yaml.v3 refused: %v", p)
				}
			}
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, name+":") {
					t.Errorf("output line without the file prefix: %q", line)
				}
			}
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("loaded, then invalid: %v", err)
		}
		out, err := yaml.Marshal(s)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		s2, err := LoadBytes(out, name)
		if err != nil {
			t.Fatalf("round trip: %v\n%s", err, out)
		}
		a, _ := json.Marshal(s)
		b, _ := json.Marshal(s2)
		if string(a) != string(b) {
			t.Fatalf("round trip changed the scenario:\n%s\n%s", a, b)
		}
	})
}
