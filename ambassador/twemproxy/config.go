package twemproxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Distribution is a twemproxy key distribution mode.
type Distribution string

// The distributions twemproxy's "distribution:" directive accepts.
const (
	Ketama Distribution = "ketama"
	Modula Distribution = "modula"
	Random Distribution = "random"
)

// distributions lists the values of Distribution, as twemproxy's "distribution:" accepts them.
var distributions = []string{string(Ketama), string(Modula), string(Random)}

func (d Distribution) known() bool {
	switch d {
	case Ketama, Modula, Random:
		return true
	}
	return false
}

// Defaults twemproxy applies to unset pool directives.
const (
	DefaultHash               = "fnv1a_64"
	DefaultDistribution       = Ketama
	DefaultBacklog            = 512
	DefaultServerConnections  = 1
	DefaultServerRetryTimeout = 30 * time.Second
	DefaultServerFailureLimit = 2
	// ketamaDefaultPort is left out of a server's hashing name, as libmemcached does.
	ketamaDefaultPort = 11211
)

// MaxConfigSize bounds the configuration file read by ReadFile.
const MaxConfigSize = 4 << 20

// Config is a parsed twemproxy (nutcracker) YAML configuration.
type Config struct {
	// Pools in the order the file lists them.
	Pools []*PoolConfig
}

// Pool returns the pool called name, or nil.
func (c *Config) Pool(name string) *PoolConfig {
	for _, p := range c.Pools {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// PoolConfig is one server pool of a twemproxy configuration, with twemproxy's defaults applied
// to directives the file leaves unset.
type PoolConfig struct {
	Name string
	Line int // line of the pool's name in the file

	// Listen is the "listen:" value as written; ListenNetwork is "tcp" or "unix" and ListenAddr the
	// host:port as Go writes it ("[::1]:22121" for nutcracker's "::1:22121") or the socket path;
	// ListenPerm the socket file's mode ("/path 0666"), 0 if unset.
	Listen        string
	ListenNetwork string
	ListenAddr    string
	ListenPerm    os.FileMode

	Hash         string // hash function name
	HashFunc     HashFunc
	HashTag      string // "" or two characters
	Distribution Distribution

	Timeout           time.Duration // 0: wait indefinitely
	Backlog           int
	ClientConnections int // 0: unlimited
	TCPKeepalive      bool
	Preconnect        bool

	Redis     bool
	RedisAuth string
	RedisDB   int

	ServerConnections  int
	AutoEjectHosts     bool
	ServerRetryTimeout time.Duration
	ServerFailureLimit int

	// Servers in nutcracker's internal order (sorted by hashing name: shorter first, then bytewise),
	// which is the order that decides modula placement.
	Servers []ServerConfig

	// Extensions (podblocks only; nutcracker rejects these keys).

	// NoReshard ("no_reshard: true"): an ejected server's keys get an error reply instead of moving
	// to another server, so a flapping shard never serves stale or split data.
	NoReshard bool
	// HealthCheckInterval ("health_check_interval: MSEC"): when > 0, every server is probed
	// (memcache "version", redis "PING") at this interval; a failed probe counts as a failure and a
	// good probe readmits an ejected server at once.
	HealthCheckInterval time.Duration
}

// ServerConfig is one "servers:" entry.
type ServerConfig struct {
	Spec    string // "host:port:weight" or "/path:weight", without the name
	Network string // "tcp" or "unix"
	Addr    string // "host:port" ("[::1]:6379" for nutcracker's "::1:6379") or "/path"
	Weight  int
	// Name is what ketama hashes: the configured name if any, else "host:port" ("host" alone when the
	// port is 11211).
	Name string
	Line int
}

// ReadFile reads and parses the configuration file at path.
func ReadFile(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("twemproxy: read config: %w", err)
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(f, MaxConfigSize+1)); err != nil {
		return nil, fmt.Errorf("twemproxy: read config: %w", err)
	}
	if buf.Len() > MaxConfigSize {
		return nil, &ConfigError{Err: fmt.Errorf("file is larger than %d bytes", MaxConfigSize)}
	}
	return Parse(buf.Bytes())
}

// Parse parses a twemproxy YAML configuration: a mapping of pool names to pool mappings. Every key
// nutcracker documents is accepted (plus the extensions described on PoolConfig); any other key is a
// *ConfigError naming the key and its line, and so is what nutcracker -t rejects among the values,
// such as redis_auth in a memcache pool. The file holds one YAML document: a second one, after
// "---", is a *ConfigError naming its line, as nutcracker -t rejects it.
func Parse(data []byte) (*Config, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, &ConfigError{Err: fmt.Errorf("yaml: %w", err)}
	}
	// nutcracker -t rejects a file of several documents; reading only the first would silently
	// leave the pools after a "---" unserved.
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, &ConfigError{Err: fmt.Errorf("yaml: %w", err)}
		}
		return nil, &ConfigError{Line: next.Line, Err: errors.New("second YAML document: the file must hold only one")}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, &ConfigError{Err: errors.New("has no pools")}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, &ConfigError{Line: root.Line, Err: errors.New("top level must be a mapping of pool names")}
	}
	if len(root.Content) == 0 {
		return nil, &ConfigError{Line: root.Line, Err: errors.New("has no pools")}
	}
	cfg := &Config{}
	names := map[string]bool{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Value == "" {
			return nil, &ConfigError{Line: k.Line, Err: errors.New("pool name must be a non-empty string")}
		}
		if names[k.Value] {
			return nil, &ConfigError{Line: k.Line, Pool: k.Value, Err: errors.New("duplicate pool name")}
		}
		names[k.Value] = true
		p, err := parsePool(k, v)
		if err != nil {
			return nil, err
		}
		cfg.Pools = append(cfg.Pools, p)
	}
	// What NewServer checks, Parse does: two pools on one address ("/a.sock 0666" and "/a//a.sock"
	// are both /a.sock) or on colliding ones (0.0.0.0:22121 and 127.0.0.2:22121), and every field
	// a run needs.
	if err := validate(cfg, nil); err != nil {
		return nil, err
	}
	return cfg, nil
}

