// Package matrix runs go-redis v9 through rkproxy in plain (non-cluster) mode, on every target
// (standalone pool, cluster pool via USE, key-prefixed tenant via AUTH) with RESP2 and RESP3, and
// on the Kafka pool with raw KPUSH/KPOP. `cargo xtask clients` starts the servers and passes
// their addresses (see clients/matrix/python/conftest.py for the variables).
package matrix

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

var targets = []string{"standalone", "cluster", "tenant"}
var protocols = []int{2, 3}

// clientFor connects to a target. The pool is chosen by an OnConnect hook, which go-redis runs
// after its own handshake on every new connection (pooled and pub/sub alike).
func clientFor(t *testing.T, target string, protocol int, adjust func(*redis.Options)) *redis.Client {
	t.Helper()
	options := &redis.Options{Protocol: protocol, MaxRetries: -1}
	switch target {
	case "tenant":
		options.Addr = mustEnv(t, "RKPROXY_CLIENTS_TENANT_PROXY")
		options.Password = mustEnv(t, "RKPROXY_CLIENTS_TENANT_PASSWORD")
	case "standalone":
		options.Addr = mustEnv(t, "RKPROXY_CLIENTS_PROXY")
	case "redis":
		// The standalone Redis itself, without a proxy.
		options.Addr = mustEnv(t, "RKPROXY_CLIENTS_REDIS")
	case "restart", "restart-cluster":
		// The tenant on the suite's own restartable proxy (restart_test.go).
		options.Addr = mustEnv(t, "RKPROXY_CLIENTS_RESTART_PROXY")
		options.Password = mustEnv(t, "RKPROXY_CLIENTS_TENANT_PASSWORD")
		if target == "restart-cluster" {
			options.OnConnect = usePool("cluster")
		}
	default:
		options.Addr = mustEnv(t, "RKPROXY_CLIENTS_PROXY")
		options.OnConnect = usePool(target)
	}
	if adjust != nil {
		adjust(options)
	}
	client := redis.NewClient(options)
	t.Cleanup(func() { _ = client.Close() })
	return client
}

// usePool is an OnConnect hook that sends `USE pool` on every new connection.
func usePool(pool string) func(ctx context.Context, cn *redis.Conn) error {
	return func(ctx context.Context, cn *redis.Conn) error {
		return cn.Do(ctx, "USE", pool).Err()
	}
}

func mustEnv(t *testing.T, name string) string {
	t.Helper()
	value := os.Getenv(name)
	if value == "" {
		t.Fatalf("%s is not set (run through `cargo xtask clients`)", name)
	}
	return value
}

// keyMaker gives unique key names for one test; tagged names share a hash tag.
func keyMaker() func(suffix string, tagged bool) string {
	token := make([]byte, 6)
	_, _ = rand.Read(token)
	id := hex.EncodeToString(token)
	return func(suffix string, tagged bool) string {
		if tagged {
			return fmt.Sprintf("{go:%s}:%s", id, suffix)
		}
		return fmt.Sprintf("go:%s:%s", id, suffix)
	}
}

func check(t *testing.T, what string, got, want any) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s: got %#v, want %#v", what, got, want)
	}
}

