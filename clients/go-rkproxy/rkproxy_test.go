package rkproxy_test

// The helpers against a real rkproxy and Kafka broker, run by `cargo xtask clients`, which passes
// RKPROXY_CLIENTS_HELPERS_* (see the Python suite's conftest.py for their meaning).

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	rkproxy "example.invalid/rkproxy/clients/go-rkproxy"
)

type settings struct {
	addr, user, password, pool, downPool, topic string
}

func load(t *testing.T) settings {
	t.Helper()
	get := func(name string) string {
		value := os.Getenv("RKPROXY_CLIENTS_HELPERS_" + name)
		if value == "" {
			t.Fatalf("RKPROXY_CLIENTS_HELPERS_%s is not set: run `cargo xtask clients`", name)
		}
		return value
	}
	return settings{
		addr: get("PROXY"), user: get("USER"), password: get("PASSWORD"),
		pool: get("POOL"), downPool: get("DOWN_POOL"), topic: get("TOPIC"),
	}
}

func (s settings) options(addr string, protocol int) *redis.Options {
	return &redis.Options{
		Addr: addr, Username: s.user, Password: s.password, Protocol: protocol,
		ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
	}
}

func connect(t *testing.T, s settings, addr, pool string, protocol int) *rkproxy.Client {
	t.Helper()
	client, rdb := rkproxy.NewClient(s.options(addr, protocol), pool)
	t.Cleanup(func() { rdb.Close() })
	return client
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func token() string {
	raw := make([]byte, 4)
	_, _ = rand.Read(raw)
	return hex.EncodeToString(raw)
}

func TestKafkaHelpers(t *testing.T) {
	s := load(t)
	for _, protocol := range []int{2, 3} {
		name := map[int]string{2: "resp2", 3: "resp3"}[protocol]
		t.Run(name+"/push_then_pop_by_offset", func(t *testing.T) {
			ctx := testContext(t)
			client := connect(t, s, s.addr, s.pool, protocol)
			value := []byte("go\x00\xff\r\n" + token())
			pushed, err := client.KPushTo(ctx, s.topic, 1, value)
			must(t, err)
			if pushed.Partition != 1 || pushed.Offset < 0 {
				t.Fatalf("KPushTo gave %+v", pushed)
			}
			record, err := client.KPopAt(ctx, s.topic, 1, pushed.Offset)
			must(t, err)
			if record == nil || record.Partition != 1 || record.Offset != pushed.Offset || !bytes.Equal(record.Value, value) {
				t.Fatalf("KPopAt gave %+v, want %q at %d", record, value, pushed.Offset)
			}
			empty, err := client.KPushTo(ctx, s.topic, 1, []byte{})
			must(t, err)
			records, err := client.KPopN(ctx, s.topic, 1, pushed.Offset, 2)
			must(t, err)
			if len(records) != 2 || !bytes.Equal(records[0].Value, value) {
				t.Fatalf("KPopN gave %+v", records)
			}
			emptyRecord, err := client.KPopAt(ctx, s.topic, 1, empty.Offset)
			must(t, err)
			if emptyRecord == nil || emptyRecord.Value == nil || len(emptyRecord.Value) != 0 {
				t.Fatalf("the empty value came back as %+v", emptyRecord)
			}
		})
		t.Run(name+"/past_the_end_partitions_offsets", func(t *testing.T) {
			ctx := testContext(t)
			client := connect(t, s, s.addr, s.pool, protocol)
			partitions, err := client.KPartitions(ctx, s.topic)
			must(t, err)
			if len(partitions) != 2 || partitions[0] != 0 || partitions[1] != 1 {
				t.Fatalf("KPartitions gave %v", partitions)
			}
			before := time.Now().UnixMilli() - 1
			pushed, err := client.KPush(ctx, s.topic, []byte("timed"))
			must(t, err)
			latest, err := client.KOffset(ctx, s.topic, pushed.Partition, rkproxy.Latest)
			must(t, err)
			if latest.Offset <= pushed.Offset || latest.Timestamp != -1 {
				t.Fatalf("KOffset latest gave %+v after %+v", latest, pushed)
			}
			earliest, err := client.KOffset(ctx, s.topic, pushed.Partition, rkproxy.Earliest)
			must(t, err)
			if earliest != (rkproxy.OffsetAt{Offset: 0, Timestamp: -1}) {
				t.Fatalf("KOffset earliest gave %+v", earliest)
			}
			atTime, err := client.KOffset(ctx, s.topic, pushed.Partition, before)
			must(t, err)
			if atTime.Offset > pushed.Offset || atTime.Timestamp < before {
				t.Fatalf("KOffset at %d gave %+v for %+v", before, atTime, pushed)
			}
			none, err := client.KPopAt(ctx, s.topic, 0, latest.Offset+1000)
			must(t, err)
			if none != nil {
				t.Fatalf("KPopAt past the end gave %+v", none)
			}
			noRecords, err := client.KPopN(ctx, s.topic, 0, latest.Offset+1000, 5)
			must(t, err)
			if noRecords == nil || len(noRecords) != 0 {
				t.Fatalf("KPopN past the end gave %#v", noRecords)
			}
		})
	}

	t.Run("managed_kpop_gives_each_record_once", func(t *testing.T) {
		ctx := testContext(t)
		topic := s.topic + "-managed-go"
		client := connect(t, s, s.addr, s.pool, 3)
		want := map[string]bool{}
		for index := 0; index < 3; index++ {
			value := "managed-" + token()
			want[value] = true
			_, err := client.KPush(ctx, topic, []byte(value))
			must(t, err)
		}
		got := map[string]int{}
		for attempt := 0; attempt < 50; attempt++ {
			record, err := client.KPop(ctx, topic)
			must(t, err)
			if record == nil {
				break
			}
			got[string(record.Value)]++
		}
		if len(got) != len(want) {
			t.Fatalf("KPop gave %v, want %v", got, want)
		}
		for value, times := range got {
			if !want[value] || times != 1 {
				t.Fatalf("KPop gave %v, want each of %v once", got, want)
			}
		}
	})

	t.Run("kafka_errors_are_KafkaError", func(t *testing.T) {
		ctx := testContext(t)
		down := connect(t, s, s.addr, s.downPool, 2)
		_, err := down.KPush(ctx, s.topic, []byte("nowhere"))
		var kafkaError *rkproxy.KafkaError
		if !errors.As(err, &kafkaError) || kafkaError.Name != "BROKER_NOT_AVAILABLE" {
			t.Fatalf("KPush on a pool without broker gave %v", err)
		}
		_, err = down.KPop(ctx, s.topic)
		if !errors.As(err, &kafkaError) || kafkaError.Name != "BROKER_NOT_AVAILABLE" {
			t.Fatalf("KPop on a pool without broker gave %v", err)
		}
		client := connect(t, s, s.addr, s.pool, 2)
		_, err = client.KPush(ctx, "no-such-topic", []byte("x"))
		var reply redis.Error
		if err == nil || errors.As(err, &kafkaError) || !errors.As(err, &reply) || !strings.Contains(err.Error(), "unknown topic") {
			t.Fatalf("KPush to an unknown topic gave %v", err)
		}
	})

	t.Run("reconnect_restores_auth_and_pool", func(t *testing.T) {
		ctx := testContext(t)
		relay := startRelay(t, s.addr)
		client := connect(t, s, relay.addr(), s.pool, 3)
		_, err := client.KPushTo(ctx, s.topic, 0, []byte("before the cut"))
		must(t, err)
		relay.cutAll()
		// go-redis retries on a new connection; the hook put it back on the Kafka pool.
		pushed, err := client.KPushTo(ctx, s.topic, 0, []byte("after the cut"))
		must(t, err)
		record, err := client.KPopAt(ctx, s.topic, 0, pushed.Offset)
		must(t, err)
		if record == nil || string(record.Value) != "after the cut" {
			t.Fatalf("read back %+v", record)
		}
		if relay.acceptedCount() != 2 {
			t.Fatalf("the relay accepted %d connections, want 2", relay.acceptedCount())
		}
	})

	t.Run("without_the_hook_a_reconnect_loses_the_pool", func(t *testing.T) {
		ctx := testContext(t)
		relay := startRelay(t, s.addr)
		options := s.options(relay.addr(), 3)
		options.PoolSize = 1
		rdb := redis.NewClient(options)
		t.Cleanup(func() { rdb.Close() })
		must(t, rdb.Do(ctx, "USE", s.pool).Err())
		client := rkproxy.New(rdb)
		_, err := client.KPushTo(ctx, s.topic, 0, []byte("before the cut"))
		must(t, err)
		relay.cutAll()
		_, err = client.KPushTo(ctx, s.topic, 0, []byte("after the cut"))
		if err == nil || !strings.Contains(err.Error(), "uses Redis pool") {
			t.Fatalf("KPush after a reconnect without the hook gave %v", err)
		}
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// relay forwards TCP connections to the proxy; cutAll closes them all, as a network failure or
// a proxy restart would.
type relay struct {
	listener net.Listener
	mu       sync.Mutex
	conns    []net.Conn
	accepted int
}

func startRelay(t *testing.T, target string) *relay {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	r := &relay{listener: listener}
	go r.serve(target)
	t.Cleanup(func() {
		listener.Close()
		r.cutAll()
	})
	return r
}

func (r *relay) addr() string { return r.listener.Addr().String() }

func (r *relay) serve(target string) {
	for {
		client, err := r.listener.Accept()
		if err != nil {
			return
		}
		upstream, err := net.Dial("tcp", target)
		if err != nil {
			client.Close()
			continue
		}
		r.mu.Lock()
		r.accepted++
		r.conns = append(r.conns, client, upstream)
		r.mu.Unlock()
		go pump(client, upstream)
		go pump(upstream, client)
	}
}

func pump(from, to net.Conn) {
	_, _ = io.Copy(to, from)
	from.Close()
	to.Close()
}

func (r *relay) cutAll() {
	r.mu.Lock()
	conns := r.conns
	r.conns = nil
	r.mu.Unlock()
	for _, conn := range conns {
		conn.Close()
	}
}

func (r *relay) acceptedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.accepted
}
