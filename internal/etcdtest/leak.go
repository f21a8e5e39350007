package etcdtest

import "go.uber.org/goleak"

// IgnoreOptions returns the goleak options a package whose tests use etcdtest passes to
// goleak.VerifyTestMain. It is empty until a test shows etcd leaving a goroutine behind.
func IgnoreOptions() []goleak.Option {
	return nil
}
