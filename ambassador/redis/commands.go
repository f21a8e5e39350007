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
