package matrix

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// How long the pool may take to serve again after the proxy listens again, and the bounds on
// starting and stopping the proxy.
const (
	recoveryTimeout = 10 * time.Second
	startTimeout    = 30 * time.Second
	stopTimeout     = 15 * time.Second
)

// proxyProcess is a rkproxy of this suite's own (`cargo xtask clients` writes its configuration:
// the key-prefixed tenant on the standalone pool, allowed to `USE cluster`, on a port no other
// suite uses), so that restarting it disturbs no other suite.
type proxyProcess struct {
	binary, config, address string
	command                 *exec.Cmd
	waited                  chan error
}

// startProxy starts the suite's proxy for one test and stops it when the test ends.
func startProxy(t *testing.T) *proxyProcess {
	t.Helper()
	proxy := &proxyProcess{
		binary:  mustEnv(t, "RKPROXY_CLIENTS_RESTART_BINARY"),
		config:  mustEnv(t, "RKPROXY_CLIENTS_RESTART_CONFIG"),
		address: mustEnv(t, "RKPROXY_CLIENTS_RESTART_PROXY"),
	}
	proxy.start(t)
	t.Cleanup(func() { proxy.stop(t) })
	return proxy
}

// start runs rkproxy without the suite's RKPROXY_* variables (rkproxy reads every RKPROXY_
// variable as a configuration key) and waits until it accepts connections.
func (p *proxyProcess) start(t *testing.T) {
	t.Helper()
	log, err := os.OpenFile(p.config+".log", os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	noError(t, "open the proxy log", err)
	defer log.Close()
	command := exec.Command(p.binary, "--config", p.config)
	for _, variable := range os.Environ() {
		if !strings.HasPrefix(variable, "RKPROXY_") {
			command.Env = append(command.Env, variable)
		}
	}
	command.Stdout, command.Stderr = log, log
	noError(t, "start rkproxy", command.Start())
	p.command = command
	exited := make(chan error, 1)
	go func() { exited <- command.Wait() }()
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			t.Fatalf("rkproxy exited at start (%v), see %s.log", err, p.config)
		default:
		}
		if conn, err := net.DialTimeout("tcp", p.address, 200*time.Millisecond); err == nil {
			_ = conn.Close()
			p.waited = exited
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("rkproxy did not listen on %s within %v", p.address, startTimeout)
}

// stop sends SIGTERM (rkproxy closes idle connections and exits), SIGKILL after stopTimeout.
func (p *proxyProcess) stop(t *testing.T) {
	t.Helper()
	if p.command == nil {
		return
	}
	_ = p.command.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.waited:
	case <-time.After(stopTimeout):
		_ = p.command.Process.Kill()
		<-p.waited
	}
	p.command = nil
}

// restart stops the proxy and starts it again on the same port.
func (p *proxyProcess) restart(t *testing.T) {
	t.Helper()
	p.stop(t)
	p.start(t)
}

// TestPoolAfterProxyRestart: go-redis's pool when the proxy is restarted under it. What go-redis
// does: the pool checks an idle connection before handing it out and drops it when the peer has
// closed it, and opens new ones with its whole handshake: AUTH (HELLO 3 AUTH) from its options and
// the OnConnect hook, so `USE cluster` is in force again on each new connection.
func TestPoolAfterProxyRestart(t *testing.T) {
	for _, target := range []string{"restart", "restart-cluster"} {
		for _, protocol := range protocols {
			t.Run(fmt.Sprintf("%s/resp%d", target, protocol), func(t *testing.T) {
				poolAfterRestart(t, target, protocol)
			})
		}
	}
}

func poolAfterRestart(t *testing.T, target string, protocol int) {
	ctx := context.Background()
	key := keyMaker()
	proxy := startProxy(t)
	r := clientFor(t, target, protocol, func(o *redis.Options) { o.PoolSize = 8 })
	setThroughHeldConnections(t, r, key, "before")

	proxy.restart(t)

	first := key("first", false)
	failures := firstSuccess(t, func() error { return r.Set(ctx, first, "after-restart", 0).Err() })
	check(t, "failed commands before the pool served again", failures, 0)
	written := append([]string{first}, setThroughHeldConnections(t, r, key, "after")...)
	prefix := mustEnv(t, "RKPROXY_CLIENTS_TENANT_PREFIX")
	prefixed := []string{}
	for _, name := range written {
		prefixed = append(prefixed, prefix+name)
	}
	direct := clientFor(t, "redis", protocol, nil)
	if target == "restart" {
		// AUTH re-sent on each new connection: the keys are the tenant's, under its prefix.
		check(t, "prefixed keys in Redis", direct.Exists(ctx, prefixed...).Val(), len(written))
	} else {
		// `USE cluster` from OnConnect again: in the cluster (read through the other proxy's
		// cluster pool), nothing in the standalone Redis.
		cluster := clientFor(t, "cluster", protocol, nil)
		check(t, "prefixed keys in the cluster", cluster.Exists(ctx, prefixed...).Val(), len(written))
		check(t, "prefixed keys in Redis", direct.Exists(ctx, prefixed...).Val(), 0)
	}
	check(t, "DEL", r.Del(ctx, written...).Val(), len(written))
}

// setThroughHeldConnections holds four connections of the pool at once (so the pool must open,
// or replace, each), SETs a key on each, and checks they are distinct connections. Returns the keys.
func setThroughHeldConnections(t *testing.T, r *redis.Client, key func(string, bool) string, label string) []string {
	t.Helper()
	ctx := context.Background()
	names := []string{}
	ids := map[int64]bool{}
	conns := []*redis.Conn{}
	for index := 0; index < 4; index++ {
		conn := r.Conn()
		conns = append(conns, conn)
		name := key(fmt.Sprintf("%s%d", label, index), false)
		names = append(names, name)
		noError(t, label+": SET on a pooled connection", conn.Set(ctx, name, name, 0).Err())
		id, err := conn.ClientID(ctx).Result()
		noError(t, label+": CLIENT ID", err)
		ids[id] = true
	}
	for _, conn := range conns {
		_ = conn.Close()
	}
	check(t, label+": distinct pooled connections", len(ids), len(names))
	return names
}

// firstSuccess runs command until it succeeds, for at most recoveryTimeout; returns how many
// times it failed first.
func firstSuccess(t *testing.T, command func() error) int {
	t.Helper()
	deadline := time.Now().Add(recoveryTimeout)
	failures := 0
	for {
		err := command()
		if err == nil {
			return failures
		}
		if errors.Is(err, redis.Nil) || time.Now().After(deadline) {
			t.Fatalf("the pool did not serve within %v: %v (%d failures)", recoveryTimeout, err, failures+1)
		}
		failures++
		t.Logf("after the restart: %v", err)
		time.Sleep(100 * time.Millisecond)
	}
}
