package lifecycle

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Scaler is the paper's "replicate yourself" hook: a component that can read and set how many
// replicas of its own workload run.
type Scaler interface {
	// Replicas returns the desired replica count.
	Replicas(ctx context.Context) (int32, error)
	// Scale sets the desired replica count.
	Scale(ctx context.Context, replicas int32) error
}

// The in-cluster service account files, as Kubernetes mounts them into every pod.
const (
	ServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"
	deletionCostKey   = "controller.kubernetes.io/pod-deletion-cost"
	kubeMaxConflicts  = 5
	kubeMaxBody       = 1 << 20
)

// KubeConfig says which workload a KubeScaler scales. Empty fields take the in-cluster defaults.
type KubeConfig struct {
	// Kind is "Deployment" or "StatefulSet" (required).
	Kind string
	// Name is the workload's name (required).
	Name string
	// Pod is this pod's name, for SetDeletionCost. Default: the POD_NAME environment variable, then
	// the hostname.
	Pod string
	// Namespace defaults to the service account's namespace file.
	Namespace string
	// APIServer defaults to https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT.
	APIServer string
	// Dir holds token, ca.crt and namespace; default ServiceAccountDir. The token is read on every
	// request, because projected tokens are rotated.
	Dir string
	// Timeout bounds each API request; default 10 s.
	Timeout time.Duration
}

// KubeScaler scales its own Deployment or StatefulSet through the scale subresource of the
// Kubernetes API, over HTTPS with the pod's service account, using only net/http. It retries
// updates that conflict on resourceVersion. It needs RBAC get/update on <kind>/scale and patch on
// pods for SetDeletionCost.
//
// It was tested against an httptest TLS server that enforces the API's paths, the bearer token, the
// autoscaling/v1 Scale shape and resourceVersion conflicts, not against a real API server.
type KubeScaler struct {
	cfg      KubeConfig
	resource string // "deployments" or "statefulsets"
	client   *http.Client
}

// NewKubeScaler validates cfg and reads the CA and namespace files. It sends no request.
func NewKubeScaler(cfg KubeConfig) (*KubeScaler, error) {
	var resource string
	switch cfg.Kind {
	case "Deployment":
		resource = "deployments"
	case "StatefulSet":
		resource = "statefulsets"
	default:
		return nil, fmt.Errorf("lifecycle: kube scaler: Kind %q: want Deployment or StatefulSet", cfg.Kind)
	}
	if cfg.Name == "" {
		return nil, errors.New("lifecycle: kube scaler: Name is required")
	}
	if cfg.Dir == "" {
		cfg.Dir = ServiceAccountDir
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Namespace == "" {
		b, err := os.ReadFile(cfg.Dir + "/namespace")
		if err != nil {
			return nil, fmt.Errorf("lifecycle: kube scaler: namespace: %w", err)
		}
		cfg.Namespace = strings.TrimSpace(string(b))
	}
	if cfg.Pod == "" {
		cfg.Pod = os.Getenv("POD_NAME")
		if cfg.Pod == "" {
			cfg.Pod, _ = os.Hostname()
		}
	}
	if cfg.APIServer == "" {
		host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
		if host == "" || port == "" {
			return nil, errors.New("lifecycle: kube scaler: not in a cluster (KUBERNETES_SERVICE_HOST/PORT unset) and no APIServer given")
		}
		cfg.APIServer = "https://" + net.JoinHostPort(host, port)
	}
	if u, err := url.Parse(cfg.APIServer); err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("lifecycle: kube scaler: APIServer %q: want an https URL", cfg.APIServer)
	}
	ca, err := os.ReadFile(cfg.Dir + "/ca.crt")
	if err != nil {
		return nil, fmt.Errorf("lifecycle: kube scaler: CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("lifecycle: kube scaler: CA %s: no PEM certificate", cfg.Dir+"/ca.crt")
	}
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 5 * time.Second,
		MaxIdleConns:        2,
		IdleConnTimeout:     90 * time.Second,
	}
	return &KubeScaler{cfg: cfg, resource: resource, client: &http.Client{Transport: tr, Timeout: cfg.Timeout}}, nil
}

