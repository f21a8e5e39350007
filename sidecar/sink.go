package sidecar

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/bits"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/podblocks/podblocks/internal/jsonstr"
)

// Record is one shipped line (or joined multiline record).
type Record struct {
	// File is the path the line was read from (a rotated file's current name).
	File string
	// Line is the line without its newline. It is valid only during Sink.Write: copy it to keep it.
	Line []byte
	// Offset is the byte offset of the line's start in the file.
	Offset int64

	plain bool // Line is known to need no JSON escaping
	// lines > 1 makes the record a block: Line holds that many complete lines, separated by '\n',
	// the first at Offset. The Tailer hands blocks only to the sinks of this package (blockSink).
	lines int
	// from, set only by a Tailer that stages its reads (Tailer.stager, WithSpliceFromFile), is the
	// file Line was read from: Line and the newline after it are its bytes at Offset, and so are the
	// lines after it in the same array (the stager may ship them from the file's pages).
	from *os.File
}

// recordLines is how many lines recs hold.
func recordLines(recs []Record) int {
	n := 0
	for i := range recs {
		n += max(1, recs[i].lines)
	}
	return n
}

// Sink receives records from a Tailer.
type Sink interface {
	// Write delivers recs. It returns nil only when every record is delivered; on error the Tailer
	// retries the same records with backoff. It is called from one goroutine at a time.
	Write(ctx context.Context, recs []Record) error
}

// Committer is implemented by sinks whose output can be rolled back to a position recorded in the
// Tailer's checkpoint. With such a sink, a crash at any moment and a restart neither lose nor
// duplicate lines: the checkpoint stores the sink's mark together with the file offsets, and on start
// the sink discards whatever it wrote after the mark.
type Committer interface {
	// Mark makes everything written so far durable and returns the current position.
	Mark() (string, error)
	// Rollback discards everything written after mark. It is called once, before the first Write,
	// with the mark of the last checkpoint ("" when there is none: keep everything).
	Rollback(mark string) error
}

// AppendJSON appends r as one JSON object and a newline to dst:
// {"file":"...","line":"...","offset":N}. Invalid UTF-8 becomes U+FFFD.
func AppendJSON(dst []byte, r Record) []byte {
	dst = append(dst, `{"file":`...)
	dst = appendJSONString(dst, r.File)
	return appendJSONRest(dst, r)
}

// appendJSONRest appends everything after the file field.
func appendJSONRest(dst []byte, r Record) []byte {
	dst = append(dst, `,"line":`...)
	if r.plain {
		dst = append(append(append(dst, '"'), r.Line...), '"')
	} else {
		dst = appendJSONBytes(dst, r.Line)
	}
	dst = append(dst, `,"offset":`...)
	return append(appendUint(dst, r.Offset), '}', '\n')
}