func noError(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func parseClientInfo(line string) map[string]string {
	fields := map[string]string{}
	for _, pair := range strings.Fields(line) {
		if name, value, ok := strings.Cut(pair, "="); ok {
			fields[name] = value
		}
	}
	return fields
}

type scenario struct {
	name string
	run  func(t *testing.T, target string, protocol int)
}

var scenarios = []scenario{
	{"connect", connectHandshake},
	{"types", dataTypes},
	{"binary", binaryAndEmptyValues},
	{"big", oneMegabyteValue},
	{"pipeline", pipelineOf1000},
	{"crossslot", crossSlot},
	{"scan", scanToTheEnd},
	{"transactions", multiAndWatch},
	{"blpop", blpopWithTimeout},
	{"subscribe", subscribeThenNormal},
	{"eval", eval},
}

func TestMatrix(t *testing.T) {
	for _, target := range targets {
		for _, protocol := range protocols {
			for _, each := range scenarios {
				name := fmt.Sprintf("%s/RESP%d/%s", target, protocol, each.name)
				t.Run(name, func(t *testing.T) { each.run(t, target, protocol) })
			}
			if target == "standalone" {
				t.Run(fmt.Sprintf("standalone/RESP%d/select", protocol), func(t *testing.T) { selectDB(t, protocol) })
			}
			if target == "tenant" {
				t.Run(fmt.Sprintf("tenant/RESP%d/prefix", protocol), func(t *testing.T) { tenantPrefix(t, protocol) })
			}
		}
	}
}

func connectHandshake(t *testing.T, target string, protocol int) {
	ctx := context.Background()
	r := clientFor(t, target, protocol, func(o *redis.Options) { o.ClientName = "matrix-go" })
	check(t, "PING", r.Ping(ctx).Val(), "PONG")
	name, err := r.ClientGetName(ctx).Result()
	noError(t, "CLIENT GETNAME", err)
	check(t, "CLIENT GETNAME", name, "matrix-go")
	line, err := r.Do(ctx, "CLIENT", "INFO").Text()
	noError(t, "CLIENT INFO", err)
	info := parseClientInfo(line)
	if !strings.HasPrefix(info["lib-name"], "go-redis") {
		t.Fatalf("lib-name %q, want go-redis(...)", info["lib-name"])
	}
	check(t, "lib-ver", info["lib-ver"], redis.Version())
	check(t, "resp", info["resp"], protocol)
	server, err := r.Info(ctx, "server").Result()
	noError(t, "INFO", err)
	if !strings.Contains(server, "redis_mode:standalone") {
		t.Fatalf("INFO server without redis_mode:standalone:\n%s", server)
	}
}

func selectDB(t *testing.T, protocol int) {
	ctx := context.Background()
	key := keyMaker()
	inDB3 := clientFor(t, "standalone", protocol, func(o *redis.Options) { o.DB = 3 })
	inDB0 := clientFor(t, "standalone", protocol, nil)
	noError(t, "SET", inDB3.Set(ctx, key("selected", false), "three", 0).Err())
	check(t, "GET db 3", inDB3.Get(ctx, key("selected", false)).Val(), "three")
	if err := inDB0.Get(ctx, key("selected", false)).Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET in db 0: %v, want nil", err)
	}
	check(t, "DEL", inDB3.Del(ctx, key("selected", false)).Val(), 1)
}

func dataTypes(t *testing.T, target string, protocol int) {
	ctx := context.Background()
	key := keyMaker()
	r := clientFor(t, target, protocol, nil)
	noError(t, "SET", r.Set(ctx, key("s", false), "10", 0).Err())
	check(t, "INCRBY", r.IncrBy(ctx, key("s", false), 5).Val(), 15)
	check(t, "APPEND", r.Append(ctx, key("s", false), "x").Val(), 3)
	check(t, "GET", r.Get(ctx, key("s", false)).Val(), "15x")
	noError(t, "SET EX", r.Set(ctx, key("s", false), "v", 100*time.Second).Err())
	if ttl := r.TTL(ctx, key("s", false)).Val(); ttl <= 0 {
		t.Fatalf("TTL %v", ttl)
	}
	check(t, "HSET", r.HSet(ctx, key("h", false), "a", "1", "b", "2").Val(), 2)
	check(t, "HINCRBY", r.HIncrBy(ctx, key("h", false), "a", 41).Val(), 42)
	check(t, "HGETALL", r.HGetAll(ctx, key("h", false)).Val(), map[string]string{"a": "42", "b": "2"})
	check(t, "RPUSH", r.RPush(ctx, key("l", false), "b", "c").Val(), 2)
	check(t, "LPUSH", r.LPush(ctx, key("l", false), "a").Val(), 3)
	check(t, "LRANGE", r.LRange(ctx, key("l", false), 0, -1).Val(), []string{"a", "b", "c"})
	check(t, "SADD", r.SAdd(ctx, key("x", true), "a", "b", "c").Val(), 3)
	check(t, "SADD", r.SAdd(ctx, key("y", true), "b", "c", "d").Val(), 3)
	inter := r.SInter(ctx, key("x", true), key("y", true)).Val()
	sort.Strings(inter)
	check(t, "SINTER", inter, []string{"b", "c"})
	check(t, "ZADD", r.ZAdd(ctx, key("z", false), redis.Z{Score: 1, Member: "a"}, redis.Z{Score: 2.5, Member: "b"}, redis.Z{Score: 3, Member: "c"}).Val(), 3)
	check(t, "ZINCRBY", r.ZIncrBy(ctx, key("z", false), 10, "a").Val(), 11)
	check(t, "ZRANGE WITHSCORES", r.ZRangeWithScores(ctx, key("z", false), 0, -1).Val(),
		[]redis.Z{{Score: 2.5, Member: "b"}, {Score: 3, Member: "c"}, {Score: 11, Member: "a"}})
	check(t, "DEL", r.Del(ctx, key("s", false), key("h", false), key("l", false), key("x", true), key("y", true), key("z", false)).Val(), 6)
}

