package main

import (
	"net"
	"net/url"
	"strings"

	"github.com/podblocks/podblocks/ambassador"
	"github.com/podblocks/podblocks/internal/cmdline"
)

// endpoints parses -backends: HOST:PORT items, and for the http subcommand http://HOST[:PORT][/]
// URLs too, each optionally *WEIGHT (1 to ambassador.MaxWeight, 65535). It refuses what the proxy would not honour: a
// URL's user, path, query or fragment (the proxy sends the client's request line and headers as
// they are), a URL for a tcp backend, a port no dial can reach, weight 0, which the library
// counts as 1 where haproxy users expect no traffic, and an address listed twice (a typo here,
// which the library would merge).
func (f *proxyFlags) endpoints(httpMode bool) ([]ambassador.Endpoint, error) {
	if f.backends == "" {
		return nil, cmdline.Usagef("-backends is required")
	}
	items, err := cmdline.List("backends", f.backends)
	if err != nil {
		return nil, err
	}
	parts := make([]string, 0, len(items))
	seen := make(map[string]bool, len(items))
	for _, p := range items {
		p = strings.TrimSpace(p)
		addr, weight, weighted := cutWeight(p)
		if weighted && weight == "0" {
			return nil, cmdline.Usagef("-backends: %s: weight 0 would count as 1, not as no traffic: leave the backend out, or give it a weight of 1 or more", p)
		}
		if strings.Contains(addr, "://") {
			if !httpMode {
				return nil, cmdline.Usagef("-backends: %s: a tcp backend is HOST:PORT, not a URL", p)
			}
			if addr, err = urlHostPort(addr); err != nil {
				return nil, err
			}
		}
		if _, _, err := net.SplitHostPort(addr); err == nil {
			// The port's own message; ParseEndpoints names what is no HOST:PORT at all.
			if err := cmdline.AddrFrom("-backends", addr, 1); err != nil {
				return nil, err
			}
		}
		// The library merges a repeated address; on a command line it is a typo.
		if seen[addr] {
			return nil, cmdline.Usagef("-backends %q: address %q is listed twice", f.backends, addr)
		}
		seen[addr] = true
		if weighted {
			addr += "*" + weight
		}
		parts = append(parts, addr)
	}
	eps, err := ambassador.ParseEndpoints(strings.Join(parts, ","))
	if err != nil {
		return nil, cmdline.Usagef("-backends %q: %w", f.backends, err)
	}
	return eps, nil
}

// cutWeight splits "ADDR*WEIGHT" at its last '*'.
func cutWeight(item string) (addr, weight string, weighted bool) {
	if i := strings.LastIndexByte(item, '*'); i >= 0 {
		return item[:i], item[i+1:], true
	}
	return item, "", false
}

// urlHostPort returns the HOST:PORT of s, an http:// URL (port 80 when it has none), or a usage
// error when s has more than a scheme, a host and a port (and a "/" path): the proxy would drop it.
func urlHostPort(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", cmdline.Usagef("-backends: %w", err)
	}
	if u.Scheme != "http" {
		return "", cmdline.Usagef("-backends: %s: only http:// endpoints are supported", s)
	}
	var dropped []string
	if u.User != nil {
		dropped = append(dropped, "user info")
	}
	if u.Path != "" && u.Path != "/" {
		dropped = append(dropped, "path")
	}
	if u.RawQuery != "" || u.ForceQuery {
		dropped = append(dropped, "query")
	}
	if u.Fragment != "" || strings.Contains(s, "#") {
		dropped = append(dropped, "fragment")
	}
	if len(dropped) > 0 {
		return "", cmdline.Usagef("-backends: %s: a backend URL is http://HOST[:PORT]: the proxy does not use its %s (it forwards each request's own path and headers)",
			s, andList(dropped))
	}
	if u.Hostname() == "" {
		return "", cmdline.Usagef("-backends: %s: no host", s)
	}
	port := u.Port()
	if port == "" {
		port = "80"
	}
	return net.JoinHostPort(u.Hostname(), port), nil
}

// andList joins items as "a", "a and b" or "a, b and c".
func andList(items []string) string {
	if n := len(items); n > 1 {
		return strings.Join(items[:n-1], ", ") + " and " + items[n-1]
	}
	return strings.Join(items, "")
}
