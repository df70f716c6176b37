package chain

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
)

// Key file names written by WriteKeyPair. The formats are the standard ones (PKCS #8 and
// PKIX in PEM), so `openssl pkey -in firedrill-signing.key -pubout` reads them too.
const (
	PrivateKeyFile = "firedrill-signing.key"
	PublicKeyFile  = "firedrill-signing.pub"
)

// Signer signs record hashes with an ed25519 private key.
type Signer struct {
	key ed25519.PrivateKey
}

// NewSigner returns a Signer for key.
func NewSigner(key ed25519.PrivateKey) *Signer { return &Signer{key: key} }

// Public returns the public key that verifies s's signatures.
func (s *Signer) Public() ed25519.PublicKey { return s.key.Public().(ed25519.PublicKey) }

// Sign returns the signature of a record hash (hex): base64 (standard, padded) of the ed25519
// signature of the hash's 32 bytes.
func (s *Signer) Sign(hash string) (string, error) {
	digest, err := hex.DecodeString(hash)
	if err != nil || len(digest) != 32 {
		return "", fmt.Errorf("hash %q is not a hex SHA-256", hash)
	}
	return base64.StdEncoding.EncodeToString(ed25519.Sign(s.key, digest)), nil
}

// VerifySignature reports whether sig is pub's signature of hash.
func VerifySignature(pub ed25519.PublicKey, hash, sig string) bool {
	digest, err := hex.DecodeString(hash)
	if err != nil || len(digest) != 32 {
		return false
	}
	raw, err := base64.StdEncoding.DecodeString(sig)
	if err != nil {
		return false
	}
	return ed25519.Verify(pub, digest, raw)
}

// WriteKeyPair creates a new key pair in dir: PrivateKeyFile (mode 0600) and PublicKeyFile
// (0644). It refuses to overwrite either file, so that a key records were signed with is never
// lost by accident. It returns the two paths.
func WriteKeyPair(dir string) (privPath, pubPath string, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", err
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", "", err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("create key directory: %w", err)
	}
	privPath, pubPath = filepath.Join(dir, PrivateKeyFile), filepath.Join(dir, PublicKeyFile)
	for _, p := range []string{privPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return "", "", fmt.Errorf("%s already exists: firedrill never overwrites a key (records signed with it could no longer be verified); choose another directory", p)
		}
	}
	if err := writeNew(privPath, 0o600, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER})); err != nil {
		return "", "", err
	}
	if err := writeNew(pubPath, 0o644, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})); err != nil {
		os.Remove(privPath)
		return "", "", err
	}
	return privPath, pubPath, nil
}

// writeNew creates path with O_EXCL, so that a file created meanwhile is not overwritten either.
func writeNew(path string, mode os.FileMode, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("write key: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write key %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("write key %s: %w", path, err)
	}
	return nil
}

// LoadSigner reads a PEM PKCS #8 ed25519 private key, as WriteKeyPair writes it. It refuses a
// key file that every user can read or write; group access is allowed, as Kubernetes gives a
// pod's fsGroup to mounted Secrets.
func LoadSigner(path string) (*Signer, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	if fi.Mode().Perm()&0o007 != 0 {
		return nil, fmt.Errorf("signing key %s is open to every user (mode %04o): chmod 600 it (in Kubernetes, mount its Secret with defaultMode 0400 or 0440)", path, fi.Mode().Perm())
	}
	der, err := readPEM(path, "PRIVATE KEY")
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("signing key %s is a %T, want ed25519 (make one with 'firedrill keygen')", path, k)
	}
	return NewSigner(priv), nil
}

// LoadPublicKey reads a PEM PKIX ed25519 public key, as WriteKeyPair writes it.
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	der, err := readPEM(path, "PUBLIC KEY")
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("public key %s: %w", path, err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("public key %s is a %T, want ed25519", path, k)
	}
	return pub, nil
}

func readPEM(path, typ string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s holds no PEM block", path)
	}
	if block.Type != typ {
		return nil, fmt.Errorf("%s holds a %q PEM block, want %q", path, block.Type, typ)
	}
	return block.Bytes, nil
}

// Fingerprint names a public key in messages: the first 16 hex digits of the SHA-256 of its bytes.
func Fingerprint(pub ed25519.PublicKey) string {
	if len(pub) == 0 {
		return ""
	}
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}
