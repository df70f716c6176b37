package server

import (
	"crypto/tls"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/internal/testkit"
)

// servedSerial makes a TLS handshake with addr and returns the serial of the certificate it got.
func servedSerial(t *testing.T, addr string) int64 {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) // the test reads the certificate itself
	if err != nil {
		t.Fatalf("TLS handshake with %s: %v", addr, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// serve over TLS with a generated certificate; replace the files and the next handshake
// presents the new one; a pair caught half-written keeps the old one served, logged once.
func TestCertificateReloadsOnChange(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	testkit.WriteKeyPair(t, certFile, keyFile, 1)
	logs := &testkit.Buffer{}
	cert, err := LoadCertificate(certFile, keyFile, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cert.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: New(Options{Runs: openHistory(t), ReadToken: "read-token"}), ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	addr := ln.Addr().String()

	if got := servedSerial(t, addr); got != 1 {
		t.Fatalf("first handshake: serial %d, want 1", got)
	}
	testkit.WriteKeyPair(t, certFile, keyFile, 2)
	if got := servedSerial(t, addr); got != 2 {
		t.Fatalf("after the files were replaced: serial %d, want 2", got)
	}
	if !strings.Contains(logs.String(), "TLS certificate reloaded") {
		t.Errorf("the reload is not logged:\n%s", logs)
	}

	// A certificate whose key has not arrived yet: the previous pair goes on being served.
	testkit.ReplaceFile(t, certFile, []byte("-----BEGIN CERTIFICATE-----\nnot yet\n-----END CERTIFICATE-----\n"))
	for range 3 {
		if got := servedSerial(t, addr); got != 2 {
			t.Fatalf("with a broken certificate file: serial %d, want the previous 2", got)
		}
	}
	if n := strings.Count(logs.String(), "serving the previous TLS certificate"); n != 1 {
		t.Errorf("the broken pair is logged %d times over 3 handshakes, want once:\n%s", n, logs)
	}
	testkit.WriteKeyPair(t, certFile, keyFile, 3)
	if got := servedSerial(t, addr); got != 3 {
		t.Errorf("after a good pair again: serial %d, want 3", got)
	}

	// Over TLS the session cookie is Secure.
	client := &http.Client{
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.PostForm("https://"+addr+"/login", url.Values{"token": {"read-token"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if cs := resp.Cookies(); len(cs) != 1 || !cs[0].Secure || !cs[0].HttpOnly || cs[0].SameSite != http.SameSiteStrictMode {
		t.Errorf("login over TLS: %d, cookies %+v: want one Secure, HttpOnly, SameSite=Strict cookie", resp.StatusCode, cs)
	}
}

func TestLoadCertificateRefuses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if _, err := LoadCertificate(certFile, keyFile, nil); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing files: %v", err)
	}
	testkit.WriteKeyPair(t, certFile, keyFile, 1)
	other := filepath.Join(dir, "other.key")
	testkit.WriteKeyPair(t, filepath.Join(dir, "other.crt"), other, 2)
	if _, err := LoadCertificate(certFile, other, nil); err == nil || !strings.Contains(err.Error(), "private key does not match public key") {
		t.Errorf("a key that is not the certificate's: %v", err)
	}
}
