package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/podblocks/podblocks/ambassador/twemproxy"
	"github.com/podblocks/podblocks/internal/freeport"
)

// ncConf is a memcache pool on listen whose one server is 127.0.0.1:port: confs of two ports of one
// digit have the same size.
func ncConf(listen string, port int) []byte {
	return fmt.Appendf(nil, "mc:\n  listen: %s\n  servers:\n   - 127.0.0.1:%d:1\n", listen, port)
}

// serveWatched runs a Server of the config file at conf (whose listen address is listen) with
// watchReload on it until the test ends, and returns once the file is watched; serverAddr returns
// the address of the pool's server in the configuration served.
func serveWatched(t *testing.T, conf string) (serverAddr func() string) {
	serverAddr, _, _ = serveWatchedLogs(t, conf)
	return serverAddr
}

// serveWatchedLogs is serveWatched that also returns watchReload's logs and its SIGHUP channel.
func serveWatchedLogs(t *testing.T, conf string) (serverAddr func() string, logs *observer.ObservedLogs, hup chan<- os.Signal) {
	t.Helper()
	cfg, err := twemproxy.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := twemproxy.NewServer(cfg, protocols(nutcrackerArgs{}))
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	ctx, cancel := context.WithCancel(context.Background())
	sighup := make(chan os.Signal, 1)
	ran, watched := make(chan error, 1), make(chan error, 1)
	go func() { ran <- srv.Run(ctx) }()
	go func() { watched <- watchReload(ctx, sighup, conf, srv, zap.New(core), nil) }()
	t.Cleanup(func() {
		cancel()
		for _, ch := range []chan error{ran, watched} {
			if err := <-ch; err != nil {
				t.Error(err)
			}
		}
	})
	// watchReload takes a SIGHUP once the file is watched.
	sighup <- syscall.SIGHUP
	ncWait(t, "the SIGHUP reload", func() bool {
		return logs.FilterMessage("config reloaded").FilterField(zap.String("trigger", "SIGHUP")).Len() > 0
	})
	return func() string { return srv.Config().Pools[0].Servers[0].Addr }, logs, sighup
}

// A config file changed to one that does not parse is logged rejected, and not also "reloaded" by
// the Reloader, nor retried: the old code's action returned nil, so the Reloader logged the bad
// content reloaded (and counted it applied). The running config keeps serving, a SIGHUP reads the
// file again, and a good config written next is applied.
func TestNutcrackerRejectedChangeNotReloaded(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "nutcracker.yml")
	listen := freeport.TCP(t)
	write := func(b []byte) { // whole: a rename over the file
		if err := os.WriteFile(conf+".tmp", b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(conf+".tmp", conf); err != nil {
			t.Fatal(err)
		}
	}
	write(ncConf(listen, 1))
	serverAddr, logs, hup := serveWatchedLogs(t, conf)
	write([]byte("mc:\n  listen: " + listen + "\n  bogus: 1\n"))
	rejected := func(trigger string) int {
		return logs.FilterMessage("config reload rejected; the running config keeps serving").
			FilterField(zap.String("trigger", trigger)).Len()
	}
	ncWait(t, "the file change rejected", func() bool { return rejected("file change") > 0 })
	hup <- syscall.SIGHUP
	ncWait(t, "the SIGHUP rejected", func() bool { return rejected("SIGHUP") > 0 })
	if n := rejected("file change"); n != 1 {
		t.Errorf("the bad file change was read %d times, want once", n)
	}
	if n := logs.FilterMessage("reloaded").Len(); n != 0 {
		t.Errorf("the Reloader logged the rejected content reloaded (%d times)", n)
	}
	if got := serverAddr(); got != "127.0.0.1:1" {
		t.Errorf("after the rejections the config serves %s, want the old one's 127.0.0.1:1", got)
	}
	write(ncConf(listen, 2))
	ncWait(t, "the good config applied", func() bool {
		return serverAddr() == "127.0.0.1:2" && logs.FilterMessage("reloaded").Len() > 0
	})
	if n := logs.FilterMessage("reloaded").Len(); n != 1 {
		t.Errorf("the Reloader logged %d reloads, want the good config's one", n)
	}
}

// A ConfigMap-style update (the ..data symlink swapped to a new directory) whose file has the same
// modification time and size as the old one is reloaded: the old code compared the modification
// time alone and skipped it.
func TestNutcrackerReloadsSameMtimeReplacement(t *testing.T) {
	dir := t.TempDir()
	listen := freeport.TCP(t)
	mtime := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	version := func(name string, port int) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, name, "nutcracker.yml")
		if err := os.WriteFile(f, ncConf(listen, port), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(f, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	version("..v1", 1)
	if err := os.Symlink("..v1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "nutcracker.yml")
	if err := os.Symlink(filepath.Join("..data", "nutcracker.yml"), conf); err != nil {
		t.Fatal(err)
	}
	serverAddr := serveWatched(t, conf)
	version("..v2", 2)
	if err := os.Symlink("..v2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	ncWait(t, "the reload of the new ..data (same mtime and size)", func() bool { return serverAddr() == "127.0.0.1:2" })
}

// A -c path that is a symlink to a file in another directory is reloaded when that file is replaced
// there (sed -i writes a new file and renames it over the old): the old code watched the link's
// directory only, and never saw it.
func TestNutcrackerReloadsSymlinkTargetElsewhere(t *testing.T) {
	base := t.TempDir()
	listen := freeport.TCP(t)
	for _, d := range []string{"real", "link"} {
		if err := os.Mkdir(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	real := filepath.Join(base, "real", "nutcracker.yml")
	if err := os.WriteFile(real, ncConf(listen, 1), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(base, "link", "nutcracker.yml")
	if err := os.Symlink(filepath.Join("..", "real", "nutcracker.yml"), conf); err != nil {
		t.Fatal(err)
	}
	serverAddr := serveWatched(t, conf)
	tmp := filepath.Join(base, "real", "sedXYZ")
	if err := os.WriteFile(tmp, ncConf(listen, 2), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, real); err != nil {
		t.Fatal(err)
	}
	ncWait(t, "the reload of the symlink's target", func() bool { return serverAddr() == "127.0.0.1:2" })
}
