package redis

import (
	"maps"
	"slices"
)

// cmdShape says where a command's keys are and how its replies combine.
type cmdShape uint8

const (
	shapeKey   cmdShape = iota + 1 // one key, the first argument
	shapeMGet                      // every argument is a key; replies form an array in key order
	shapeSum                       // every argument is a key; integer replies are added up
	shapeMSet                      // key value pairs; "+OK" when every part is OK
	shapeLocal                     // answered by the proxy
	shapeAuth                      // AUTH: checked by the pool against redis_auth
	shapeNoKey                     // no key: sent where an empty key goes
	// The shapes from here on have keys that must all be on one server: the command is sent
	// whole to that server, or refused (see together).
	shapeKeys  // keys at the arguments first..last, and the numkeys-counted ones
	shapeEval  // EVAL script numkeys key...: as shapeKeys, and at least one key
	shapeStore // the first argument, and the keys of the STORE and STOREDIST options
)

// together reports whether the keys of a command of shape s must all be on one server.
func (s cmdShape) together() bool { return s >= shapeKeys }

// toEnd as cmdInfo.last: the keys run to the last argument.
const toEnd = 0xff

type cmdInfo struct {
	shape cmdShape
	arity uint8 // minimum number of arguments, the command included
	// shapeKeys, shapeEval: the keys are the arguments first..last (first 0: none), then the
	// number of keys that the argument numkeys (0: none) gives, right after it.
	first, last, numkeys uint8
	// shapeStore: the first argument that may be an option.
	opts uint8
}

// cmdTableSize is the size of lookup's table: a power of two, over four times the commands.
const cmdTableSize = 1024

// cmdTable is commands as an open-addressing table indexed by cmdSlot: a lookup costs a few loads
// and one comparison, where the map's string hash cost about 4% of the proxy's time at -P16.
var cmdTable = buildTable(commands)

// cmdEntry is a slot of cmdTable. Its size is a power of two (32 bytes: checked by a test), so
// that a slot's address is a shift away from its index.
type cmdEntry struct {
	name string
	info cmdInfo
	_    [10]byte
}

// cmdSlot is the first slot of the table where the upper-case name up may be.
func cmdSlot(up []byte) uint {
	n := len(up)
	h := uint(n)*0x9e3779b1 ^ uint(up[0])<<8 ^ uint(up[n-1])*0x85eb ^ uint(up[n/2])*0xc2b3 ^ uint(up[(n-1)/3])<<16
	return (h ^ h>>10) & (cmdTableSize - 1)
}

// hotCommands go into the table first, in this order, so that each is found at the first probe (a
// test checks it): the commands of redis-benchmark and of most caches. The others follow in name
// order, so that the table is the same in every process.
var hotCommands = []string{"GET", "SET", "MGET", "MSET", "DEL", "EXISTS", "INCR", "DECR", "INCRBY",
	"EXPIRE", "TTL", "SETEX", "HGET", "HSET", "HMGET", "HGETALL", "HINCRBY", "LPUSH", "RPUSH", "LPOP",
	"RPOP", "LRANGE", "SADD", "SREM", "SPOP", "SMEMBERS", "SISMEMBER", "ZADD", "ZREM", "ZRANGE",
	"ZRANGEBYSCORE", "ZINCRBY", "ZPOPMIN", "EVALSHA", "PING", "UNLINK"}

func buildTable(cmds map[string]cmdInfo) *[cmdTableSize]cmdEntry {
	var t [cmdTableSize]cmdEntry
	for _, name := range append(slices.Clone(hotCommands), slices.Sorted(maps.Keys(cmds))...) {
		i := cmdSlot([]byte(name))
		for t[i].name != "" && t[i].name != name {
			i = (i + 1) & (cmdTableSize - 1)
		}
		t[i] = cmdEntry{name: name, info: cmds[name]}
	}
	return &t
}

// lookup finds the command with the upper-case name up (not empty), or returns nil. A pointer into
// the table is one result register; a cmdInfo would be one a field.
func lookup(up []byte) *cmdInfo {
	for i := cmdSlot(up); ; i = (i + 1) & (cmdTableSize - 1) {
		e := &cmdTable[i]
		if e.name == string(up) {
			return &e.info
		}
		if e.name == "" {
			return nil
		}
	}
}

// commands lists what the proxy forwards (keyed by upper-case name): every command that
// nutcracker 0.5.0 forwards, and a few more single-key ones. The others get an error reply, as
// with nutcracker: commands that act on the whole server (KEYS, SCAN, FLUSHALL, ...) or need
// connection state (transactions, pub/sub, blocking pops), and a few with several keys that
// nutcracker does not forward (RENAME, MSETNX, BITOP, ...).
var commands = buildCommands()

