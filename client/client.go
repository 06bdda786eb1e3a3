// Package client is what runs on the machines goldcast images: capture
// (on the golden client), deploy (into an empty root) and update (an
// installed node, si_updateclient's job). It talks to the server's HTTP
// API, moving only what differs: directory digests find the changes,
// rsync deltas move changed content, and the manifest supplies every bit
// of metadata.
package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/goldcast/goldcast/api"
	"github.com/goldcast/goldcast/images/store"
)

// Options say how to reach the server.
type Options struct {
	// URL is the server's base URL, e.g. http://imageserver:8080.
	URL string
	// Token is the admin token (capture needs it; reads need it unless
	// the server allows this host's network).
	Token string
	// NodeToken is this node's own token, for its plan (private
	// overrides included).
	NodeToken string
	// TLSFingerprint pins the server certificate's sha256 (for
	// --tls-self-signed servers); CAFile trusts a CA instead.
	TLSFingerprint string
	CAFile         string
}

// Client is a connection to a goldcast server. It counts the bytes that
// cross the wire in both directions.
type Client struct {
	base      string
	token     string
	nodeToken string
	http      *http.Client
	sent      atomic.Int64
	recvd     atomic.Int64
}

// New prepares a client.
func New(o Options) (*Client, error) {
	u := strings.TrimRight(o.URL, "/")
	if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		return nil, fmt.Errorf("server URL %q: must start with http:// or https://", o.URL)
	}
	c := &Client{base: u, token: o.Token, nodeToken: o.NodeToken}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case o.TLSFingerprint != "":
		want := strings.ToLower(strings.ReplaceAll(o.TLSFingerprint, ":", ""))
		tlsConf.InsecureSkipVerify = true // replaced by the pin below
		tlsConf.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("server sent no certificate")
			}
			s := sha256.Sum256(raw[0])
			if got := hex.EncodeToString(s[:]); got != want {
				return fmt.Errorf("server certificate fingerprint %s does not match the pinned %s", got, want)
			}
			return nil
		}
	case o.CAFile != "":
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %q holds no certificate", o.CAFile)
		}
		tlsConf.RootCAs = pool
	}
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	c.http = &http.Client{Transport: &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		TLSClientConfig:     tlsConf,
		DisableCompression:  true, // bodies are zstd-encoded by hand
		MaxIdleConnsPerHost: 4,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &countingConn{Conn: conn, sent: &c.sent, recvd: &c.recvd}, nil
		},
	}}
	return c, nil
}

// ReadToken reads a token file (as written by the server to
// DATA/admin.token).
func ReadToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read token: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// WireBytes returns the bytes sent and received on the wire so far
// (headers, TLS and compression included).
func (c *Client) WireBytes() (sent, received int64) { return c.sent.Load(), c.recvd.Load() }

type countingConn struct {
	net.Conn
	sent, recvd *atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.recvd.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.sent.Add(int64(n))
	return n, err
}

// do sends a request and returns the response when its status is 2xx;
// otherwise the server's error message as an error.
func (c *Client) do(ctx context.Context, method, path string, body io.Reader, hdr map[string]string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+api.Prefix+path, body)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set(api.TokenHeader, c.token)
	}
	if c.nodeToken != "" {
		req.Header.Set(api.NodeTokenHeader, c.nodeToken)
	}
	req.Header.Set("Accept-Encoding", "zstd")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	var e api.Error
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(raw, &e) != nil || e.Error == "" {
		e.Error = strings.TrimSpace(string(raw))
	}
	return nil, &StatusError{Code: resp.StatusCode, Method: method, Path: path, Message: e.Error}
}

// StatusError is a non-2xx answer from the server.
type StatusError struct {
	Code         int
	Method, Path string
	Message      string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("server answered %d %s to %s %s: %s", e.Code, http.StatusText(e.Code), e.Method, e.Path, e.Message)
}