func appendJSONString(dst []byte, s string) []byte {
	return jsonstr.AppendString(dst, s)
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// plainWord and badBits are jsonstr's word tests, under the names the scanners below use.
func plainWord(x uint64) bool { return jsonstr.PlainWord(x) }
func badBits(x uint64) uint64 { return jsonstr.BadBits(x) }

// scanText counts the '\n' bytes in s and reports whether s holds a flagged byte: with json, one that
// JSON must escape other than '\n' (< 0x20, '"', '\\', >= 0x80: when none is flagged, every line of s
// is plain, see isPlain); without, a NUL or a byte >= 0x80 (when none is flagged, no line of s is
// binary, see binaryText). One pass over s.
func scanText(s []byte, json bool) (newlines int, flagged bool) {
	n := len(s) &^ 63
	newlines, flagged = scanBlocks(s[:n], json)
	for _, b := range s[n:] {
		if b == '\n' {
			newlines++
		} else if flaggedByte(b, json) {
			flagged = true
		}
	}
	return newlines, flagged
}

// flaggedByte tells whether scanText flags b (not '\n').
func flaggedByte(b byte, json bool) bool {
	if json {
		return b < 0x20 || b >= utf8.RuneSelf || b == '"' || b == '\\'
	}
	return b == 0 || b >= utf8.RuneSelf
}

// scanBlocksGo is scanBlocks in Go, eight bytes at a time.
func scanBlocksGo(s []byte, json bool) (newlines int, flagged bool) {
	n := len(s) &^ 63
	var bad uint64
	for i := 0; i < n; i += 8 {
		x := binary.LittleEndian.Uint64(s[i:])
		nl := x ^ (lsb * '\n')
		newlines += bits.OnesCount64(^((nl &^ msb) + lsb*0x7f | nl) & msb) // high bit set exactly where x has '\n'
		if json {
			bad |= badNL(x)
		} else {
			bad |= x | ^((x &^ msb) + lsb*0x7f | x) // high bit where x is >= 0x80 or 0
		}
	}
	return newlines, bad&msb != 0
}

// badNL has the high bit set in every byte of x that needs escaping and is not '\n' (and possibly in
// a few others, never in a '\n'). Unlike badBits, a '\n' does not flag the byte after it.
func badNL(x uint64) uint64 {
	ctl := ^((x &^ msb) + lsb*0x60)      // high bit set where the low 7 bits are < 0x20
	n := x ^ (lsb * '\n')                // zero bytes where x has '\n'
	notNL := ((n &^ msb) + lsb*0x7f) | n // high bit clear exactly where x has '\n'
	q := x ^ (lsb * '"')
	b := x ^ (lsb * '\\')
	return ctl&notNL | (q-lsb)&^q | (b-lsb)&^b | x
}

// isPlain reports whether s is printable ASCII without '"' and '\\': valid UTF-8 that JSON takes
// as it is.
func isPlain(s []byte) bool {
	i := 0
	for ; i+32 <= len(s); i += 32 {
		if (badBits(binary.LittleEndian.Uint64(s[i:]))|badBits(binary.LittleEndian.Uint64(s[i+8:]))|
			badBits(binary.LittleEndian.Uint64(s[i+16:]))|badBits(binary.LittleEndian.Uint64(s[i+24:])))&msb != 0 {
			return false
		}
	}
	for ; i+8 <= len(s); i += 8 {
		if !plainWord(binary.LittleEndian.Uint64(s[i:])) {
			return false
		}
	}
	for ; i < len(s); i++ {
		if b := s[i]; b < 0x20 || b >= utf8.RuneSelf || b == '"' || b == '\\' {
			return false
		}
	}
	return true
}

// appendJSONBytes appends s as a JSON string, eight plain bytes at a time.
func appendJSONBytes(dst, s []byte) []byte { return jsonstr.Append(dst, s) }

// Flusher is implemented by sinks whose Write may return while the batch is still being written in
// the background. The Tailer calls Flush before it commits offsets and before Run returns; Flush
// returns once everything written so far is delivered.
type Flusher interface {
	Flush() error
}

// Format is how WriterSink and FileSink write a record.
type Format int

const (
	// FormatJSON writes one JSON object per record and a newline, as AppendJSON does:
	// {"file":"...","line":"...","offset":N}. It is the default (the zero value).
	FormatJSON Format = iota
	// FormatRaw writes the line as it was read and a newline, the way `tail -F` prints it (a joined
	// multiline record keeps its inner newlines). The file name and the offset are not written, so
	// lines of several files cannot be told apart in the output. Binary and over-long lines are
	// skipped by the Tailer in either format.
	FormatRaw
)

// blockSink is implemented by the sinks of this package (their encoder): they take blocks of lines
// in one Record (see Record.lines), and rawOutput tells that they write lines as they are
// (FormatRaw).
type blockSink interface {
	rawOutput() bool
}

func (s *WriterSink) rawOutput() bool { return s.enc.raw }
func (s *FileSink) rawOutput() bool   { return s.enc.raw }

// syncSink is implemented by sinks that may write in the Tailer's goroutine, synchronously:
// synchronous tells whether this one does (a raw WriterSink on a pipe).
type syncSink interface {
	synchronous() bool
}

func (s *WriterSink) synchronous() bool { return s.pipe != nil && s.enc.raw }

// stager is implemented by sinks that can ship lines from the file's pages instead of from the
// Tailer's read buffer (a raw WriterSink on a pipe, on Linux, WithSpliceFromFile): when splicing
// tells it does, the Tailer calls stage before it reads n bytes of f at off, and unstage when Run
// ends.
type stager interface {
	splicing() bool
	stage(f *os.File, off int64, n int)
	unstage()
}

func (s *WriterSink) splicing() bool { return s.splice }

func (s *WriterSink) stage(f *os.File, off int64, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pipe != nil {
		s.pipe.capture(f, off, n)
	}
}

func (s *WriterSink) unstage() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pipe != nil {
		s.pipe.dropStage()
	}
}

