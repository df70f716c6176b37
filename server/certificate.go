package server

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
)

// Certificate is serve's TLS key pair, read from its files and read again at the first
// handshake after either file changed, so that a renewed certificate (cert-manager, a Secret
// volume's atomic swap, a cron job) is served without a restart. Safe for concurrent use.
type Certificate struct {
	certFile, keyFile string
	log               *slog.Logger

	mu   sync.Mutex
	cert *tls.Certificate
	// loaded are the files cert was read from; tried the last files that did not load, so that
	// a pair caught half-written is neither parsed nor logged again at every handshake.
	loaded, tried [2]os.FileInfo
	problem       string // the last one logged
}

// LoadCertificate reads the key pair: a PEM certificate (chain) and its private key.
func LoadCertificate(certFile, keyFile string, log *slog.Logger) (*Certificate, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Certificate{certFile: certFile, keyFile: keyFile, log: log}
	stamps, err := c.stat()
	if err != nil {
		return nil, err
	}
	if err := c.load(stamps); err != nil {
		return nil, err
	}
	return c, nil
}

// TLSConfig serves the certificate, TLS 1.2 at least.
func (c *Certificate) TLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: c.GetCertificate}
}

// GetCertificate is tls.Config's: the pair as the files are now. When they changed but do not
// load (yet), the previous pair is served and the problem logged once.
func (c *Certificate) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	stamps, err := c.stat()
	switch {
	case err != nil:
		c.warn(err.Error())
	case sameFiles(stamps, c.loaded) || sameFiles(stamps, c.tried):
	default:
		if err := c.load(stamps); err != nil {
			c.tried = stamps
			c.warn(err.Error())
		}
	}
	return c.cert, nil
}

func (c *Certificate) stat() ([2]os.FileInfo, error) {
	var out [2]os.FileInfo
	for i, f := range []string{c.certFile, c.keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return out, fmt.Errorf("TLS key pair: %w", err)
		}
		out[i] = fi
	}
	return out, nil
}

// load reads the pair whose files were stat'ed as stamps.
func (c *Certificate) load(stamps [2]os.FileInfo) error {
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("TLS key pair %s, %s: %w", c.certFile, c.keyFile, err)
	}
	reloaded := c.cert != nil
	c.cert, c.loaded, c.problem = &pair, stamps, ""
	if reloaded {
		c.log.Info("TLS certificate reloaded", "subject", pair.Leaf.Subject.String(), "notAfter", pair.Leaf.NotAfter)
	}
	return nil
}

func (c *Certificate) warn(problem string) {
	if problem != c.problem {
		c.problem = problem
		c.log.Warn("serving the previous TLS certificate: the files do not load", "err", problem)
	}
}

// sameFiles reports whether a and b are the same files, unchanged: same inode, size and
// modification time (a Secret volume swaps a symlink, an editor writes a new inode).
func sameFiles(a, b [2]os.FileInfo) bool {
	for i := range a {
		if a[i] == nil || b[i] == nil || !os.SameFile(a[i], b[i]) || a[i].Size() != b[i].Size() || !a[i].ModTime().Equal(b[i].ModTime()) {
			return false
		}
	}
	return true
}