func binaryAndEmptyValues(t *testing.T, target string, protocol int) {
	ctx := context.Background()
	key := keyMaker()
	r := clientFor(t, target, protocol, nil)
	binary := make([]byte, 0, 260)
	for index := 0; index < 256; index++ {
		binary = append(binary, byte(index))
	}
	binary = append(binary, '\r', '\n', 0)
	binaryKey := key("bin", false) + "\x00\xff\r\n"
	noError(t, "SET binary", r.Set(ctx, binaryKey, binary, 0).Err())
	got, err := r.Get(ctx, binaryKey).Bytes()
	noError(t, "GET binary", err)
	if !bytes.Equal(got, binary) {
		t.Fatalf("binary value changed: %x", got)
	}
	noError(t, "SET empty", r.Set(ctx, key("empty", false), "", 0).Err())
	empty, err := r.Get(ctx, key("empty", false)).Result()
	noError(t, "GET empty", err)
	check(t, "GET empty", empty, "")
	check(t, "STRLEN", r.StrLen(ctx, key("empty", false)).Val(), 0)
	check(t, "DEL", r.Del(ctx, binaryKey, key("empty", false)).Val(), 2)
}

func oneMegabyteValue(t *testing.T, target string, protocol int) {
	ctx := context.Background()
	key := keyMaker()
	r := clientFor(t, target, protocol, nil)
	value := make([]byte, 1<<20)
	_, _ = rand.Read(value)
	noError(t, "SET", r.Set(ctx, key("big", false), value, 0).Err())
	got, err := r.Get(ctx, key("big", false)).Bytes()
	noError(t, "GET", err)
	if !bytes.Equal(got, value) {
		t.Fatalf("1 MB value changed (%d bytes back)", len(got))
	}
	check(t, "DEL", r.Del(ctx, key("big", false)).Val(), 1)
}

func pipelineOf1000(t *testing.T, target string, protocol int) {
	ctx := context.Background()
	key := keyMaker()
	r := clientFor(t, target, protocol, nil)
	writes := r.Pipeline()
	for index := 0; index < 1000; index++ {
		writes.Set(ctx, key(fmt.Sprintf("p%d", index), false), fmt.Sprintf("value-%d", index), 0)
	}
	written, err := writes.Exec(ctx)
	noError(t, "pipelined SET", err)
	check(t, "pipelined SET count", len(written), 1000)
	reads := r.Pipeline()
	gets := make([]*redis.StringCmd, 1000)
	for index := range gets {
		gets[index] = reads.Get(ctx, key(fmt.Sprintf("p%d", index), false))
	}
	_, err = reads.Exec(ctx)
	noError(t, "pipelined GET", err)
	names := make([]string, 1000)
	for index, get := range gets {
		check(t, "pipelined GET", get.Val(), fmt.Sprintf("value-%d", index))
		names[index] = key(fmt.Sprintf("p%d", index), false)
	}
	check(t, "DEL", r.Del(ctx, names...).Val(), 1000)
}

func crossSlot(t *testing.T, target string, protocol int) {
	ctx := context.Background()
	key := keyMaker()
	r := clientFor(t, target, protocol, nil)
	pairs := []any{}
	names := []string{}
	want := []any{}
	for index := 0; index < 20; index++ {
		name := key(fmt.Sprintf("m%d", index), false)
		names = append(names, name)
		pairs = append(pairs, name, fmt.Sprintf("v%d", index))
		want = append(want, fmt.Sprintf("v%d", index))
	}
	noError(t, "MSET", r.MSet(ctx, pairs...).Err())
	check(t, "MGET", r.MGet(ctx, append(names, key("missing", false))...).Val(), append(want, nil))
	check(t, "EXISTS", r.Exists(ctx, names...).Val(), 20)
	check(t, "DEL", r.Del(ctx, names...).Val(), 20)
}