// WithFormat sets the output format of WriterSink and FileSink (default FormatJSON). Another value
// is a ConfigError: from OpenFileSink, and from NewTailer and every Write of a WriterSink.
func WithFormat(f Format) Option {
	return optionFunc(func(o *options) { o.format = f })
}

// WithSpliceFromFile makes a raw WriterSink on a pipe (Linux) ship the lines of a Tailer as the
// file's page-cache pages, spliced into the pipe, instead of writing the bytes the Tailer read: less
// CPU per line. Only for append-only logs: the pipe holds references to the file's pages until its
// reader takes the lines (and longer when the reader splices them on into a socket), so an in-place
// rewrite, a truncation to a non-zero length or a punched hole changes lines already shipped and
// checkpointed. Off by default; other sinks and formats ignore it.
func WithSpliceFromFile() Option {
	return optionFunc(func(o *options) { o.spliceFromFile = true })
}

// check returns a ConfigError naming f when it is no Format.
func (f Format) check() error {
	if f != FormatJSON && f != FormatRaw {
		return &ConfigError{Field: "WithFormat", Reason: fmt.Sprintf("unknown Format %d", int(f))}
	}
	return nil
}

// configErr is implemented by sinks whose constructor cannot return their ConfigError.
type configErr interface {
	configErr() error
}

func (s *WriterSink) configErr() error { return s.err }

// WriterSink writes records as JSON lines (see AppendJSON), or raw lines with WithFormat(FormatRaw),
// to an io.Writer such as os.Stdout. It is not a Committer: after a crash the lines since the last checkpoint are delivered again
// (at-least-once). It is a Flusher: a batch is written by a background goroutine while the next one
// is read and encoded (one batch in flight; Flush waits for it), so reading and writing overlap.
// Raw lines to a pipe (on Linux) are written synchronously instead, from the buffer the Tailer read
// them into (or, WithSpliceFromFile, as the file's pages), pacing the writes to the reader (see
// pipeOut).
//
// A write into a pipe (on Linux; raw or JSON), or into a writer with write deadlines (a net.Conn, an
// *os.File the Go runtime polls), waits for a slow reader as long as the ctx of the Write that
// started it lasts, and no longer: when the reader stalls (a hung log collector), the Tailer still
// stops when its ctx ends. The lines the writer did not take are kept and written first by the next
// Write, and the Tailer commits the offset of the first of them, the first line not written whole
// (Flush reports them): a restart ships them again, and none of the lines w took. A line cut off in
// the middle stays so in w, without a newline; the restart, when it writes to that same pipe or file
// (one that outlived the process), first ends it with a newline, so that it does not run into the
// line written whole after it (see endTorn). The cut is a write deadline in the past, which replaces a write deadline set on w, and the
// next Write with a live ctx lifts it to none, whoever set w's deadline since (a net.Conn cannot
// report its deadline, so a cut cannot restore it); the sink sets no other deadline, so one set on w
// holds while no cut comes.
// Other writers (a blocking socket or terminal, on other systems a blocking pipe) are written
// to without a bound: a write that never returns keeps the Tailer from stopping.
type WriterSink struct {
	mu       sync.Mutex
	w        io.Writer
	bufs     [2][]byte
	cur      int
	enc      encoder
	inflight chan writeResult // result of the batch being written; nil when none
	failed   []byte           // the unwritten rest of a batch whose write failed, written again first
	err      error            // a ConfigError from the options: every Write returns it
	// pipe is set when w is a pipe (Linux). Writes into it wait for room only as long as the ctx of
	// the Write that started them lasts (pipeOut.write). With the raw format, Write writes
	// synchronously, from the buffers the Tailer read the lines into when they follow each other
	// there; JSON lines are written by the background goroutine.
	pipe *pipeOut
	// splice is set with pipe and WithSpliceFromFile: lines go into the pipe as the file's pages.
	splice bool
	// cut is set while w has the write deadline in the past that writePieces set to cut off a write
	// whose ctx ended; the next write with a live ctx lifts it. Writes are one at a time, but ctx's
	// AfterFunc sets it on a goroutine of its own.
	cut atomic.Bool
	// marks are the recMarks of bufs, failedMarks those of failed (relative to it): the records
	// failed holds, the first of which may be written in part.
	marks       [2][]recMark
	failedMarks []recMark
	// midRecord is set when the last byte written to w is not a record's newline: a write stopped
	// inside a record (see torn).
	midRecord bool
	// outID identifies w when it is a file (a pipe, a regular file): dev:ino; "" otherwise.
	outID string
}

