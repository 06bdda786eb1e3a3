package server

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/goldcast/goldcast/api"
	"github.com/goldcast/goldcast/config"
)

// Node tokens are per-node credentials: a node reads its own plan,
// private overrides included, with its token; no other node's token opens
// it. The server keeps only a hash, in DATA/nodes/NAME.token.

func nodeTokenPath(dataDir, node string) string {
	return filepath.Join(dataDir, "nodes", node+".token")
}

// IssueNodeToken makes a new token for node (replacing any earlier one)
// and returns it; only its sha256 is stored.
func IssueNodeToken(dataDir, node string) (string, error) {
	if _, err := config.ExpandHosts(node); err != nil || strings.ContainsAny(node, "/[],") {
		return "", fmt.Errorf("node token: %q is not one node name", node)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("node token: %w", err)
	}
	token := hex.EncodeToString(raw[:])
	sum := sha256.Sum256([]byte(token))
	path := nodeTokenPath(dataDir, node)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("node token: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(hex.EncodeToString(sum[:])+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("node token: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("node token: %w", err)
	}
	return token, nil
}

// nodeTokenValid checks a presented token against node's stored hash.
func nodeTokenValid(dataDir, node, token string) bool {
	if token == "" || strings.ContainsAny(node, "/") {
		return false
	}
	stored, err := os.ReadFile(nodeTokenPath(dataDir, node))
	if err != nil {
		return false
	}
	sum := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(string(stored))), []byte(hex.EncodeToString(sum[:]))) == 1
}

// errNodeToken is answered when a node route is called without the
// node's own token (or the admin token).
var errNodeToken = errors.New("this node's plan needs the node's token (goldcast node token NAME) or the admin token")

// node wraps a handler of /nodes/{node}/...: the admin token, or the
// token issued to that very node.
func (a *authenticator) node(dataDir string, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if present, ok := a.validToken(r); present {
			if !ok {
				writeError(w, http.StatusUnauthorized, "wrong admin token")
				return
			}
			next(w, r)
			return
		}
		tok := r.Header.Get(api.NodeTokenHeader)
		switch {
		case tok == "":
			writeError(w, http.StatusUnauthorized, errNodeToken.Error())
		case !nodeTokenValid(dataDir, r.PathValue("node"), tok):
			writeError(w, http.StatusForbidden, fmt.Sprintf("the node token given is not the token of node %q", r.PathValue("node")))
		default:
			next(w, r)
		}
	}
}
