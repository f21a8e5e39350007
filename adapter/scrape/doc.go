// Package scrape is the "scrape and transform" adapter: a Probe reads a target that speaks its
// own monitoring dialect, and an Exporter serves what it read as Prometheus metrics. Two probes
// come with it: JSONProbe (values of a JSON document picked by JSONPath-style paths, like
// json_exporter) and RedisInfo (the INFO reply of a redis server, the book's adapter example);
// JSONPush is the push variant, an http.Handler that applications POST their document to.
//
// Exporter.Handler probes one configured target per scrape; Exporter.ProbeHandler serves
// /probe?target=... for many targets (restrict them with WithAllowTargets when untrusted clients
// can reach it; there a JSONProbe checks every redirect with the same rule). Every scrape
// reports probe_success, and a sample that could not be exposed (invalid name, a name reused
// with another type, a repeated series) is dropped rather than failing the scrape, and counted in
// podblocks_adapter_scrape_dropped_samples_total{reason}.
//
// # Lifecycle
//
// An Exporter is a pair of http.Handlers: it holds no goroutines and needs no Run. Serve it with
// lifecycle.HTTPServer or the hook server.
//
// # Cleanup
//
// A probe's connections are closed before it returns, also when its context ends.
//
// # Concurrency
//
// Exporter, JSONProbe and RedisInfo are safe for concurrent use once configured.
package scrape