// encoder appends records in a Format: as AppendJSON does, encoding each distinct file name once, or
// raw.
type encoder struct {
	raw    bool
	file   string
	prefix []byte // {"file":"...","line":
	// marks, when set, gets a recMark for each line appendBatch appends (WriterSink).
	marks *[]recMark
}

// recMark is where one record (a line, for the lines of a block) ends in an encoded batch, and the
// file offset it starts at: when a write stops inside the batch, the first record not written
// whole is the first mark whose end lies past it (see WriterSink.unwritten).
type recMark struct {
	end int   // position in the batch right after the record's newline
	off int64 // the record's Offset
}

// rebase drops from marks those that end at or before n, the bytes written of their batch, and makes
// the others relative to the rest: dst may be marks[:0].
func rebase(dst, marks []recMark, n int) []recMark {
	for _, m := range marks {
		if m.end > n {
			dst = append(dst, recMark{end: m.end - n, off: m.off})
		}
	}
	return dst
}

// rawMarks appends to dst the marks of recs laid out as appendRaw lays them out, from position at:
// each record's line and a newline, a block (see Record.lines) one mark per line.
func rawMarks(dst []recMark, at int, recs []Record) []recMark {
	for i := range recs {
		r := &recs[i]
		if r.lines > 1 {
			line := r.Line
			for off := r.Offset; ; {
				k := bytes.IndexByte(line, '\n')
				if k < 0 {
					at += len(line) + 1
					dst = append(dst, recMark{end: at, off: off})
					break
				}
				at += k + 1
				dst = append(dst, recMark{end: at, off: off})
				off += int64(k + 1)
				line = line[k+1:]
			}
			continue
		}
		at += len(r.Line) + 1
		dst = append(dst, recMark{end: at, off: r.Offset})
	}
	return dst
}

func newEncoder(f Format) encoder { return encoder{raw: f == FormatRaw} }

// appendBatch appends recs to dst.
func (e *encoder) appendBatch(dst []byte, recs []Record) []byte {
	if e.raw {
		if e.marks != nil {
			*e.marks = rawMarks(*e.marks, len(dst), recs)
		}
		return appendRaw(dst, recs)
	}
	need := 0
	for i := range recs {
		need += len(recs[i].Line) + max(1, recs[i].lines)*(len(recs[i].File)+48)
	}
	dst = slices.Grow(dst, need)
	for i := range recs {
		if recs[i].lines > 1 {
			dst = e.appendBlock(dst, &recs[i])
		} else {
			dst = e.append(dst, &recs[i])
		}
	}
	return dst
}

// appendBlock appends each line of the block r (see Record.lines) as its own record.
func (e *encoder) appendBlock(dst []byte, r *Record) []byte {
	line := Record{File: r.File, Offset: r.Offset, plain: r.plain}
	s := r.Line
	for {
		i := bytes.IndexByte(s, '\n')
		if i < 0 {
			line.Line = s
			return e.append(dst, &line)
		}
		line.Line = s[:i]
		dst = e.append(dst, &line)
		line.Offset += int64(i + 1)
		s = s[i+1:]
	}
}

