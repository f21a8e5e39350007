// Package kubernetes_test checks the manifests in this directory without a cluster (none exists on
// the project's machines): every YAML document parses, workloads and Services fit together, images
// are ones images/build.sh builds, every flag passed to an example binary exists in it, and every
// hook server is wired to the kubelet (probes on /livez /readyz /startupz, preStop on /prestop).
package kubernetes_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"gopkg.in/yaml.v3"

	"github.com/podblocks/podblocks/ambassador/twemproxy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type object struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec struct {
		// Service
		ClusterIP string        `yaml:"clusterIP"`
		Selector  yaml.Node     `yaml:"selector"` // Service: labels; workloads: {matchLabels}
		Ports     []servicePort `yaml:"ports"`
		// workloads
		ServiceName string       `yaml:"serviceName"`
		Template    *podTemplate `yaml:"template"`
	} `yaml:"spec"`
	file string
}

type servicePort struct {
	Name       string `yaml:"name"`
	Port       int    `yaml:"port"`
	TargetPort any    `yaml:"targetPort"`
}

type podTemplate struct {
	Metadata struct {
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Spec struct {
		TerminationGracePeriodSeconds *int        `yaml:"terminationGracePeriodSeconds"`
		Volumes                       []volume    `yaml:"volumes"`
		InitContainers                []container `yaml:"initContainers"`
		Containers                    []container `yaml:"containers"`
	} `yaml:"spec"`
	raw map[string]any
}

type volume struct {
	Name      string `yaml:"name"`
	ConfigMap *struct {
		Name string `yaml:"name"`
	} `yaml:"configMap"`
}

type container struct {
	Name            string   `yaml:"name"`
	Image           string   `yaml:"image"`
	ImagePullPolicy string   `yaml:"imagePullPolicy"`
	RestartPolicy   string   `yaml:"restartPolicy"`
	Args            []string `yaml:"args"`
	Ports           []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
	StartupProbe   *probe `yaml:"startupProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	Lifecycle      *struct {
		PreStop *probe `yaml:"preStop"`
	} `yaml:"lifecycle"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
	TCPSocket *struct {
		Port any `yaml:"port"`
	} `yaml:"tcpSocket"`
}

// containerFields are the Container fields a typo would silently drop (the YAML decoder ignores
// unknown keys, and so does nothing here without a cluster).
var containerFields = []string{"name", "image", "imagePullPolicy", "restartPolicy", "command", "args", "env",
	"ports", "volumeMounts", "startupProbe", "livenessProbe", "readinessProbe", "lifecycle", "resources",
	"securityContext", "workingDir"}

var apiVersions = map[string]string{"Deployment": "apps/v1", "StatefulSet": "apps/v1", "Job": "batch/v1",
	"Service": "v1", "ConfigMap": "v1"}

func root(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(filepath.Dir(wd))
}

func load(t *testing.T) map[string][]*object {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	out := map[string][]*object{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// Decode twice: typed, and generic to catch unknown container fields.
		dec, gen := yaml.NewDecoder(bytes.NewReader(data)), yaml.NewDecoder(bytes.NewReader(data))
		for i := 0; ; i++ {
			var o object
			var g map[string]any
			err := dec.Decode(&o)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: document %d: %v", f, i, err)
			}
			if err := gen.Decode(&g); err != nil {
				t.Fatalf("%s: document %d: %v", f, i, err)
			}
			o.file = f
			if o.Spec.Template != nil {
				tmpl, _ := g["spec"].(map[string]any)["template"].(map[string]any)
				o.Spec.Template.raw = tmpl
			}
			out[f] = append(out[f], &o)
		}
	}
	return out
}

// TestManifestsExist checks there is a manifest per pattern the issue names.
func TestManifestsExist(t *testing.T) {
	docs := load(t)
	for _, f := range []string{"lifecycle.yaml", "sidecar.yaml", "ambassador.yaml", "adapter.yaml", "election.yaml",
		"workqueue.yaml", "scatter.yaml"} {
		if len(docs[f]) == 0 {
			t.Errorf("missing manifest %s", f)
		}
	}
}

