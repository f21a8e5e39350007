package workqueue

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Client is a Queue served by an API elsewhere (examples/workqueue serve). Lease long-polls.
type Client struct {
	base string
	hc   *http.Client

	closeCtx context.Context
	closeFn  context.CancelFunc
	once     sync.Once
	own      *http.Transport // made by NewClient; its idle connections are closed by Close
}

var _ Queue = (*Client)(nil)

// NewClient returns a client for the API at base (for example "http://127.0.0.1:8080"). hc nil means
// a client of its own with no overall timeout (Lease long-polls; every call is bounded by its ctx),
// whose connections Close closes.
func NewClient(base string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: server URL %q (want http://host:port)", ErrInvalid, base)
	}
	var own *http.Transport
	if hc == nil {
		own = http.DefaultTransport.(*http.Transport).Clone()
		hc = &http.Client{Transport: own}
	}
	c := &Client{base: strings.TrimRight(base, "/") + APIPrefix, hc: hc, own: own}
	c.closeCtx, c.closeFn = context.WithCancel(context.Background())
	return c, nil
}

// apiError is an error answer from the server.
type apiError struct {
	code int
	msg  string
}

func (e *apiError) Error() string { return fmt.Sprintf("server answered %d: %s", e.code, e.msg) }

func (c *Client) do(ctx context.Context, method, path string, body io.Reader, ctype string, out any) (int, error) {
	if c.closeCtx.Err() != nil {
		return 0, ErrClosed
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(c.closeCtx, cancel)
	defer stop()
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return 0, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if c.closeCtx.Err() != nil {
			return 0, ErrClosed
		}
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode >= 400 {
		var e struct{ Error string }
		_ = json.Unmarshal(b, &e)
		ae := &apiError{resp.StatusCode, e.Error}
		switch resp.StatusCode {
		case http.StatusConflict:
			return resp.StatusCode, fmt.Errorf("%w (%v)", ErrLeaseLost, ae)
		case http.StatusBadRequest:
			return resp.StatusCode, fmt.Errorf("%w (%v)", ErrInvalid, ae)
		case http.StatusServiceUnavailable:
			if strings.Contains(e.Error, ErrClosed.Error()) {
				return resp.StatusCode, fmt.Errorf("%w (%v)", ErrClosed, ae)
			}
		}
		return resp.StatusCode, ae
	}
	if out != nil && resp.StatusCode != http.StatusNoContent {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("decode answer: %w", err)
		}
	}
	return resp.StatusCode, nil
}

func (c *Client) postLease(ctx context.Context, path string, lr leaseReq, out any) error {
	if lr.Lease == "" {
		return ErrLeaseLost
	}
	b, _ := json.Marshal(lr)
	_, err := c.do(ctx, http.MethodPost, path, bytes.NewReader(b), "application/json", out)
	return err
}

// Add implements Queue.
func (c *Client) Add(ctx context.Context, payload []byte, o AddOptions) (string, error) {
	if o.Delay < 0 {
		return "", fmt.Errorf("%w: negative delay %v", ErrInvalid, o.Delay)
	}
	v := url.Values{}
	if o.Key != "" {
		v.Set("key", o.Key)
	}
	if o.Delay > 0 {
		v.Set("delay", o.Delay.String())
	}
	if o.Priority != 0 {
		v.Set("priority", strconv.Itoa(o.Priority))
	}
	var out struct{ ID string }
	_, err := c.do(ctx, http.MethodPost, "items?"+v.Encode(), bytes.NewReader(payload), "application/octet-stream", &out)
	return out.ID, err
}

// Lease implements Queue.
func (c *Client) Lease(ctx context.Context) (*Item, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		wait := 30 * time.Second
		if dl, ok := ctx.Deadline(); ok {
			// Ask the server to give up a little before our deadline, so the answer still arrives.
			wait = min(wait, time.Until(dl)*9/10)
		}
		if wait < time.Millisecond {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		var it itemJSON
		code, err := c.do(ctx, http.MethodPost, "lease?wait="+wait.String(), nil, "", &it)
		if err != nil {
			if ctx.Err() != nil && !errors.Is(err, ErrClosed) {
				return nil, ctx.Err()
			}
			return nil, err
		}
		if code == http.StatusNoContent {
			continue
		}
		return &Item{ID: it.ID, Key: it.Key, Payload: it.Payload, Priority: it.Priority, Attempt: it.Attempt, Lease: it.Lease, Deadline: it.Deadline}, nil
	}
}

// Ack implements Queue.
func (c *Client) Ack(ctx context.Context, lease string) error {
	return c.postLease(ctx, "ack", leaseReq{Lease: lease}, nil)
}

// Nack implements Queue.
func (c *Client) Nack(ctx context.Context, lease string, delay time.Duration) error {
	if delay < 0 {
		return fmt.Errorf("%w: negative delay %v", ErrInvalid, delay)
	}
	return c.postLease(ctx, "nack", leaseReq{Lease: lease, Delay: delay.String()}, nil)
}

// Extend implements Queue.
func (c *Client) Extend(ctx context.Context, lease string) (time.Time, error) {
	var out struct{ Deadline time.Time }
	err := c.postLease(ctx, "extend", leaseReq{Lease: lease}, &out)
	return out.Deadline, err
}

// Bury implements Queue.
func (c *Client) Bury(ctx context.Context, lease string, reason string) error {
	return c.postLease(ctx, "bury", leaseReq{Lease: lease, Reason: reason}, nil)
}

// Dead implements Queue.
func (c *Client) Dead(ctx context.Context, max int) ([]DeadItem, error) {
	if max < 0 {
		max = 10000
	}
	var out []deadJSON
	if _, err := c.do(ctx, http.MethodGet, "dead?max="+strconv.Itoa(max), nil, "", &out); err != nil {
		return nil, err
	}
	d := make([]DeadItem, 0, len(out))
	for _, x := range out {
		d = append(d, DeadItem(x))
	}
	return d, nil
}

// Stats implements Queue.
func (c *Client) Stats(ctx context.Context) (Stats, error) {
	var s Stats
	_, err := c.do(ctx, http.MethodGet, "stats", nil, "", &s)
	return s, err
}

// Close makes the client refuse further calls and aborts calls in flight (with ErrClosed). The
// server's queue is not affected. Idempotent.
func (c *Client) Close() error {
	c.once.Do(func() {
		c.closeFn()
		if c.own != nil {
			c.own.CloseIdleConnections()
		}
	})
	return nil
}