func scanToTheEnd(t *testing.T, target string, protocol int) {
	ctx := context.Background()
	key := keyMaker()
	r := clientFor(t, target, protocol, nil)
	pairs := []any{}
	names := []string{}
	for index := 0; index < 150; index++ {
		name := key(fmt.Sprintf("scan%d", index), false)
		names = append(names, name)
		pairs = append(pairs, name, "x")
	}
	noError(t, "MSET", r.MSet(ctx, pairs...).Err())
	found := []string{}
	var cursor uint64
	for round := 0; round < 10000; round++ {
		batch, next, err := r.Scan(ctx, cursor, key("scan*", false), 20).Result()
		noError(t, "SCAN", err)
		found = append(found, batch...)
		cursor = next
		if cursor == 0 {
			break
		}
	}
	check(t, "final cursor", cursor, 0)
	// SCAN may return a key more than once (Redis does while a node's table is rehashing); every key once at least.
	distinct := []string{}
	seen := map[string]bool{}
	for _, name := range found {
		if !seen[name] {
			seen[name] = true
			distinct = append(distinct, name)
		}
	}
	sort.Strings(distinct)
	sort.Strings(names)
	check(t, "scanned keys", distinct, names)
	check(t, "DEL", r.Del(ctx, names...).Val(), 150)
}

func multiAndWatch(t *testing.T, target string, protocol int) {
	ctx := context.Background()
	key := keyMaker()
	r := clientFor(t, target, protocol, nil)
	other := clientFor(t, target, protocol, nil)
	var incr *redis.IntCmd
	_, err := r.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.Set(ctx, key("a", true), "1", 0)
		incr = pipe.Incr(ctx, key("a", true))
		pipe.RPush(ctx, key("b", true), "x", "y")
		return nil
	})
	noError(t, "MULTI/EXEC", err)
	check(t, "INCR in EXEC", incr.Val(), 2)
	err = r.Watch(ctx, func(tx *redis.Tx) error {
		check(t, "GET while watching", tx.Get(ctx, key("a", true)).Val(), "2")
		noError(t, "concurrent SET", other.Set(ctx, key("a", true), "changed", 0).Err())
		_, err := tx.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			pipe.Set(ctx, key("a", true), "mine", 0)
			return nil
		})
		return err
	}, key("a", true))
	if !errors.Is(err, redis.TxFailedErr) {
		t.Fatalf("WATCH after a concurrent write: %v, want %v", err, redis.TxFailedErr)
	}
	check(t, "GET after abort", r.Get(ctx, key("a", true)).Val(), "changed")
	err = r.Watch(ctx, func(tx *redis.Tx) error {
		_, err := tx.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			pipe.Set(ctx, key("a", true), "mine", 0)
			return nil
		})
		return err
	}, key("a", true))
	noError(t, "WATCH without a concurrent write", err)
	check(t, "GET after EXEC", r.Get(ctx, key("a", true)).Val(), "mine")
	check(t, "DEL", r.Del(ctx, key("a", true), key("b", true)).Val(), 2)
}

func blpopWithTimeout(t *testing.T, target string, protocol int) {
	ctx := context.Background()
	key := keyMaker()
	r := clientFor(t, target, protocol, nil)
	// Both keys in one slot: across slots a cluster pool answers CROSSSLOT, as Redis Cluster.
	empty, queue := key("empty", true), key("queue", true)
	started := time.Now()
	if err := r.BLPop(ctx, 300*time.Millisecond, empty).Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("BLPOP on an empty list: %v, want nil", err)
	}
	if elapsed := time.Since(started); elapsed < 250*time.Millisecond {
		t.Fatalf("BLPOP returned after %v, before its timeout", elapsed)
	}
	check(t, "RPUSH", r.RPush(ctx, queue, "job").Val(), 1)
	popped, err := r.BLPop(ctx, time.Second, empty, queue).Result()
	noError(t, "BLPOP", err)
	check(t, "BLPOP", popped, []string{queue, "job"})
	noError(t, "SET after BLPOP", r.Set(ctx, key("after", false), "normal", 0).Err())
	check(t, "GET after BLPOP", r.Get(ctx, key("after", false)).Val(), "normal")
	check(t, "DEL", r.Del(ctx, key("after", false)).Val(), 1)
}