func TestManifestObjects(t *testing.T) {
	for file, objs := range load(t) {
		names := map[string]bool{}
		for _, o := range objs {
			id := fmt.Sprintf("%s: %s %q", file, o.Kind, o.Metadata.Name)
			if want, ok := apiVersions[o.Kind]; !ok || o.APIVersion != want {
				t.Errorf("%s: apiVersion %q kind %q, want a known kind with its apiVersion", id, o.APIVersion, o.Kind)
			}
			if o.Metadata.Name == "" {
				t.Errorf("%s: no metadata.name", id)
			}
			if names[o.Kind+"/"+o.Metadata.Name] {
				t.Errorf("%s: defined twice", id)
			}
			names[o.Kind+"/"+o.Metadata.Name] = true
			switch o.Kind {
			case "Deployment", "StatefulSet":
				var sel struct {
					MatchLabels map[string]string `yaml:"matchLabels"`
				}
				if err := o.Spec.Selector.Decode(&sel); err != nil || len(sel.MatchLabels) == 0 {
					t.Errorf("%s: no selector.matchLabels", id)
				}
				if !subset(sel.MatchLabels, o.Spec.Template.Metadata.Labels) {
					t.Errorf("%s: selector %v does not select its template labels %v", id, sel.MatchLabels, o.Spec.Template.Metadata.Labels)
				}
			case "Service":
				var sel map[string]string
				if err := o.Spec.Selector.Decode(&sel); err != nil || len(sel) == 0 {
					t.Errorf("%s: no selector", id)
				}
				if !selectsSome(sel, objs) {
					t.Errorf("%s: selector %v matches no pod template in the file", id, sel)
				}
			}
			if o.Kind == "StatefulSet" {
				svc := find(objs, "Service", o.Spec.ServiceName)
				if svc == nil || svc.Spec.ClusterIP != "None" {
					t.Errorf("%s: serviceName %q is not a headless Service (clusterIP: None) in the file", id, o.Spec.ServiceName)
				}
			}
			if o.Spec.Template != nil {
				checkPod(t, id, o, objs)
			}
		}
	}
}

func checkPod(t *testing.T, id string, o *object, objs []*object) {
	p := o.Spec.Template.Spec
	vols := map[string]bool{}
	for _, v := range p.Volumes {
		vols[v.Name] = true
		if v.ConfigMap != nil && find(objs, "ConfigMap", v.ConfigMap.Name) == nil {
			t.Errorf("%s: volume %s: ConfigMap %q is not in the file", id, v.Name, v.ConfigMap.Name)
		}
	}
	rawSpec, _ := o.Spec.Template.raw["spec"].(map[string]any)
	for _, list := range []string{"initContainers", "containers"} {
		raw, _ := rawSpec[list].([]any)
		for _, rc := range raw {
			for k := range rc.(map[string]any) {
				if !slices.Contains(containerFields, k) {
					t.Errorf("%s: %s: unknown container field %q", id, list, k)
				}
			}
		}
	}
	for _, c := range p.InitContainers {
		if c.RestartPolicy != "" && c.RestartPolicy != "Always" {
			t.Errorf("%s: initContainer %s: restartPolicy %q (only Always, for a native sidecar)", id, c.Name, c.RestartPolicy)
		}
	}
	all := append(append([]container(nil), p.InitContainers...), p.Containers...)
	for _, c := range all {
		cid := id + " container " + c.Name
		for _, m := range c.VolumeMounts {
			if !vols[m.Name] && !claimed(o, m.Name) {
				t.Errorf("%s: mounts undeclared volume %q", cid, m.Name)
			}
		}
		checkImage(t, cid, c)
		checkProbesPorts(t, cid, c)
		checkHooks(t, cid, c, p.TerminationGracePeriodSeconds)
	}
}

// claimed reports whether name is a volumeClaimTemplate of a StatefulSet.
func claimed(o *object, name string) bool {
	return o.Kind == "StatefulSet" && name == "data" // every StatefulSet here names its claim "data"
}

var imageRE = regexp.MustCompile(`^podblocks/([a-z0-9-]+):dev$`)

// buildable is what images/build.sh builds: an examples/ directory, podtool, worker and the
// third-party servers.
func buildable(t *testing.T, name string) (binaryDir string, ok bool) {
	switch name {
	case "podtool":
		return filepath.Join(root(t), "e2e", "podtool"), true
	case "worker":
		return filepath.Join(root(t), "examples", "workqueue"), true
	case "memcached", "redis-server", "etcd":
		return "", true
	}
	dir := filepath.Join(root(t), "examples", name)
	if _, err := os.Stat(dir); err != nil {
		return "", false
	}
	return dir, true
}

var flagRE = regexp.MustCompile(`^--?([a-z][a-z0-9.-]*)(=.*)?$`)

func checkImage(t *testing.T, cid string, c container) {
	m := imageRE.FindStringSubmatch(c.Image)
	if m == nil {
		t.Errorf("%s: image %q, want podblocks/<name>:dev (images/build.sh)", cid, c.Image)
		return
	}
	if c.ImagePullPolicy != "IfNotPresent" && c.ImagePullPolicy != "Never" {
		t.Errorf("%s: imagePullPolicy %q: the images are built locally, not pulled", cid, c.ImagePullPolicy)
	}
	dir, ok := buildable(t, m[1])
	if !ok {
		t.Errorf("%s: images/build.sh builds no image %q", cid, m[1])
		return
	}
	if dir == "" {
		return // third-party
	}
	src := sources(t, dir)
	if c.Image == "podblocks/worker:dev" {
		src += sources(t, filepath.Join(root(t), "e2e", "podtool"))
	}
	for _, a := range c.Args {
		if a == "--" {
			break
		}
		f := flagRE.FindStringSubmatch(a)
		if f == nil {
			continue
		}
		// A flag package flag is named by a string literal; a getopt short option (the
		// ambassador's nutcracker mode) by a rune literal in its option table.
		defined := strings.Contains(src, strconv.Quote(f[1]))
		if len(f[1]) == 1 {
			defined = defined || strings.Contains(src, "short: "+strconv.QuoteRune(rune(f[1][0])))
		}
		if !defined {
			t.Errorf("%s: flag %q is not defined by %s", cid, a, dir)
		}
	}
}

