// Package rkproxy sends rkproxy's Kafka commands (KPUSH, KPOP, KPARTITIONS, KOFFSET) with a
// go-redis v9 client and returns typed results.
//
// rkproxy serves Apache Kafka topics on its Kafka pools. A client reaches a Kafka pool as its
// tenant's default pool or with `USE pool`, which holds for one connection only; go-redis opens
// connections on its own (its pool, after a dropped connection), so [NewClient] and [UsePool]
// send `USE pool` from go-redis's OnConnect hook, after its own handshake (HELLO, AUTH, SELECT),
// on every connection.
//
// Kafka's own errors (`ERR kafka OFFSET_OUT_OF_RANGE: ...`) are returned as *[KafkaError], whose
// Name is Kafka's error name; other refusals (an unknown topic, a permission, a wrong partition)
// stay go-redis errors.
package rkproxy

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/redis/go-redis/v9"
)

// Latest is the KOffset time for the offset after the last record.
const Latest int64 = -1

// Earliest is the KOffset time for the earliest offset Kafka still keeps.
const Earliest int64 = -2

// Pushed is where KPUSH wrote a record, once Kafka acknowledged it.
type Pushed struct {
	Partition int32
	Offset    int64
}

// Record is a record read by KPOP. Value is nil for a Kafka tombstone, empty (not nil) for an
// empty value.
type Record struct {
	Partition int32
	Offset    int64
	Value     []byte
}

// OffsetAt is KOFFSET's answer: the offset and the record's timestamp in ms (-1 when Kafka gives
// none).
type OffsetAt struct {
	Offset    int64
	Timestamp int64
}

// KafkaError is an error Kafka reported through rkproxy.
type KafkaError struct {
	// Name is Kafka's error name: OFFSET_OUT_OF_RANGE, BROKER_NOT_AVAILABLE, REQUEST_TIMED_OUT, ...
	Name string
	// Message is rkproxy's whole error reply.
	Message string
}

func (e *KafkaError) Error() string { return e.Message }

// rkproxy writes Kafka's errors as `kafka NAME: details`, alone (`ERR kafka NAME: ...`) or inside
// a pool error (`ERR kafka pool 'p' unavailable: kafka NAME: ...`).
var kafkaErrorName = regexp.MustCompile(`(?:^|\s)kafka ([A-Z][A-Z0-9_]*): `)

// asKafkaError turns an error reply that carries a Kafka error name into a *KafkaError.
func asKafkaError(err error) error {
	var reply redis.Error
	if err == nil || errors.Is(err, redis.Nil) || !errors.As(err, &reply) {
		return err
	}
	found := kafkaErrorName.FindStringSubmatch(err.Error())
	if found == nil {
		return err
	}
	return &KafkaError{Name: found[1], Message: err.Error()}
}

// UsePool returns a go-redis OnConnect hook that sends `USE pool` on every new connection, after
// calling next (an existing hook) when it is not nil.
func UsePool(pool string, next func(context.Context, *redis.Conn) error) func(context.Context, *redis.Conn) error {
	return func(ctx context.Context, cn *redis.Conn) error {
		if next != nil {
			if err := next(ctx, cn); err != nil {
				return err
			}
		}
		if err := cn.Do(ctx, "USE", pool).Err(); err != nil {
			return fmt.Errorf("USE %s: %w", pool, err)
		}
		return nil
	}
}

// Doer is what the commands need from go-redis: *redis.Client, *redis.Conn and
// redis.UniversalClient have it.
type Doer interface {
	Do(ctx context.Context, args ...any) *redis.Cmd
}

// Client sends the K* commands through a go-redis client.
type Client struct {
	rdb Doer
}

// New wraps a go-redis client that is already on a Kafka pool (its default pool, or through
// [UsePool]).
func New(rdb Doer) *Client { return &Client{rdb: rdb} }

// NewClient makes a go-redis client from opt whose every connection is switched to pool (when
// pool is not empty), keeping opt's own OnConnect hook.
func NewClient(opt *redis.Options, pool string) (*Client, *redis.Client) {
	withHook := *opt
	if pool != "" {
		withHook.OnConnect = UsePool(pool, opt.OnConnect)
	}
	rdb := redis.NewClient(&withHook)
	return New(rdb), rdb
}

// Redis is the go-redis client the commands go through.
func (c *Client) Redis() Doer { return c.rdb }

func (c *Client) do(ctx context.Context, args ...any) (any, error) {
	reply, err := c.rdb.Do(ctx, args...).Result()
	return reply, asKafkaError(err)
}