func buildCommands() map[string]cmdInfo {
	commands := map[string]cmdInfo{}
	single := func(arity uint8, names ...string) {
		for _, n := range names {
			commands[n] = cmdInfo{shape: shapeKey, arity: arity}
		}
	}
	single(2, "GET", "STRLEN", "INCR", "DECR", "GETDEL", "TTL", "PTTL", "PERSIST", "TYPE", "DUMP",
		"HGETALL", "HKEYS", "HVALS", "HLEN", "LLEN", "SCARD", "SMEMBERS", "ZCARD",
		"EXPIRETIME", "PEXPIRETIME", "GETEX", "LPOP", "RPOP", "SPOP", "SRANDMEMBER", "HRANDFIELD",
		"ZRANDMEMBER", "ZPOPMIN", "ZPOPMAX", "BITCOUNT", "BITFIELD", "SORT_RO", "PFADD", "GEOHASH",
		"GEOPOS")
	single(3, "SET", "SETNX", "APPEND", "INCRBY", "DECRBY", "INCRBYFLOAT", "GETSET", "EXPIRE",
		"PEXPIRE", "EXPIREAT", "PEXPIREAT", "GETBIT", "HGET", "HEXISTS", "HDEL", "HSTRLEN", "HMGET",
		"LPUSH", "RPUSH", "LPUSHX", "RPUSHX", "LINDEX", "SADD", "SREM", "SISMEMBER", "SMISMEMBER",
		"ZREM", "ZSCORE", "ZMSCORE", "ZRANK", "ZREVRANK", "BITPOS", "HSCAN", "SSCAN", "ZSCAN", "LPOS",
		"RESTORE")
	single(4, "SETEX", "PSETEX", "GETRANGE", "SETRANGE", "SETBIT", "HSET", "HSETNX", "HMSET",
		"HINCRBY", "HINCRBYFLOAT", "LRANGE", "LSET", "LREM", "LTRIM", "ZADD", "ZINCRBY", "ZRANGE",
		"ZREVRANGE", "ZRANGEBYSCORE", "ZREVRANGEBYSCORE", "ZRANGEBYLEX", "ZREVRANGEBYLEX", "ZCOUNT",
		"ZLEXCOUNT", "ZREMRANGEBYRANK", "ZREMRANGEBYSCORE", "ZREMRANGEBYLEX", "GEODIST",
		"GEOSEARCH", "GEORADIUSBYMEMBER_RO")
	single(5, "LINSERT", "GEOADD", "GEORADIUS_RO")
	commands["MGET"] = cmdInfo{shape: shapeMGet, arity: 2}
	for _, n := range []string{"DEL", "UNLINK", "EXISTS", "TOUCH"} {
		commands[n] = cmdInfo{shape: shapeSum, arity: 2}
	}
	commands["MSET"] = cmdInfo{shape: shapeMSet, arity: 3}
	// Keys that must share a server. nutcracker routes these by their first argument (EVAL by
	// its first key) and runs them there, whatever the other keys' servers.
	keys := func(arity, first, last, numkeys uint8, names ...string) {
		for _, n := range names {
			commands[n] = cmdInfo{shape: shapeKeys, arity: arity, first: first, last: last, numkeys: numkeys}
		}
	}
	keys(2, 1, toEnd, 0, "SDIFF", "SINTER", "SUNION", "PFCOUNT", "PFMERGE")
	keys(3, 1, toEnd, 0, "SDIFFSTORE", "SINTERSTORE", "SUNIONSTORE")
	keys(3, 1, 2, 0, "RPOPLPUSH", "COPY")
	keys(4, 1, 2, 0, "SMOVE")
	keys(5, 1, 2, 0, "LMOVE", "ZRANGESTORE")
	keys(8, 1, 2, 0, "GEOSEARCHSTORE")
	keys(3, 0, 0, 1, "ZDIFF", "ZINTER", "ZUNION")
	keys(4, 1, 1, 2, "ZDIFFSTORE", "ZINTERSTORE", "ZUNIONSTORE")
	for _, n := range []string{"EVAL", "EVALSHA", "EVAL_RO", "EVALSHA_RO"} {
		commands[n] = cmdInfo{shape: shapeEval, arity: 3, numkeys: 2}
	}
	commands["SORT"] = cmdInfo{shape: shapeStore, arity: 2, opts: 2}
	commands["GEORADIUS"] = cmdInfo{shape: shapeStore, arity: 6, opts: 6}
	commands["GEORADIUSBYMEMBER"] = cmdInfo{shape: shapeStore, arity: 5, opts: 5}
	for _, n := range []string{"COMMAND", "LOLWUT"} {
		commands[n] = cmdInfo{shape: shapeNoKey, arity: 1}
	}
	commands["AUTH"] = cmdInfo{shape: shapeAuth, arity: 2}
	for _, n := range []string{"PING", "QUIT", "SELECT", "ECHO"} {
		commands[n] = cmdInfo{shape: shapeLocal, arity: 1}
	}
	return commands
}