func sources(t *testing.T, dir string) string {
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	var sb strings.Builder
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sb.Write(b)
	}
	return sb.String()
}

func portOf(c container, p any) (int, bool) {
	switch v := p.(type) {
	case int:
		return v, true
	case string:
		for _, cp := range c.Ports {
			if cp.Name == v {
				return cp.ContainerPort, true
			}
		}
	}
	return 0, false
}

func checkProbesPorts(t *testing.T, cid string, c container) {
	for what, p := range map[string]*probe{"startupProbe": c.StartupProbe, "livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe} {
		if p == nil {
			continue
		}
		var port any
		switch {
		case p.HTTPGet != nil:
			port = p.HTTPGet.Port
		case p.TCPSocket != nil:
			port = p.TCPSocket.Port
		default:
			t.Errorf("%s: %s has no httpGet or tcpSocket", cid, what)
			continue
		}
		if _, ok := portOf(c, port); !ok {
			if n, isInt := port.(int); !isInt || n <= 0 {
				t.Errorf("%s: %s port %v is not a declared port", cid, what, port)
			}
		}
	}
}

// argValue returns the value of flag name in args (-name V or -name=V).
func argValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if a == "--" {
			break
		}
		for _, p := range []string{"-", "--"} {
			if a == p+name && i+1 < len(args) {
				return args[i+1], true
			}
			if v, ok := strings.CutPrefix(a, p+name+"="); ok {
				return v, true
			}
		}
	}
	return "", false
}

// hookServer reports the port of the container's lifecycle hook server, if it runs one: -admin of
// examples/lifecycle and examples/health-adapter, -http of examples/elector.
func hookServer(c container) (flag string, port int, ok bool) {
	for _, f := range []string{"admin", "http"} {
		if f == "http" && c.Image != "podblocks/elector:dev" {
			continue
		}
		if v, has := argValue(c.Args, f); has {
			_, p, err := net.SplitHostPort(v)
			n, err2 := strconv.Atoi(p)
			if err != nil || err2 != nil {
				return f, 0, true
			}
			return f, n, true
		}
	}
	return "", 0, false
}

func checkHooks(t *testing.T, cid string, c container, grace *int) {
	flag, port, ok := hookServer(c)
	if !ok {
		if c.Image == "podblocks/lifecycle:dev" || c.Image == "podblocks/health-adapter:dev" || c.Image == "podblocks/elector:dev" {
			t.Errorf("%s: runs a hook server but sets no -admin/-http address (the default is loopback, which the kubelet cannot probe)", cid)
		}
		return
	}
	v, _ := argValue(c.Args, flag)
	if host, _, _ := net.SplitHostPort(v); host != "" && host != "0.0.0.0" && host != "::" {
		t.Errorf("%s: -%s %s: the kubelet probes the pod IP, bind 0.0.0.0", cid, flag, v)
	}
	declared := false
	for _, cp := range c.Ports {
		declared = declared || cp.ContainerPort == port
	}
	if !declared {
		t.Errorf("%s: hook server port %d (-%s) is not a declared containerPort", cid, port, flag)
	}
	want := map[string]string{"livenessProbe": "/livez", "readinessProbe": "/readyz", "startupProbe": "/startupz"}
	if c.Image == "podblocks/elector:dev" {
		// Ready once the leader (or "no leader") is known: the startup gate is /readyz.
		want["startupProbe"] = "/readyz"
	}
	for what, p := range map[string]*probe{"livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe, "startupProbe": c.StartupProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s: no %s httpGet on the hook server", cid, what)
			continue
		}
		if got, _ := portOf(c, p.HTTPGet.Port); p.HTTPGet.Path != want[what] || got != port {
			t.Errorf("%s: %s GET %s on port %d, want %s on %d", cid, what, p.HTTPGet.Path, got, want[what], port)
		}
	}
	if c.Image != "podblocks/lifecycle:dev" {
		return // only lifecycle.App drains on /prestop
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.HTTPGet == nil {
		t.Errorf("%s: no preStop httpGet", cid)
		return
	}
	if got, _ := portOf(c, c.Lifecycle.PreStop.HTTPGet.Port); c.Lifecycle.PreStop.HTTPGet.Path != "/prestop" || got != port {
		t.Errorf("%s: preStop GET %s on %d, want /prestop on %d", cid, c.Lifecycle.PreStop.HTTPGet.Path, got, port)
	}
	g := 30 * time.Second // the binary's default -grace
	if v, ok := argValue(c.Args, "grace"); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Errorf("%s: -grace %q: %v", cid, v, err)
		}
		g = d
	}
	pod := 30 // Kubernetes' default terminationGracePeriodSeconds
	if grace != nil {
		pod = *grace
	}
	if time.Duration(pod)*time.Second != g {
		t.Errorf("%s: -grace %v but terminationGracePeriodSeconds %d: the drain would be cut short or wait for nothing", cid, g, pod)
	}
}

