package etcd_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podblocks/podblocks/election"
	"github.com/podblocks/podblocks/election/etcd"
	"github.com/podblocks/podblocks/electiontest"
	"github.com/podblocks/podblocks/internal/etcdtest"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, etcdtest.IgnoreOptions()...) }

var elections atomic.Int64

// newBackendOn returns a constructor of backends for fresh elections on cli.
func newBackendOn(cli *clientv3.Client, ttl time.Duration) func(t *testing.T) election.Backend {
	return func(t *testing.T) election.Backend {
		b, err := etcd.New(cli, fmt.Sprintf("e%d", elections.Add(1)), etcd.WithTTL(ttl))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
}

func TestConformanceEmbedded(t *testing.T) {
	c := etcdtest.NewServer(t)
	electiontest.TestBackend(t, newBackendOn(c.Client(t), 5*time.Second))
}

// TestConformanceDebianEtcd runs the suite against Debian's etcd 3.4 server binary.
func TestConformanceDebianEtcd(t *testing.T) {
	p := etcdtest.StartBinary(t)
	t.Logf("server: %s", etcdtest.Version())
	electiontest.TestBackend(t, newBackendOn(etcdtest.NewClient(t, p.Endpoint), 5*time.Second))
}

func TestNewRejectsBadConfig(t *testing.T) {
	c := etcdtest.NewServer(t)
	cli := c.Client(t)
	tests := []struct {
		name     string
		election string
		opts     []etcd.Option
	}{
		{"empty name", "", nil},
		{"slash in name", "a/b", nil},
		{"zero TTL", "x", []etcd.Option{etcd.WithTTL(0)}},
		{"empty prefix", "x", []etcd.Option{etcd.WithPrefix("")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := etcd.New(cli, tt.election, tt.opts...); err == nil {
				t.Fatal("New accepted a bad config")
			}
		})
	}
	if _, err := etcd.New(nil, "x"); err == nil {
		t.Fatal("New accepted a nil client")
	}
}