func subscribeThenNormal(t *testing.T, target string, protocol int) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	key := keyMaker()
	r := clientFor(t, target, protocol, nil)
	channel := key("channel", false)
	pubsub := r.Subscribe(ctx, channel)
	defer pubsub.Close()
	confirmation, err := pubsub.ReceiveTimeout(ctx, 5*time.Second)
	noError(t, "SUBSCRIBE confirmation", err)
	check(t, "SUBSCRIBE confirmation", confirmation, &redis.Subscription{Kind: "subscribe", Channel: channel, Count: 1})
	// Redis Cluster counts only the receivers on the node that took the PUBLISH (the message
	// still reaches every node), so on the cluster pool the count may be 0.
	receivers, err := r.Publish(ctx, channel, "hello").Result()
	noError(t, "PUBLISH", err)
	if receivers != 1 && (target != "cluster" || receivers != 0) {
		t.Fatalf("PUBLISH counted %d receivers", receivers)
	}
	message, err := pubsub.ReceiveTimeout(ctx, 5*time.Second)
	noError(t, "message", err)
	check(t, "message", message, &redis.Message{Channel: channel, Payload: "hello"})
	noError(t, "UNSUBSCRIBE", pubsub.Unsubscribe(ctx, channel))
	left, err := pubsub.ReceiveTimeout(ctx, 5*time.Second)
	noError(t, "UNSUBSCRIBE confirmation", err)
	check(t, "UNSUBSCRIBE confirmation", left, &redis.Subscription{Kind: "unsubscribe", Channel: channel, Count: 0})
	// With nothing subscribed, the same connection answers an ordinary PING.
	noError(t, "PING after UNSUBSCRIBE", pubsub.Ping(ctx))
	pong, err := pubsub.ReceiveTimeout(ctx, 5*time.Second)
	noError(t, "PONG", err)
	if _, ok := pong.(*redis.Pong); !ok {
		t.Fatalf("PING after UNSUBSCRIBE answered %#v", pong)
	}
	noError(t, "SET after pub/sub", r.Set(ctx, key("after", false), "back", 0).Err())
	check(t, "GET after pub/sub", r.Get(ctx, key("after", false)).Val(), "back")
	check(t, "DEL", r.Del(ctx, key("after", false)).Val(), 1)
}

func eval(t *testing.T, target string, protocol int) {
	ctx := context.Background()
	key := keyMaker()
	r := clientFor(t, target, protocol, nil)
	script := "redis.call('SET', KEYS[1], ARGV[1]); return {redis.call('GET', KEYS[1]), #ARGV}"
	reply, err := r.Eval(ctx, script, []string{key("e", false)}, "scripted", "extra").Slice()
	noError(t, "EVAL", err)
	check(t, "EVAL", reply, []any{"scripted", int64(2)})
	check(t, "GET", r.Get(ctx, key("e", false)).Val(), "scripted")
	check(t, "DEL", r.Del(ctx, key("e", false)).Val(), 1)
}

func tenantPrefix(t *testing.T, protocol int) {
	ctx := context.Background()
	key := keyMaker()
	prefix := mustEnv(t, "RKPROXY_CLIENTS_TENANT_PREFIX")
	r := clientFor(t, "tenant", protocol, nil)
	untenanted := clientFor(t, "standalone", protocol, nil)
	noError(t, "SET", r.Set(ctx, key("mine", false), "tenant-value", 0).Err())
	check(t, "GET with prefix", untenanted.Get(ctx, prefix+key("mine", false)).Val(), "tenant-value")
	if err := untenanted.Get(ctx, key("mine", false)).Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET without prefix: %v, want nil", err)
	}
	check(t, "DEL", r.Del(ctx, key("mine", false)).Val(), 1)
}

func TestKafka(t *testing.T) {
	topic := os.Getenv("RKPROXY_CLIENTS_KAFKA_TOPIC")
	if topic == "" {
		// `cargo xtask clients --no-kafka` leaves this test out with `-skip TestKafka`.
		t.Fatal("RKPROXY_CLIENTS_KAFKA_TOPIC is not set")
	}
	for _, protocol := range protocols {
		t.Run(fmt.Sprintf("RESP%d", protocol), func(t *testing.T) {
			ctx := context.Background()
			r := clientFor(t, "kafka", protocol, nil)
			partitions, err := r.Do(ctx, "KPARTITIONS", topic).Int64Slice()
			noError(t, "KPARTITIONS", err)
			sort.Slice(partitions, func(i, j int) bool { return partitions[i] < partitions[j] })
			check(t, "KPARTITIONS", partitions, []int64{0, 1})
			value := make([]byte, 16)
			_, _ = rand.Read(value)
			value = append([]byte("g\x00\xff"), value...)
			pushed, err := r.Do(ctx, "KPUSH", topic, 1, value).Int64Slice()
			noError(t, "KPUSH", err)
			check(t, "KPUSH partition", pushed[0], 1)
			offset := pushed[1]
			record, err := r.Do(ctx, "KPOP", topic, 1, offset).Slice()
			noError(t, "KPOP", err)
			check(t, "KPOP", record, []any{int64(1), offset, string(value)})
		})
	}
}