// appendRaw appends each record's line and a newline. Lines that follow each other in one array,
// one newline apart (as the Tailer's come from its read buffer), are copied as one run.
func appendRaw(dst []byte, recs []Record) []byte {
	need := 0
	for i := range recs {
		need += len(recs[i].Line) + 1
	}
	dst = slices.Grow(dst, need)
	for i := 0; i < len(recs); {
		var run []byte
		run, i = nextRun(recs, i)
		dst = append(append(dst, run...), '\n')
	}
	return dst
}

// nextRun returns the lines of recs[i:] that follow each other in one array, one newline apart, as
// one slice (without the newline after the last), and the index of the record after them.
func nextRun(recs []Record, i int) ([]byte, int) {
	run := recs[i].Line
	for i++; i < len(recs); i++ {
		next, ok := joinLines(run, recs[i].Line)
		if !ok {
			break
		}
		run = next
	}
	return run, i
}

// joinLines returns a and b as one slice, newline included, when b starts in a's array right after
// a newline that follows a.
func joinLines(a, b []byte) ([]byte, bool) {
	n := len(a) + 1 + len(b)
	if len(b) == 0 || n > cap(a) {
		return nil, false
	}
	ab := a[:n]
	if &ab[len(a)+1] != &b[0] || ab[len(a)] != '\n' {
		return nil, false
	}
	return ab, true
}

func (e *encoder) append(dst []byte, r *Record) []byte {
	if r.File != e.file || e.prefix == nil {
		e.file = r.File
		e.prefix = append(appendJSONString(append(e.prefix[:0], `{"file":`...), r.File), `,"line":`...)
	}
	dst = append(dst, e.prefix...)
	if r.plain {
		dst = append(append(append(dst, '"'), r.Line...), `","offset":`...)
	} else {
		dst = append(appendJSONBytes(dst, r.Line), `,"offset":`...)
	}
	dst = append(appendUint(dst, r.Offset), '}', '\n')
	if e.marks != nil {
		*e.marks = append(*e.marks, recMark{end: len(dst), off: r.Offset})
	}
	return dst
}

// appendUint appends v in decimal, like strconv.AppendInt, without a loop: eight digits at a time,
// computed in the bytes of one uint64 (offsets have up to 8 digits below 100 MB).
func appendUint(dst []byte, v int64) []byte {
	switch {
	case v < 0 || v >= 1e16:
		return strconv.AppendInt(dst, v, 10)
	case v >= 1e8:
		hi := digits8(uint64(v) / 1e8)
		lz := bits.TrailingZeros64(hi-zeros8) / 8 // leading '0's of hi; hi is not 0
		dst = binary.LittleEndian.AppendUint64(dst, hi>>(8*lz))[:len(dst)+8-lz]
		return binary.LittleEndian.AppendUint64(dst, digits8(uint64(v)%1e8))
	}
	d := digits8(uint64(v))
	lz := min(bits.TrailingZeros64(d-zeros8)/8, 7) // leading '0's, keeping one for 0
	return binary.LittleEndian.AppendUint64(dst, d>>(8*lz))[:len(dst)+8-lz]
}

const zeros8 = lsb * '0'

// digits8 returns the eight decimal digits of v < 1e8 as ASCII in the bytes of a uint64, the first
// digit in the lowest byte: 4-digit halves in 32-bit lanes, then 2-digit quarters in 16-bit lanes,
// then single digits in bytes (divisions by 100 and 10 as multiply and shift, exact in range).
func digits8(v uint64) uint64 {
	y := v/10000 | v%10000<<32
	h := (y * 5243 >> 19) & 0x0000007f0000007f // each lane / 100
	z := h | (y-h*100)<<16
	t := (z * 103 >> 10) & 0x000f000f000f000f // each lane / 10
	return t | (z-t*10)<<8 + zeros8
}

