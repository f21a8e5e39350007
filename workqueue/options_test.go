package workqueue_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/podblocks/podblocks/workqueue"
)

// stageBuilders build each kind of stage over q with opts.
func stageBuilders(q workqueue.Queue) map[string]func(opts ...workqueue.StageOption) error {
	qs := []workqueue.Queue{q, q}
	keep := func(*workqueue.Item) bool { return true }
	split := func(*workqueue.Item) ([][]byte, error) { return nil, nil }
	combine := func([][]byte) ([]byte, error) { return nil, nil }
	return map[string]func(opts ...workqueue.StageOption) error{
		"copier": func(opts ...workqueue.StageOption) error { return second(workqueue.NewCopier(q, qs, opts...)) },
		"filter": func(opts ...workqueue.StageOption) error { return second(workqueue.NewFilter(q, q, keep, opts...)) },
		"splitter": func(opts ...workqueue.StageOption) error {
			return second(workqueue.NewSplitter(q, qs, split, func([]byte) int { return 0 }, opts...))
		},
		"sharder": func(opts ...workqueue.StageOption) error { return second(workqueue.NewSharder(q, qs, opts...)) },
		"merger":  func(opts ...workqueue.StageOption) error { return second(workqueue.NewMerger(qs, q, opts...)) },
		"join": func(opts ...workqueue.StageOption) error {
			return second(workqueue.NewJoin(qs, q, nil, combine, opts...))
		},
		"reduce": func(opts ...workqueue.StageOption) error {
			return second(workqueue.NewReduce(q, q, 2, combine, opts...))
		},
	}
}

// checkRefused checks that err refuses an option's value: it wraps ErrInvalid and names the
// option with its value (mention) and what the option takes.
func checkRefused(t *testing.T, what string, err error, mention string) {
	t.Helper()
	if !errors.Is(err, workqueue.ErrInvalid) || !strings.Contains(err.Error(), mention) || !strings.Contains(err.Error(), "want ") {
		t.Errorf("%s: %v, want an error wrapping ErrInvalid that names %s and what it takes", what, err, mention)
	}
}

// TestStagesRefuseBadOptionValues: a retry delay under 1ms (a negative one made a failing Lease
// spin without a pause), a flush delay that is not positive and an empty name are refused by
// every stage's constructor, with an error naming the option, its value and what it takes.
func TestStagesRefuseBadOptionValues(t *testing.T) {
	for kind, build := range stageBuilders(mustMemory(t)) {
		for _, bad := range []struct {
			opt     workqueue.StageOption
			mention string
		}{
			{workqueue.WithStageRetry(-1), "WithStageRetry(-1ns)"},
			{workqueue.WithStageRetry(0), "WithStageRetry(0s)"},
			{workqueue.WithStageRetry(500 * time.Microsecond), "WithStageRetry(500µs)"},
			{workqueue.WithFlushAfter(0), "WithFlushAfter(0s)"},
			{workqueue.WithFlushAfter(-time.Second), "WithFlushAfter(-1s)"},
			{workqueue.WithStageName(""), `WithStageName("")`},
		} {
			checkRefused(t, kind, build(bad.opt), bad.mention)
		}
		if err := build(workqueue.WithStageRetry(time.Millisecond), workqueue.WithFlushAfter(time.Nanosecond), workqueue.WithStageName(kind+"-1")); err != nil {
			t.Errorf("%s with the least values its options take: %v", kind, err)
		}
	}
}

