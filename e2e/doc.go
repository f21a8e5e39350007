// Package e2e runs podblocks' example binaries as containers on a Docker engine and breaks them on
// purpose: a "pod" is containers sharing one network namespace (--network container:<first>), its
// volumes and its PID namespace (--pid container:<first>); several pods talk over a user-defined
// bridge network. Every image is built FROM scratch by images/build.sh (static example binaries;
// memcached, redis-server and etcd copied from this machine's Debian packages with their shared
// libraries), once per test run.
//
// # Lifecycle
//
// The first test that needs images builds them (repository podblocks-e2e, tag unique to the run);
// TestMain removes them after the run. Tests skip with a message when `docker info` fails, or fail
// when the environment variable PODBLOCKS_E2E_REQUIRE is set (CI, where the engine must be up).
//
// # Cleanup
//
// Every container, network and volume is named with the run's unique prefix and removed by
// t.Cleanup; TestMain removes anything left with the prefix.
//
// # Concurrency
//
// Tests run one after another (no t.Parallel): the machines have two shared cores, and the fault
// scenarios measure timing.
package e2e