// NewWriterSink returns a sink writing JSON lines to w. Options: WithFormat (an unknown Format makes
// NewTailer and every Write return a ConfigError), WithSpliceFromFile (append-only logs only).
func NewWriterSink(w io.Writer, opts ...Option) *WriterSink {
	o := buildOptions(opts)
	s := &WriterSink{w: w, enc: newEncoder(o.format), err: o.format.check(), outID: outputID(w)}
	s.pipe = newPipeOut(w, o.format == FormatRaw)
	s.splice = s.pipe != nil && o.format == FormatRaw && o.spliceFromFile
	return s
}

// writePipe writes recs into the pipe: each run of lines that follow each other in one array, with
// the newline after it, as one piece. A failed write, or one that gave up waiting for room because
// ctx ended, leaves the rest in failed, as a failed background write does: the next Write or Flush
// writes it again and reports the error if that fails too (and the Tailer commits no offset past
// them meanwhile: it flushes first). Called with mu held.
func (s *WriterSink) writePipe(ctx context.Context, recs []Record) {
	for i := 0; i < len(recs); {
		j, from, off := i, recs[i].from, recs[i].Offset
		var run []byte
		run, i = nextRun(recs, i)
		var b []byte
		if len(run) < cap(run) && run[:len(run)+1][len(run)] == '\n' {
			b = run[:len(run)+1]
		} else {
			s.bufs[0] = append(append(s.bufs[0][:0], run...), '\n')
			b, from = s.bufs[0], nil
		}
		n, err := s.pipe.write(ctx, b, from, off)
		s.wrote(b[:n])
		if err != nil {
			s.failed = appendRaw(append(s.failed[:0], b[n:]...), recs[i:])
			s.failedMarks = rebase(s.failedMarks[:0], rawMarks(s.failedMarks[:0], 0, recs[j:]), n)
			return
		}
	}
}

// wrote notes that b was just written to w (see midRecord).
func (s *WriterSink) wrote(b []byte) {
	if len(b) > 0 {
		s.midRecord = b[len(b)-1] != '\n'
	}
}

