package lifecycle_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/podblocks/podblocks/lifecycle"
)

// fakeAPIServer enforces the parts of the Kubernetes API the KubeScaler uses: the bearer token, the
// scale subresource's path and autoscaling/v1 Scale shape, optimistic concurrency on resourceVersion
// (409 Conflict with a Status object), and merge patches of a pod's annotations.
type fakeAPIServer struct {
	mu              sync.Mutex
	replicas        int32
	resourceVersion int
	conflictsLeft   int // the next PUTs that another writer wins
	annotations     map[string]string
	puts            int
}

func (f *fakeAPIServer) status(w http.ResponseWriter, code int, reason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]any{"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "message": msg, "code": code})
}

func (f *fakeAPIServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer s3cr3t-token" {
		f.status(w, 401, "Unauthorized", "bad token")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.URL.Path == "/apis/apps/v1/namespaces/shop/deployments/web/scale" && r.Method == http.MethodGet:
		f.writeScale(w)
	case r.URL.Path == "/apis/apps/v1/namespaces/shop/deployments/web/scale" && r.Method == http.MethodPut:
		f.puts++
		if r.Header.Get("Content-Type") != "application/json" {
			f.status(w, 415, "UnsupportedMediaType", "want application/json")
			return
		}
		var s struct {
			APIVersion, Kind string
			Metadata         struct{ Name, Namespace, ResourceVersion string }
			Spec             struct{ Replicas *int32 }
		}
		if err := json.NewDecoder(r.Body).Decode(&s); err != nil || s.APIVersion != "autoscaling/v1" || s.Kind != "Scale" || s.Spec.Replicas == nil || s.Metadata.Name != "web" {
			f.status(w, 400, "BadRequest", "not an autoscaling/v1 Scale for web")
			return
		}
		if f.conflictsLeft > 0 { // another writer updates the deployment first
			f.conflictsLeft--
			f.resourceVersion++
		}
		if s.Metadata.ResourceVersion != strconv.Itoa(f.resourceVersion) {
			f.status(w, 409, "Conflict", "Operation cannot be fulfilled: the object has been modified")
			return
		}
		f.replicas = *s.Spec.Replicas
		f.resourceVersion++
		f.writeScale(w)
	case r.URL.Path == "/api/v1/namespaces/shop/pods/web-7d4-abc" && r.Method == http.MethodPatch:
		if r.Header.Get("Content-Type") != "application/merge-patch+json" {
			f.status(w, 415, "UnsupportedMediaType", "want a merge patch")
			return
		}
		var p struct {
			Metadata struct{ Annotations map[string]string }
		}
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
			f.status(w, 400, "BadRequest", err.Error())
			return
		}
		for k, v := range p.Metadata.Annotations {
			f.annotations[k] = v
		}
		io.WriteString(w, `{"kind":"Pod"}`)
	default:
		f.status(w, 404, "NotFound", r.Method+" "+r.URL.Path)
	}
}

func (f *fakeAPIServer) writeScale(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"apiVersion": "autoscaling/v1", "kind": "Scale",
		"metadata": map[string]any{"name": "web", "namespace": "shop", "resourceVersion": strconv.Itoa(f.resourceVersion)},
		"spec":     map[string]any{"replicas": f.replicas},
		"status":   map[string]any{"replicas": f.replicas, "selector": "app=web"},
	})
}

func newKubeRig(t *testing.T) (*fakeAPIServer, *lifecycle.KubeScaler, string) {
	t.Helper()
	api := &fakeAPIServer{replicas: 2, resourceVersion: 100, annotations: map[string]string{}}
	srv := httptest.NewTLSServer(api)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	for name, data := range map[string][]byte{"ca.crt": ca, "token": []byte("s3cr3t-token\n"), "namespace": []byte("shop")} {
		must(t, os.WriteFile(filepath.Join(dir, name), data, 0o600))
	}
	k, err := lifecycle.NewKubeScaler(lifecycle.KubeConfig{Kind: "Deployment", Name: "web", Pod: "web-7d4-abc", APIServer: srv.URL, Dir: dir})
	must(t, err)
	return api, k, dir
}

func TestKubeScaler(t *testing.T) {
	api, k, _ := newKubeRig(t)
	ctx := context.Background()
	if n, err := k.Replicas(ctx); err != nil || n != 2 {
		t.Fatalf("Replicas = %d, %v; want 2", n, err)
	}
	api.conflictsLeft = 2
	must(t, k.Scale(ctx, 5))
	if n, err := k.Replicas(ctx); err != nil || n != 5 {
		t.Errorf("after Scale(5): Replicas = %d, %v", n, err)
	}
	if api.puts != 3 {
		t.Errorf("PUTs = %d, want 3 (two conflicts, then success)", api.puts)
	}
	api.conflictsLeft = 100
	if err := k.Scale(ctx, 7); !errors.Is(err, lifecycle.ErrConflict) {
		t.Errorf("Scale under endless conflicts = %v, want ErrConflict", err)
	}
	must(t, k.SetDeletionCost(ctx, -100))
	if got := api.annotations["controller.kubernetes.io/pod-deletion-cost"]; got != "-100" {
		t.Errorf("deletion cost annotation = %q, want -100", got)
	}
	if err := k.Scale(ctx, -1); err == nil {
		t.Error("Scale(-1) = nil")
	}
}

func TestKubeScalerErrors(t *testing.T) {
	for _, cfg := range []lifecycle.KubeConfig{
		{Kind: "DaemonSet", Name: "x"},
		{Kind: "Deployment"},
		{Kind: "Deployment", Name: "x", Dir: t.TempDir(), Namespace: "n", APIServer: "http://insecure"},
	} {
		if _, err := lifecycle.NewKubeScaler(cfg); err == nil {
			t.Errorf("NewKubeScaler(%+v) = nil error", cfg)
		}
	}
	_, k, dir := newKubeRig(t)
	// The token is read per request (projected tokens rotate): a revoked one gets the API's 401.
	must(t, os.WriteFile(filepath.Join(dir, "token"), []byte("revoked"), 0o600))
	var apiErr *lifecycle.KubeAPIError
	if _, err := k.Replicas(context.Background()); !errors.As(err, &apiErr) || apiErr.Code != 401 || apiErr.Reason != "Unauthorized" {
		t.Errorf("Replicas with a revoked token = %v, want a 401 KubeAPIError", err)
	}
	if _, err := k.Replicas(canceled()); err == nil || errors.As(err, &apiErr) {
		t.Errorf("Replicas with a cancelled ctx = %v, want a context error", err)
	}
}
