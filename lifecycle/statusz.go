package lifecycle

import (
	"context"
	"html/template"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"time"

	"go.uber.org/zap"
)

// statusPage is what /statusz renders, as HTML or as JSON (?format=json).
type statusPage struct {
	Title     string          `json:"title"`
	Version   string          `json:"version"`
	GoVersion string          `json:"go_version"`
	PID       int             `json:"pid"`
	Host      string          `json:"host"`
	Started   time.Time       `json:"started"`
	Uptime    string          `json:"uptime"`
	State     string          `json:"state"`
	Priority  string          `json:"priority,omitempty"`
	Links     []string        `json:"links"`
	Checks    []statusCheck   `json:"checks"`
	Sections  []statusSection `json:"sections"`
	Refresh   int             `json:"-"`
}

type statusCheck struct {
	Probe  string `json:"probe"`
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Result string `json:"result"`
	At     string `json:"at,omitempty"`
	Took   string `json:"took,omitempty"`
}

type statusSection struct {
	Title  string     `json:"title"`
	Header []string   `json:"header"`
	Rows   [][]string `json:"rows"`
}

func (s *Server) statusPage() statusPage {
	host, _ := os.Hostname()
	p := statusPage{
		Title:     "podblocks status",
		Version:   s.opts.version,
		GoVersion: runtime.Version(),
		PID:       os.Getpid(),
		Host:      host,
		Started:   s.started.UTC(),
		Uptime:    time.Since(s.started).Round(time.Second).String(),
		State:     s.State().String(),
		Priority:  s.priority.Load().(string),
		Links:     []string{"/livez?verbose", "/readyz?verbose", "/startupz?verbose", "/metrics", "/configz"},
		Refresh:   int(s.opts.statusReload / time.Second),
	}
	if p.Version == "" {
		if bi, ok := debug.ReadBuildInfo(); ok {
			p.Version = bi.Main.Version
		}
	}
	if s.opts.level != nil {
		p.Links = append(p.Links, "/logz")
	}
	if s.opts.pprof {
		p.Links = append(p.Links, "/debug/pprof/")
	}
	for _, probe := range []Probe{Livez, Readyz, Startupz} {
		for _, c := range s.checksFor(probe) {
			res := c.lastResult()
			if c.Name == lifecycleCheckName || c.Name == startedCheckName {
				res = c.run(context.Background(), &s.calls) // cheap built-ins: show the current answer
			}
			sc := statusCheck{Probe: probe.String(), Name: c.Name, OK: res.err == nil && !res.at.IsZero(), Result: "ok"}
			switch {
			case res.at.IsZero():
				sc.Result = "not yet run"
			case res.err != nil:
				sc.Result = res.err.Error()
			}
			if !res.at.IsZero() {
				sc.At = res.at.UTC().Format(time.RFC3339)
				sc.Took = res.took.Round(time.Microsecond).String()
			}
			p.Checks = append(p.Checks, sc)
		}
	}
	s.mu.Lock()
	providers := append([]StatusProvider(nil), s.statuses...)
	s.mu.Unlock()
	for _, sp := range providers {
		title, header, rows := safeStatusz(sp)
		p.Sections = append(p.Sections, statusSection{Title: title, Header: header, Rows: redactRows(header, rows)})
	}
	return p
}

// safeStatusz calls sp.Statusz, turning a panic into a section that says so: one broken provider must
// not take the page down.
func safeStatusz(sp StatusProvider) (title string, header []string, rows [][]string) {
	defer func() {
		if r := recover(); r != nil {
			title, header, rows = "(provider failed)", []string{"error"}, [][]string{{"panic in Statusz"}}
		}
	}()
	return sp.Statusz()
}

// redactRows hides the value of key/value rows whose key looks like a secret, and whole columns whose
// header does. A plain integer under a secret-looking key is shown: status pages are full of fencing
// tokens and token-bucket counts, and a secret is not a bare number.
func redactRows(header []string, rows [][]string) [][]string {
	secretCol := make([]bool, len(header))
	for i, h := range header {
		secretCol[i] = secretName.MatchString(h)
	}
	kv := len(header) == 2 && header[0] == "key"
	out := make([][]string, len(rows))
	for i, r := range rows {
		row := append([]string(nil), r...)
		for j := range row {
			if j < len(secretCol) && secretCol[j] && row[j] != "" {
				row[j] = Redacted
			}
		}
		if kv && len(row) == 2 && secretName.MatchString(row[0]) && !isInteger(row[1]) {
			row[1] = Redacted
		}
		out[i] = row
	}
	return out
}

var statusTemplate = template.Must(template.New("statusz").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
{{if .Refresh}}<meta http-equiv="refresh" content="{{.Refresh}}">{{end}}
<title>{{.Title}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;font-size:.9em}
th{background:#f0f0f0}
.ok{color:#080}.fail{color:#b00;font-weight:bold}
nav a{margin-right:1em}
</style></head><body>
<h1 id="title">{{.Title}}</h1>
<section id="process"><h2>Process</h2><table>
<tr><th>version</th><td>{{.Version}}</td></tr>
<tr><th>go</th><td>{{.GoVersion}}</td></tr>
<tr><th>host / pid</th><td>{{.Host}} / {{.PID}}</td></tr>
<tr><th>started</th><td>{{.Started.Format "2006-01-02T15:04:05Z07:00"}} (up {{.Uptime}})</td></tr>
<tr><th>state</th><td id="state">{{.State}}</td></tr>
{{if .Priority}}<tr><th>priority class</th><td>{{.Priority}}</td></tr>{{end}}
</table></section>
<nav id="links">{{range .Links}}<a href="{{.}}">{{.}}</a>{{end}}</nav>
<section id="checks"><h2>Checks</h2><table>
<tr><th>probe</th><th>check</th><th>result</th><th>at</th><th>took</th></tr>
{{range .Checks}}<tr><td>{{.Probe}}</td><td>{{.Name}}</td><td class="{{if .OK}}ok{{else}}fail{{end}}">{{.Result}}</td><td>{{.At}}</td><td>{{.Took}}</td></tr>
{{end}}</table></section>
{{range $i, $s := .Sections}}<section class="provider" id="section-{{$i}}"><h2>{{$s.Title}}</h2><table>
<tr>{{range $s.Header}}<th>{{.}}</th>{{end}}</tr>
{{range $s.Rows}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>
{{end}}</table></section>
{{end}}</body></html>
`))

func (s *Server) serveStatusz(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, "GET, HEAD")
		return
	}
	page := s.statusPage()
	switch f := r.URL.Query().Get("format"); f {
	case "json":
		writeJSON(w, http.StatusOK, page)
	case "", "html":
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
		if err := statusTemplate.Execute(w, page); err != nil {
			s.log.Warn("render statusz", zap.Error(err))
		}
	default:
		http.Error(w, "unknown format "+strconv.Quote(f)+"; use html or json", http.StatusBadRequest)
	}
}

func isInteger(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if (r < '0' || r > '9') && !(i == 0 && r == '-' && len(s) > 1) {
			return false
		}
	}
	return true
}
