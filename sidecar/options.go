package sidecar

import (
	"net/http"
	"regexp"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Option configures a Tailer, Reloader, Syncer, Supervisor, Topz or HTTPSink. Each constructor
// documents the options it uses and ignores the others.
type Option interface {
	apply(*options)
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// Backoff returns how long to wait before retry number attempt (1 for the first retry).
type Backoff func(attempt int) time.Duration

// DefaultBackoff doubles from 100ms up to 10s.
func DefaultBackoff(attempt int) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	d := 100 * time.Millisecond
	for i := 1; i < attempt && d < 10*time.Second; i++ {
		d *= 2
	}
	if d > 10*time.Second {
		d = 10 * time.Second
	}
	return d
}

type options struct {
	logger     *zap.Logger
	registerer prometheus.Registerer

	// Tailer.
	checkpoint     string
	pollInterval   time.Duration
	maxLineBytes   int
	readChunkBytes int
	commitInterval time.Duration
	closeIdle      time.Duration
	deletedGrace   time.Duration
	multiline      *regexp.Regexp
	multilineWait  time.Duration
	noWatch        bool

	// WriterSink, FileSink.
	format         Format
	spliceFromFile bool

	// Reloader, Syncer, Supervisor, HTTPSink.
	debounce   time.Duration
	backoff    Backoff
	httpClient *http.Client
	interval   time.Duration
	hooks      []Action
	linkName   string
	doneFile   string
	grace      time.Duration
}

func defaultOptions() options {
	return options{
		logger:         zap.NewNop(),
		pollInterval:   500 * time.Millisecond,
		maxLineBytes:   64 << 10,
		readChunkBytes: 256 << 10,
		commitInterval: 250 * time.Millisecond,
		closeIdle:      10 * time.Second,
		deletedGrace:   5 * time.Second,
		multilineWait:  time.Second,
		debounce:       100 * time.Millisecond,
		backoff:        DefaultBackoff,
		httpClient:     &http.Client{Timeout: 30 * time.Second},
		interval:       time.Minute,
	}
}

func buildOptions(opts []Option) options {
	o := defaultOptions()
	for _, opt := range opts {
		if opt != nil {
			opt.apply(&o)
		}
	}
	return o
}

// WithLogger sets the logger (default zap.NewNop()). A nil logger keeps the default.
func WithLogger(l *zap.Logger) Option {
	return optionFunc(func(o *options) {
		if l != nil {
			o.logger = l
		}
	})
}

// WithRegisterer registers the component's metrics with r. With nil (the default) the metrics exist
// but are not registered.
func WithRegisterer(r prometheus.Registerer) Option {
	return optionFunc(func(o *options) { o.registerer = r })
}

// WithCheckpoint makes the Tailer persist its offsets in the file at path, so a restart resumes where
// the sink's delivery ended. Without it (the default) offsets live in memory only and every start is a
// first start. Run creates path's directory (0755, less the umask) when it is missing and returns an
// error when its first commit, before Ready, cannot write the file; a commit failing later is logged
// (Error, then once a minute while it goes on) and counted in
// podblocks_sidecar_tailer_checkpoint_errors_total, and the Tailer goes on shipping.
func WithCheckpoint(path string) Option {
	return optionFunc(func(o *options) { o.checkpoint = path })
}

// WithPollInterval sets how often the Tailer rescans its directories and checks open files even
// without filesystem events (default 500ms). It is also the only mechanism when inotify is
// unavailable or disabled with WithoutWatch.
func WithPollInterval(d time.Duration) Option {
	return optionFunc(func(o *options) { o.pollInterval = d })
}

// WithoutWatch turns off inotify (fsnotify) in the Tailer and Reloader, leaving polling only.
func WithoutWatch() Option {
	return optionFunc(func(o *options) { o.noWatch = true })
}

// WithMaxLineBytes sets the longest line the Tailer ships (default 64 KiB). Longer lines are
// reported (log and metric) and skipped.
func WithMaxLineBytes(n int) Option {
	return optionFunc(func(o *options) { o.maxLineBytes = n })
}

// WithReadChunkBytes sets how many bytes the Tailer reads at once, which bounds one batch handed to
// the sink (default 256 KiB). It must be larger than the max line length.
func WithReadChunkBytes(n int) Option {
	return optionFunc(func(o *options) { o.readChunkBytes = n })
}

// WithCommitInterval sets how often at most the Tailer commits its checkpoint while data keeps
// arriving (default 250ms); it always commits when it has caught up. With a sink that implements
// Committer a longer interval only means more re-reading after a crash, never duplicates; with other
// sinks it bounds the lines delivered twice after a crash.
func WithCommitInterval(d time.Duration) Option {
	return optionFunc(func(o *options) { o.commitInterval = d })
}

// WithCloseIdle sets how long the Tailer keeps a rotated file open after it reached its end
// (default 10s). It reopens the file if it grows later.
func WithCloseIdle(d time.Duration) Option {
	return optionFunc(func(o *options) { o.closeIdle = d })
}

// WithDeletedGrace sets how long the Tailer keeps reading a file that was deleted (unlinked), or
// moved out of the watched directories, while it had the file open (default 5s). A writer that
// still holds the file open goes on appending to it through its descriptor, and only the Tailer's
// own descriptor can still see those lines: the Tailer keeps the file open and reads it until it has
// not grown for d, then ships its last line even without a newline and closes it. When Run ends
// first, it reads such files to their end before it returns. Zero reads the file to the end found
// when it is noticed gone, then closes it (lines appended later are lost); negative is an error.
// The disk space of a deleted file is freed only once every descriptor, this one included, is
// closed.
func WithDeletedGrace(d time.Duration) Option {
	return optionFunc(func(o *options) { o.deletedGrace = d })
}

// WithMultiline joins lines into one record: a line matching start begins a record and the lines up
// to the next match (a stack trace, say) are appended to it, separated by "\n". A record still open
// when no data arrived for wait (default 1s if wait <= 0) is shipped.
func WithMultiline(start *regexp.Regexp, wait time.Duration) Option {
	return optionFunc(func(o *options) {
		o.multiline = start
		if wait > 0 {
			o.multilineWait = wait
		}
	})
}

// WithDebounce sets how long the Reloader waits for changes to settle before it compares content
// (default 100ms).
func WithDebounce(d time.Duration) Option {
	return optionFunc(func(o *options) { o.debounce = d })
}

// WithBackoff sets the retry policy of hooks, webhooks, the HTTP sink and Supervisor restarts
// (default DefaultBackoff). A nil policy keeps the default.
func WithBackoff(b Backoff) Option {
	return optionFunc(func(o *options) {
		if b != nil {
			o.backoff = b
		}
	})
}

// WithHTTPClient sets the client for webhooks, HTTP archives and the HTTP sink (default: a client
// with a 30s timeout). A nil client keeps the default.
func WithHTTPClient(c *http.Client) Option {
	return optionFunc(func(o *options) {
		if c != nil {
			o.httpClient = c
		}
	})
}

// WithInterval sets the Syncer's sync period and the Reloader's rescan period (default 1m). Zero
// turns periodic syncing off.
func WithInterval(d time.Duration) Option {
	return optionFunc(func(o *options) { o.interval = d })
}