// responseBody returns the response body, decompressed when zstd-encoded.
func responseBody(resp *http.Response) (io.ReadCloser, error) {
	if resp.Header.Get("Content-Encoding") != "zstd" {
		return resp.Body, nil
	}
	zr, err := zstd.NewReader(resp.Body)
	if err != nil {
		resp.Body.Close()
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{zr, closerFunc(func() error { zr.Close(); return resp.Body.Close() })}, nil
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// getJSON GETs path into v.
func (c *Client) getJSON(ctx context.Context, path string, v any) error {
	resp, err := c.do(ctx, http.MethodGet, path, nil, nil)
	if err != nil {
		return err
	}
	body, err := responseBody(resp)
	if err != nil {
		return err
	}
	defer body.Close()
	return json.NewDecoder(body).Decode(v)
}

// postJSON sends in (zstd-compressed) and decodes the answer into out
// (when out is not nil).
func (c *Client) postJSON(ctx context.Context, path string, in, out any) error {
	var buf bytes.Buffer
	zw, _ := zstd.NewWriter(&buf)
	if err := json.NewEncoder(zw).Encode(in); err != nil {
		return err
	}
	zw.Close()
	resp, err := c.do(ctx, http.MethodPost, path, &buf, map[string]string{"Content-Type": "application/json", "Content-Encoding": "zstd"})
	if err != nil {
		return err
	}
	body, err := responseBody(resp)
	if err != nil {
		return err
	}
	defer body.Close()
	if out == nil {
		_, err := io.Copy(io.Discard, body)
		return err
	}
	if err := json.NewDecoder(body).Decode(out); err != nil {
		return fmt.Errorf("decode answer to POST %s: %w", path, err)
	}
	return nil
}

// postStream sends a body produced by write (zstd-compressed) and returns
// the (decompressed) answer.
func (c *Client) postStream(ctx context.Context, method, path string, write func(io.Writer) error) (io.ReadCloser, error) {
	pr, pw := io.Pipe()
	go func() {
		zw, err := zstd.NewWriter(pw)
		if err != nil {
			pw.CloseWithError(err)
			return
		}
		err = write(zw)
		if cerr := zw.Close(); err == nil {
			err = cerr
		}
		pw.CloseWithError(err)
	}()
	resp, err := c.do(ctx, method, path, pr, map[string]string{"Content-Type": "application/octet-stream", "Content-Encoding": "zstd"})
	pr.Close()
	if err != nil {
		return nil, err
	}
	return responseBody(resp)
}

// ImageInfo is the server's description of a version (or of a node's
// plan: the image it starts from, and the digests of the whole tree).
type ImageInfo struct {
	store.Info
	TreeDigest string `json:"tree_digest"`
}

// Source names what a deploy or update lays down: an image version, or
// a node's plan (its image with its overrides).
type Source struct {
	// Image is NAME or NAME@N; Node a node name. Exactly one is set.
	Image, Node string
}

func (s Source) String() string {
	if s.Node != "" {
		return "node " + s.Node
	}
	return s.Image
}

// infoPath is where the source's description lives.
func (s Source) infoPath() string {
	if s.Node != "" {
		return "/nodes/" + s.Node + "/plan"
	}
	return "/images/" + s.Image
}

// pinned returns the API path of the exact tree info describes: the
// version NAME@N for an image, the node's plan for a node.
func (s Source) pinned(info *ImageInfo) string {
	if s.Node != "" {
		return "/nodes/" + s.Node
	}
	return fmt.Sprintf("/images/%s@%d", info.Image, info.Version)
}

// Info fetches a source's image.json and tree digest.
func (c *Client) Info(ctx context.Context, src Source) (*ImageInfo, error) {
	if (src.Image == "") == (src.Node == "") {
		return nil, errors.New("give an image or a node, not both")
	}
	var i ImageInfo
	if err := c.getJSON(ctx, src.infoPath(), &i); err != nil {
		return nil, err
	}
	return &i, nil
}

// Stream opens the tar.zst stream of a pinned source path.
func (c *Client) Stream(ctx context.Context, base string) (io.ReadCloser, error) {
	resp, err := c.do(ctx, http.MethodGet, base+"/stream", nil, nil)
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// Event is one entry of the server's event log.
type Event struct {
	Seq     uint64            `json:"seq"`
	Time    time.Time         `json:"time"`
	Node    string            `json:"node,omitempty"`
	Kind    string            `json:"kind"`
	Stage   string            `json:"stage,omitempty"`
	Percent float64           `json:"percent,omitempty"`
	Bytes   int64             `json:"bytes,omitempty"`
	Rate    float64           `json:"rate,omitempty"`
	Message string            `json:"message,omitempty"`
	Fields  map[string]string `json:"fields,omitempty"`
}

// Events lists the server's events for node ("" for all), after seq.
func (c *Client) Events(ctx context.Context, node string, since uint64) ([]Event, error) {
	q := url.Values{}
	if node != "" {
		q.Set("node", node)
	}
	if since > 0 {
		q.Set("since", fmt.Sprint(since))
	}
	var evs []Event
	if err := c.getJSON(ctx, "/events?"+q.Encode(), &evs); err != nil {
		return nil, err
	}
	return evs, nil
}
