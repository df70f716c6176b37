package service

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/firedrill-dev/firedrill/internal/testkit"
)

// With a key pair and a read token, the service speaks HTTPS only, reads need the token, the
// probes and metrics stay open, and a renewed key pair is served at the next handshake.
func TestServiceTLSAndReadToken(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, dir, "a.yaml", scenario("a", "", "pass"))
	keys := t.TempDir()
	certFile, keyFile := filepath.Join(keys, "tls.crt"), filepath.Join(keys, "tls.key")
	testkit.WriteKeyPair(t, certFile, keyFile, 10)

	var log testkit.Buffer
	cfg := testConfig(t, openSQLite(t), dir, newHooks(), &log)
	cfg.Token, cfg.ReadToken, cfg.TLSCertFile, cfg.TLSKeyFile = "write-s3cret", "read-s3cret", certFile, keyFile
	svc, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	start(context.Background(), t, svc)
	addr := svc.Addr().String()
	testkit.EventuallyTrue(t, time.Minute, "serve logs its https URL", func() bool {
		return strings.Contains(log.String(), `url=https://`+addr+"/") && strings.Contains(log.String(), "readsNeedToken=true")
	})

	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}} // a handshake per request
	get := func(path, token string) (int, *tls.ConnectionState) {
		t.Helper()
		req, _ := http.NewRequest("GET", "https://"+addr+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, resp.TLS
	}
	for path, want := range map[string]map[string]int{
		"/api/v1/scenarios": {"": 401, "read-s3cret": 200, "write-s3cret": 200, "guess": 401},
		"/":                 {"": 401, "read-s3cret": 200},
		"/healthz":          {"": 200},
		"/readyz":           {"": 200},
		"/metrics":          {"": 200},
	} {
		for token, code := range want {
			if got, _ := get(path, token); got != code {
				t.Errorf("GET %s with token %q: %d, want %d", path, token, got, code)
			}
		}
	}
	if resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + addr + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the TLS port: %d, want 400", resp.StatusCode)
		}
	}

	_, st := get("/healthz", "")
	if serial := st.PeerCertificates[0].SerialNumber.Int64(); serial != 10 {
		t.Fatalf("served certificate serial %d, want 10", serial)
	}
	testkit.WriteKeyPair(t, certFile, keyFile, 11)
	if _, st := get("/healthz", ""); st.PeerCertificates[0].SerialNumber.Int64() != 11 {
		t.Errorf("after the key pair was renewed: serial %d, want 11", st.PeerCertificates[0].SerialNumber.Int64())
	}
}
