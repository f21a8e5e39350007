package logs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// The output's reserved keys (zap JSON), and the keys the normalizer adds.
const (
	TimeKey       = "time"
	LevelKey      = "level"
	MessageKey    = "msg"
	ParseErrorKey = "parse_error" // on a line that did not parse
	TruncatedKey  = "truncated"   // on an over-long line
)

// ReservedKeys are the keys the normalizer writes itself. A line's field with one of these keys,
// or with the key of a static field (WithStatic), is written as "orig_<key>", so that no key is
// written twice; a static field may not use one (New refuses it). When the line has an
// "orig_<key>" field of its own (or that is a reserved or static key too), another "orig_" is
// prefixed until the key is free: `orig_source=x source=app` with the static source=nginx is
// written with orig_source=x and orig_orig_source=app. No field is dropped.
var ReservedKeys = []string{TimeKey, LevelKey, MessageKey, ParseErrorKey, TruncatedKey}

// Normalizer turns log lines of one Format into structured JSON lines written through zap: one
// object per line with "time", "level" and "msg" first, then the line's fields, renamed.
// A line that does not parse is not lost: it is written with the raw line as "msg" and a
// "parse_error" field, and counted.
type Normalizer struct {
	format Format
	o      options
	core   zapcore.Core
	m      *metrics
	ready  chan struct{}
}

// New returns a Normalizer writing to w. It starts nothing; Line works at once, Run reads the
// sources given by WithReader, WithListener and WithPacketConn.
func New(format Format, w io.Writer, opts ...Option) (*Normalizer, error) {
	if format == nil || w == nil {
		return nil, errors.New("logs: nil format or writer")
	}
	o := defaultOptions()
	for _, opt := range opts {
		opt.apply(&o)
	}
	if o.maxLine <= 0 {
		return nil, errors.New("logs: max line length must be positive")
	}
	for _, f := range o.static {
		if slices.Contains(ReservedKeys, f.Key) {
			return nil, fmt.Errorf("logs: static field %q: the key is the normalizer's (%s)", f.Key, strings.Join(ReservedKeys, ", "))
		}
	}
	enc := zapcore.NewJSONEncoder(zapcore.EncoderConfig{
		TimeKey: TimeKey, LevelKey: LevelKey, MessageKey: MessageKey, NameKey: zapcore.OmitKey,
		CallerKey: zapcore.OmitKey, StacktraceKey: zapcore.OmitKey, LineEnding: "\n",
		EncodeTime: zapcore.RFC3339NanoTimeEncoder, EncodeLevel: zapcore.LowercaseLevelEncoder,
		EncodeDuration: zapcore.StringDurationEncoder,
	})
	m, err := newMetrics(o.registerer)
	if err != nil {
		return nil, err
	}
	return &Normalizer{
		format: format, o: o, m: m, ready: make(chan struct{}),
		core: zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), o.minLevel),
	}, nil
}

// Line normalizes and writes one line. It returns the parse error for a line that did not parse
// (the line was still written, raw) or the write error (wrapping ErrWrite). An empty line, or
// one of white space only, is skipped.
func (n *Normalizer) Line(line []byte) error {
	return n.line(line, false)
}

func (n *Normalizer) line(line []byte, truncated bool) error {
	line = bytes.TrimRight(line, "\r\n")
	if len(bytes.TrimSpace(line)) == 0 {
		return nil // an empty (or blank) line carries nothing: no record
	}
	fields, perr := n.format.Parse(line)
	ent := zapcore.Entry{Level: n.o.defaultLevel}
	var zf []zap.Field
	if perr != nil {
		ent.Time = n.o.now()
		ent.Message = validUTF8(string(line))
		zf = append(zf, zap.String(ParseErrorKey, perr.Error()))
		n.m.unparsed.Inc()
	} else {
		n.m.parsed.Inc()
		zf = n.normalize(fields, &ent)
	}
	if truncated {
		zf = append(zf, zap.Bool(TruncatedKey, true))
	}
	for _, s := range n.o.static {
		zf = append(zf, zap.String(s.Key, s.Value.(string)))
	}
	if !n.core.Enabled(ent.Level) {
		return perr
	}
	if err := n.core.Write(ent, zf); err != nil {
		n.m.writeErrors.Inc()
		return fmt.Errorf("%w: %w", ErrWrite, err)
	}
	return perr
}