// Write implements Sink: it encodes recs, waits for the previous batch to be written, and starts
// writing this one.
func (s *WriterSink) Write(ctx context.Context, recs []Record) error {
	if s.err != nil {
		return s.err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.settle(ctx); err != nil {
		return err
	}
	if s.synchronous() {
		s.writePipe(ctx, recs)
		return nil
	}
	s.marks[s.cur] = s.marks[s.cur][:0]
	s.enc.marks = &s.marks[s.cur]
	buf := s.enc.appendBatch(s.bufs[s.cur][:0], recs)
	s.enc.marks = nil
	s.bufs[s.cur] = buf
	if len(buf) == 0 {
		return nil
	}
	ch := make(chan writeResult, 1)
	go func(b []byte) {
		n, err := s.writeOut(ctx, b)
		ch <- writeResult{n, err}
	}(buf)
	s.inflight = ch
	s.cur ^= 1
	return nil
}

// writePiece is the most WriterSink writes at once. Writing a batch to a pipe in one call keeps the
// reader waiting until all of it is copied into the pipe (Linux wakes the reader of an empty pipe
// when the write ends, and the copy holds the pipe's lock); in pieces of 16 KiB the reader takes each
// piece while the next is copied. tail -F through head ran ~1.2x faster with them than with whole
// ~450 KB batches (bench/sidecar, BENCHMARKS.md).
const writePiece = 16 << 10

type writeResult struct {
	n   int
	err error
}

// writeDeadliner is implemented by writers whose writes a deadline cuts off: a net.Conn, an
// *os.File the Go runtime polls (a non-blocking pipe or socket; SetWriteDeadline fails on others).
type writeDeadliner interface {
	SetWriteDeadline(t time.Time) error
}

// writePieces writes b to w in pieces of at most writePiece bytes and returns how many were written.
// When w has write deadlines, the write is cut off when ctx ends (at once when it already has), with
// a deadline in the past that stays until a write with a live ctx: the Tailer's stop does not wait
// for a reader that stalled. The sink touches w's deadline for that only: a deadline the user set
// stays until a cut replaces it, and a write lifts w's deadline (to none) only after the sink made
// a cut, whoever set the deadline since.
func (s *WriterSink) writePieces(ctx context.Context, b []byte) (int, error) {
	if d, ok := s.w.(writeDeadliner); ok {
		live := ctx.Err() == nil
		switch {
		case !live:
			s.cutOff(d)
		case s.cut.Load() && d.SetWriteDeadline(time.Time{}) == nil:
			s.cut.Store(false) // lifted; no AfterFunc runs now: the last one ended before this write
		}
		if live && ctx.Done() != nil { // a ctx ending from here on is seen by the AfterFunc
			cut := make(chan struct{})
			stop := context.AfterFunc(ctx, func() {
				s.cutOff(d)
				close(cut)
			})
			defer func() {
				if !stop() {
					<-cut // set before a later write lifts it
				}
			}()
		}
	}
	done := 0
	for done < len(b) {
		n, err := s.w.Write(b[done:min(len(b), done+writePiece)])
		done += n
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// cutOff sets a write deadline in the past on d (w) and remembers it when d took it (see cut).
func (s *WriterSink) cutOff(d writeDeadliner) {
	if d.SetWriteDeadline(time.Unix(1, 0)) == nil {
		s.cut.Store(true)
	}
}

// writeOut writes b to w: into a pipe with pipeOut, which waits for room only while ctx lasts,
// else in pieces (writePieces). It does not touch the sink's buffers or state other than pipe's and
// cut.
func (s *WriterSink) writeOut(ctx context.Context, b []byte) (int, error) {
	if s.pipe != nil {
		return s.pipe.write(ctx, b, nil, 0)
	}
	return s.writePieces(ctx, b)
}

// settle waits for the batch in flight and rewrites a failed one; on a pipe, that write waits for
// room only while ctx lasts. Called with mu held.
func (s *WriterSink) settle(ctx context.Context) error {
	if s.inflight != nil {
		r := <-s.inflight
		s.inflight = nil
		b := s.bufs[s.cur^1]
		s.wrote(b[:r.n])
		if r.err != nil {
			s.failed = append(s.failed[:0], b[r.n:]...)
			s.failedMarks = rebase(s.failedMarks[:0], s.marks[s.cur^1], r.n)
		}
	}
	if len(s.failed) > 0 {
		n, err := s.writeOut(ctx, s.failed)
		s.wrote(s.failed[:n])
		s.failed = s.failed[:copy(s.failed, s.failed[n:])]
		s.failedMarks = rebase(s.failedMarks[:0], s.failedMarks, n)
		if err != nil {
			return fmt.Errorf("write records: %w", err)
		}
	}
	return nil
}

// drainer is implemented by sinks whose Flush does not wait for a slow reader (a WriterSink): drain
// flushes as Flush does, but waits for the reader while ctx lasts. The Tailer drains when it stops
// with lines of gone files, which a restart cannot read again, perhaps still in the sink.
type drainer interface {
	drain(ctx context.Context) error
}

func (s *WriterSink) drain(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.settle(ctx)
}

// Flush implements Flusher. It waits for the batch in flight (whose write ends with the ctx of the
// Write that started it, see WriterSink), then writes the rest of a batch whose write failed or
// gave up again, but without waiting for the reader when w is a pipe or has write deadlines: Flush
// has no ctx to end that wait, and the Tailer flushes when Run stops too. What is left is reported
// and stays for the next Write.
func (s *WriterSink) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.settle(noWait)
}

// unwritten reports, after a Flush that failed, the file offset of the first record the sink holds
// not written whole: the lines from it on were not delivered (the Tailer commits no offset past
// it). The records held are the rest of the last batch the Tailer wrote. ok is false when it holds
// none.
func (s *WriterSink) unwritten() (off int64, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.failed) == 0 || len(s.failedMarks) == 0 {
		return 0, false
	}
	return s.failedMarks[0].off, true
}

// torn reports the identity of w (see outputID) when the last write to it stopped inside a record
// (its reader stalled when the Tailer stopped): the record's start is in w without its end. The
// Tailer keeps it in the checkpoint, for endTorn. "" when no record is torn, or w is no file.
func (s *WriterSink) torn() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.midRecord {
		return ""
	}
	return s.outID
}

