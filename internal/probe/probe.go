// Package probe holds what firedrill-probe does inside a cluster — hash a volume's files, make one
// HTTP request, make one TCP connection — and the JSON results firedrill reads back from the
// probe pod's log. Standard library only: it is built static into the sandbox's probe image.
package probe

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// ManifestResult lists every regular file and symbolic link under a directory with its size,
// mode and SHA-256 (of a link: its target), sorted by path; Digest is the SHA-256 over one line per
// entry, so that two manifests are equal exactly when their digests are.
type ManifestResult struct {
	Files      []File   `json:"files"`
	TotalBytes int64    `json:"totalBytes"`
	Digest     string   `json:"digest"`
	Skipped    []string `json:"skipped,omitempty"` // what is neither file, link nor directory (sockets, devices)
}

// File is one entry of a manifest.
type File struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	// Mode is the permission bits, "0644"; Link is a symbolic link's target (then Size is 0).
	Mode string `json:"mode,omitempty"`
	Link string `json:"link,omitempty"`
}

// Manifest hashes every regular file under dir, using every core: on a restored volume the time a
// drill waits is the time to read the data once.
func Manifest(dir string, ignore []string) (*ManifestResult, error) {
	var files []File
	res := &ManifestResult{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		for _, g := range ignore {
			if ok, _ := filepath.Match(g, rel); ok {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		switch {
		case d.IsDir():
			return nil
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			sum := sha256.Sum256([]byte(target))
			files = append(files, File{Path: rel, Link: target, SHA256: hex.EncodeToString(sum[:])})
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			files = append(files, File{Path: rel, Mode: fmt.Sprintf("%04o", info.Mode().Perm())})
		default:
			res.Skipped = append(res.Skipped, rel)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	work := make(chan int)
	errs := make([]error, len(files))
	var wg sync.WaitGroup
	for range max(1, runtime.NumCPU()) {
		wg.Go(func() {
			buf := make([]byte, 1<<20)
			for i := range work {
				if files[i].Link == "" {
					files[i].Size, files[i].SHA256, errs[i] = hashFile(filepath.Join(dir, files[i].Path), buf)
				}
			}
		})
	}
	for i := range files {
		work <- i
	}
	close(work)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	m := ManifestOf(files)
	m.Skipped = res.Skipped
	return m, nil
}

// ManifestOf totals files, sorted by path, and computes their digest.
func ManifestOf(files []File) *ManifestResult {
	res := &ManifestResult{Files: files}
	if res.Files == nil {
		res.Files = []File{}
	}
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s  %d  %s  %s  %s\n", f.SHA256, f.Size, f.Mode, f.Path, f.Link)
		res.TotalBytes += f.Size
	}
	res.Digest = hex.EncodeToString(h.Sum(nil))
	return res
}

func hashFile(path string, buf []byte) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.CopyBuffer(h, f, buf)
	if err != nil {
		return 0, "", fmt.Errorf("read %s: %w", path, err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// HTTPResult is what one GET found.
type HTTPResult struct {
	URL        string `json:"url"`
	Status     int    `json:"status,omitempty"`
	Body       string `json:"body,omitempty"` // the first 4 KiB
	BodyBytes  int64  `json:"bodyBytes"`
	BodySHA256 string `json:"bodySHA256,omitempty"`
	Remote     string `json:"remote,omitempty"` // the address that answered
	Error      string `json:"error,omitempty"`  // why there was no answer
	Millis     int64  `json:"millis"`
	Attempts   int    `json:"attempts,omitempty"`
}

const bodyKept = 4 << 10

// HTTP makes one GET, following no redirects: a restored app that redirects to production must
// not be taken for one that answers.
func HTTP(url string, timeout time.Duration) *HTTPResult {
	res := &HTTPResult{URL: url}
	start := time.Now()
	defer func() { res.Millis = time.Since(start).Milliseconds() }()
	var remote string
	client := &http.Client{
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err == nil {
				remote = c.RemoteAddr().String()
			}
			return c, err
		}},
	}
	resp, err := client.Get(url)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer resp.Body.Close()
	h := sha256.New()
	var kept strings.Builder
	n, err := io.Copy(io.MultiWriter(h, &limited{w: &kept, n: bodyKept}), resp.Body)
	res.Status, res.BodyBytes, res.Remote = resp.StatusCode, n, remote
	res.Body, res.BodySHA256 = kept.String(), hex.EncodeToString(h.Sum(nil))
	if err != nil {
		res.Error = "reading the body: " + err.Error()
	}
	return res
}

type limited struct {
	w io.Writer
	n int
}

func (l *limited) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}

// TCPResult is what one connection attempt found.
type TCPResult struct {
	Address   string `json:"address"`
	Connected bool   `json:"connected"`
	Remote    string `json:"remote,omitempty"`
	Error     string `json:"error,omitempty"`
	// TimedOut: no answer at all, as a dropping NetworkPolicy gives; a refusal answers at once.
	TimedOut bool  `json:"timedOut,omitempty"`
	Millis   int64 `json:"millis"`
	Attempts int   `json:"attempts,omitempty"`
}

// TCP makes one connection and closes it.
func TCP(addr string, timeout time.Duration) *TCPResult {
	res := &TCPResult{Address: addr}
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, timeout)
	res.Millis = time.Since(start).Milliseconds()
	if err != nil {
		res.Error = err.Error()
		var ne net.Error
		res.TimedOut = errors.As(err, &ne) && ne.Timeout()
		return res
	}
	res.Connected, res.Remote = true, c.RemoteAddr().String()
	c.Close()
	return res
}

// Until repeats probe, a second apart, until ok accepts its result or within has passed, and
// returns the last result and how many attempts were made. A restored application often needs a
// moment before it answers.
func Until[T any](within time.Duration, probe func() T, ok func(T) bool) (T, int) {
	deadline := time.Now().Add(within)
	for n := 1; ; n++ {
		r := probe()
		if ok(r) || !time.Now().Add(time.Second).Before(deadline) {
			return r, n
		}
		time.Sleep(time.Second)
	}
}

// IsolationResult is what the isolation probe found: a connection that must work (to the restored
// copy) and one that must not (to the live application).
type IsolationResult struct {
	Allowed         *TCPResult   `json:"allowed"`
	AllowedAttempts int          `json:"allowedAttempts"`
	Blocked         []*TCPResult `json:"blocked"`
}

// Isolation first connects to allowed, retrying within the given time, which shows the pod's
// network works and its policy is in place; then it tries blocked three times, a second apart,
// each given timeout to answer. Any of those connecting means the copy can reach production.
func Isolation(allowed, blocked string, within, timeout time.Duration) *IsolationResult {
	res := &IsolationResult{}
	res.Allowed, res.AllowedAttempts = Until(within, func() *TCPResult { return TCP(allowed, timeout) }, func(r *TCPResult) bool { return r.Connected })
	for i := range 3 {
		if i > 0 {
			time.Sleep(time.Second)
		}
		res.Blocked = append(res.Blocked, TCP(blocked, timeout))
	}
	return res
}

// Fill writes files of deterministic content into dir: the same seed writes the same bytes, so
// that a test knows what a restore must bring back.
func Fill(dir string, files int, size int64, seed uint64) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var key [32]byte
	for i := range 8 {
		key[i] = byte(seed >> (8 * i))
	}
	rng := rand.NewChaCha8(key)
	for i := range files {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("file-%05d", i)))
		if err != nil {
			return err
		}
		_, err = io.CopyN(f, rng, size)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Serve answers every HTTP request with body until ctx ends: a stand-in application.