// normalize renames fields, takes the level, time and message out of them, and returns the rest
// as zap fields (a repeated key keeps its last value).
func (n *Normalizer) normalize(fields []Field, ent *zapcore.Entry) []zap.Field {
	for i := range fields {
		if to, ok := n.o.renames[fields[i].Key]; ok {
			fields[i].Key = to
		}
	}
	levelSet, timeSet, msgSet := false, false, false
	var status int64
	out := make([]zap.Field, 0, len(fields))
	seen := make(map[string]int, len(fields))
	var renamed map[string]string // a reserved or static key -> its orig_ key; made on first use
	var taken map[string]bool     // the line's keys and the orig_ keys given out
	for _, f := range fields {
		switch {
		case !levelSet && contains(n.o.levelFields, f.Key):
			if l, ok := n.level(f.Value); ok {
				ent.Level, levelSet = l, true
				continue
			}
		case !timeSet && contains(n.o.timeFields, f.Key):
			if t, ok := n.parseTime(f.Value); ok {
				ent.Time, timeSet = t, true
				continue
			}
		case !msgSet && contains(n.o.messageFields, f.Key):
			ent.Message, msgSet = validUTF8(fmt.Sprint(f.Value)), true
			continue
		}
		if f.Key == "status" {
			status, _ = f.Value.(int64)
		}
		key := f.Key
		if n.reservedKey(key) {
			if renamed == nil {
				renamed, taken = map[string]string{}, make(map[string]bool, len(fields))
				for _, f := range fields {
					taken[f.Key] = true
				}
			}
			to, ok := renamed[key]
			if !ok {
				to = "orig_" + key
				for taken[to] || n.reservedKey(to) { // the line's own orig_<key> is kept
					to = "orig_" + to
				}
				renamed[key], taken[to] = to, true
			}
			key = to
		}
		zf := zapField(validUTF8(key), f.Value)
		if i, dup := seen[key]; dup {
			out[i] = zf
			continue
		}
		seen[key] = len(out)
		out = append(out, zf)
	}
	if !levelSet && status >= 500 {
		ent.Level = zapcore.ErrorLevel
	} else if !levelSet && status >= 400 {
		ent.Level = zapcore.WarnLevel
	}
	if !timeSet {
		ent.Time = n.o.now()
	}
	if !msgSet {
		if r, ok := lookup(fields, "request"); ok {
			ent.Message = validUTF8(fmt.Sprint(r))
		}
	}
	return out
}

// reservedKey reports whether a line's field with key must be renamed: the normalizer or a
// static field writes that key.
func (n *Normalizer) reservedKey(key string) bool {
	return slices.Contains(ReservedKeys, key) || slices.ContainsFunc(n.o.static, func(s Field) bool { return s.Key == key })
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func lookup(fields []Field, key string) (any, bool) {
	for _, f := range fields {
		if f.Key == key {
			return f.Value, true
		}
	}
	return nil, false
}

func zapField(key string, v any) zap.Field {
	switch v := v.(type) {
	case string:
		return zap.String(key, validUTF8(v))
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return zap.Int64(key, i)
		}
		// Written as its literal text (encoding/json writes a json.Number as it is): an integer
		// beyond int64 or a float keeps every digit, where a float64 would round it.
		if json.Valid([]byte(v)) {
			return zap.Reflect(key, v)
		}
		return zap.String(key, v.String())
	case nil:
		return zap.Skip()
	}
	return zap.Any(key, v)
}

// level maps a level value through the level map; syslog severities 0-7 are understood too.
func (n *Normalizer) level(v any) (zapcore.Level, bool) {
	s := strings.ToLower(strings.TrimSpace(fmt.Sprint(v)))
	if l, ok := n.o.levels[s]; ok {
		return l, true
	}
	if i, err := strconv.Atoi(s); err == nil && i >= 0 && i <= 7 {
		return [...]zapcore.Level{zapcore.FatalLevel, zapcore.FatalLevel, zapcore.FatalLevel, zapcore.ErrorLevel,
			zapcore.WarnLevel, zapcore.InfoLevel, zapcore.InfoLevel, zapcore.DebugLevel}[i], true
	}
	return 0, false
}

// parseTime parses a timestamp: the configured layouts, or a number of seconds, milliseconds,
// microseconds or nanoseconds since the epoch (told apart by magnitude).
func (n *Normalizer) parseTime(v any) (time.Time, bool) {
	s := strings.TrimSpace(fmt.Sprint(v))
	for _, layout := range n.o.timeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f <= 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return time.Time{}, false
	}
	switch {
	case f < 1e11:
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9)).UTC(), true
	case f < 1e14:
		return time.UnixMilli(int64(f)).UTC(), true
	case f < 1e17:
		return time.UnixMicro(int64(f)).UTC(), true
	case f < 9e18:
		return time.Unix(0, int64(f)).UTC(), true
	}
	return time.Time{}, false
}

// Ready is closed once Run has started reading its sources.
func (n *Normalizer) Ready() <-chan struct{} { return n.ready }