// endTorn is called before the first Write with what torn returned before the last stop. When w is
// that same output (a pipe or file that outlived the stop), the torn record's start is the last
// thing in it: the first write then begins with a newline, so that the start is a line of its own
// instead of the beginning of the next record. The whole record is shipped again after it (its
// offset was not committed). A new output (a new pipe, as a restarted container gets) had its
// reader see the start end at the end of the old pipe: nothing to do; nor has the same regular
// file emptied since (a shell's > truncates it in place, keeping its inode).
func (s *WriterSink) endTorn(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id == "" || id != s.outID {
		return
	}
	if f, ok := s.w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() == 0 {
			return
		}
	}
	s.failed = append(s.failed[:0], '\n')
	s.failedMarks = s.failedMarks[:0]
	s.midRecord = true
}

// outputID identifies w when it is a file: "dev:ino", "" otherwise or when it cannot.
func outputID(w io.Writer) string {
	f, ok := w.(*os.File)
	if !ok {
		return ""
	}
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	id, _, ok := fileIdentity(f, fi)
	if !ok {
		return ""
	}
	return strconv.FormatUint(id.dev, 10) + ":" + strconv.FormatUint(id.ino, 10)
}

// noWait is a ctx that has ended: a write given it does not wait for room (see Flush).
var noWait = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// FileSink appends records as JSON lines (or raw lines, WithFormat(FormatRaw)) to a file and is a
// Committer: its mark is the file's length,
// and Rollback truncates the file back to it. Open it with OpenFileSink; Close it when done.
type FileSink struct {
	enc  encoder
	mu   sync.Mutex
	f    *os.File
	w    *bufio.Writer
	size int64
	buf  []byte
}

// OpenFileSink opens (creating if needed) the file at path for appending. Options: WithFormat.
func OpenFileSink(path string, opts ...Option) (*FileSink, error) {
	format := buildOptions(opts).format
	if err := format.check(); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open sink: %w", err)
	}
	end, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("seek sink: %w", err)
	}
	return &FileSink{f: f, w: bufio.NewWriterSize(f, 256<<10), size: end, enc: newEncoder(format)}, nil
}

// Write implements Sink.
func (s *FileSink) Write(_ context.Context, recs []Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf = s.enc.appendBatch(s.buf[:0], recs)
	n, err := s.w.Write(s.buf)
	s.size += int64(n)
	if err == nil {
		err = s.w.Flush()
	}
	if err != nil {
		return fmt.Errorf("write sink: %w", err)
	}
	return nil
}

// Mark implements Committer: it syncs the file and returns its length.
func (s *FileSink) Mark() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.w.Flush(); err != nil {
		return "", fmt.Errorf("flush sink: %w", err)
	}
	if err := s.f.Sync(); err != nil {
		return "", fmt.Errorf("sync sink: %w", err)
	}
	return strconv.FormatInt(s.size, 10), nil
}

// Rollback implements Committer: it truncates the file to mark. A file already shorter than mark is
// left as it is and ErrSinkBehind is returned.
func (s *FileSink) Rollback(mark string) error {
	if mark == "" {
		return nil
	}
	n, err := strconv.ParseInt(mark, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("%w: sink mark %q", ErrBadCheckpoint, mark)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.w.Reset(s.f)
	fi, err := s.f.Stat()
	if err != nil {
		return fmt.Errorf("stat sink: %w", err)
	}
	if fi.Size() < n {
		s.size = fi.Size()
		return fmt.Errorf("%w: %d < %d", ErrSinkBehind, fi.Size(), n)
	}
	if err := s.f.Truncate(n); err != nil {
		return fmt.Errorf("truncate sink: %w", err)
	}
	if _, err := s.f.Seek(n, io.SeekStart); err != nil {
		return fmt.Errorf("seek sink: %w", err)
	}
	s.size = n
	return nil
}

// Close flushes and closes the file.
func (s *FileSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ferr := s.w.Flush()
	cerr := s.f.Close()
	if ferr != nil {
		return ferr
	}
	return cerr
}