// TestNativeSidecars checks the patterns that need a sidecar started before and stopped after the
// app run it as an initContainer with restartPolicy: Always sharing what it serves.
func TestNativeSidecars(t *testing.T) {
	docs := load(t)
	for _, tc := range []struct{ file, sidecar, shared string }{
		{"sidecar.yaml", "logship", "logs"},
		{"ambassador.yaml", "ambassador", ""},
		{"election.yaml", "elector", ""},
	} {
		found := false
		for _, o := range docs[tc.file] {
			if o.Spec.Template == nil {
				continue
			}
			for _, c := range o.Spec.Template.Spec.InitContainers {
				if c.Name != tc.sidecar {
					continue
				}
				found = true
				if c.RestartPolicy != "Always" {
					t.Errorf("%s: %s is an initContainer without restartPolicy: Always", tc.file, c.Name)
				}
				if tc.shared == "" {
					continue
				}
				for _, app := range o.Spec.Template.Spec.Containers {
					if !mounts(c, tc.shared) || !mounts(app, tc.shared) {
						t.Errorf("%s: %s and %s do not share volume %q", tc.file, c.Name, app.Name, tc.shared)
					}
				}
			}
		}
		if !found {
			t.Errorf("%s: no native sidecar %q", tc.file, tc.sidecar)
		}
	}
}

func mounts(c container, vol string) bool {
	for _, m := range c.VolumeMounts {
		if m.Name == vol {
			return true
		}
	}
	return false
}

// TestAmbassadorConfig parses the ambassador's nutcracker.yml with the ambassador's own parser.
func TestAmbassadorConfig(t *testing.T) {
	cm := find(load(t)["ambassador.yaml"], "ConfigMap", "ambassador")
	if cm == nil || cm.Data["nutcracker.yml"] == "" {
		t.Fatal("ambassador.yaml: no ConfigMap ambassador with nutcracker.yml")
	}
	cfg, err := twemproxy.Parse([]byte(cm.Data["nutcracker.yml"]))
	if err != nil {
		t.Fatalf("nutcracker.yml: %v", err)
	}
	p := cfg.Pool("cache")
	if p == nil {
		t.Fatal("nutcracker.yml: no pool cache")
	}

	// A kubelet sends its probes to the pod IP: the ambassador's startup probe must not target the
	// pool, which listens on loopback, but a port that listens on every address.
	d := find(load(t)["ambassador.yaml"], "Deployment", "ambassador-app")
	var amb *container
	for i, c := range d.Spec.Template.Spec.InitContainers {
		if c.Name == "ambassador" {
			amb = &d.Spec.Template.Spec.InitContainers[i]
		}
	}
	if amb == nil || amb.StartupProbe == nil || amb.StartupProbe.TCPSocket == nil {
		t.Fatal("ambassador.yaml: no ambassador init container with a tcpSocket startupProbe")
	}
	port, _ := portOf(*amb, amb.StartupProbe.TCPSocket.Port)
	host, lport, _ := net.SplitHostPort(p.ListenAddr)
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() && lport == strconv.Itoa(port) {
		t.Errorf("the startupProbe targets port %d, where the pool listens on %s: the kubelet cannot reach it", port, p.ListenAddr)
	}
	if m, ok := argValue(amb.Args, "metrics"); !ok || !strings.HasSuffix(m, ":"+strconv.Itoa(port)) || strings.HasPrefix(m, "127.") {
		t.Errorf("the startupProbe targets port %d, not the -metrics address on every interface (%q)", port, m)
	}
}

func find(objs []*object, kind, name string) *object {
	for _, o := range objs {
		if o.Kind == kind && o.Metadata.Name == name {
			return o
		}
	}
	return nil
}

func subset(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return len(sel) > 0
}

func selectsSome(sel map[string]string, objs []*object) bool {
	for _, o := range objs {
		if o.Spec.Template != nil && subset(sel, o.Spec.Template.Metadata.Labels) {
			return true
		}
	}
	return false
}
