package twemproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
)

// ResolveListen resolves the host of every TCP pool's listen address, as nutcracker does when it
// reads its configuration: nutcracker -t refuses a configuration whose listen host does not
// resolve (a server's host it resolves only when it connects, so a server's is not checked). The
// error is a *ConfigError naming the pool and its "listen" key. Run and Reload resolve the hosts
// themselves when they bind; ResolveListen is for checking a configuration without serving it.
func ResolveListen(ctx context.Context, cfg *Config) error {
	for _, pc := range cfg.Pools {
		if pc.ListenNetwork != "tcp" {
			continue
		}
		host, _, err := net.SplitHostPort(pc.ListenAddr)
		if err == nil && host != "" {
			_, err = net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
		if err != nil {
			return &ConfigError{Line: pc.Line, Pool: pc.Name, Key: "listen", Err: fmt.Errorf("resolve %q: %w", pc.ListenAddr, err)}
		}
	}
	return nil
}

// validate checks what serving cfg needs, so that a Config built in Go rather than by Parse gets a
// *ConfigError naming the pool and the field instead of a panic or a pool that serves nothing: the
// checks Parse makes, and the values Parse would have given a default, must be set. Two pools may
// not listen on one address, nor on TCP addresses that certainly collide (see collision), which
// can never both be bound (the error wraps syscall.EADDRINUSE): so a Reload refuses them before it
// stops any pool. kept, nil but in a Reload, holds the address that each pool keeping its listener
// through the Reload is bound to. It changes nothing in cfg.
func validate(cfg *Config, kept map[*PoolConfig]net.Addr) error {
	if cfg == nil || len(cfg.Pools) == 0 {
		return &ConfigError{Err: errors.New("has no pools")}
	}
	names := map[string]bool{}
	listens := map[string]string{}
	var tcp []*PoolConfig
	for _, pc := range cfg.Pools {
		if pc == nil {
			return &ConfigError{Err: errors.New("has a nil pool")}
		}
		if pc.Name == "" {
			return &ConfigError{Line: pc.Line, Err: errors.New("pool name must be a non-empty string")}
		}
		if names[pc.Name] {
			return &ConfigError{Line: pc.Line, Pool: pc.Name, Err: errors.New("duplicate pool name")}
		}
		names[pc.Name] = true
		if err := validatePool(pc); err != nil {
			return err
		}
		key := listenKey(pc)
		if other, ok := listens[key]; ok {
			return &ConfigError{Line: pc.Line, Pool: pc.Name, Key: "listen",
				Err: fmt.Errorf("same listen address %q as pool %q", pc.ListenAddr, other)}
		}
		listens[key] = pc.Name
		if pc.ListenNetwork != "tcp" {
			continue
		}
		for _, other := range tcp {
			if err := collision(other, pc, kept); err != nil {
				return err
			}
		}
		tcp = append(tcp, pc)
	}
	return nil
}

// collision returns a *ConfigError if the listen addresses of the TCP pools a and b, a before b in
// the configuration, certainly collide on one port (see hostsCollide), or else nil. A pool in kept,
// which keeps its listener through a Reload, is compared by the address its listener is bound to, so
// that a host that is a name counts as the address it was bound on. The error is on the pool that
// is not kept, new or moving, if only one is, and else on b; it names the other.
func collision(a, b *PoolConfig, kept map[*PoolConfig]net.Addr) error {
	ba, bb := boundAs(a, kept[a]), boundAs(b, kept[b])
	if bindKey(ba) != bindKey(bb) || !hostsCollide(ba, bb) {
		return nil
	}
	on, other, bound := b, a, kept[a]
	if kept[b] != nil && kept[a] == nil {
		on, other, bound = a, b, kept[b]
	}
	where := ""
	if bound != nil && listenKey(boundAs(other, bound)) != listenKey(other) {
		where = fmt.Sprintf(" (bound to %s)", bound)
	}
	return &ConfigError{Line: on.Line, Pool: on.Name, Key: "listen",
		Err: fmt.Errorf("listen address %q collides with pool %q's %q%s, on the same port: %w%s: "+
			"move one of the two pools to another port",
			on.ListenAddr, other.Name, other.ListenAddr, where, syscall.EADDRINUSE, collisionWhy(ba, bb))}
}

// boundAs returns pc, or if bound is not nil the TCP listen address of a pool bound to bound, for
// comparing with other listen addresses.
func boundAs(pc *PoolConfig, bound net.Addr) *PoolConfig {
	if bound == nil {
		return pc
	}
	return &PoolConfig{ListenNetwork: "tcp", ListenAddr: bound.String()}
}

// validatePool checks one pool; the error names the YAML key, and the PoolConfig field.
func validatePool(pc *PoolConfig) error {
	bad := func(key, format string, args ...any) error {
		return &ConfigError{Line: pc.Line, Pool: pc.Name, Key: key, Err: fmt.Errorf(format, args...)}
	}
	switch pc.ListenNetwork {
	case "tcp", "unix":
	default:
		return bad("listen", `ListenNetwork %q is not "tcp" or "unix"`, pc.ListenNetwork)
	}
	if pc.ListenAddr == "" {
		return bad("listen", "ListenAddr is empty")
	}
	if pc.ListenPerm != 0 && (pc.ListenNetwork != "unix" || pc.ListenPerm&^os.ModePerm != 0) {
		return bad("listen", "ListenPerm %v is not a permission of a unix socket file", pc.ListenPerm)
	}
	if pc.Hash != "" {
		if hashes[pc.Hash] == nil {
			return bad("hash", "Hash %q %w", pc.Hash, errHashNotOneOf)
		}
		if pc.HashFunc == nil && pc.Hash != DefaultHash {
			return bad("hash", "HashFunc is nil while Hash is %q: set it to LookupHash's", pc.Hash)
		}
	}
	if pc.HashTag != "" && len(pc.HashTag) != 2 {
		return bad("hash_tag", "HashTag %q is not two characters", pc.HashTag)
	}
	if !pc.Distribution.known() {
		return bad("distribution", "Distribution %q %w", pc.Distribution, errDistNotOneOf)
	}
	for _, f := range []struct {
		key, field string
		v          int64
	}{
		{"timeout", "Timeout", int64(pc.Timeout)},
		{"backlog", "Backlog", int64(pc.Backlog)},
		{"client_connections", "ClientConnections", int64(pc.ClientConnections)},
		{"redis_db", "RedisDB", int64(pc.RedisDB)},
		{"server_retry_timeout", "ServerRetryTimeout", int64(pc.ServerRetryTimeout)},
		{"server_failure_limit", "ServerFailureLimit", int64(pc.ServerFailureLimit)},
		{"health_check_interval", "HealthCheckInterval", int64(pc.HealthCheckInterval)},
	} {
		if f.v < 0 {
			return bad(f.key, "%s is negative", f.field)
		}
	}
	if pc.ServerConnections < 1 {
		return bad("server_connections", "ServerConnections is %d, want at least 1", pc.ServerConnections)
	}
	if pc.RedisAuth != "" && !pc.Redis {
		return bad("redis_auth", "is only valid for a redis pool")
	}
	if len(pc.Servers) == 0 {
		return bad("servers", "pool has no servers")
	}
	names := map[string]bool{}
	for i, sc := range pc.Servers {
		bad := func(format string, args ...any) error {
			line := sc.Line
			if line == 0 {
				line = pc.Line
			}
			return &ConfigError{Line: line, Pool: pc.Name, Key: "servers",
				Err: fmt.Errorf("Servers[%d]: "+format, append([]any{i}, args...)...)}
		}
		switch sc.Network {
		case "tcp", "unix":
		default:
			return bad(`Network %q is not "tcp" or "unix"`, sc.Network)
		}
		if sc.Addr == "" {
			return bad("Addr is empty")
		}
		if sc.Weight < 1 {
			return bad("Weight is %d, want at least 1", sc.Weight)
		}
		if names[sc.Name] {
			return bad("servers with same name %q", sc.Name)
		}
		names[sc.Name] = true
	}
	return nil
}
