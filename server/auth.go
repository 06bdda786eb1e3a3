package server

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"

	"github.com/goldcast/goldcast/api"
)

// TokenFile is where the admin token lives under the data directory.
const TokenFile = "admin.token"

// loadOrCreateToken reads DATA/admin.token, creating it (mode 0600) with
// a fresh random token on first start. created tells the caller to print
// it once.
func loadOrCreateToken(path string) (token string, created bool, err error) {
	b, err := os.ReadFile(path)
	if err == nil {
		t := strings.TrimSpace(string(b))
		if len(t) < 32 {
			return "", false, fmt.Errorf("admin token %q is shorter than 32 characters; delete it to have a new one generated", path)
		}
		return t, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", false, fmt.Errorf("read admin token: %w", err)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", false, fmt.Errorf("generate admin token: %w", err)
	}
	t := hex.EncodeToString(raw[:])
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", false, fmt.Errorf("write admin token: %w", err)
	}
	if _, err := f.WriteString(t + "\n"); err != nil {
		f.Close()
		return "", false, fmt.Errorf("write admin token: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", false, fmt.Errorf("write admin token: %w", err)
	}
	return t, true, nil
}

// authenticator decides who may do what: the admin token allows
// everything; without it, reads are allowed from the configured networks
// only.
type authenticator struct {
	token string
	// networks may read without a token; replaced on configuration reload.
	networks atomic.Pointer[[]netip.Prefix]
}

// requestToken returns the token a request carries, if any.
func requestToken(r *http.Request) string {
	if t := r.Header.Get(api.TokenHeader); t != "" {
		return t
	}
	if a, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return strings.TrimSpace(a)
	}
	return ""
}

func (a *authenticator) validToken(r *http.Request) (present, ok bool) {
	t := requestToken(r)
	if t == "" {
		return false, false
	}
	return true, subtle.ConstantTimeCompare([]byte(t), []byte(a.token)) == 1
}

func (a *authenticator) allowedAddr(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	nets := a.networks.Load()
	if nets == nil {
		return false
	}
	for _, p := range *nets {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// admin wraps a handler that changes state: it needs the token.
func (a *authenticator) admin(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		present, ok := a.validToken(r)
		switch {
		case !present:
			writeError(w, http.StatusUnauthorized, "missing admin token: pass --token-file (the server wrote the token to DATA/"+TokenFile+")")
		case !ok:
			writeError(w, http.StatusUnauthorized, "wrong admin token")
		default:
			next(w, r)
		}
	}
}

// read wraps a handler that only reads images: the token, or an address
// inside server.allow_networks.
func (a *authenticator) read(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		present, ok := a.validToken(r)
		switch {
		case present && !ok:
			writeError(w, http.StatusUnauthorized, "wrong admin token")
		case ok || a.allowedAddr(r.RemoteAddr):
			next(w, r)
		default:
			writeError(w, http.StatusForbidden, fmt.Sprintf("reads from %s are not allowed: the address is not in server.allow_networks of goldcast.yaml and no token was given", r.RemoteAddr))
		}
	}
}
