package scenarios

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxFileSize is far above any scenario; a bigger file is something else (a snapshot, a log)
// named by mistake, and reading it whole would only waste memory.
const maxFileSize = 1 << 20

// Load reads one scenario file strictly, applies defaults, resolves relative paths against the
// file's directory and validates it. The error lists every problem found, each as a *Problem
// with file and line (see Problems); the scenario is returned only when there are none.
//
// A file holds one scenario. Empty documents around it (a leading or trailing ---) are ignored;
// a second scenario in the same file is refused, so that a file names exactly one drill.
//
// Decoding problems (unknown fields, wrong types, bad durations) are all reported, but a file
// with any is not validated further: a misspelt field would otherwise also show up as missing.
func Load(path string) (*Scenario, error) {
	p := &problems{file: path}
	f, err := os.Open(path)
	if err != nil {
		p.at(0, "", "%s", fileError(err))
		return nil, p.err()
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		p.at(0, "", "is a directory: name a file, or load a directory with LoadAll")
		return nil, p.err()
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		p.at(0, "", "%s", fileError(err))
		return nil, p.err()
	}
	if len(data) > maxFileSize {
		p.at(0, "", "is larger than %d KiB: a scenario is a short YAML file; is this the right file?", maxFileSize>>10)
		return nil, p.err()
	}
	return LoadBytes(data, path)
}

// LoadBytes is Load for a document already in memory; path names it in problems and is the base
// of relative paths inside it ("" means the current directory and no file prefix).
func LoadBytes(data []byte, path string) (*Scenario, error) {
	p := &problems{file: path}
	root, index := parseOne(data, p)
	if root == nil {
		return nil, p.err()
	}

	// Check the header first: the fields of another version or kind would all be "unknown".
	var s Scenario
	s.lines = map[string]int{"": root.Line}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		switch {
		case k.Value != "apiVersion" && k.Value != "kind":
		case v.Kind != yaml.ScalarNode:
			p.at(k.Line, k.Value, "%s: want a string, got %s", k.Value, describe(v))
		case k.Value == "apiVersion":
			s.APIVersion, s.lines["apiVersion"] = v.Value, k.Line
		default:
			s.Kind, s.lines["kind"] = v.Value, k.Line
		}
	}
	if len(p.list) > 0 {
		return nil, p.err()
	}
	hp := &problems{file: path, lines: s.lines}
	s.validateHeader(hp)
	if len(hp.list) > 0 {
		return nil, hp.err()
	}

	c := newChecker(p)
	c.lines[""] = root.Line
	c.value(root, reflect.TypeFor[Scenario](), "")
	if len(p.list) > 0 {
		return nil, p.err()
	}

	// The checker has found what yaml.v3 would refuse in these types, but for yaml's own limit on
	// aliases; decoding with KnownFields stays as the guard should the two ever disagree.
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	for range index {
		var skip yaml.Node
		if err := dec.Decode(&skip); err != nil {
			p.yaml(err)
			return nil, p.err()
		}
	}
	if err := dec.Decode(&s); err != nil {
		p.yaml(err)
		return nil, p.err()
	}
	s.Path = path
	s.lines = c.lines
	s.SetDefaults()
	if err := s.resolvePaths(); err != nil {
		p.at(0, "", "resolve relative paths: %v", err)
		return nil, p.err()
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &s, nil
}

// parseOne returns the mapping node of the file's one non-empty document and that document's
// index in the stream, or nil after recording why there is none.
func parseOne(data []byte, p *problems) (*yaml.Node, int) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var (
		root  *yaml.Node
		index int
	)
	for i := 0; ; i++ {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			p.yaml(err)
			return nil, 0
		}
		if len(doc.Content) == 0 || isNull(doc.Content[0]) {
			continue // an empty document: a stray --- before or after the scenario
		}
		if root != nil {
			p.at(doc.Content[0].Line, "", "a second document starts here: a file holds one scenario; move this one to a file of its own")
			return nil, 0
		}
		root, index = doc.Content[0], i
	}
	if root == nil {
		p.at(0, "", "is empty: a scenario starts with apiVersion: %s and kind: %s (see scenarios/examples)", APIVersion, Kind)
		return nil, 0
	}
	if root.Kind != yaml.MappingNode {
		p.at(root.Line, "", "a scenario is a mapping of apiVersion, kind, metadata and spec; this document is %s", describe(root))
		return nil, 0
	}
	return root, index
}