func parsePool(k, v *yaml.Node) (*PoolConfig, error) {
	p := &PoolConfig{Name: k.Value, Line: k.Line}
	if v.Kind != yaml.MappingNode {
		return nil, &ConfigError{Line: v.Line, Pool: p.Name, Err: errors.New("pool must be a mapping")}
	}
	seen := map[string]bool{}
	var (
		timeout, retry, failLimit, serverConns, backlog = -1, -1, -1, -1, -1
		hc                                              = -1
		authLine                                        int // the line of redis_auth's value
	)
	cerr := func(line int, key string, format string, args ...any) error {
		return &ConfigError{Line: line, Pool: p.Name, Key: key, Err: fmt.Errorf(format, args...)}
	}
	for i := 0; i+1 < len(v.Content); i += 2 {
		kn, vn := v.Content[i], v.Content[i+1]
		key := kn.Value
		if kn.Kind != yaml.ScalarNode {
			return nil, cerr(kn.Line, "", "key must be a string")
		}
		if seen[key] {
			return nil, cerr(kn.Line, key, "is a duplicate")
		}
		seen[key] = true
		if key != "servers" && vn.Kind != yaml.ScalarNode {
			return nil, cerr(vn.Line, key, "value must be a scalar")
		}
		var err error
		switch key {
		case "listen":
			err = p.setListen(vn.Value)
		case "hash":
			p.Hash = vn.Value
			p.HashFunc = hashes[vn.Value]
			if p.HashFunc == nil {
				err = errHashNotOneOf
			}
		case "hash_tag":
			if len(vn.Value) != 2 {
				err = errors.New("is not a valid hash tag string with two characters")
			}
			p.HashTag = vn.Value
		case "distribution":
			p.Distribution = Distribution(vn.Value)
			if !p.Distribution.known() {
				err = errDistNotOneOf
			}
		case "timeout":
			timeout, err = parseNum(vn.Value)
		case "backlog":
			backlog, err = parseNum(vn.Value)
		case "client_connections":
			p.ClientConnections, err = parseNum(vn.Value)
		case "redis":
			p.Redis, err = parseBool(vn.Value)
		case "redis_auth":
			p.RedisAuth, authLine = vn.Value, vn.Line
			if vn.Value == "" {
				err = errors.New("is empty") // nutcracker rejects it, as any empty value
			}
		case "redis_db":
			p.RedisDB, err = parseNum(vn.Value)
		case "tcpkeepalive":
			p.TCPKeepalive, err = parseBool(vn.Value)
		case "preconnect":
			p.Preconnect, err = parseBool(vn.Value)
		case "auto_eject_hosts":
			p.AutoEjectHosts, err = parseBool(vn.Value)
		case "server_connections":
			serverConns, err = parseNum(vn.Value)
			if err == nil && serverConns == 0 {
				err = errors.New("must be at least 1")
			}
		case "server_retry_timeout":
			retry, err = parseNum(vn.Value)
		case "server_failure_limit":
			failLimit, err = parseNum(vn.Value)
		case "no_reshard":
			p.NoReshard, err = parseBool(vn.Value)
		case "health_check_interval":
			hc, err = parseNum(vn.Value)
		case "servers":
			if vn.Kind != yaml.SequenceNode {
				return nil, cerr(vn.Line, key, "must be a sequence")
			}
			for _, sn := range vn.Content {
				if sn.Kind != yaml.ScalarNode {
					return nil, cerr(sn.Line, key, "entry must be a string")
				}
				s, err := parseServer(sn.Value)
				if err != nil {
					return nil, cerr(sn.Line, key, "%q: %v", sn.Value, err)
				}
				s.Line = sn.Line
				p.Servers = append(p.Servers, s)
			}
			continue
		default:
			return nil, cerr(kn.Line, key, "is an unknown directive")
		}
		if err != nil {
			if key != "redis_auth" { // a password is never written to a message
				err = fmt.Errorf("%q %w", vn.Value, err)
			}
			return nil, &ConfigError{Line: vn.Line, Pool: p.Name, Key: key, Err: err}
		}
	}
	if p.Listen == "" {
		return nil, &ConfigError{Line: p.Line, Pool: p.Name, Key: "listen", Err: errors.New("is missing")}
	}
	// As nutcracker: a memcache pool has no password to check. (redis_db it accepts, and ignores.)
	if p.RedisAuth != "" && !p.Redis {
		return nil, &ConfigError{Line: authLine, Pool: p.Name, Key: "redis_auth", Err: errors.New("is only valid for a redis pool")}
	}
	if len(p.Servers) == 0 {
		return nil, &ConfigError{Line: p.Line, Pool: p.Name, Key: "servers", Err: errors.New("pool has no servers")}
	}
	// nutcracker sorts servers by name (length first, then bytes) and rejects duplicates; the
	// sorted order is the index order its distributions use.
	sort.SliceStable(p.Servers, func(i, j int) bool { return nameLess(p.Servers[i].Name, p.Servers[j].Name) })
	for i := 1; i < len(p.Servers); i++ {
		if p.Servers[i].Name == p.Servers[i-1].Name {
			return nil, &ConfigError{Line: p.Servers[i].Line, Pool: p.Name, Key: "servers",
				Err: fmt.Errorf("servers with same name %q", p.Servers[i].Name)}
		}
	}
	if p.Hash == "" {
		p.Hash = DefaultHash
		p.HashFunc = hashes[DefaultHash]
	}
	if p.Distribution == "" {
		p.Distribution = DefaultDistribution
	}
	if timeout > 0 {
		p.Timeout = time.Duration(timeout) * time.Millisecond
	}
	p.Backlog = orDefault(backlog, DefaultBacklog)
	p.ServerConnections = orDefault(serverConns, DefaultServerConnections)
	p.ServerRetryTimeout = DefaultServerRetryTimeout
	if retry >= 0 {
		p.ServerRetryTimeout = time.Duration(retry) * time.Millisecond
	}
	p.ServerFailureLimit = orDefault(failLimit, DefaultServerFailureLimit)
	if hc > 0 {
		p.HealthCheckInterval = time.Duration(hc) * time.Millisecond
	}
	return p, nil
}

