package redis

// cmdShape says where a command's keys are and how its replies combine.
type cmdShape uint8

const (
	shapeKey   cmdShape = iota + 1 // one key, the first argument
	shapeMGet                      // every argument is a key; replies form an array in key order
	shapeSum                       // every argument is a key; integer replies are added up
	shapeMSet                      // key value pairs; "+OK" when every part is OK
	shapeEval                      // EVAL script numkeys key...: routed by the first key
	shapeLocal                     // answered by the proxy
	shapeAuth                      // AUTH: checked by the pool against redis_auth
)

type cmdInfo struct {
	shape cmdShape
	arity int // minimum number of arguments, the command included
}

// cmdTableSize is the size of lookup's table: a power of two, over four times the commands.
const cmdTableSize = 1024

// cmdTable is commands as an open-addressing table indexed by cmdSlot: a lookup costs a few loads
// and one comparison, where the map's string hash cost about 4% of the proxy's time at -P16.
var cmdTable = buildTable(commands)

type cmdEntry struct {
	name string
	info cmdInfo
}

// cmdSlot is the first slot of the table where the upper-case name up may be.
func cmdSlot(up []byte) uint {
	n := len(up)
	h := uint(n)*0x9e3779b1 ^ uint(up[0])<<8 ^ uint(up[n-1])*0x85eb ^ uint(up[n/2])*0xc2b3 ^ uint(up[(n-1)/3])<<16
	return (h ^ h>>10) & (cmdTableSize - 1)
}

func buildTable(cmds map[string]cmdInfo) *[cmdTableSize]cmdEntry {
	var t [cmdTableSize]cmdEntry
	for name, info := range cmds {
		i := cmdSlot([]byte(name))
		for t[i].name != "" {
			i = (i + 1) & (cmdTableSize - 1)
		}
		t[i] = cmdEntry{name, info}
	}
	return &t
}

// lookup finds the command with the upper-case name up (not empty).
func lookup(up []byte) (cmdInfo, bool) {
	for i := cmdSlot(up); ; i = (i + 1) & (cmdTableSize - 1) {
		e := &cmdTable[i]
		if e.name == string(up) {
			return e.info, true
		}
		if e.name == "" {
			return cmdInfo{}, false
		}
	}
}

// commands lists what the proxy forwards (keyed by upper-case name). Commands that act on the
// whole server or on several keys that could live on different shards (KEYS, SCAN, RENAME, SUNION,
// transactions, pub/sub, blocking pops) are not forwarded: they get an error reply.
var commands = buildCommands()

func buildCommands() map[string]cmdInfo {
	commands := map[string]cmdInfo{}
	single := func(arity int, names ...string) {
		for _, n := range names {
			commands[n] = cmdInfo{shape: shapeKey, arity: arity}
		}
	}
	single(2, "GET", "STRLEN", "INCR", "DECR", "GETDEL", "TTL", "PTTL", "PERSIST", "TYPE", "DUMP",
		"HGETALL", "HKEYS", "HVALS", "HLEN", "LLEN", "SCARD", "SMEMBERS", "ZCARD", "PFCOUNT",
		"EXPIRETIME", "PEXPIRETIME", "GETEX", "LPOP", "RPOP", "SPOP", "SRANDMEMBER", "HRANDFIELD",
		"ZRANDMEMBER", "ZPOPMIN", "ZPOPMAX", "BITCOUNT")
	single(3, "SET", "SETNX", "APPEND", "INCRBY", "DECRBY", "INCRBYFLOAT", "GETSET", "EXPIRE",
		"PEXPIRE", "EXPIREAT", "PEXPIREAT", "GETBIT", "HGET", "HEXISTS", "HDEL", "HSTRLEN", "HMGET",
		"LPUSH", "RPUSH", "LPUSHX", "RPUSHX", "LINDEX", "SADD", "SREM", "SISMEMBER", "SMISMEMBER",
		"ZREM", "ZSCORE", "ZMSCORE", "ZRANK", "ZREVRANK", "PFADD", "BITPOS", "GEOHASH", "GEOPOS",
		"HSCAN", "SSCAN", "ZSCAN", "LPOS", "RESTORE", "SORT", "SORT_RO")
	single(4, "SETEX", "PSETEX", "GETRANGE", "SETRANGE", "SETBIT", "HSET", "HSETNX", "HMSET",
		"HINCRBY", "HINCRBYFLOAT", "LRANGE", "LSET", "LREM", "LTRIM", "ZADD", "ZINCRBY", "ZRANGE",
		"ZREVRANGE", "ZRANGEBYSCORE", "ZREVRANGEBYSCORE", "ZRANGEBYLEX", "ZREVRANGEBYLEX", "ZCOUNT",
		"ZLEXCOUNT", "ZREMRANGEBYRANK", "ZREMRANGEBYSCORE", "ZREMRANGEBYLEX", "GEODIST",
		"GEOSEARCH", "GEORADIUSBYMEMBER", "GEORADIUSBYMEMBER_RO")
	single(5, "LINSERT", "GEOADD", "GEORADIUS", "GEORADIUS_RO")
	commands["MGET"] = cmdInfo{shape: shapeMGet, arity: 2}
	for _, n := range []string{"DEL", "UNLINK", "EXISTS", "TOUCH"} {
		commands[n] = cmdInfo{shape: shapeSum, arity: 2}
	}
	commands["MSET"] = cmdInfo{shape: shapeMSet, arity: 3}
	commands["EVAL"] = cmdInfo{shape: shapeEval, arity: 4}
	commands["EVALSHA"] = cmdInfo{shape: shapeEval, arity: 4}
	commands["AUTH"] = cmdInfo{shape: shapeAuth, arity: 2}
	for _, n := range []string{"PING", "QUIT", "SELECT", "ECHO"} {
		commands[n] = cmdInfo{shape: shapeLocal, arity: 1}
	}
	return commands
}