func Serve(ctx context.Context, addr, body string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, body)
	})}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// RunResult is what a command run by the probe gave.
type RunResult struct {
	Command  []string `json:"command"`
	ExitCode int      `json:"exitCode"`
	Stdout   string   `json:"stdout"` // the last 64 KiB
	Stderr   string   `json:"stderr"`
	Millis   int64    `json:"millis"`
}

// Run runs a command, killing it after timeout; a command that could not start is an error.
func Run(argv []string, timeout time.Duration) (*RunResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, errb := &tail{n: 64 << 10}, &tail{n: 64 << 10}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = out, errb
	start := time.Now()
	err := cmd.Run()
	r := &RunResult{Command: argv, Stdout: out.String(), Stderr: errb.String(), Millis: time.Since(start).Milliseconds()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.ExitCode = ee.ExitCode()
		if r.ExitCode < 0 {
			r.ExitCode = 137 // killed: the timeout
		}
	case err != nil:
		return nil, err
	}
	return r, nil
}

// tail keeps the last n bytes written to it.
type tail struct {
	b strings.Builder
	n int
}

func (t *tail) Write(p []byte) (int, error) {
	t.b.Write(p)
	if s := t.b.String(); len(s) > t.n {
		t.b.Reset()
		t.b.WriteString(s[len(s)-t.n:])
	}
	return len(p), nil
}

func (t *tail) String() string { return t.b.String() }
