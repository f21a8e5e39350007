package logs

import (
	"io"
	"maps"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Option configures a Normalizer.
type Option interface{ apply(*options) }

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

type options struct {
	logger                                 *zap.Logger
	registerer                             prometheus.Registerer
	renames                                map[string]string
	levelFields, timeFields, messageFields []string
	levels                                 map[string]zapcore.Level
	timeLayouts                            []string
	defaultLevel, minLevel                 zapcore.Level
	static                                 []Field
	now                                    func() time.Time
	reader                                 io.Reader
	listener                               net.Listener
	packetConn                             net.PacketConn
	maxLine                                int
	idle                                   time.Duration
}

// DefaultLevels maps level names (lower-cased) to zap levels.
func DefaultLevels() map[string]zapcore.Level {
	return map[string]zapcore.Level{
		"trace": zapcore.DebugLevel, "debug": zapcore.DebugLevel, "dbug": zapcore.DebugLevel, "d": zapcore.DebugLevel,
		"info": zapcore.InfoLevel, "information": zapcore.InfoLevel, "notice": zapcore.InfoLevel, "i": zapcore.InfoLevel,
		"warn": zapcore.WarnLevel, "warning": zapcore.WarnLevel, "w": zapcore.WarnLevel,
		"error": zapcore.ErrorLevel, "err": zapcore.ErrorLevel, "eror": zapcore.ErrorLevel, "e": zapcore.ErrorLevel,
		"crit": zapcore.FatalLevel, "critical": zapcore.FatalLevel, "alert": zapcore.FatalLevel,
		"emerg": zapcore.FatalLevel, "fatal": zapcore.FatalLevel, "panic": zapcore.PanicLevel,
	}
}

// DefaultTimeLayouts are tried in order on a time field.
var DefaultTimeLayouts = []string{
	time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999", "02/Jan/2006:15:04:05 -0700", time.RFC1123Z, time.RFC1123,
	time.ANSIC, time.UnixDate, time.Stamp,
}

func defaultOptions() options {
	return options{
		logger:        zap.NewNop(),
		levelFields:   []string{"level", "lvl", "severity", "loglevel", "log.level"},
		timeFields:    []string{"time", "ts", "timestamp", "@timestamp", "datetime"},
		messageFields: []string{"msg", "message", "log"},
		levels:        DefaultLevels(),
		timeLayouts:   DefaultTimeLayouts,
		defaultLevel:  zapcore.InfoLevel,
		minLevel:      zapcore.DebugLevel,
		now:           time.Now,
		maxLine:       64 << 10,
		idle:          5 * time.Minute,
	}
}

// WithLogger sets the logger for the normalizer's own diagnostics (default zap.NewNop()).
func WithLogger(l *zap.Logger) Option {
	return optionFunc(func(o *options) {
		if l != nil {
			o.logger = l
		}
	})
}

// WithRegisterer registers podblocks_adapter_logs_* metrics with r (nil: not registered).
func WithRegisterer(r prometheus.Registerer) Option {
	return optionFunc(func(o *options) { o.registerer = r })
}

// WithRename renames fields (old key -> new key) before the level, time and message are taken.
func WithRename(m map[string]string) Option {
	return optionFunc(func(o *options) { o.renames = maps.Clone(m) })
}

// WithLevelFields sets the keys tried for the level (default level, lvl, severity, loglevel,
// log.level).
func WithLevelFields(keys ...string) Option {
	return optionFunc(func(o *options) { o.levelFields = slices.Clone(keys) })
}

// WithLevelMap adds to or overrides the level names (matched lower-cased) of DefaultLevels.
func WithLevelMap(m map[string]zapcore.Level) Option {
	return optionFunc(func(o *options) {
		for k, v := range m {
			o.levels[strings.ToLower(k)] = v
		}
	})
}

// WithTimeFields sets the keys tried for the timestamp (default time, ts, timestamp,
// @timestamp, datetime).
func WithTimeFields(keys ...string) Option {
	return optionFunc(func(o *options) { o.timeFields = slices.Clone(keys) })
}

// WithTimeLayouts sets the time layouts tried before numeric epochs (default DefaultTimeLayouts).
func WithTimeLayouts(layouts ...string) Option {
	return optionFunc(func(o *options) { o.timeLayouts = slices.Clone(layouts) })
}

// WithMessageFields sets the keys tried for the message (default msg, message, log).
func WithMessageFields(keys ...string) Option {
	return optionFunc(func(o *options) { o.messageFields = slices.Clone(keys) })
}

// WithDefaultLevel is the level of lines without one (default info).
func WithDefaultLevel(l zapcore.Level) Option {
	return optionFunc(func(o *options) { o.defaultLevel = l })
}

// WithMinLevel drops lines below l (default debug: nothing dropped).
func WithMinLevel(l zapcore.Level) Option { return optionFunc(func(o *options) { o.minLevel = l }) }

// WithStatic adds a constant field to every line (for example source=nginx). It wins over a
// line's field of the same key, which is written as "orig_<key>"; a later WithStatic of the same
// key replaces the earlier. A key of ReservedKeys is refused by New.
func WithStatic(key, value string) Option {
	return optionFunc(func(o *options) {
		o.static = slices.DeleteFunc(o.static, func(f Field) bool { return f.Key == key })
		o.static = append(o.static, Field{key, value})
	})
}

// WithClock sets the clock for lines without a timestamp (default time.Now).
func WithClock(now func() time.Time) Option { return optionFunc(func(o *options) { o.now = now }) }

// WithReader makes Run read lines from r (stdin, a file, a pipe) until EOF.
func WithReader(r io.Reader) Option { return optionFunc(func(o *options) { o.reader = r }) }

// WithListener makes Run accept stream connections on ln and read lines from each; Run closes ln.
func WithListener(ln net.Listener) Option { return optionFunc(func(o *options) { o.listener = ln }) }

// WithPacketConn makes Run read datagrams of lines from pc (UDP or unixgram); Run closes pc.
func WithPacketConn(pc net.PacketConn) Option {
	return optionFunc(func(o *options) { o.packetConn = pc })
}

// WithMaxLineLength sets the longest line read whole (default 64 KiB); longer ones are written
// truncated.
func WithMaxLineLength(n int) Option { return optionFunc(func(o *options) { o.maxLine = n }) }

// WithIdleTimeout closes stream connections idle for d (default 5m).
func WithIdleTimeout(d time.Duration) Option { return optionFunc(func(o *options) { o.idle = d }) }