func orDefault(v, def int) int {
	if v < 0 {
		return def
	}
	return v
}

// nameLess orders names as nutcracker's string_compare does: shorter first, then bytewise.
func nameLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

// parseNum accepts what nutcracker's nc_atoi accepts: decimal digits only.
func parseNum(s string) (int, error) {
	if s == "" || len(s) > 9 {
		return 0, errors.New("is not a number")
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, errors.New("is not a number")
		}
		n = n*10 + int(c-'0')
	}
	return n, nil
}

func parseBool(s string) (bool, error) {
	switch s {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, errors.New(`is not "true" or "false"`)
}

func parsePort(s string) (int, error) {
	n, err := parseNum(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("invalid port %q", s)
	}
	return n, nil
}

func (p *PoolConfig) setListen(v string) error {
	p.Listen = v
	if strings.HasPrefix(v, "/") {
		p.ListenNetwork = "unix"
		p.ListenAddr = v
		if i := strings.LastIndexByte(v, ' '); i >= 0 {
			perm, err := strconv.ParseUint(v[i+1:], 8, 32)
			if err != nil || perm > 0o777 {
				return errors.New(`has an invalid file permission in "socket_path permission" format string`)
			}
			p.ListenAddr = v[:i]
			p.ListenPerm = os.FileMode(perm)
		}
		return nil
	}
	i := strings.LastIndexByte(v, ':')
	if i < 0 {
		return errors.New(`has an invalid "hostname:port" format string`)
	}
	if _, err := parsePort(v[i+1:]); err != nil {
		return fmt.Errorf(`has an invalid port in "hostname:port" format string: %w`, err)
	}
	p.ListenNetwork = "tcp"
	p.ListenAddr = joinHostPort(v[:i], v[i+1:])
	return nil
}

// joinHostPort makes the address Go dials or listens on from nutcracker's "host:port", split at
// the last colon: "::1:22121" becomes "[::1]:22121". A host already in brackets keeps one pair.
func joinHostPort(host, port string) string {
	if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	return net.JoinHostPort(host, port)
}

// parseServer parses "host:port:weight [name]" or "/path/unix_socket:weight [name]".
func parseServer(v string) (ServerConfig, error) {
	var s ServerConfig
	rest := v
	name := ""
	if i := strings.LastIndexByte(rest, ' '); i >= 0 {
		name = rest[i+1:]
		rest = rest[:i]
	}
	s.Spec = rest
	i := strings.LastIndexByte(rest, ':')
	if i < 0 {
		return s, errors.New(`invalid "hostname:port:weight [name]" or "/path/unix_socket:weight [name]" format`)
	}
	w, err := parseNum(rest[i+1:])
	if err != nil {
		return s, fmt.Errorf("invalid weight %q", rest[i+1:])
	}
	if w == 0 {
		return s, errors.New("has a zero weight")
	}
	s.Weight = w
	addr := rest[:i]
	if strings.HasPrefix(v, "/") {
		s.Network, s.Addr = "unix", addr
		s.Name = addr + ":" // nutcracker hashes the path with the empty port's colon
	} else {
		j := strings.LastIndexByte(addr, ':')
		if j < 0 {
			return s, errors.New(`invalid "hostname:port:weight [name]" format`)
		}
		port, err := parsePort(addr[j+1:])
		if err != nil {
			return s, err
		}
		// Name keeps nutcracker's hashing string, "::1:6379" as written; Addr is what Go dials.
		s.Network, s.Addr = "tcp", joinHostPort(addr[:j], addr[j+1:])
		s.Name = addr
		if port == ketamaDefaultPort {
			s.Name = addr[:j]
		}
	}
	if name != "" {
		s.Name = name
	}
	return s, nil
}