var yamlLine = regexp.MustCompile(`^line (\d+): (.*)$`)

// yaml records an error of the YAML parser or decoder, one problem per line it reports, with
// yaml's "line N:" turned into the file:N: prefix.
func (p *problems) yaml(err error) {
	var te *yaml.TypeError
	msgs := []string{err.Error()}
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	for _, m := range msgs {
		m = strings.TrimPrefix(m, "yaml: ")
		line := 0
		if g := yamlLine.FindStringSubmatch(m); g != nil {
			line, _ = strconv.Atoi(g[1])
			m = g[2]
		}
		if te == nil {
			m = "not valid YAML: " + m
		}
		p.at(line, "", "%s", m)
	}
}

// LoadAll loads the scenarios named by paths: files, and directories (see Expand). It returns
// every scenario that loaded without a problem and, as the error, every problem of every file.
// Two scenarios with one name are a problem too: history, metrics and canary keys are per name.
func LoadAll(paths ...string) ([]*Scenario, error) {
	files, err := Expand(paths...)
	all := &problems{}
	all.merge(err)
	var out []*Scenario
	byName := map[string]string{}
	for _, f := range files {
		s, err := Load(f)
		if err != nil {
			all.merge(err)
			continue
		}
		if first, dup := byName[s.Metadata.Name]; dup {
			p := &problems{file: f, lines: s.lines}
			p.add("metadata.name", "%q is also the name of %s: give every scenario its own name", s.Metadata.Name, first)
			all.merge(p.err())
			continue
		}
		byName[s.Metadata.Name] = f
		out = append(out, s)
	}
	return out, all.err()
}

// Expand returns the files paths name: a file as it is, a directory as the *.yaml and *.yml files
// directly in it (not in subdirectories; hidden files skipped), sorted by name. Each file appears
// once. A path that does not exist, or a directory without scenario files, is a problem; the
// files found elsewhere are still returned.
func Expand(paths ...string) ([]string, error) {
	p := &problems{}
	var files []string
	seen := map[string]bool{}
	add := func(f string) {
		f = filepath.Clean(f)
		key := f // one file named two ways (a.yaml, /abs/a.yaml) is still one file
		if abs, err := filepath.Abs(f); err == nil {
			key = abs
		}
		if !seen[key] {
			seen[key] = true
			files = append(files, f)
		}
	}
	for _, path := range paths {
		fi, err := os.Stat(path)
		if err != nil {
			p.list = append(p.list, &Problem{File: path, Message: fileError(err)})
			continue
		}
		if !fi.IsDir() {
			add(path)
			continue
		}
		entries, err := os.ReadDir(path)
		if err != nil {
			p.list = append(p.list, &Problem{File: path, Message: fileError(err)})
			continue
		}
		n := 0
		for _, e := range entries {
			name := e.Name()
			ext := filepath.Ext(name)
			if e.IsDir() || strings.HasPrefix(name, ".") || (ext != ".yaml" && ext != ".yml") {
				continue
			}
			add(filepath.Join(path, name))
			n++
		}
		if n == 0 {
			p.list = append(p.list, &Problem{File: path, Message: "no *.yaml or *.yml files in this directory"})
		}
	}
	return files, p.err()
}