// KPush writes value to topic (the proxy picks the partition round-robin).
func (c *Client) KPush(ctx context.Context, topic string, value []byte) (Pushed, error) {
	return c.push(ctx, "KPUSH", topic, value)
}

// KPushTo writes value to topic's partition.
func (c *Client) KPushTo(ctx context.Context, topic string, partition int32, value []byte) (Pushed, error) {
	return c.push(ctx, "KPUSH", topic, partition, value)
}

func (c *Client) push(ctx context.Context, args ...any) (Pushed, error) {
	reply, err := c.do(ctx, args...)
	if err != nil {
		return Pushed{}, err
	}
	numbers, err := integers(reply, 2)
	if err != nil {
		return Pushed{}, err
	}
	return Pushed{Partition: int32(numbers[0]), Offset: numbers[1]}, nil
}

// KPop returns the next record of topic for this tenant (offsets kept by the proxy: each record
// once per consumer group), or nil when there is nothing new.
func (c *Client) KPop(ctx context.Context, topic string) (*Record, error) {
	return c.popOne(ctx, "KPOP", topic)
}

// KPopAt returns the record at or after offset in partition, or nil when there is none.
func (c *Client) KPopAt(ctx context.Context, topic string, partition int32, offset int64) (*Record, error) {
	return c.popOne(ctx, "KPOP", topic, partition, offset)
}

// KPopN returns up to count records at or after offset in partition (none: an empty slice).
func (c *Client) KPopN(ctx context.Context, topic string, partition int32, offset int64, count int) ([]Record, error) {
	reply, err := c.do(ctx, "KPOP", topic, partition, offset, count)
	if err != nil {
		return nil, err
	}
	items, ok := reply.([]any)
	if !ok {
		return nil, unexpected("KPOP", reply)
	}
	records := make([]Record, 0, len(items))
	for _, item := range items {
		record, err := toRecord(item)
		if err != nil {
			return nil, err
		}
		records = append(records, record)
	}
	return records, nil
}

func (c *Client) popOne(ctx context.Context, args ...any) (*Record, error) {
	reply, err := c.do(ctx, args...)
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	record, err := toRecord(reply)
	if err != nil {
		return nil, err
	}
	return &record, nil
}

// KPartitions returns topic's partition ids.
func (c *Client) KPartitions(ctx context.Context, topic string) ([]int32, error) {
	reply, err := c.do(ctx, "KPARTITIONS", topic)
	if err != nil {
		return nil, err
	}
	items, ok := reply.([]any)
	if !ok {
		return nil, unexpected("KPARTITIONS", reply)
	}
	numbers, err := integers(items, len(items))
	if err != nil {
		return nil, err
	}
	partitions := make([]int32, len(numbers))
	for index, number := range numbers {
		partitions[index] = int32(number)
	}
	return partitions, nil
}

// KOffset returns the first offset at or after time (ms) in partition, or the [Latest] or
// [Earliest] offset.
func (c *Client) KOffset(ctx context.Context, topic string, partition int32, time int64) (OffsetAt, error) {
	reply, err := c.do(ctx, "KOFFSET", topic, partition, time)
	if err != nil {
		return OffsetAt{}, err
	}
	numbers, err := integers(reply, 2)
	if err != nil {
		return OffsetAt{}, err
	}
	return OffsetAt{Offset: numbers[0], Timestamp: numbers[1]}, nil
}

// toRecord reads a `[partition, offset, value]` triple.
func toRecord(reply any) (Record, error) {
	items, ok := reply.([]any)
	if !ok || len(items) != 3 {
		return Record{}, unexpected("KPOP", reply)
	}
	numbers, err := integers(items[:2], 2)
	if err != nil {
		return Record{}, err
	}
	record := Record{Partition: int32(numbers[0]), Offset: numbers[1]}
	switch value := items[2].(type) {
	case nil:
	case string:
		record.Value = []byte(value)
	default:
		return Record{}, unexpected("KPOP", reply)
	}
	return record, nil
}

// integers reads an array of exactly n integers.
func integers(reply any, n int) ([]int64, error) {
	items, ok := reply.([]any)
	if !ok || len(items) != n {
		return nil, unexpected("integers", reply)
	}
	numbers := make([]int64, n)
	for index, item := range items {
		number, ok := item.(int64)
		if !ok {
			return nil, unexpected("integers", reply)
		}
		numbers[index] = number
	}
	return numbers, nil
}

func unexpected(what string, reply any) error {
	return fmt.Errorf("rkproxy: unexpected %s reply %#v", what, reply)
}
