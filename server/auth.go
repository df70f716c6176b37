package server

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
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

// LoadToken reads the bearer token from file, without surrounding white space; an empty file
// is an error rather than a token that disables writes unnoticed.
func LoadToken(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("%s is empty: put the bearer token in it", file)
	}
	return tok, nil
}

// Reads behind a token (Options.ReadToken). A browser logs in once at /login and then carries a
// session cookie; scripts send the token as a bearer header, as writes do. The cookie holds an
// expiry and an HMAC keyed by the read token, never the token: every replica with the same token
// accepts it, and a new token ends every session. It proves reads only, so it needs no CSRF
// defence beyond SameSite=Strict; writes still need the write token in a header.

const (
	sessionCookie   = "firedrill_session"
	sessionLifetime = 12 * time.Hour
)

// errReadsNeedToken is the API's answer to a read without a token or session.
var errReadsNeedToken = errors.New("reading needs the header \"Authorization: Bearer <token>\" with serve's read token (--read-token-file or FIREDRILL_READ_TOKEN), or a login on the dashboard")

// readAuth is how a read was authenticated, or why not.
type readAuth int

const (
	readMissing readAuth = iota // no token, no (valid) session
	readWrong                   // a bearer token that is neither the read nor the write token
	readOK
)

// authorizeRead checks the bearer header first; without one, the session cookie.
func (s *server) authorizeRead(r *http.Request) readAuth {
	if h := r.Header.Get("Authorization"); h != "" {
		given, ok := bearer(h)
		if ok && s.readTokenEqual(given) {
			return readOK
		}
		return readWrong
	}
	if c, err := r.Cookie(sessionCookie); err == nil && s.sessionValid(c.Value) {
		return readOK
	}
	return readMissing
}

// readTokenEqual accepts the read token and the write token: who may trigger a drill may read.
func (s *server) readTokenEqual(given string) bool {
	ok := tokenEqual(given, s.opts.ReadToken)
	if s.opts.Token != "" && tokenEqual(given, s.opts.Token) {
		ok = true
	}
	return ok
}

// requireRead lets a read through when no read token is set, or when the request carries it;
// else an API request gets 401 in JSON, a page request 401 with the login form.
func (s *server) requireRead(page bool, next http.HandlerFunc) http.HandlerFunc {
	if s.opts.ReadToken == "" {
		return next
	}
	return func(w http.ResponseWriter, r *http.Request) {
		auth := s.authorizeRead(r)
		if auth == readOK {
			next(w, r)
			return
		}
		challenge := `Bearer realm="firedrill"`
		if auth == readWrong {
			challenge += `, error="invalid_token"`
			s.log.Warn("read refused: wrong bearer token", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
		}
		w.Header().Set("WWW-Authenticate", challenge)
		if !page {
			err := errReadsNeedToken
			if auth == readWrong {
				err = errors.New("wrong bearer token: use serve's read token (--read-token-file or FIREDRILL_READ_TOKEN) or its write token")
			}
			s.apiError(w, http.StatusUnauthorized, err)
			return
		}
		s.loginPage(w, http.StatusUnauthorized, r.URL.RequestURI(), "")
	}
}

// sessionValue is the cookie for a session that ends at expiry.
func (s *server) sessionValue(expiry time.Time) string {
	exp := strconv.FormatInt(expiry.Unix(), 10)
	return exp + "." + s.sessionMAC(exp)
}

func (s *server) sessionMAC(exp string) string {
	key := sha256.Sum256([]byte("firedrill session\x00" + s.opts.ReadToken))
	m := hmac.New(sha256.New, key[:])
	m.Write([]byte(exp))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (s *server) sessionValid(v string) bool {
	exp, mac, ok := strings.Cut(v, ".")
	if !ok {
		return false
	}
	unix, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || !s.now().Before(time.Unix(unix, 0)) {
		return false
	}
	return hmac.Equal([]byte(mac), []byte(s.sessionMAC(exp)))
}

// setSession sets (maxAge > 0) or clears the session cookie. Secure when the request came over
// TLS: behind a proxy that terminates TLS the browser still only sends it to that proxy.
func (s *server) setSession(w http.ResponseWriter, r *http.Request, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
}

type loginPageData struct {
	layout
	Next, Problem string
}

func (s *server) loginPage(w http.ResponseWriter, status int, next, problem string) {
	l := s.layout("log in · firedrill")
	l.Locked = true
	s.render(w, status, "login.html", loginPageData{layout: l, Next: next, Problem: problem})
}

func (s *server) getLogin(w http.ResponseWriter, r *http.Request) {
	if s.opts.ReadToken == "" {
		http.Redirect(w, r, "/", http.StatusSeeOther) // reads are open: nothing to log into
		return
	}
	s.loginPage(w, http.StatusOK, localPath(r.URL.Query().Get("next")), "")
}

// postLogin checks the token typed into the form and starts a session with it.
func (s *server) postLogin(w http.ResponseWriter, r *http.Request) {
	if s.opts.ReadToken == "" {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4096)
	if err := r.ParseForm(); err != nil {
		s.loginPage(w, http.StatusBadRequest, "/", "the login form could not be read: "+err.Error())
		return
	}
	next := localPath(r.PostForm.Get("next"))
	if !s.readTokenEqual(strings.TrimSpace(r.PostForm.Get("token"))) {
		s.log.Warn("login refused: wrong token", "remote", r.RemoteAddr)
		s.loginPage(w, http.StatusUnauthorized, next, "wrong token: use serve's read token (--read-token-file) or its write token")
		return
	}
	s.setSession(w, r, s.sessionValue(s.now().Add(sessionLifetime)), int(sessionLifetime/time.Second))
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *server) postLogout(w http.ResponseWriter, r *http.Request) {
	s.setSession(w, r, "", -1)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// localPath keeps a post-login redirect on this server: a path, never another host
// ("//evil.example" or "/\evil.example" would be one to a browser).
func localPath(next string) string {
	u, err := url.Parse(next)
	if err != nil || next == "" || u.Scheme != "" || u.Host != "" || !strings.HasPrefix(next, "/") ||
		strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/"
	}
	return next
}