// fileError says what went wrong with a file without repeating its name, which the problem's
// prefix already gives.
func fileError(err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "does not exist"
	case errors.Is(err, fs.ErrPermission):
		return "permission denied: firedrill cannot read it"
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// pathField is one field of a scenario that holds a file or directory path.
type pathField struct {
	field string
	value *string
	// file must exist when the scenario is validated: firedrill reads it (certificates,
	// credentials, keys). Directories and binaries are found at the drill's preflight, on the
	// machine that runs it.
	file bool
}

// pathFields lists every path in s, so that resolving and checking them cannot drift apart.
func (s *Scenario) pathFields() []pathField {
	var out []pathField
	sp := &s.Spec
	if sp.Source != nil {
		out = append(out, pathField{"spec.source.kubeconfig", &sp.Source.Kubeconfig, false})
	}
	if e := sp.Backup.Etcd; e != nil {
		if t := e.Take; t != nil {
			out = append(out, pathField{"spec.backup.etcd.take.dir", &t.Dir, false})
			if tls := t.TLS; tls != nil {
				out = append(out,
					pathField{"spec.backup.etcd.take.tls.caFile", &tls.CAFile, true},
					pathField{"spec.backup.etcd.take.tls.certFile", &tls.CertFile, true},
					pathField{"spec.backup.etcd.take.tls.keyFile", &tls.KeyFile, true})
			}
		}
		if l := e.LatestFrom; l != nil {
			out = append(out, pathField{"spec.backup.etcd.latestFrom.dir", &l.Dir, false})
			if l.S3 != nil {
				out = append(out, pathField{"spec.backup.etcd.latestFrom.s3.credentialsFile", &l.S3.CredentialsFile, true})
			}
		}
	}
	if r := sp.Restore.Cluster; r != nil {
		// Like source.kubeconfig: found at preflight, where the drill runs (a mounted Secret of
		// `serve`), and rarely present where scenarios are validated (CI).
		out = append(out, pathField{"spec.restore.cluster.kubeconfig", &r.Kubeconfig, false})
	}
	if r := sp.Restore.Kind; r != nil {
		out = append(out, pathField{"spec.restore.kind.velero.credentialsFile", &r.Velero.CredentialsFile, true})
	}
	if r := sp.Restore.ScratchEtcd; r != nil {
		out = append(out, pathField{"spec.restore.scratchEtcd.encryptionConfig", &r.EncryptionConfig, true})
		// A bare name ("kube-apiserver") is looked up in bin/ and PATH; only a path is resolved.
		if a := r.APIServer; a != nil && strings.ContainsRune(a.Binary, '/') {
			out = append(out, pathField{"spec.restore.scratchEtcd.apiServer.binary", &a.Binary, false})
		}
	}
	return out
}

// baseDir is the absolute directory that relative paths in s are resolved against.
func (s *Scenario) baseDir() (string, error) {
	return filepath.Abs(filepath.Dir(s.Path))
}

// resolve returns path made absolute against base; "~" is left alone for Validate to refuse,
// since joining it would name a directory called "~".
func resolve(base, path string) string {
	if path == "" || filepath.IsAbs(path) || strings.HasPrefix(path, "~") {
		return path
	}
	return filepath.Join(base, path)
}

// resolvePaths makes every relative path in s absolute, against the scenario file's directory,
// so the scenario means the same whatever the working directory of the process that runs it.
func (s *Scenario) resolvePaths() error {
	base, err := s.baseDir()
	if err != nil {
		return err
	}
	for _, f := range s.pathFields() {
		*f.value = resolve(base, *f.value)
	}
	return nil
}

// checkPaths refuses "~" and, for files firedrill reads, a file that is not there.
func (s *Scenario) checkPaths(p *problems) {
	base, err := s.baseDir()
	if err != nil {
		p.add("", "resolve relative paths: %v", err)
		return
	}
	for _, f := range s.pathFields() {
		v := *f.value
		switch {
		case v == "":
		case strings.HasPrefix(v, "~"):
			p.add(f.field, "%q: ~ is not expanded: write the full path, or one relative to the scenario file", v)
		case f.file:
			full := resolve(base, v)
			fi, err := os.Stat(full)
			switch {
			case err != nil:
				p.add(f.field, "%s %s", full, fileError(err))
			case fi.IsDir():
				p.add(f.field, "%s is a directory: name the file", full)
			}
		}
	}
}