// kubeScale is the part of autoscaling/v1 Scale that the scaler reads and writes.
type kubeScale struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name            string `json:"name"`
		Namespace       string `json:"namespace"`
		ResourceVersion string `json:"resourceVersion"`
	} `json:"metadata"`
	Spec struct {
		Replicas int32 `json:"replicas"`
	} `json:"spec"`
	Status struct {
		Replicas int32  `json:"replicas"`
		Selector string `json:"selector,omitempty"`
	} `json:"status"`
}

// KubeAPIError is a non-2xx answer from the API server.
type KubeAPIError struct {
	Code    int
	Reason  string // the Status object's reason, e.g. "Conflict", "Forbidden"
	Message string
}

func (e *KubeAPIError) Error() string {
	return fmt.Sprintf("kubernetes API: %d %s: %s", e.Code, e.Reason, e.Message)
}

func (k *KubeScaler) scalePath() string {
	return fmt.Sprintf("/apis/apps/v1/namespaces/%s/%s/%s/scale", url.PathEscape(k.cfg.Namespace), k.resource, url.PathEscape(k.cfg.Name))
}

func (k *KubeScaler) do(ctx context.Context, method, path, contentType string, body, out any) error {
	token, err := os.ReadFile(k.cfg.Dir + "/token")
	if err != nil {
		return fmt.Errorf("lifecycle: kube scaler: token: %w", err)
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, k.cfg.APIServer+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return fmt.Errorf("lifecycle: kube scaler: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, kubeMaxBody))
	if err != nil {
		return fmt.Errorf("lifecycle: kube scaler: read answer: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var st struct{ Reason, Message string }
		_ = json.Unmarshal(data, &st)
		if st.Message == "" {
			st.Message = strings.TrimSpace(string(data))
		}
		apiErr := &KubeAPIError{Code: resp.StatusCode, Reason: st.Reason, Message: st.Message}
		if resp.StatusCode == http.StatusConflict {
			return fmt.Errorf("%w: %w", ErrConflict, apiErr)
		}
		return apiErr
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("lifecycle: kube scaler: decode answer: %w", err)
		}
	}
	return nil
}

// Replicas returns the workload's desired replicas (spec.replicas of its scale subresource).
func (k *KubeScaler) Replicas(ctx context.Context) (int32, error) {
	var s kubeScale
	if err := k.do(ctx, http.MethodGet, k.scalePath(), "", nil, &s); err != nil {
		return 0, err
	}
	return s.Spec.Replicas, nil
}

// Scale sets the workload's desired replicas: it reads the scale subresource and writes it back with
// the new count and the resourceVersion it read, retrying from the read when the write conflicts (at
// most 5 times, then ErrConflict).
func (k *KubeScaler) Scale(ctx context.Context, replicas int32) error {
	if replicas < 0 {
		return fmt.Errorf("lifecycle: kube scaler: replicas %d: must be >= 0", replicas)
	}
	var err error
	for range kubeMaxConflicts {
		var s kubeScale
		if err = k.do(ctx, http.MethodGet, k.scalePath(), "", nil, &s); err != nil {
			return err
		}
		if s.Spec.Replicas == replicas {
			return nil
		}
		s.Spec.Replicas = replicas
		if err = k.do(ctx, http.MethodPut, k.scalePath(), "application/json", &s, nil); !errors.Is(err, ErrConflict) {
			return err
		}
	}
	return err
}

// SetDeletionCost sets this pod's controller.kubernetes.io/pod-deletion-cost annotation, so that when
// the ReplicaSet scales down it removes pods with a lower cost first.
func (k *KubeScaler) SetDeletionCost(ctx context.Context, cost int32) error {
	if k.cfg.Pod == "" {
		return errors.New("lifecycle: kube scaler: pod name unknown (set KubeConfig.Pod or POD_NAME)")
	}
	patch := map[string]any{"metadata": map[string]any{"annotations": map[string]string{deletionCostKey: strconv.Itoa(int(cost))}}}
	path := fmt.Sprintf("/api/v1/namespaces/%s/pods/%s", url.PathEscape(k.cfg.Namespace), url.PathEscape(k.cfg.Pod))
	return k.do(ctx, http.MethodPatch, path, "application/merge-patch+json", patch, nil)
}
