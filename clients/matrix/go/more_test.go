package matrix

// Streams with a consumer group, PSUBSCRIBE, every form of AUTH, and the connection pool after
// AUTH. Not here: client-side caching (go-redis v9 has none: it never sends CLIENT TRACKING), and
// the pool after a proxy restart (the suites share the proxies `cargo xtask clients` starts once).

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestMatrixMore(t *testing.T) {
	for _, target := range targets {
		for _, protocol := range protocols {
			t.Run(fmt.Sprintf("%s/RESP%d/streams", target, protocol), func(t *testing.T) { streams(t, target, protocol) })
			t.Run(fmt.Sprintf("%s/RESP%d/psubscribe", target, protocol), func(t *testing.T) { psubscribeThenNormal(t, target, protocol) })
			if target != "standalone" {
				t.Run(fmt.Sprintf("%s/RESP%d/pool", target, protocol), func(t *testing.T) { poolAfterAuth(t, target, protocol) })
			}
			if target == "tenant" {
				t.Run(fmt.Sprintf("tenant/RESP%d/auth", protocol), func(t *testing.T) { authInEveryForm(t, protocol) })
			}
		}
	}
}

// streams: one key (one slot on the cluster pool), so the group commands need no hash tag.
func streams(t *testing.T, target string, protocol int) {
	ctx := context.Background()
	key := keyMaker()
	r := clientFor(t, target, protocol, nil)
	stream := key("stream", true)
	first, err := r.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"field", "one"}}).Result()
	noError(t, "XADD", err)
	second, err := r.XAdd(ctx, &redis.XAddArgs{Stream: stream, Values: []any{"field", "two", "bin", "\x00\xff"}}).Result()
	noError(t, "XADD", err)
	entries, err := r.XRange(ctx, stream, "-", "+").Result()
	noError(t, "XRANGE", err)
	check(t, "XRANGE", entries, []redis.XMessage{
		{ID: first, Values: map[string]any{"field": "one"}},
		{ID: second, Values: map[string]any{"field": "two", "bin": "\x00\xff"}},
	})
	read, err := r.XRead(ctx, &redis.XReadArgs{Streams: []string{stream, first}, Count: 10, Block: -1}).Result()
	noError(t, "XREAD", err)
	check(t, "XREAD", read, []redis.XStream{{Stream: stream, Messages: entries[1:]}})
	noError(t, "XGROUP CREATE", r.XGroupCreate(ctx, stream, "workers", "0").Err())
	delivered, err := r.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: "workers", Consumer: "alice", Streams: []string{stream, ">"}, Count: 10, Block: -1,
	}).Result()
	noError(t, "XREADGROUP", err)
	check(t, "XREADGROUP", delivered, []redis.XStream{{Stream: stream, Messages: entries}})
	check(t, "XPENDING", r.XPending(ctx, stream, "workers").Val().Count, 2)
	check(t, "XACK", r.XAck(ctx, stream, "workers", first, second).Val(), 2)
	check(t, "XPENDING after XACK", r.XPending(ctx, stream, "workers").Val().Count, 0)
	check(t, "DEL", r.Del(ctx, stream).Val(), 1)
}

func psubscribeThenNormal(t *testing.T, target string, protocol int) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	key := keyMaker()
	r := clientFor(t, target, protocol, nil)
	pattern := key("news", false) + ".*"
	channel := key("news", false) + ".sport"
	pubsub := r.PSubscribe(ctx, pattern)
	defer pubsub.Close()
	confirmation, err := pubsub.ReceiveTimeout(ctx, 5*time.Second)
	noError(t, "PSUBSCRIBE confirmation", err)
	check(t, "PSUBSCRIBE confirmation", confirmation, &redis.Subscription{Kind: "psubscribe", Channel: pattern, Count: 1})
	// As for SUBSCRIBE: on the cluster pool PUBLISH counts only the publishing node's receivers.
	receivers, err := r.Publish(ctx, channel, "goal").Result()
	noError(t, "PUBLISH", err)
	if receivers != 1 && (target != "cluster" || receivers != 0) {
		t.Fatalf("PUBLISH counted %d receivers", receivers)
	}
	message, err := pubsub.ReceiveTimeout(ctx, 5*time.Second)
	noError(t, "pmessage", err)
	check(t, "pmessage", message, &redis.Message{Channel: channel, Pattern: pattern, Payload: "goal"})
	noError(t, "PUNSUBSCRIBE", pubsub.PUnsubscribe(ctx, pattern))
	left, err := pubsub.ReceiveTimeout(ctx, 5*time.Second)
	noError(t, "PUNSUBSCRIBE confirmation", err)
	check(t, "PUNSUBSCRIBE confirmation", left, &redis.Subscription{Kind: "punsubscribe", Channel: pattern, Count: 0})
	noError(t, "PING after PUNSUBSCRIBE", pubsub.Ping(ctx))
	pong, err := pubsub.ReceiveTimeout(ctx, 5*time.Second)
	noError(t, "PONG", err)
	if _, ok := pong.(*redis.Pong); !ok {
		t.Fatalf("PING after PUNSUBSCRIBE answered %#v", pong)
	}
	noError(t, "SET after pub/sub", r.Set(ctx, key("after", false), "back", 0).Err())
	check(t, "GET after pub/sub", r.Get(ctx, key("after", false)).Val(), "back")
	check(t, "DEL", r.Del(ctx, key("after", false)).Val(), 1)
}

