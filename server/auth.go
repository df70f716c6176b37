package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"
)

// errWritesDisabled is the answer to every write when serve has no token.
var errWritesDisabled = errors.New("writes are disabled: start serve with --token-file or FIREDRILL_TOKEN")

// requireToken lets a write through only with "Authorization: Bearer <Options.Token>".
//
// The token travels in a header, never a cookie, so a page on another site cannot make a
// browser send it (no CSRF): a cross-origin fetch with Authorization needs a CORS preflight,
// which this server never grants.
func (s *server) requireToken(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.opts.Token == "" {
			s.apiError(w, http.StatusForbidden, errWritesDisabled)
			return
		}
		given, ok := bearer(r.Header.Get("Authorization"))
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="firedrill"`)
			s.apiError(w, http.StatusUnauthorized, errors.New("this write needs the header \"Authorization: Bearer <token>\" with serve's token"))
			return
		}
		if !tokenEqual(given, s.opts.Token) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="firedrill", error="invalid_token"`)
			s.log.Warn("write refused: wrong bearer token", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
			s.apiError(w, http.StatusUnauthorized, errors.New("wrong bearer token: use the token in serve's --token-file or FIREDRILL_TOKEN"))
			return
		}
		next(w, r)
	}
}

// bearer returns the token of an "Authorization: Bearer <token>" header.
func bearer(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// tokenEqual compares in constant time; hashing first keeps the length of the token secret too.
func tokenEqual(given, want string) bool {
	g, w := sha256.Sum256([]byte(given)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}