// Run reads lines from the configured sources until ctx ends or, when the only source is a
// reader, until it reaches EOF. It returns nil then, and only after its goroutines exited. A line
// from the reader that cannot be written stops Run, which returns that error (wrapping ErrWrite);
// one from a connection is logged and closes that connection, one from a datagram is logged; all
// are counted in podblocks_adapter_logs_write_errors_total.
// A reader that is an io.Closer is closed when ctx ends (to unblock a pending read); listeners
// and packet connections given to Run are closed when it returns.
func (n *Normalizer) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var closers []io.Closer
	var readErr error // the reader's write error, if any; read after wg.Wait
	if n.o.reader != nil {
		done := make(chan struct{})
		wg.Go(func() {
			defer close(done)
			if readErr = n.readStream(n.o.reader); readErr != nil {
				cancel() // the output is broken: stop rather than read on and lose lines
			}
		})
		if c, ok := n.o.reader.(io.Closer); ok {
			closers = append(closers, c)
		}
		if n.o.listener == nil && n.o.packetConn == nil {
			wg.Go(func() {
				select {
				case <-done:
					cancel()
				case <-ctx.Done():
				}
			})
		}
	}
	conns := map[net.Conn]struct{}{}
	var connMu sync.Mutex
	if ln := n.o.listener; ln != nil {
		closers = append(closers, ln)
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					if errors.Is(err, net.ErrClosed) {
						return
					}
					n.o.logger.Debug("accept", zap.Error(err))
					time.Sleep(10 * time.Millisecond)
					continue
				}
				connMu.Lock()
				if ctx.Err() != nil {
					connMu.Unlock()
					c.Close()
					return
				}
				conns[c] = struct{}{}
				connMu.Unlock()
				wg.Go(func() {
					defer func() {
						connMu.Lock()
						delete(conns, c)
						connMu.Unlock()
						c.Close()
					}()
					if err := n.readStream(&idleReader{c: c, idle: n.o.idle}); err != nil {
						n.o.logger.Error("line not written; closing the connection", zap.Error(err))
					}
				})
			}
		})
	}
	if pc := n.o.packetConn; pc != nil {
		closers = append(closers, pc)
		wg.Go(func() {
			buf := make([]byte, 65536)
			for {
				k, _, err := pc.ReadFrom(buf)
				if err != nil {
					if errors.Is(err, net.ErrClosed) {
						return
					}
					continue
				}
				for _, l := range bytes.Split(bytes.TrimRight(buf[:k], "\n"), []byte("\n")) {
					if err := n.line(l, false); errors.Is(err, ErrWrite) {
						n.o.logger.Error("line not written", zap.Error(err))
					}
				}
			}
		})
	}
	close(n.ready)
	<-ctx.Done()
	for _, c := range closers {
		c.Close()
	}
	connMu.Lock()
	for c := range conns {
		c.Close()
	}
	connMu.Unlock()
	wg.Wait()
	return readErr
}

// idleReader sets a read deadline before each read of a connection.
type idleReader struct {
	c    net.Conn
	idle time.Duration
}

func (r *idleReader) Read(p []byte) (int, error) {
	r.c.SetReadDeadline(time.Now().Add(r.idle))
	return r.c.Read(p)
}

// readStream normalizes lines from r until EOF, a read error, or a line that could not be
// written: it returns that write error (wrapping ErrWrite), and reads no further. A line longer
// than the limit is written truncated (with "truncated": true) and the rest of it skipped.
func (n *Normalizer) readStream(r io.Reader) error {
	br := bufio.NewReaderSize(r, n.o.maxLine)
	skipping := false
	for {
		line, err := br.ReadSlice('\n')
		var werr error
		switch {
		case err == bufio.ErrBufferFull:
			if !skipping {
				werr = n.line(line, true)
			}
			skipping = true
		case skipping:
			skipping = false
		case len(line) > 0:
			werr = n.line(line, false)
		}
		if errors.Is(werr, ErrWrite) {
			return werr
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err != io.EOF && !errors.Is(err, net.ErrClosed) {
				n.o.logger.Debug("read", zap.Error(err))
			}
			return nil
		}
	}
}

type metrics struct {
	parsed, unparsed, writeErrors prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	lines := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podblocks_adapter_logs_lines_total",
		Help: "Log lines normalized, by result (parsed, unparsed: written raw with parse_error).",
	}, []string{"result"})
	we := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "podblocks_adapter_logs_write_errors_total",
		Help: "Normalized lines that could not be written.",
	})
	if reg != nil {
		for _, c := range []prometheus.Collector{lines, we} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("logs: register metrics: %w", err)
			}
		}
	}
	return &metrics{parsed: lines.WithLabelValues("parsed"), unparsed: lines.WithLabelValues("unparsed"), writeErrors: we}, nil
}