// tenantOwns checks that what the client writes lands under the tenant's prefix.
func tenantOwns(t *testing.T, what string, r *redis.Client, protocol int) {
	t.Helper()
	ctx := context.Background()
	key := keyMaker()
	prefix := mustEnv(t, "RKPROXY_CLIENTS_TENANT_PREFIX")
	untenanted := clientFor(t, "standalone", protocol, nil)
	noError(t, what+": SET", r.Set(ctx, key("auth", false), "mine", 0).Err())
	check(t, what+": GET with prefix", untenanted.Get(ctx, prefix+key("auth", false)).Val(), "mine")
	check(t, what+": DEL", r.Del(ctx, key("auth", false)).Val(), 1)
}

func authInEveryForm(t *testing.T, protocol int) {
	ctx := context.Background()
	password := mustEnv(t, "RKPROXY_CLIENTS_TENANT_PASSWORD")
	user := mustEnv(t, "RKPROXY_CLIENTS_TENANT_USER")
	address := mustEnv(t, "RKPROXY_CLIENTS_TENANT_PROXY")
	// Password only (AUTH pw, or HELLO 3 AUTH default pw): what clientFor sets.
	tenantOwns(t, "password", clientFor(t, "tenant", protocol, nil), protocol)
	// Username and password.
	tenantOwns(t, "username", clientFor(t, "tenant", protocol, func(o *redis.Options) { o.Username = user }), protocol)
	// A credentials provider, called at each connect.
	tenantOwns(t, "provider", clientFor(t, "tenant", protocol, func(o *redis.Options) {
		o.Password = ""
		o.CredentialsProvider = func() (string, string) { return user, password }
	}), protocol)
	// At connect from a URL, with a user and with an empty one.
	for _, urlUser := range []string{user, ""} {
		options, err := redis.ParseURL(fmt.Sprintf("redis://%s:%s@%s/0?protocol=%d", urlUser, password, address, protocol))
		noError(t, "ParseURL", err)
		fromURL := redis.NewClient(options)
		t.Cleanup(func() { _ = fromURL.Close() })
		tenantOwns(t, "URL user "+urlUser, fromURL, protocol)
	}
	// A wrong password is an error at the first command, not a hang.
	wrong := clientFor(t, "tenant", protocol, func(o *redis.Options) { o.Password = "wrong-password" })
	err := wrong.Ping(ctx).Err()
	if err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("PING with a wrong password: %v, want WRONGPASS", err)
	}
	// No password: NOAUTH, also for HELLO 3 (go-redis falls back to RESP2 and sends commands).
	none := clientFor(t, "tenant", protocol, func(o *redis.Options) { o.Password = "" })
	if err := none.Get(ctx, "anything").Err(); err == nil || errors.Is(err, redis.Nil) || !strings.Contains(err.Error(), "NOAUTH") {
		t.Fatalf("GET without AUTH: %v, want NOAUTH", err)
	}
}

// poolAfterAuth holds several connections of the client's pool at once (go-redis opens one per
// Conn), each made with the client's AUTH (tenant) or OnConnect `USE` (cluster), and checks that
// each is a distinct connection on the right tenant or pool.
func poolAfterAuth(t *testing.T, target string, protocol int) {
	ctx := context.Background()
	key := keyMaker()
	r := clientFor(t, target, protocol, func(o *redis.Options) { o.PoolSize = 8 })
	names := []string{}
	ids := map[int64]bool{}
	for index := 0; index < 6; index++ {
		conn := r.Conn()
		t.Cleanup(func() { _ = conn.Close() })
		name := key(fmt.Sprintf("pooled%d", index), false)
		names = append(names, name)
		noError(t, "SET on a pooled connection", conn.Set(ctx, name, name, 0).Err())
		id, err := conn.ClientID(ctx).Result()
		noError(t, "CLIENT ID", err)
		ids[id] = true
	}
	check(t, "distinct pooled connections", len(ids), len(names))
	standalone := clientFor(t, "standalone", protocol, nil)
	if target == "tenant" {
		prefix := mustEnv(t, "RKPROXY_CLIENTS_TENANT_PREFIX")
		prefixed := []string{}
		for _, name := range names {
			prefixed = append(prefixed, prefix+name)
		}
		check(t, "prefixed keys", standalone.Exists(ctx, prefixed...).Val(), len(names))
	} else {
		// Through `USE cluster`: nothing in the default standalone pool.
		check(t, "keys in the standalone pool", standalone.Exists(ctx, names...).Val(), 0)
	}
	check(t, "DEL", r.Del(ctx, names...).Val(), len(names))
}