// TestComponentsRefuseBadOptionValues: the API, Source, ExecWorker and Pool refuse sizes and durations
// that mean nothing (and a Source a nil client, an ExecWorker an environment entry that is not
// KEY=VALUE), with an error naming the option, its value and what it takes.
func TestComponentsRefuseBadOptionValues(t *testing.T) {
	q := mustMemory(t)
	api := func(opt workqueue.APIOption) error { return second(workqueue.NewAPI(q, opt)) }
	src := func(opt workqueue.SourceOption) error {
		return second(workqueue.NewSource("http://127.0.0.1:1", q, opt))
	}
	exe := func(opt workqueue.ExecOption) error { return second(workqueue.NewExecWorker([]string{"sh"}, opt)) }
	nop := workqueue.HandlerFunc(func(context.Context, *workqueue.Item) error { return nil })
	pool := func(opt workqueue.PoolOption) error { return second(workqueue.NewPool(q, nop, opt)) }
	for _, tc := range []struct {
		err     error
		mention string
	}{
		{api(workqueue.WithMaxPayload(0)), "WithMaxPayload(0)"},
		{api(workqueue.WithMaxPayload(-1)), "WithMaxPayload(-1)"},
		{api(workqueue.WithMaxWait(0)), "WithMaxWait(0s)"},
		{api(workqueue.WithMaxWait(-time.Second)), "WithMaxWait(-1s)"},
		{src(workqueue.WithPollInterval(0)), "WithPollInterval(0s)"},
		{src(workqueue.WithPollInterval(-time.Millisecond)), "WithPollInterval(-1ms)"},
		{src(workqueue.WithSourceHTTPClient(nil)), "WithSourceHTTPClient(nil)"},
		{exe(workqueue.WithEnv("DEBUG")), `WithEnv("DEBUG")`},
		{exe(workqueue.WithEnv("=1")), `WithEnv("=1")`},
		{pool(workqueue.WithConcurrency(0)), "WithConcurrency(0)"},
		{pool(workqueue.WithItemTimeout(-time.Second)), "WithItemTimeout(-1s)"},
		{pool(workqueue.WithDrainTimeout(-time.Second)), "WithDrainTimeout(-1s)"},
		{pool(workqueue.WithProgressEvery(-time.Second)), "WithProgressEvery(-1s)"},
		{pool(workqueue.WithPoolMaxAttempts(-1)), "WithPoolMaxAttempts(-1)"},
	} {
		checkRefused(t, tc.mention, tc.err, tc.mention)
	}
}

// TestEveryConstructorTakesTheCommonOptions: WithLogger and WithRegisterer (nil ones too) are
// options of every constructor of the package, so that one list configures all of them.
func TestEveryConstructorTakesTheCommonOptions(t *testing.T) {
	for _, log := range []*zap.Logger{zap.NewNop(), nil} {
		reg := prometheus.NewRegistry()
		common := []workqueue.CommonOption{workqueue.WithLogger(log), workqueue.WithRegisterer(reg)}
		var (
			memOpts   []workqueue.Option
			poolOpts  []workqueue.PoolOption
			execOpts  []workqueue.ExecOption
			apiOpts   []workqueue.APIOption
			stageOpts []workqueue.StageOption
			srcOpts   []workqueue.SourceOption
		)
		for _, o := range common {
			memOpts, poolOpts, execOpts = append(memOpts, o), append(poolOpts, o), append(execOpts, o)
			apiOpts, stageOpts, srcOpts = append(apiOpts, o), append(stageOpts, o), append(srcOpts, o)
		}
		q, err := workqueue.NewMemory(memOpts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		w, err := workqueue.NewExecWorker([]string{"sh"}, execOpts...)
		if err != nil {
			t.Fatal(err)
		}
		for what, err := range map[string]error{
			"NewPool":   second(workqueue.NewPool(q, w, poolOpts...)),
			"NewAPI":    second(workqueue.NewAPI(q, apiOpts...)),
			"NewSource": second(workqueue.NewSource("http://127.0.0.1:1", q, srcOpts...)),
		} {
			if err != nil {
				t.Errorf("%s: %v", what, err)
			}
		}
		for kind, build := range stageBuilders(q) {
			if err := build(stageOpts...); err != nil {
				t.Errorf("%s: %v", kind, err)
			}
		}
	}
}
